"""Spatial augmentations: exact crops/flips, affine against independent references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from aug_helpers import blob_phantom, gen

from medssl.transforms.resample import _gather_crops, resample, sampling_grid
from medssl.transforms.spatial import (RandomAffine, RandomElastic, RandomFlip, RandomResizedCrop, fused_spatial,
                                       rotation_matrix)


def _affine_params(aff, x, angles=None, zoom=None, shift=None):
    p = aff.sample_params(x.shape, gen(0))
    p["apply"][:] = True
    if angles is not None:
        p["angles"][:] = torch.tensor(angles)
    if zoom is not None:
        p["zoom"][:] = zoom
    if shift is not None:
        p["shift"][:] = torch.tensor(shift)
    return p


@pytest.mark.parametrize("shape,crop", [((20, 22, 24), (10, 12, 8)), ((30, 26), (16, 20))])
def test_random_crop_is_an_exact_slice(shape, crop):
    x = torch.randn((3, 2) + shape)
    tr = RandomResizedCrop(crop)
    p = tr.sample_params(x.shape, gen(3))
    y = tr.apply(x, p)
    assert y.shape == (3, 2) + crop and y.dtype == x.dtype
    start = (p["centre"] - p["region"] / 2 + torch.tensor(shape) / 2).round().long()
    for b in range(3):
        sl = tuple(slice(int(s), int(s) + k) for s, k in zip(start[b], crop))
        assert torch.equal(y[b], x[(b, slice(None)) + sl])


def test_crops_vary_with_seed_and_repeat_with_same_seed():
    x = torch.randn(4, 1, 40, 40, 40)
    tr = RandomResizedCrop((16, 16, 16), scale=(0.7, 1.2), ratio=(0.8, 1.25))
    a, b, c = tr(x, gen(1)), tr(x, gen(1)), tr(x, gen(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_flip_equals_torch_flip():
    x = torch.randn(4, 2, 9, 10, 11)
    fl = RandomFlip(0.5)
    p = fl.sample_params(x.shape, gen(5))
    y = fl.apply(x, p)
    for b in range(4):
        dims = [1 + a for a in range(3) if p["flip"][b, a]]
        assert torch.equal(y[b], x[b].flip(dims) if dims else x[b])


def test_flip_axes_restricts_flips():
    p = RandomFlip(1.0, axes=(0,)).sample_params((6, 1, 8, 8, 8), gen(0))
    assert p["flip"][:, 0].all() and not p["flip"][:, 1:].any()


def test_affine_rotation_zero_scale_one_is_identity():
    x = blob_phantom((20, 24, 22))
    aff = RandomAffine(1.0, rotate=0.0, scale=(1.0, 1.0))
    y = aff(x, gen(0))
    assert torch.allclose(y, x, atol=1e-5)


def test_affine_90_degrees_matches_rot90_2d_and_3d():
    x2 = torch.randn(2, 1, 16, 16)
    aff = RandomAffine(1.0, rotate=0.0, scale=(1.0, 1.0))
    y2 = aff.apply(x2, _affine_params(aff, x2, angles=[[math.pi / 2]] * 2))
    assert torch.allclose(y2, torch.rot90(x2, 3, (2, 3)), atol=1e-5)
    x3 = torch.randn(2, 1, 12, 12, 12)
    y3 = aff.apply(x3, _affine_params(aff, x3, angles=[[0.0, 0.0, math.pi / 2]] * 2))  # plane (0, 1)
    assert torch.allclose(y3, torch.rot90(x3, 3, (2, 3)), atol=1e-5)


def test_affine_integer_translation_matches_roll_inside():
    x = torch.randn(1, 1, 20, 20)
    aff = RandomAffine(1.0, rotate=0.0, scale=(1.0, 1.0), translate=0.5)
    y = aff.apply(x, _affine_params(aff, x, angles=[[0.0]], shift=[[0.1, 0.0]]))  # 2 voxels along axis 0
    assert torch.allclose(y[..., 2:, :], x[..., :-2, :], atol=1e-5)


def test_zoom_enlarges_anatomy():
    x = blob_phantom((32, 32), batch=1)
    mask = (x > 0.3).float()
    aff = RandomAffine(1.0, rotate=0.0, scale=(1.5, 1.5))
    y = aff.apply(mask, _affine_params(aff, mask))
    assert 1.8 < (y > 0.5).float().sum() / mask.sum() < 2.7  # area x 1.5^2


def test_rotation_preserves_the_histogram():
    x = blob_phantom((28, 28, 28), batch=1)
    aff = RandomAffine(1.0)
    y = aff.apply(x, _affine_params(aff, x, angles=[[0.5, -0.3, 0.4]], zoom=1.0))
    q = torch.linspace(0.5, 0.99, 12)
    assert torch.allclose(torch.quantile(y.flatten(), q), torch.quantile(x.flatten(), q), atol=0.03)
    gamma = (x.clamp(min=0) ** 2).flatten()  # an intensity change moves quantiles far more
    assert (torch.quantile(gamma, q) - torch.quantile(x.flatten(), q)).abs().max() > 0.1


def test_rotation_matrix_orthonormal():
    R = rotation_matrix(torch.randn(5, 3), 3)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(R), torch.ones(5), atol=1e-6)


def test_sampling_grid_equals_affine_grid():
    A, t = rotation_matrix(torch.rand(4, 3), 3) * 1.1, torch.randn(4, 3) * 3
    s_in, s_out = torch.tensor([20.0, 22, 24]), torch.tensor([10.0, 12, 8])
    lin = A * (s_out / 2)[None, None] / (s_in / 2)[None, :, None]
    theta = torch.cat([lin.flip(-1).flip(-2), (t / (s_in / 2)).flip(-1)[..., None]], -1)
    ref = F.affine_grid(theta, [4, 1, 10, 12, 8], align_corners=False)
    assert torch.allclose(sampling_grid(A, t, (20, 22, 24), (10, 12, 8)), ref, atol=1e-6)


@pytest.mark.parametrize("padding", ["border", "zeros"])
@pytest.mark.parametrize("n_views", [1, 2])
def test_resample_mixed_exact_and_interpolated_rows(padding, n_views):
    x = torch.randn(6 // n_views, 2, 20, 22, 24, generator=gen(11))
    A, t = rotation_matrix(torch.rand(6, 3, generator=gen(12)), 3) * 1.1, torch.randn(6, 3, generator=gen(13)) * 4
    A[1], t[1] = torch.eye(3), 0.0  # exact crop
    A[4], t[4] = torch.diag(torch.tensor([-1.0, 1, 1])), torch.tensor([1.0, 0, 0])  # exact crop + flip
    out = resample(x, A, t, (10, 12, 8), n_views=n_views, padding_mode=padding)
    src = torch.arange(6) // n_views
    ref = F.grid_sample(x[src], sampling_grid(A, t, (20, 22, 24), (10, 12, 8)), padding_mode=padding,
                        align_corners=False)
    # the reference goes through float32 normalised coordinates: up to ~1.2e-5 apart (1000 draws)
    assert torch.allclose(out, ref, atol=3e-5)


def test_gather_methods_agree():
    x = torch.randn(3, 2, 12, 13, 14)
    A = torch.diag_embed(torch.tensor([[1.0, -1, 1], [-1, -1, 1], [1, 1, -1]]))
    t = torch.tensor([[0.0, 1, -1], [1, 0, 0], [-2, 0, 1]])
    src = torch.tensor([2, 0, 1])
    a = _gather_crops(x, src, A, t, (6, 7, 8), method="slices")
    b = _gather_crops(x, src, A, t, (6, 7, 8), method="index")
    assert torch.equal(a, b)


def test_fused_views_read_their_own_sample():
    x = torch.arange(3.0).reshape(3, 1, 1, 1, 1).expand(3, 1, 16, 16, 16).contiguous()
    crop, aff = RandomResizedCrop((8, 8, 8), scale=(0.8, 1.0)), RandomAffine(1.0, rotate=20)
    shape = (12, 1, 8, 8, 8)
    y = fused_spatial(x, crop, [aff], [aff.sample_params(shape, gen(1))], crop.sample_params(shape, gen(2)), n_views=4)
    assert torch.allclose(y.reshape(3, 4, -1), torch.arange(3.0).reshape(3, 1, 1).expand(3, 4, 512), atol=1e-5)


def test_elastic_zero_magnitude_is_identity_and_nonzero_moves():
    x = blob_phantom((24, 24, 24))
    assert torch.allclose(RandomElastic(1.0, magnitude=0.0)(x, gen(0)), x, atol=1e-5)
    y = RandomElastic(1.0, magnitude=2.0)(x, gen(0))
    assert (y - x).abs().max() > 0.05


def test_errors_are_explicit():
    with pytest.raises(ValueError, match="crop size"):
        RandomResizedCrop((8, 8))(torch.randn(1, 1, 10, 10, 10), gen(0))
    with pytest.raises(ValueError, match="prob"):
        RandomFlip(1.5)
    with pytest.raises(TypeError, match="floating"):
        RandomFlip(0.5)(torch.zeros(1, 1, 4, 4, dtype=torch.int64), gen(0))


def test_fused_elastic_on_some_rows_matches_a_full_field_reference():
    x = blob_phantom((16, 18, 20), batch=4)
    crop, el = RandomResizedCrop((10, 12, 14)), RandomElastic(0.5, magnitude=1.5, grid=4)
    shape = (4, 1, 10, 12, 14)
    cp, ep = crop.sample_params(shape, gen(1)), el.sample_params(shape, gen(2))
    ep["apply"] = torch.tensor([True, False, True, False])
    y = fused_spatial(x, crop, [el], [ep], cp)
    A, t = crop.base_map(cp)
    full = F.interpolate(ep["control"] * ep["apply"].reshape(-1, 1, 1, 1, 1).float(), size=(10, 12, 14),
                         mode="trilinear", align_corners=True)
    grid = sampling_grid(A, t, (16, 18, 20), (10, 12, 14))
    grid = grid + (full / (torch.tensor([16.0, 18, 20]) / 2).reshape(1, 3, 1, 1, 1)).flip(1).movedim(1, -1)
    ref = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    assert torch.allclose(y, ref, atol=1e-5)
    start = (cp["centre"] - cp["region"] / 2 + torch.tensor([16.0, 18, 20]) / 2).round().long()
    for b in (1, 3):  # rows without deformation are exact crops
        s0, s1, s2 = start[b].tolist()
        assert torch.equal(y[b], x[b, :, s0:s0 + 10, s1:s1 + 12, s2:s2 + 14])


@pytest.mark.parametrize("size_in, size_out", [(29, 28), (20, 16)])
def test_plain_crop_reaches_every_start_like_monai(size_in, size_out):
    """MONAI RandSpatialCrop draws the start from randint(0, room + 1): every start 0 … room, uniformly."""
    room = size_in - size_out
    x = torch.arange(float(size_in)).reshape(1, 1, size_in, 1, 1).expand(2000, 1, size_in, 4, 4).contiguous()
    starts = RandomResizedCrop((size_out, 4, 4))(x, gen(0))[:, 0, 0, 0, 0]
    counts = torch.bincount(starts.long(), minlength=room + 1)
    assert len(counts) == room + 1 and counts.min() > 0.7 * 2000 / (room + 1), counts


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(40, 64, 36), (64, 72)], ids=["3d", "2d"])
@pytest.mark.parametrize("tr", [RandomAffine(1.0, rotate=10.0, scale=(0.95, 1.05)), RandomElastic(1.0, magnitude=2.0)],
                         ids=["affine", "elastic"])
def test_half_precision_views_equal_the_float32_views_rounded(dtype, shape, tr):
    """A float16/bfloat16 batch is interpolated at the float32 positions: its views equal the float32 views of
    the same parameters cast to that dtype, within the rounding of input and output (a half-precision grid
    misplaces bfloat16 voxels by up to ~2 voxels on a 64-voxel axis, ~10x the rounding)."""
    x = blob_phantom(shape, batch=2, seed=4) * 3 - 1  # z-score-like range [-1, 2]
    p = tr.sample_params(x.shape, gen(7))
    p["apply"][:] = True
    ref = tr.apply(x, p)
    y = tr.apply(x.to(dtype), p)
    step = (ref.to(dtype).float() - ref).abs().max()  # rounding of a value in this range
    assert y.dtype == dtype and (y.float() - ref).abs().max() <= 2.5 * step


def test_crop_aspect_factors_keep_the_region_volume():
    """Per-axis aspect factors have geometric mean 1: the region volume is (size * s)^D whatever the ratio."""
    crop = RandomResizedCrop((8, 10, 12), scale=(0.5, 1.5), ratio=(0.5, 2.0))
    region = crop.sample_params((64, 1, 40, 40, 40), gen(3))["region"]
    side = (region.prod(1) / (8 * 10 * 12)) ** (1 / 3)  # = s, drawn in scale
    assert ((side >= 0.5 - 1e-4) & (side <= 1.5 + 1e-4)).all()
    aspect = region / torch.tensor([8.0, 10.0, 12.0]) / side[:, None]
    assert torch.allclose(aspect.log().sum(1), torch.zeros(64), atol=1e-4) and aspect.std() > 0.1


def test_flips_are_drawn_per_sample_and_axis():
    p = RandomFlip(0.5).sample_params((256, 1, 8, 8, 8), gen(4))["flip"].float()
    assert torch.allclose(p.mean(0), torch.full((3,), 0.5), atol=0.1)
    assert 0.15 < (p[:, 0] != p[:, 1]).float().mean() < 0.85  # axes independent
    assert p[:, 0].std() > 0.4  # samples differ, not one draw for the whole batch


def test_fused_anisotropic_resized_crop_then_affine_equals_two_resamplings_of_a_ramp():
    """Trilinear interpolation of a linear ramp is exact, so one fused resampling (crop with per-axis
    zoom, then rotation/zoom/shift) must equal the crop resampled, then the affine on it."""
    axes = torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in (40, 44, 36)], indexing="ij")
    x = (1.0 * axes[0] + 2.0 * axes[1] - 3.0 * axes[2])[None, None].expand(2, 1, 40, 44, 36).contiguous()
    crop = RandomResizedCrop((12, 14, 10), scale=(1.5, 1.8), ratio=(0.6, 1.7))
    aff = RandomAffine(1.0, rotate=10.0, scale=(1.8, 2.0), translate=0.03)
    cp, ap = crop.sample_params(x.shape, gen(5)), aff.sample_params((2, 1, 12, 14, 10), gen(6))
    assert (cp["region"].max(1).values / cp["region"].min(1).values > 1.2).all()  # anisotropic zoom
    fused = fused_spatial(x, crop, [aff], [ap], cp)
    assert torch.allclose(fused, aff.apply(crop.apply(x, cp), ap), atol=1e-6)


def test_samples_the_affine_does_not_select_are_the_plain_crop():
    x = blob_phantom((20, 20, 20), batch=8)
    crop, aff = RandomResizedCrop((12, 12, 12)), RandomAffine(0.5, rotate=30.0, scale=(1.2, 1.4))
    cp, ap = crop.sample_params(x.shape, gen(7)), aff.sample_params((8, 1, 12, 12, 12), gen(8))
    keep = ap["apply"]
    assert 0 < int(keep.sum()) < 8
    fused, plain = fused_spatial(x, crop, [aff], [ap], cp), crop.apply(x, cp)
    assert torch.equal(fused[~keep], plain[~keep]) and (fused[keep] - plain[keep]).abs().amax((1, 2, 3, 4)).min() > 0.01


def test_crop_larger_than_the_image_is_centred_with_border_padding():
    """Axis 0: 10 from 8 is centred (one padded row each side, border values); axis 1: 9 from 9 is the whole axis."""
    x = torch.arange(72.0).reshape(1, 1, 8, 9)
    crop = RandomResizedCrop((10, 9))
    y = crop.apply(x, crop.sample_params(x.shape, gen(0)))
    assert torch.allclose(y[..., 1:9, :], x, atol=1e-4)  # interpolated at whole-voxel positions
    assert torch.allclose(y[..., 0, :], x[..., 0, :], atol=1e-4) and torch.allclose(y[..., 9, :], x[..., 7, :], atol=1e-4)
