"""Spatial transforms against naive references: resized crops of a linear ramp, border padding, translations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from aug_helpers import blob_phantom, gen
from scipy import stats

from medssl.transforms.spatial import RandomAffine, RandomElastic, RandomFlip, RandomResizedCrop, fused_spatial

SLOPES = (1.0, 7.0)


def _ramp(shape) -> torch.Tensor:
    i, j = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    return torch.from_numpy(SLOPES[0] * i + SLOPES[1] * j)[None, None]


def _ramp_crop(start, region, size, in_shape) -> np.ndarray:
    """Output voxel q (a cell of side region / size) samples input position start + (q + 0.5) region / size - 0.5
    (voxel centres, align_corners=False); bilinear is exact on a ramp; border padding clamps to [0, n - 1]."""
    pos = [np.clip(s + (np.arange(k) + 0.5) * r / k - 0.5, 0, n - 1)
           for s, r, k, n in zip(start, region, size, in_shape)]
    return SLOPES[0] * pos[0][:, None] + SLOPES[1] * pos[1][None, :]


def test_a_resized_crop_inside_the_image_samples_its_region_at_the_crop_resolution():
    """Region side 0.6 x crop side: the ramp's slope in the view is 0.6 x its slope (anatomy enlarged), and the
    region lies inside the image wherever it is placed."""
    in_shape, size = (24, 20), (8, 10)
    x = _ramp(in_shape).expand(16, 1, *in_shape)
    crop = RandomResizedCrop(size, scale=(0.6, 0.6))
    p = crop.sample_params(x.shape, gen(1))
    y = crop.apply(x, p)
    s_in = torch.tensor(in_shape, dtype=torch.float32)
    start = p["centre"] - p["region"] / 2 + s_in / 2
    assert torch.allclose(p["region"], torch.tensor([4.8, 6.0]).expand(16, 2))
    assert (start >= 0).all() and (start + p["region"] <= s_in + 1e-4).all()
    for b in range(16):
        ref = _ramp_crop(start[b].double().tolist(), (4.8, 6.0), size, in_shape)
        np.testing.assert_allclose(y[b, 0].numpy(), ref, atol=1e-4)


def test_a_resized_crop_larger_than_the_image_is_centred_on_it():
    """Region 1.25 x (8, 8) = 10 voxels from an 8 x 9 image: start (8 - 10) / 2 and (9 - 10) / 2, border values
    beyond the edges (docs: 'centred where it is larger than the input')."""
    crop = RandomResizedCrop((8, 8), scale=(1.25, 1.25))
    x = _ramp((8, 9))
    y = crop.apply(x, crop.sample_params(x.shape, gen(2)))
    np.testing.assert_allclose(y[0, 0].numpy(), _ramp_crop((-1.0, -0.5), (10.0, 10.0), (8, 8), (8, 9)), atol=1e-4)


def test_resized_crops_are_placed_uniformly_where_they_fit():
    """docs/augmentations.md (crop_scale): the region is placed uniformly where it fits, with continuous offsets
    unless it is a plain crop; the offset / room of 4000 non-integer regions is U(0, 1), per sample and axis."""
    crop = RandomResizedCrop((10, 10), scale=(0.55, 0.55))  # region 5.5 in 30 voxels: room 24.5
    p = crop.sample_params((4000, 1, 30, 30), gen(3))
    u = ((p["centre"] - p["region"] / 2 + 15) / 24.5).double().numpy()
    assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-3 and u.max() <= 1 + 1e-6
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.1


@pytest.mark.parametrize("tr", [RandomAffine(1.0, rotate=45.0, scale=(0.6, 0.7)), RandomElastic(1.0, magnitude=4.0)],
                         ids=["affine", "elastic"])
def test_alone_the_spatial_transforms_pad_with_border_values(tr):
    """Module docs: padding_mode='border' (z-scored backgrounds are not 0): a constant image of 3 stays 3 when a
    rotation with zoom-out or a warp brings in positions from outside the image."""
    x = torch.full((2, 1, 12, 14), 3.0)
    y = tr(x, gen(4))
    assert torch.allclose(y, x, atol=1e-5)


def test_translation_is_a_fraction_of_each_axis_own_extent():
    """shift 0.1 on a 20 x 30 image: 2 voxels along axis 0 and 3 along axis 1 (a roll inside the image)."""
    x = torch.randn(1, 1, 20, 30, generator=gen(5))
    aff = RandomAffine(1.0, rotate=0.0, scale=(1.0, 1.0), translate=0.5)
    p = aff.sample_params(x.shape, gen(0))
    p["shift"][:] = torch.tensor([0.1, 0.1])
    y = aff.apply(x, p)
    assert torch.allclose(y[..., 2:, 3:], x[..., :-2, :-3], atol=1e-5)


def test_fused_views_the_affine_does_not_select_ignore_its_translation():
    """An unselected sample's drawn shift must not move its view: it is the plain crop, bit for bit."""
    x = blob_phantom((20, 20), batch=8)
    crop, aff = RandomResizedCrop((12, 12)), RandomAffine(0.5, rotate=0.0, scale=(1.0, 1.0), translate=0.25)
    cp, ap = crop.sample_params(x.shape, gen(6)), aff.sample_params((8, 1, 12, 12), gen(7))
    keep = ap["apply"]
    assert 0 < int(keep.sum()) < 8 and (ap["shift"][~keep].abs() * 12 > 0.5).any()
    fused, plain = fused_spatial(x, crop, [aff], [ap], cp), crop.apply(x, cp)
    assert torch.equal(fused[~keep], plain[~keep])
    assert not math.isclose(float((fused[keep] - plain[keep]).abs().max()), 0.0)


