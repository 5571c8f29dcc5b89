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
    """Centre crop to the naive slice (10 → 8 drops one voxel each side, 12 → 8 two), the naive formula of each
    normalisation on the cropped scan, then 6 → 8 pads one slice of its (normalised) minimum each side: the
    padding does not enter the statistics."""
    rng = np.random.default_rng(1)
    x = rng.normal(5, 2, (1, 10, 12, 6)).astype(np.float32)
    out = Preprocessor(shape=[8, 8, 8], normalise=normalise)(Volume(x, np.eye(4)))
    assert out.shape == (1, 8, 8, 8) and out.dtype == np.float32
    c = x[:, 1:9, 2:10, :].astype(np.float64)
    if normalise == "zscore":
        c = (c - c.mean()) / c.std()
    elif normalise == "minmax":
        lo, hi = np.percentile(c, [0.5, 99.5])
        c = np.clip((c - lo) / (hi - lo), 0, 1)
        assert out.min() == 0 and out.max() == 1
    expected = np.pad(c, ((0, 0), (0, 0), (0, 0), (1, 1)), constant_values=c.min())
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_zscore_of_a_real_scan_does_not_depend_on_the_padding():
    """A real IXI T1 (RAS grid 90×120×120 at 2 mm) padded to the card's 96×120×120, or to 96×128×128, before
    z-scoring had the padded background in its mean / SD: tissue shifted by 0.05 SD on average (max 0.19) at
    96×120×120 and 0.15 (max 0.6) at 96×128×128, so one scan got other intensities for another target shape
    (and scans of different fields of view were normalised differently). The scan's voxels must be the naive
    (x - mean) / SD of the scan itself, whatever the shape; the padding is its minimum."""
    from medssl.io import read_nifti
    from tests.shared_data import shared_path

    vol = read_nifti(next(iter(sorted(shared_path("data", "ixi_t1_hh_2mm", "images").glob("*.nii.gz")))))
    x = to_canonical(vol).array.astype(np.float64)  # (1, 90, 120, 120)
    z = (x - x.mean()) / x.std()
    for shape in ([96, 120, 120], [96, 128, 128]):
        out = Preprocessor(shape=shape, normalise="zscore")(vol)
        pads = [((s - n) // 2, s - n - (s - n) // 2) for n, s in zip(x.shape[1:], shape)]
        np.testing.assert_allclose(out, np.pad(z, [(0, 0), *pads], constant_values=z.min()), atol=2e-4)


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
    normalisation (0.716 on a real 3-slice CT). Padded voxels take the channel's minimum (of the cropped scan):
    the background."""
    rng = np.random.default_rng(3)
    ct = rng.uniform(-1024, 1500, (2, 8, 8, 4)).astype(np.float32)
    ct[1] += 5000  # a second channel with another minimum
    out = Preprocessor(shape=[6, 8, 8], normalise="none", orientation="")(Volume(ct, np.eye(4)))
    lo = ct[:, 1:7].reshape(2, -1).min(axis=1)
    expected = np.stack([np.pad(ct[c, 1:7], ((0, 0), (0, 0), (2, 2)), constant_values=lo[c]) for c in range(2)])
    np.testing.assert_array_equal(out, expected)
    z = Preprocessor(shape=[6, 8, 8], normalise="zscore", orientation="")(Volume(ct[:1], np.eye(4)))
    c = ct[:1, 1:7].astype(np.float64)
    c = (c - c.mean()) / c.std()
    np.testing.assert_allclose(z, np.pad(c, ((0, 0), (0, 0), (0, 0), (2, 2)), constant_values=c.min()),
                               rtol=1e-4, atol=1e-4)


def test_zscore_is_per_channel():
    """Channels of different scale (stacked MR contrasts) are each normalised to mean 0, SD 1."""
    rng = np.random.default_rng(4)
    x = np.stack([rng.normal(5, 2, (8, 8, 8)), rng.normal(300, 80, (8, 8, 8))]).astype(np.float32)
    out = Preprocessor(shape=[8, 8, 8])(Volume(x, np.eye(4))).astype(np.float64)
    expected = (x - x.mean((1, 2, 3), keepdims=True)) / x.std((1, 2, 3), keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target", [(1.0, 0.5, 1.5), (4.0, 2.5, 1.0)])  # each divides the extent
def test_resampling_to_a_spacing_samples_the_scan_at_the_new_grid_points(target):
    """A scan that is linear in world coordinates (mm), f = 1·x + 10·y + 100·z on an anisotropic 2 × 1 × 3 mm grid,
    resampled to ``target`` mm keeps the first voxel centre and covers the same extent: (n - 1)·old / new + 1
    voxels per axis (for new spacings that divide the extent), and (linear interpolation being exact on a linear function) voxel (a, b, c) holds
    f(a·new_x, b·new_y, c·new_z). Any mix-up of axes, of spacings or of the interpolation shows."""
    n, old = (9, 6, 5), (2.0, 1.0, 3.0)
    affine = np.diag([*old, 1.0])
    affine[:3, 3] = [10.0, -5.0, 3.0]
    slope = np.array([1.0, 10.0, 100.0])
    scan = sum(s * np.arange(m)[tuple(slice(None) if a == i else None for i in range(3))] * sp
               for a, (s, m, sp) in enumerate(zip(slope, n, old)))
    shape = [int(round((m - 1) * o / t)) + 1 for m, o, t in zip(n, old, target)]
    out = Preprocessor(shape=shape, spacing=list(target), normalise="none", orientation="")(
        Volume(scan[None].astype(np.float32), affine))
    grid = np.meshgrid(*[np.arange(m) * t for m, t in zip(shape, target)], indexing="ij")
    np.testing.assert_allclose(out[0], sum(s * g for s, g in zip(slope, grid)), atol=1e-3)


def test_odd_crop_and_pad_differences_follow_monai_centring():
    """An odd difference cannot be split evenly: MONAI's centre crop (start = n // 2 - shape // 2) keeps 11 -> 8 as
    slice 1:9, its centre pad puts 5 -> 8 as (1 before, 2 after), and the minimum must fill exactly those padded
    voxels (a mask misplaced by one voxel on the odd side shows; the even cases above are symmetric)."""
    x = np.random.default_rng(6).normal(5, 2, (1, 11, 7, 5)).astype(np.float32)
    out = Preprocessor(shape=[8, 7, 8], normalise="none", orientation="")(Volume(x, np.eye(4)))
    c = x[:, 1:9]
    np.testing.assert_array_equal(out, np.pad(c, ((0, 0), (0, 0), (0, 0), (1, 2)), constant_values=c.min()))


def test_zscore_counts_the_zero_background_like_any_voxel():
    """docs/augmentations.md: brain_mri data is 'z-scored over the whole volume (background negative)': a head in
    air (zeros around it) is normalised by the mean / SD of every kept voxel, zeros included (not a foreground-only
    z-score, which would leave the background at 0)."""
    x = np.zeros((1, 8, 8, 8), np.float32)
    x[0, 2:6, 2:6, 2:6] = np.random.default_rng(7).uniform(50, 150, (4, 4, 4))
    out = Preprocessor(shape=[8, 8, 8], normalise="zscore", orientation="")(Volume(x, np.eye(4)))
    np.testing.assert_allclose(out, (x - x.mean()) / x.std(), rtol=1e-5, atol=1e-5)
    assert out[0, 0, 0, 0] < 0
