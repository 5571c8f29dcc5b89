"""CPU trilinear resampler at the edges: just past the upper border, thin volumes, > 2^24 voxels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from aug_helpers import gen

from medssl.transforms.resample import resample, sampling_grid
from medssl.transforms.trilinear import FLOAT32_EXACT_INDEX, affine_trilinear_


def test_slightly_past_the_upper_border_is_border_padded():
    """A view reaching 0.3 voxel past the last voxel of one axis (only) repeats that voxel, as grid_sample."""
    s_in, s_out = (6, 7, 8), (4, 5, 6)
    x = torch.randn(1, *s_in, generator=gen(10))
    A, t = torch.eye(3), torch.tensor([0.0, 0.0, 1.3])  # axis 2: p = 2.3 .. 7.3, the last index is 7
    out = affine_trilinear_(x, A, t, torch.empty(1, *s_out))
    ref = F.grid_sample(x[None], sampling_grid(A[None], t[None], s_in, s_out), mode="bilinear",
                        padding_mode="border", align_corners=False)[0]
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(out[0, :, :, -1], x[0, 1:5, 1:6, -1], atol=1e-6)  # naive: the border value


def test_resample_of_a_volume_one_voxel_thick_matches_float64_grid_sample():
    """A side of 1 cannot go through the trilinear fast path (it needs 2 voxels per axis)."""
    x = torch.randn(2, 1, 7, 6, 1, generator=gen(11))
    A, t = torch.eye(3).expand(2, 3, 3) * 0.8, torch.tensor([[0.3, -0.2, 0.0], [0.1, 0.4, 0.0]])
    fast = resample(x, A, t, (5, 4, 1))
    slow = resample(x.double(), A, t, (5, 4, 1))
    assert torch.allclose(fast.double(), slow, atol=1e-5)


def test_flat_index_beyond_float32_precision_reads_the_right_voxel():
    """258x256x256 > 2^24 voxels: the corner index of the last voxels is odd and above 2^24,
    not representable in float32; the exact crop there must still be returned."""
    s_in = (258, 256, 256)
    assert np.prod(s_in) > FLOAT32_EXACT_INDEX
    x = torch.zeros(1, *s_in)  # calloc: only the pages written below are touched
    x[0, 254:, 250:, 250:] = torch.randn(4, 6, 6, generator=gen(12))
    # centre (128.5, 127.5, 127.5) + t + q (q = -0.5, 0.5): x in {255, 256}, y and z in {253, 254};
    # e.g. voxel (256, 254, 253) is at the odd flat index 2^24 + 65277
    out = affine_trilinear_(x, torch.eye(3), torch.tensor([127.0, 126.0, 126.0]), torch.empty(1, 2, 2, 2))
    assert torch.allclose(out, x[:, 255:257, 253:255, 253:255], atol=1e-6)


def test_a_zoom_ending_exactly_on_the_last_voxel_matches_np_interp():
    """Axis 0 read at 2, 2.5, 3 of a 4-voxel axis (zoom 0.5, shift 1): the highest coordinate is exactly the last
    voxel, whose upper neighbour does not exist, so the border clamp must apply although no coordinate is past it;
    each line along axis 0 is the naive 1D linear interpolation (np.interp, float64)."""
    x = torch.randn(1, 4, 3, 5, generator=gen(13))
    A, t = torch.diag(torch.tensor([0.5, 1.0, 1.0])), torch.tensor([1.0, 0.0, 0.0])
    out = affine_trilinear_(x, A, t, torch.empty(1, 3, 3, 5))
    ref = np.apply_along_axis(lambda line: np.interp([2.0, 2.5, 3.0], np.arange(4), line), 0, x[0].double().numpy())
    assert np.abs(out[0].double().numpy() - ref).max() < 1e-6


def test_an_output_with_another_channel_count_is_refused():
    """out must have x's channels: with more, the extra ones were left unwritten (torch.empty garbage), silently."""
    x = torch.randn(2, 4, 4, 4, generator=gen(14))
    for channels in (1, 3):
        with pytest.raises(ValueError, match="same C"):
            affine_trilinear_(x, torch.eye(3) * 0.9, torch.zeros(3), torch.empty(channels, 3, 3, 3))


def test_a_last_partial_slab_is_written_without_a_warning(monkeypatch):
    """9 output rows in slabs of 2: the last slab has 1 row; its buffers are sliced to that size (a larger slice was
    resized by index_select with a UserWarning at every view), and the values are grid_sample's."""
    import warnings

    import medssl.transforms.trilinear as trilinear

    s_in, s_out = (7, 6, 5), (9, 4, 3)
    monkeypatch.setattr(trilinear, "SLAB_VOXELS", 2 * 4 * 3)
    x = torch.randn(1, *s_in, generator=gen(15))
    A, t = torch.eye(3) * 0.7, torch.tensor([0.2, -0.1, 0.3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = affine_trilinear_(x, A, t, torch.empty(1, *s_out))
    ref = F.grid_sample(x[None], sampling_grid(A[None], t[None], s_in, s_out), mode="bilinear",
                        padding_mode="border", align_corners=False)[0]
    assert torch.allclose(out, ref, atol=1e-5)
