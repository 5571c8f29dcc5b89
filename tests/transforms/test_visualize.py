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
