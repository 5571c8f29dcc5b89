"""Deterministic preprocessing: canonical orientation (2D and 3D), crop/pad, normalisation."""

import nibabel as nib
import numpy as np
import pytest

from medssl.io import Volume
from medssl.transforms.preprocess import Preprocessor, to_canonical


def test_3d_reorientation_matches_nibabel():
    rng = np.random.default_rng(0)
    data = rng.random((5, 6, 7)).astype(np.float32)
    affine = np.array([[0, 0, -2, 10], [-1.5, 0, 0, 3], [0, 3, 0, -7], [0, 0, 0, 1]], dtype=float)  # PSR-like
    vol = Volume(data[None], affine)
    out = to_canonical(vol)
    ref = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    assert out.orientation == "RAS"
    np.testing.assert_array_equal(out.array[0], ref.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(out.affine, ref.affine)


def test_2d_reorientation_flips_axes_and_keeps_world_coordinates():
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    affine = np.array([[-1.0, 0, 5], [0, 2.0, 0], [0, 0, 1]])  # axis 0 points left: L A
    out = to_canonical(Volume(data[None], affine))
    assert out.orientation == "RA"
    np.testing.assert_array_equal(out.array[0], data[::-1])
    # the same voxel keeps its world position: voxel (0,0) of the input = voxel (2,0) of the output
    np.testing.assert_allclose(affine @ [0, 0, 1], out.affine @ [2, 0, 1])


@pytest.mark.parametrize("normalise", ["zscore", "minmax", "none"])
def test_crop_pad_and_normalise(normalise):
    """Centre crop / pad to the naive slice (10 → 8 drops one voxel each side, 12 → 8 two, 6 → 8 pads one slice
    of the scan's minimum each side), then the naive whole-volume formula of each normalisation (padding included)."""
    rng = np.random.default_rng(1)
    x = rng.normal(5, 2, (1, 10, 12, 6)).astype(np.float32)
    out = Preprocessor(shape=[8, 8, 8], normalise=normalise)(Volume(x, np.eye(4)))
    assert out.shape == (1, 8, 8, 8) and out.dtype == np.float32
    p = np.pad(x[:, 1:9, 2:10, :].astype(np.float64), ((0, 0), (0, 0), (0, 0), (1, 1)), constant_values=x.min())
    if normalise == "zscore":
        expected = (p - p.mean()) / p.std()
    elif normalise == "minmax":
        lo, hi = np.percentile(p, [0.5, 99.5])
        expected = np.clip((p - lo) / (hi - lo), 0, 1)
        assert out.min() == 0 and out.max() == 1
    else:
        expected = p
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_range_is_plain_min_max_without_clipping():
    """``range`` maps the (cropped/padded) volume's own min and max to 0 and 1, keeping outliers in between: the
    naive (x - min) / (max - min), unlike ``minmax``, which clips at the 0.5/99.5 percentiles."""
    x = np.random.default_rng(2).normal(5, 2, (1, 8, 8, 8)).astype(np.float32)
    x[0, 0, 0, 0] = 40.0  # an outlier
    vol = Volume(x, np.eye(4))
    out = Preprocessor(shape=[8, 8, 8], normalise="range")(vol)
    np.testing.assert_allclose(out, (x - x.min()) / (x.max() - x.min()), atol=1e-6)
    clipped = Preprocessor(shape=[8, 8, 8], normalise="minmax")(vol)
    assert clipped[0, 0, 0, 0] == 1.0 and np.median(clipped) > 2 * np.median(out)


def test_fingerprint_changes_with_settings():
    assert Preprocessor([8, 8, 8]).fingerprint() != Preprocessor([8, 8, 9]).fingerprint()
    assert Preprocessor([8, 8, 8]).fingerprint() == Preprocessor([8, 8, 8]).fingerprint()


def test_padding_takes_the_scan_minimum_not_zero():
    """A CT scan in HU (air -1024) padded with 0 got slabs of water (HU 0) around it, tissue-like after
    normalisation (0.716 on a real 3-slice CT). Padded voxels take the channel's minimum: the background."""
    rng = np.random.default_rng(3)
    ct = rng.uniform(-1024, 1500, (2, 8, 8, 4)).astype(np.float32)
    ct[1] += 5000  # a second channel with another minimum
    out = Preprocessor(shape=[6, 8, 8], normalise="none", orientation="")(Volume(ct, np.eye(4)))
    lo = ct.reshape(2, -1).min(axis=1)
    expected = np.stack([np.pad(ct[c, 1:7], ((0, 0), (0, 0), (2, 2)), constant_values=lo[c]) for c in range(2)])
    np.testing.assert_array_equal(out, expected)
    z = Preprocessor(shape=[6, 8, 8], normalise="zscore", orientation="")(Volume(ct[:1], np.eye(4)))
    np.testing.assert_allclose(z, (expected[:1] - expected[:1].mean()) / expected[:1].std(), rtol=1e-4, atol=1e-4)
