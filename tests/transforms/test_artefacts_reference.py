"""k-space artefacts against naive numpy FFT re-implementations of their documented physics, per sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from aug_helpers import blob_phantom, forced_params, gen
from scipy import stats

from medssl.transforms.artefacts import RandomCutout, RandomGhosting, RandomLowResolution, RandomMotion


def _kspace(x: np.ndarray):
    """(C, *S) float64 -> (fftn of x - min over the spatial axes, min, spatial axes)."""
    axes = tuple(range(1, x.ndim))
    lo = x.min()
    return np.fft.fftn(x - lo, axes=axes), lo, axes


def _along(v: np.ndarray, axis: int, nd: int) -> np.ndarray:
    shape = [1] * (nd + 1)
    shape[1 + axis] = -1
    return v.reshape(shape)


def _ghost_ref(x: np.ndarray, n: int, intensity: float, axis: int) -> np.ndarray:
    """Every n-th phase-encoding line (fft index 0, n, 2n, ...) but DC multiplied by 1 - intensity."""
    k, lo, axes = _kspace(x)
    line = np.arange(x.shape[1 + axis])
    gain = np.where((line % n == 0) & (line != 0), 1.0 - intensity, 1.0)
    return np.abs(np.fft.ifftn(k * _along(gain, axis, x.ndim - 1), axes=axes)) + lo


def test_ghosting_equals_the_naive_line_attenuation_for_each_sample():
    """Three samples, each with its own count, attenuation and phase-encoding axis (2 channels, odd sizes)."""
    x = torch.randn(3, 2, 9, 10, 12, generator=gen(1))
    tr = RandomGhosting(1.0)
    p = forced_params(tr, x)
    p["count"], p["intensity"], p["axis"] = torch.tensor([3, 2, 4]), torch.tensor([0.6, 0.3, 0.9]), torch.tensor([0, 2, 1])
    y = tr.apply(x, p)
    for b, (n, i, a) in enumerate([(3, 0.6, 0), (2, 0.3, 2), (4, 0.9, 1)]):
        ref = _ghost_ref(x[b].double().numpy(), n, i, a)
        np.testing.assert_allclose(y[b].numpy(), ref, atol=2e-5)


@pytest.mark.parametrize("factors,kept", [((12 / 10, 14 / 6, 1.0), (5, 3, 5)), ((12 / 4, 1.0, 10 / 6), (2, 7, 3))])
def test_low_resolution_factor_n_over_2k_keeps_the_k_lowest_frequencies_each_side(factors, kept):
    """A factor of n / (2k) on an n-voxel axis keeps the fft lines |l| <= k (|f| <= 0.5 / factor, boundary
    included), whatever the float32 rounding of the factor (12 / 10 = 1.2 rounds up and would drop line 5);
    factor 1 keeps every line (k = n / 2). Naive reference: numpy FFT with those lines zeroed."""
    x = torch.randn(2, 1, 12, 14, 10, generator=gen(2))
    tr = RandomLowResolution(1.0)
    p = forced_params(tr, x)
    p["factor"] = torch.tensor([factors, factors], dtype=torch.float32)
    y = tr.apply(x, p)
    for b in range(2):
        k, lo, axes = _kspace(x[b].double().numpy())
        for a, (n, kk) in enumerate(zip(x.shape[2:], kept)):
            line = np.rint(np.fft.fftfreq(n) * n)
            k = k * _along((np.abs(line) <= kk).astype(float), a, 3)
        np.testing.assert_allclose(y[b].numpy(), np.abs(np.fft.ifftn(k, axes=axes)) + lo, atol=2e-5)


def _motion_ref(x: np.ndarray, cut: float, s0, s1, axis: int) -> np.ndarray:
    """Lines acquired in the order -kmax .. +kmax at times 0, 1/n, ...: those at time >= cut are acquired with the
    object translated by s1 (Fourier shift theorem: k * exp(-2 pi i f.s)), the others by s0."""
    k, lo, axes = _kspace(x)
    shape = x.shape[1:]
    n = shape[axis]
    time = np.empty(n)
    time[np.fft.fftshift(np.arange(n))] = np.arange(n) / n  # acquisition order = fftshift order
    freqs = np.meshgrid(*[np.fft.fftfreq(s) for s in shape], indexing="ij")
    ramp = [np.exp(-2j * np.pi * sum(f * si for f, si in zip(freqs, s))) for s in (s0, s1)]
    late = _along(time >= cut, axis, len(shape))[0]
    return np.abs(np.fft.ifftn(k * np.where(late, ramp[1], ramp[0]), axes=axes)) + lo


def test_motion_equals_the_naive_two_position_acquisition_for_each_sample():
    x = blob_phantom((8, 9, 10), batch=2) - 0.2
    tr = RandomMotion(1.0, segments=2)
    p = forced_params(tr, x)
    cases = [(0.4, (0.0, 0.0, 0.0), (1.5, -2.0, 0.5), 1), (0.7, (1.0, 0.0, -1.0), (-0.5, 2.5, 1.0), 0)]
    p["cuts"] = torch.tensor([[c[0]] for c in cases])
    p["shifts"] = torch.tensor([[c[1], c[2]] for c in cases])
    p["axis"] = torch.tensor([c[3] for c in cases])
    y = tr.apply(x, p)
    for b, (cut, s0, s1, axis) in enumerate(cases):
        np.testing.assert_allclose(y[b].numpy(), _motion_ref(x[b].double().numpy(), cut, s0, s1, axis), atol=2e-5)


def test_motion_segment_boundaries_are_uniform_sorted_and_drawn_per_sample():
    """docs/augmentations.md: the segments - 1 boundaries are uniform in the acquisition time (sorted), per sample."""
    one = RandomMotion(1.0, segments=2).sample_params((4000, 1, 8, 8), gen(3))["cuts"][:, 0].double().numpy()
    assert stats.kstest(one, "uniform").pvalue > 1e-3  # one boundary shared by the batch is refused here
    cuts = RandomMotion(1.0, segments=4).sample_params((4000, 1, 8, 8), gen(4))["cuts"]
    assert (cuts.diff(dim=1) >= 0).all()
    assert stats.kstest(cuts[:, 0].double().numpy(), "beta", args=(1, 3)).pvalue > 1e-3  # min of 3 uniforms


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("tr", [RandomLowResolution(1.0), RandomMotion(1.0, shift=3.0), RandomGhosting(1.0)],
                         ids=["lowres", "motion", "ghosting"])
def test_kspace_artefacts_keep_a_half_precision_batch_in_its_dtype(dtype, tr):
    """CPU FFTs have no half precision: the whole k-space step (the per-sample minimum taken off and put back
    included) runs in float32 and is rounded once, so a half batch gives exactly the float32 result of the same
    values cast back (subtracting the minimum in half precision first was off by up to two rounding steps)."""
    x = (blob_phantom((12, 10, 8), batch=2) * 300 - 7).to(dtype)  # large values: coarse half-precision steps
    p = forced_params(tr, x, 5)
    y = tr.apply(x, p)
    assert y.dtype == dtype and torch.equal(y, tr.apply(x.float(), p).to(dtype))


@pytest.mark.parametrize("fill", [-2.5, "mean"])
def test_cutout_mask_path_keeps_the_dtype_and_equals_the_slice_path(fill):
    """The vectorised (GPU) path of a float16 batch must stay float16 (a float32 fill would promote it)."""
    x = torch.randn(3, 1, 10, 12, generator=gen(6)).half()
    tr = RandomCutout(1.0, holes=2, size=(0.2, 0.4), fill=fill)
    p = tr.sample_params(x.shape, gen(7))
    y = tr.apply_mask(x, p)
    assert y.dtype == torch.float16 and torch.equal(y, tr.apply_slices(x, p))


def test_low_resolution_draws_one_factor_per_axis():
    """docs/augmentations.md (lowres_factor): one factor per axis, independently (not one per sample for all axes)."""
    f = RandomLowResolution(1.0, factor=(1.5, 3.0)).sample_params((2000, 1, 8, 8, 8), gen(8))["factor"].double().numpy()
    assert (f[:, 0] != f[:, 1]).all() and abs(np.corrcoef(f[:, 0], f[:, 2])[0, 1]) < 0.1


def test_anisotropic_low_resolution_thickens_one_axis_drawn_per_sample():
    """anisotropic=True: exactly one axis per sample keeps a factor (> 1), drawn per sample among all the axes."""
    f = RandomLowResolution(1.0, factor=(1.5, 3.0), anisotropic=True).sample_params((300, 1, 8, 8, 8), gen(9))["factor"]
    thick = f > 1
    assert (thick.sum(1) == 1).all() and (f[~thick] == 1).all()
    assert set(thick.float().argmax(1).tolist()) == {0, 1, 2}
