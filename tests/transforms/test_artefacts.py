"""k-space artefacts and cutout against their physical/definitional behaviour."""

from __future__ import annotations

import pytest
import torch
from aug_helpers import blob_phantom, forced_params as _forced, gen

from medssl.transforms.artefacts import RandomCutout, RandomGhosting, RandomLowResolution, RandomMotion


def _hf_energy(x: torch.Tensor, axis: int) -> torch.Tensor:
    k = torch.fft.fft(x, dim=axis).abs() ** 2
    f = torch.fft.fftfreq(x.shape[axis]).abs()
    shape = [1] * x.ndim
    shape[axis] = -1
    return (k * (f > 0.25).reshape(shape)).sum()


@pytest.mark.parametrize("shape", [(16, 20), (12, 14, 16)])
def test_identity_at_zero_strength(shape):
    x = blob_phantom(shape, batch=2) - 0.3  # negative background, as z-scored data
    for tr, zero in [(RandomLowResolution(1.0), {"factor": 1.0}), (RandomMotion(1.0), {"shifts": 0.0}),
                     (RandomGhosting(1.0), {"intensity": 0.0})]:
        y = tr.apply(x, _forced(tr, x, **zero))
        assert y.shape == x.shape and torch.allclose(y, x, atol=1e-5), tr.name


def test_low_resolution_removes_high_frequencies_only_along_chosen_axes():
    x = torch.rand(1, 1, 32, 32, 32)
    tr = RandomLowResolution(1.0)
    y = tr.apply(x, _forced(tr, x, factor=[[2.5, 1.0, 1.0]]))
    assert _hf_energy(y - y.min(), 2) < 1e-3 * _hf_energy(x - x.min(), 2)
    xc, yc = x - x.mean(), y - y.mean()  # the spectrum along the other axes keeps its shape
    assert abs((_hf_energy(yc, 3) / yc.pow(2).sum()) / (_hf_energy(xc, 3) / xc.pow(2).sum()) - 1) < 0.05


def test_motion_with_one_common_shift_is_a_circular_shift():
    x = blob_phantom((24, 24, 24), batch=2)
    tr = RandomMotion(1.0, segments=3)
    p = _forced(tr, x)
    p["shifts"][:] = torch.tensor([2.0, -3.0, 1.0])
    y = tr.apply(x, p)
    assert torch.allclose(y, torch.roll(x, (2, -3, 1), (2, 3, 4)), atol=1e-4)


def test_motion_during_acquisition_corrupts_but_keeps_energy_close():
    x = blob_phantom((24, 24, 24), batch=1)
    tr = RandomMotion(1.0, shift=4.0, segments=4)
    y = tr(x, gen(3))
    assert (y - x).abs().max() > 0.05
    assert abs(y.pow(2).sum() / x.pow(2).sum() - 1) < 0.3


def test_ghosting_puts_a_ghost_at_half_the_field_of_view():
    x = torch.zeros(1, 1, 32, 32)
    x[..., 4:8, 12:20] = 1.0  # bright block in the upper half
    tr = RandomGhosting(1.0)
    y = tr.apply(x, _forced(tr, x, count=2, intensity=0.5, axis=0))
    ghost = y[..., 20:24, 12:20].mean()  # same block shifted by 32 / 2 along axis 0
    elsewhere = y[..., 20:24, 0:8].mean()
    assert ghost > 0.15 and ghost > 10 * elsewhere
    assert y[..., 4:8, 12:20].mean() > 0.6  # the object is still there


def test_cutout_boxes_and_fill():
    x = torch.randn(4, 2, 20, 20, 20)
    tr = RandomCutout(1.0, holes=3, size=(0.2, 0.3), fill=7.0)
    p = tr.sample_params(x.shape, gen(1))
    y = tr.apply(x, p)
    m = tr.mask(p, (20, 20, 20)).expand_as(x)
    assert torch.equal(y[~m], x[~m]) and torch.all(y[m] == 7.0)
    frac = m[:, 0].float().mean((1, 2, 3))
    assert torch.all(frac > 0.2**3) and torch.all(frac <= 3 * 0.3**3 + 1e-6)
    start, size = p["start"][0, 0].long(), p["size"][0, 0].long()
    box = y[0, :, start[0]:start[0] + size[0], start[1]:start[1] + size[1], start[2]:start[2] + size[2]]
    assert torch.all(box == 7.0)


