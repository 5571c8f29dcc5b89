"""Resampling paths not covered by the CPU 3D fast path: the ``grid_sample`` path with a displacement field on some
rows, and all views of a multi-channel batch interpolated at once (stacked grids). References: an integer shift of
the image (a constant displacement field) and ``F.affine_grid`` + ``F.grid_sample`` row by row."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from aug_helpers import gen

from medssl.transforms.resample import resample


def test_constant_displacement_on_one_row_is_an_integer_shift_along_its_axis():
    """2D (``grid_sample`` path): row 0 an exact crop, row 1 moved by a displacement of +2 voxels along axis 0
    (tensor order): it reads x[i + 2, j]; the last two rows repeat the border."""
    x = torch.randn(2, 1, 12, 10, generator=gen(0))
    A, t = torch.eye(2).expand(2, 2, 2).clone(), torch.zeros(2, 2)
    disp = torch.zeros(1, 2, 12, 10)
    disp[:, 0] = 2.0
    out = resample(x, A, t, (12, 10), displacement=disp, moved=torch.tensor([False, True]))
    assert torch.equal(out[0], x[0])
    assert torch.allclose(out[1, :, :10], x[1, :, 2:], atol=1e-5)
    assert torch.allclose(out[1, :, 10:], x[1, :, 11:].expand(1, 2, 10), atol=1e-5)


def _affine_grid_reference(x, A, t, out_shape, n_views, padding):
    """Row r = sample r // n_views through ``F.affine_grid`` (theta in (x, y) order, align_corners=False)."""
    s_in, s_out = torch.tensor(x.shape[2:], dtype=torch.float32), torch.tensor(out_shape, dtype=torch.float32)
    rows = []
    for r in range(A.shape[0]):
        lin = A[r] * (s_out / 2)[None] / (s_in / 2)[:, None]
        theta = torch.cat([lin.flip(-1).flip(-2), (t[r] / (s_in / 2)).flip(-1)[:, None]], -1)
        grid = F.affine_grid(theta[None], [1, x.shape[1], *out_shape], align_corners=False)
        rows.append(F.grid_sample(x[r // n_views][None], grid, padding_mode=padding, align_corners=False)[0])
    return torch.stack(rows)


def test_all_views_interpolated_keep_their_sample_view_and_channel():
    """Two views of each of two 2-channel samples, all interpolated (one ``grid_sample`` over stacked grids): row
    b*V + v is view v of sample b, channels in order, as a row-by-row reference gives."""
    x = torch.randn(2, 2, 14, 16, generator=gen(1))
    x[:, 1] += 10.0  # channels clearly apart
    angles = torch.rand(4, generator=gen(2)) + 0.2
    cos, sin = angles.cos(), angles.sin()
    A = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2) * 0.9
    t = torch.randn(4, 2, generator=gen(3))
    for padding in ("border", "zeros"):
        out = resample(x, A, t, (8, 10), n_views=2, padding_mode=padding)
        assert torch.allclose(out, _affine_grid_reference(x, A, t, (8, 10), 2, padding), atol=1e-5)


def test_a_sub_voxel_shift_is_interpolated_not_rounded_to_a_crop():
    """An identity map shifted by half a voxel along axis 0 (2D grid path and 3D fast path) reads between voxels:
    the naive mean of neighbours i and i + 1, not a copy of either (only integer shifts are exact crops)."""
    for shape in [(10, 9), (10, 9, 8)]:
        x = torch.randn((2, 1) + shape, generator=gen(4))
        d = len(shape)
        t = torch.zeros(2, d)
        t[:, 0] = 0.5
        out = resample(x, torch.eye(d).expand(2, d, d).clone(), t, shape)
        assert torch.allclose(out[:, :, :-1], (x[:, :, :-1] + x[:, :, 1:]) / 2, atol=1e-5), shape


def test_nearest_mode_copies_the_nearest_voxel_in_3d_on_cpu():
    """mode="nearest" on a 3D float32 CPU batch (the case the trilinear fast path serves for "bilinear"): a shift of
    (0.7, 0.3, -0.2) voxel reads the nearest voxel, x[i + 1, j, k], the last slab repeating the border, never a blend."""
    x = torch.randn(2, 1, 6, 5, 4, generator=gen(5))
    t = torch.tensor([0.7, 0.3, -0.2]).expand(2, 3).clone()
    out = resample(x, torch.eye(3).expand(2, 3, 3).clone(), t, (6, 5, 4), mode="nearest")
    assert torch.equal(out[:, :, :-1], x[:, :, 1:]) and torch.equal(out[:, :, -1], x[:, :, -1])


def test_a_map_within_1e_4_voxel_of_an_integer_crop_reads_the_nearest_crop():
    """p = q + t with t = 0.99997 along axis 0 (within the 1e-4 tolerance of the exact path): the view is the crop
    that starts at the nearest integer, x[3:9] of a 10-voxel axis (the interpolated value is within 3e-5 voxel of it),
    not the one a truncation towards zero gives (x[2:8])."""
    x = torch.randn(1, 1, 10, 9, generator=gen(6))
    out = resample(x, torch.eye(2)[None], torch.tensor([[0.99997, 0.0]]), (6, 5))
    assert torch.equal(out, x[:, :, 3:9, 2:7])