def test_a_sub_voxel_translation_is_interpolated_not_rounded_to_a_crop():
    """shift 0.015 x 20 = 0.3 voxel along axis 0: the view is the ramp moved by 0.3 voxel (bilinear is exact on a
    ramp), not a whole-voxel copy."""
    x = _ramp((20, 16))
    aff = RandomAffine(1.0, rotate=0.0, scale=(1.0, 1.0), translate=0.5)
    p = aff.sample_params(x.shape, gen(0))
    p["shift"][:] = torch.tensor([0.015, 0.0])
    y = aff.apply(x, p)
    np.testing.assert_allclose(y[0, 0].numpy(), _ramp_crop((-0.3, 0.0), (20, 16), (20, 16), (20, 16)), atol=1e-4)


def _keys_upsample(c: np.ndarray, size: int, a: float = -0.75) -> np.ndarray:
    """Naive cubic convolution (Keys 1981, a = -0.75 as in PyTorch) of the rows of ``c`` (..., G) to ``size`` points
    spanning the same ends (align_corners=True), indices clamped at the edges."""
    def w(s):
        s = np.abs(s)
        return np.where(s <= 1, (a + 2) * s**3 - (a + 3) * s**2 + 1,
                        np.where(s < 2, a * s**3 - 5 * a * s**2 + 8 * a * s - 4 * a, 0.0))
    g = c.shape[-1]
    u = np.arange(size) * (g - 1) / (size - 1)
    base = np.floor(u).astype(int)
    out = np.zeros(c.shape[:-1] + (size,))
    for k in range(-1, 3):
        out += c[..., np.clip(base + k, 0, g - 1)] * w(u - (base + k))
    return out


def test_in_2d_the_elastic_field_is_the_bicubic_interpolation_of_the_control_points():
    """RandomElastic docstring: offsets interpolated bicubically in 2D: the field equals a naive separable Keys cubic
    convolution of the control lattice (bilinear would be a plain tent between control points)."""
    el = RandomElastic(1.0, magnitude=2.0, grid=5)
    p = el.sample_params((2, 1, 17, 13), gen(8))
    field = el.displacement(p, (17, 13)).double().numpy()
    c = p["control"].double().numpy()  # (B, 2, 5, 5)
    ref = np.swapaxes(_keys_upsample(np.swapaxes(_keys_upsample(c, 13), -1, -2), 17), -1, -2)
    np.testing.assert_allclose(field, ref, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_plain_crops_and_flips_of_any_float_batch_are_exact_slices_in_its_dtype(dtype):
    """Whole-voxel crops with flips are copied, not interpolated: the view is the numpy slice, in the batch's dtype."""
    x = torch.randn(3, 2, 11, 9, generator=gen(9)).to(dtype)
    crop = RandomResizedCrop((6, 5))
    p = crop.sample_params(x.shape, gen(10))
    y = crop.apply(x, p)
    start = (p["centre"] - p["region"] / 2 + torch.tensor([11.0, 9.0]) / 2).round().long()
    assert y.dtype == dtype
    for b, (s0, s1) in enumerate(start.tolist()):
        np.testing.assert_array_equal(y[b].float().numpy(), x[b, :, s0:s0 + 6, s1:s1 + 5].float().numpy())
    flip = RandomFlip(1.0, axes=(1,))
    z = flip.apply(y, flip.sample_params(y.shape, gen(11)))
    assert z.dtype == dtype and torch.equal(z, y.flip(3))


@pytest.mark.parametrize("k,plane", [(0, (1, 2)), (1, (0, 2)), (2, (0, 1))])
def test_each_3d_angle_turns_its_documented_plane(k, plane):
    """rotation_matrix docs: angles k = 0, 1, 2 rotate the planes of axes (1, 2), (0, 2), (0, 1). A quarter turn of
    angle k alone is rot90 on that plane, in the same direction as the 2D rotation (test_spatial.py)."""
    x = torch.randn(1, 1, 10, 10, 10, generator=gen(12))
    aff = RandomAffine(1.0, rotate=0.0, scale=(1.0, 1.0))
    p = aff.sample_params(x.shape, gen(0))
    p["angles"][:] = 0.0
    p["angles"][:, k] = math.pi / 2
    y = aff.apply(x, p)
    assert torch.allclose(y, torch.rot90(x, 3, (2 + plane[0], 2 + plane[1])), atol=1e-5)


def test_fused_views_refuse_a_second_elastic_warp():
    """fused_spatial takes one displacement field: a second RandomElastic would silently replace the first."""
    x = torch.randn(2, 1, 8, 8)
    crop, el = RandomResizedCrop((8, 8)), RandomElastic(1.0)
    ps = [el.sample_params(x.shape, gen(s)) for s in (1, 2)]
    with pytest.raises(ValueError, match="one RandomElastic"):
        fused_spatial(x, crop, [el, el], ps, crop.sample_params(x.shape, gen(3)))
