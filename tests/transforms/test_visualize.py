"""The view grid figure: which slices it shows and how many panels it draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

from medssl.transforms.visualize import _mid_slices, save_view_grid  # noqa: E402


def test_mid_slices_show_the_central_slice_of_each_axis_and_2d_as_x_right():
    vol = torch.arange(4 * 5 * 6, dtype=torch.float32).reshape(1, 4, 5, 6)  # even sides: n // 2, not (n - 1) // 2
    planes = _mid_slices(vol)
    a = vol[0].numpy()
    central = [a[2, :, :], a[:, 2, :], a[:, :, 3]]
    for (name, plane), k, ref in zip(planes, range(3), central):
        assert name == f"axis {k}"
        assert plane.shape == ref.shape[::-1] and sorted(plane.ravel()) == sorted(ref.ravel())
        assert plane[0, 0] == ref[0, -1]  # rotated: the last remaining axis points up
    two_channels = _mid_slices(torch.cat([vol, -vol]))  # the first channel is drawn
    assert all(np.array_equal(p, q) for (_, p), (_, q) in zip(two_channels, planes))
    img = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4)  # (X, Y)
    (name, plane), = _mid_slices(img)
    assert name == "" and plane.shape == (4, 3) and plane[1, 2] == img[0, 2, 1]  # row = Y, column = X


class _CropViews:
    def views(self, x, n, g):  # (B, C, *S) -> (B, n, C, *S'): fixed crops, one per view
        return torch.stack([x[..., v:v + 4, v:v + 4, v:v + 4] for v in range(n)], dim=1)


def test_grid_has_one_row_per_plane_and_one_column_per_view(tmp_path):
    vol = torch.randn(1, 6, 7, 8, generator=torch.Generator().manual_seed(0))
    path = save_view_grid([("a", vol), ("b", vol)], _CropViews(), tmp_path / "sub" / "g.png", n_views=2)
    h, w = imread(path).shape[:2]
    assert (h, w) == (round(2.2 * 6 * 90), round(2.2 * 3 * 90))  # 2 images x 3 planes, original + 2 views
    with pytest.raises(ValueError, match="2 pipelines for 1 images"):
        save_view_grid([("a", vol)], [_CropViews()] * 2, tmp_path / "h.png")


class _SeededViews:
    """View v of a 3D image: the image plus noise drawn from the generator (a different panel per view and seed)."""

    def views(self, x, n, g):
        return x[:, None] + torch.randn((x.shape[0], n) + x.shape[1:], generator=g)


def test_panels_levels_labels_and_seed(tmp_path, monkeypatch):
    """Row k shows the central slice across axis k (rotated, as _mid_slices) of the original, then of each view
    in order; every panel of an image shares the grey levels of its 0.5 and 99.5 percentiles (naive linear
    interpolation between sorted values); titles, row labels and the figure title are written; the views are
    those of a generator seeded with ``seed``; a tuple of pipelines gives one per image."""
    import matplotlib.axes
    import matplotlib.pyplot as plt

    shown, figures = [], []
    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", lambda ax, a, **kw: shown.append((ax, np.asarray(a), kw)))
    monkeypatch.setattr(plt, "close", lambda fig: figures.append(fig))
    vol = torch.randn(1, 6, 7, 8, generator=torch.Generator().manual_seed(1))
    vol[0, 0, 0, 0] = 50.0  # one outlier: the percentiles, not the extremes, set the grey levels
    save_view_grid([("a", vol)], (_SeededViews(),), tmp_path / "g.png", n_views=2, seed=7, title="T")
    views = _SeededViews().views(vol[None], 2, torch.Generator().manual_seed(7))[0].numpy()
    flat = np.sort(vol.numpy().ravel())
    levels = [flat[int(i)] + (i % 1) * (flat[int(i) + 1] - flat[int(i)]) for i in (0.005 * (flat.size - 1), 0.995 * (flat.size - 1))]
    assert len(shown) == 3 * 3
    for k in range(3):
        for c, image in enumerate([vol.numpy()] + list(views)):
            ax, panel, kw = shown[3 * k + c]
            a = image[0]
            assert np.array_equal(panel, np.rot90(np.take(a, a.shape[k] // 2, axis=k))), (k, c)
            assert np.allclose([kw["vmin"], kw["vmax"]], levels, rtol=1e-6)
            assert ax.get_title() == (("original" if c == 0 else f"view {c}") if k == 0 else "")
            assert ax.get_ylabel() == (f"a axis {k}" if c == 0 else "")
    assert figures[0]._suptitle.get_text() == "T"
    monkeypatch.undo()
    plt.close(figures[0])
