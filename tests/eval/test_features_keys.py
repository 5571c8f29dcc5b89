"""Feature extraction: the 2D flip axis, and every input of the cache key on its own (one change at a time)."""

import numpy as np
import pytest
import torch

from eval_helpers import make_tiny_encoder
from medssl.eval.features import extract_features


class _Tiny2D(torch.nn.Module):
    spatial_dims, in_channels, out_dim = 2, 1, 4

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU())
        self.weight = torch.nn.Parameter(torch.linspace(-1, 1, 8))  # position-dependent pooling along the width

    def forward(self, x):
        return (self.net(x).mean(dim=2) * self.weight).sum(-1)


def test_2d_flip_averaging_mirrors_the_width_axis():
    """2D images (C, H, W): the default test-time flip is left-right, the width (spatial axis 1), not up-down."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 1, 8, 8, generator=g)
    ds = [{"image": x[i], "index": torch.tensor(i)} for i in range(5)]
    enc = _Tiny2D().eval()
    out = extract_features(enc, ds, tta_flip=True)["features"]
    with torch.no_grad():
        ref = 0.5 * (enc(x) + enc(torch.flip(x, dims=(3,))))
        up_down = 0.5 * (enc(x) + enc(torch.flip(x, dims=(2,))))
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(out, up_down.numpy(), atol=1e-4)


def _cached_scans(images, **fields):
    from medssl.data.dataset import CachedScans, MetadataCoder
    from medssl.data.manifest import Record

    n = len(images)
    rec = dict(subject=[f"s{i}" for i in range(n)], age=[20.0 + i for i in range(n)], site=["A", "B"] * (n // 2),
               sex=["F", "M"] * (n // 2), label=["x", "y"] * (n // 2))
    rec.update(fields)
    recs = [Record(f"/d/{i}.nii.gz", rec["subject"][i], site=rec["site"][i], age=rec["age"][i], sex=rec["sex"][i],
                   label=rec["label"][i]) for i in range(n)]
    return CachedScans(images, recs, list(range(n)), MetadataCoder(recs))


@pytest.mark.parametrize("column, edited, expected", [("label", ["y", "y", "x", "y"], [1, 1, 0, 1]),
                                                      ("sex", ["M", "M", "F", "M"], [1, 1, 0, 1])])
def test_one_edited_metadata_column_alone_is_not_served_from_the_cache(tmp_path, column, edited, expected):
    images = np.random.default_rng(0).normal(size=(4, 1, 8, 8, 8)).astype(np.float32)
    enc, path = make_tiny_encoder(), tmp_path / "features.npz"
    first = extract_features(enc, _cached_scans(images), cache=path)
    np.testing.assert_array_equal(first[column], [0, 1, 0, 1])
    again = extract_features(enc, _cached_scans(images, **{column: edited}), cache=path)
    np.testing.assert_array_equal(again[column], expected)


def test_the_flip_axis_and_the_image_shape_are_part_of_the_cache_key(tmp_path):
    """Flipping along another axis, or the same bytes read as another image shape (another crop), is recomputed."""
    enc, path = make_tiny_encoder(), tmp_path / "features.npz"
    images = np.random.default_rng(1).normal(size=(4, 1, 8, 8, 8)).astype(np.float32)
    images[..., :4] *= 2.0
    scans = _cached_scans(images)
    axis0 = extract_features(enc, scans, tta_flip=True, cache=path)["features"]
    axis2 = extract_features(enc, scans, tta_flip=True, flip_axis=2, cache=path)["features"]
    np.testing.assert_allclose(axis2, extract_features(enc, scans, tta_flip=True, flip_axis=2)["features"], rtol=1e-6)
    assert not np.allclose(axis0, axis2)
    extract_features(enc, scans, cache=path)  # cached without a flip; then the same bytes as (1, 4, 16, 8) images
    other = _cached_scans(images.reshape(4, 1, 4, 16, 8))
    reshaped = extract_features(enc, other, cache=path)["features"]
    np.testing.assert_allclose(reshaped, extract_features(enc, other)["features"], rtol=1e-6)