def test_cutout_cpu_and_gpu_code_paths_agree():
    x = torch.randn(3, 2, 12, 14, 10)
    tr = RandomCutout(1.0, holes=5, size=(0.1, 0.5))
    p = tr.sample_params(x.shape, gen(2))
    assert torch.equal(tr.apply_slices(x, p), tr.apply_mask(x, p))


def test_cutout_mean_fill_is_the_sample_mean():
    x = torch.randn(2, 1, 16, 16) + torch.tensor([0.0, 5.0]).reshape(2, 1, 1, 1)
    tr = RandomCutout(1.0, holes=1, size=(0.3, 0.3))
    p = tr.sample_params(x.shape, gen(0))
    y = tr.apply(x, p)
    m = tr.mask(p, (16, 16))
    for b in range(2):
        assert torch.allclose(y[b][m[b]], x[b].mean().expand(int(m[b].sum())))


def test_artefacts_are_deterministic_and_vary():
    x = blob_phantom((16, 16, 16), batch=3)
    for tr in [RandomLowResolution(1.0), RandomMotion(1.0), RandomGhosting(1.0), RandomCutout(1.0)]:
        assert torch.equal(tr(x, gen(5)), tr(x, gen(5))) and not torch.equal(tr(x, gen(5)), tr(x, gen(6))), tr.name


def test_cutout_boxes_reach_both_edges_equally_like_monai():
    """MONAI RandCoarseDropout starts a box anywhere in 0 … extent − size: the first and the last row
    are covered equally often."""
    y = RandomCutout(1.0, holes=1, size=(0.5, 0.5), fill=1.0)(torch.zeros(4000, 1, 10, 10), gen(0))
    first, last = (y[:, 0, 0].amax(1) > 0).float().mean(), (y[:, 0, -1].amax(1) > 0).float().mean()
    assert abs(first - 1 / 6) < 0.03 and abs(last - 1 / 6) < 0.03, (first, last)  # 1 of 6 starts covers each edge


def test_ghosting_keeps_an_image_that_is_constant_along_the_phase_encoding_axis():
    """Such an image has only the DC line along that axis, and the DC line is not attenuated."""
    x = torch.rand(1, 1, 1, 24).expand(2, 1, 16, 24).contiguous()
    tr = RandomGhosting(1.0)
    y = tr.apply(x, _forced(tr, x, count=3, intensity=0.7, axis=0))
    assert torch.allclose(y, x, atol=1e-5)


@pytest.mark.parametrize("tr,values", [(RandomLowResolution(1.0), {"factor": 2.5}),
                                       (RandomGhosting(1.0), {"count": 3, "intensity": 0.6, "axis": 1}),
                                       (RandomMotion(1.0, shift=3.0), {})])
def test_kspace_artefacts_follow_each_samples_own_offset(tr, values):
    """The magnitude is taken from each sample's own minimum: adding a constant to one sample adds it to its output."""
    x = blob_phantom((16, 16), batch=1)
    pair = torch.cat([x, x + 5.0])
    p = _forced(tr, pair, 3, **values)
    for k, v in p.items():  # the same artefact on both samples
        if k != "apply" and v.ndim > 0 and v.shape[0] == 2:
            v[1] = v[0]
    y = tr.apply(pair, p)
    assert (y[0] - x[0]).abs().max() > 0.01 and torch.allclose(y[1], y[0] + 5.0, atol=1e-4)


def test_motion_lines_are_acquired_from_the_lowest_to_the_highest_frequency():
    from medssl.transforms.artefacts import _line_positions

    for n in (7, 8):
        order = torch.fft.fftfreq(n).argsort()  # fft positions of -kmax .. +kmax
        assert torch.allclose(_line_positions(n, "cpu")[order], torch.arange(n) / n)
