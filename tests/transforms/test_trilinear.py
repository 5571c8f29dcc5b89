"""CPU trilinear resampler: against scipy's order-1 interpolation, grid_sample and exact crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from aug_helpers import blob_phantom, gen
from scipy.ndimage import map_coordinates

import medssl.transforms.trilinear as trilinear
from medssl.transforms.resample import resample, sampling_grid
from medssl.transforms.spatial import RandomAffine, RandomResizedCrop, fused_spatial, rotation_matrix
from medssl.transforms.trilinear import affine_trilinear_

S_IN, S_OUT = (13, 16, 11), (9, 12, 10)


def _scipy_reference(x: torch.Tensor, A: torch.Tensor, t: torch.Tensor, s_out, disp=None) -> np.ndarray:
    """Naive reference: p = A q + t (+ disp) in float64, order-1 interpolation with edge replication."""
    q = np.stack(np.meshgrid(*[np.arange(s) + 0.5 - s / 2 for s in s_out], indexing="ij"))  # (3, *S_out)
    p = np.einsum("ij,j...->i...", A.double().numpy(), q) + t.double().numpy().reshape(3, 1, 1, 1)
    p += (np.array(x.shape[1:]) - 1).reshape(3, 1, 1, 1) / 2  # centred -> array index
    if disp is not None:
        p += disp.double().numpy()
    return np.stack([map_coordinates(c.double().numpy(), p, order=1, mode="nearest") for c in x])


def _maps():
    R = rotation_matrix(torch.tensor([[0.3, -0.2, 0.25]]), 3)[0]
    yield "rotation+zoom inside", R / 1.4, torch.tensor([0.5, -0.3, 0.2])
    yield "rotation+zoom-out, past the borders", R * 1.5, torch.tensor([2.0, -3.0, 1.5])
    shear_flip = torch.tensor([[-1.0, 0.2, 0.0], [0.1, 0.9, -0.3], [0.0, 0.4, 1.2]])
    yield "shear and flip", shear_flip, torch.tensor([0.3, 0.7, -0.4])
    yield "far outside (all border)", torch.eye(3) * 0.5, torch.tensor([40.0, -40.0, 30.0])


@pytest.mark.parametrize("name,A,t", list(_maps()), ids=lambda v: v if isinstance(v, str) else "")
def test_matches_scipy_and_grid_sample(name, A, t):
    x = torch.randn(2, *S_IN, generator=gen(0))
    out = affine_trilinear_(x, A, t, torch.empty(2, *S_OUT))
    assert np.abs(out.double().numpy() - _scipy_reference(x, A, t, S_OUT)).max() < 1e-5
    ref = F.grid_sample(x[None], sampling_grid(A[None], t[None], S_IN, S_OUT), mode="bilinear",
                        padding_mode="border", align_corners=False)[0]
    assert torch.allclose(out, ref, atol=1e-5)


def test_displacement_matches_scipy():
    x = torch.randn(1, *S_IN, generator=gen(1))
    A, t = rotation_matrix(torch.tensor([[0.1, 0.2, -0.1]]), 3)[0], torch.tensor([0.2, 0.1, -0.3])
    disp = torch.randn(3, *S_OUT, generator=gen(2)) * 1.5
    out = affine_trilinear_(x, A, t, torch.empty(1, *S_OUT), disp)
    assert np.abs(out.double().numpy() - _scipy_reference(x, A, t, S_OUT, disp)).max() < 1e-5


def test_identity_and_flip_maps_reproduce_the_crop_exactly():
    x = torch.randn(1, *S_IN, generator=gen(3))
    # view centre at input voxel (7, 7.5, 5.5) + t: start (3, 2, 1) of a 9x12x10 window of 13x16x11, axis 1 flipped
    A = torch.diag(torch.tensor([1.0, -1.0, 1.0]))
    t = torch.tensor([1.0, 0.0, 0.5])
    out = affine_trilinear_(x, A, t, torch.empty(1, *S_OUT))
    ref = x[:, 3:12, 2:14, 1:11].flip(2)
    assert torch.equal(out, ref)


def test_slabs_noncontiguous_output_and_int64_index(monkeypatch):
    x = torch.randn(1, *S_IN, generator=gen(4))
    A, t = rotation_matrix(torch.tensor([[0.2, 0.1, 0.3]]), 3)[0] * 1.2, torch.tensor([1.0, 0.5, -1.0])
    ref = affine_trilinear_(x, A, t, torch.empty(1, *S_OUT))
    monkeypatch.setattr(trilinear, "SLAB_VOXELS", 2 * S_OUT[1] * S_OUT[2] + 5)  # 2 rows per slab, 9 rows: remainder
    big = torch.zeros(1, S_OUT[0], S_OUT[1], 2 * S_OUT[2])
    out = affine_trilinear_(x, A, t, big[..., ::2])  # a strided view
    assert torch.equal(out, ref) and torch.equal(big[..., 1::2], torch.zeros_like(ref))
    monkeypatch.setattr(trilinear, "FLOAT32_EXACT_INDEX", 10)  # force the int64 index arithmetic
    assert torch.equal(affine_trilinear_(x, A, t, torch.empty(1, *S_OUT)), ref)


def test_errors_name_the_problem():
    with pytest.raises(TypeError, match="float32"):
        affine_trilinear_(torch.zeros(1, 4, 4, 4, dtype=torch.float64), torch.eye(3), torch.zeros(3),
                          torch.zeros(1, 2, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=">= 2"):
        affine_trilinear_(torch.zeros(1, 4, 1, 4), torch.eye(3), torch.zeros(3), torch.zeros(1, 2, 2, 2))


def test_resample_cpu_fast_path_equals_grid_sample_path():
    """The CPU float32 batch goes through the fast path; float64 through grid_sample: same views."""
    x = torch.randn(3, 2, *S_IN, generator=gen(5))
    A = rotation_matrix(torch.rand(6, 3, generator=gen(6)), 3) * 1.1
    t = torch.randn(6, 3, generator=gen(7)) * 2
    A[2], t[2] = torch.eye(3), torch.tensor([0.0, 0.0, 0.5])  # an exact crop among interpolated rows
    fast = resample(x, A, t, S_OUT, n_views=2)
    slow = resample(x.double(), A, t, S_OUT, n_views=2)
    assert fast.dtype == torch.float32 and torch.allclose(fast.double(), slow, atol=1e-5)


def test_fused_crop_affine_equals_crop_then_affine():
    """One resampling of crop+affine = the crop, then the affine on it, when the rotated and zoomed
    view stays inside the crop (the fused view reads real anatomy where the two-step one pads)."""
    x = blob_phantom((20, 22, 18), batch=3)
    crop, aff = RandomResizedCrop((12, 12, 12)), RandomAffine(1.0, rotate=8.0, scale=(1.4, 1.6))
    shape = (3, 1, 12, 12, 12)
    cp, ap = crop.sample_params(x.shape, gen(8)), aff.sample_params(shape, gen(9))
    fused = fused_spatial(x, crop, [aff], [ap], cp)
    two_step = aff.apply(crop.apply(x, cp), ap)
    assert torch.allclose(fused, two_step, atol=1e-5)
    assert (fused - crop.apply(x, cp)).abs().max() > 0.05  # the affine did something
