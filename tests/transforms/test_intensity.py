"""Intensity augmentations: identities, naive references, anatomy stays in place."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from aug_helpers import blob_phantom, forced_params as _forced, gen
from numpy.polynomial import legendre
from scipy.ndimage import gaussian_filter1d

from medssl.transforms.intensity import (RandomBiasField, RandomGamma, RandomGaussianBlur, RandomGaussianNoise,
                                         RandomRicianNoise, RandomScaleShift, gaussian_blur)


def _centre_of_mass(m: torch.Tensor) -> torch.Tensor:
    axes = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in m.shape[2:]], indexing="ij")
    w = m.reshape(m.shape[0], -1)
    return torch.stack([(w * a.flatten()).sum(1) / w.sum(1) for a in axes], 1)


ZERO_STRENGTH = [
    (RandomGamma(1.0), {"gamma": 1.0}),
    (RandomScaleShift(1.0), {"scale": 1.0, "shift": 0.0}),
    (RandomBiasField(1.0), {"coeffs": 0.0}),
    (RandomGaussianNoise(1.0), {"std": 0.0}),
    (RandomRicianNoise(1.0), {"std": 0.0}),
    (RandomGaussianBlur(1.0), {"sigma": 0.0}),
]


@pytest.mark.parametrize("tr,zero", ZERO_STRENGTH, ids=lambda v: getattr(v, "name", ""))
@pytest.mark.parametrize("shape", [(16, 18), (10, 12, 14)])
def test_identity_at_zero_strength(tr, zero, shape):
    x = torch.randn((3, 2) + shape)
    y = tr.apply(x, _forced(tr, x, **zero))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.allclose(y, x, atol=1e-5)


@pytest.mark.parametrize("tr,zero", ZERO_STRENGTH, ids=lambda v: getattr(v, "name", ""))
def test_determinism_variety_and_input_untouched(tr, zero):
    x = blob_phantom((12, 12, 12), batch=4)
    x0 = x.clone()
    t = type(tr)(prob=1.0)
    a, b, c = t(x, gen(1)), t(x, gen(1)), t(x, gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, x0)


def test_prob_zero_returns_input_and_prob_selects_about_p():
    x = torch.randn(400, 1, 2, 2)
    assert torch.equal(RandomGaussianNoise(0.0)(x, gen(0)), x)
    changed = (RandomGaussianNoise(0.3, std=(0.5, 1.0))(x, gen(0)) != x).flatten(1).any(1).float().mean()
    assert 0.22 < changed < 0.38


@pytest.mark.parametrize("tr", [RandomGamma(1.0), RandomBiasField(1.0, coeff=0.5), RandomScaleShift(1.0, shift=0.0)])
def test_intensity_transforms_do_not_move_anatomy(tr):
    x = blob_phantom((20, 22, 24), batch=3)
    mask_in = (x > 0.4).float()
    y = tr(x, gen(4))
    assert torch.equal(y[x == 0], x[x == 0])  # background (the minimum) stays background
    cm_in = _centre_of_mass(x * mask_in)
    cm_out = _centre_of_mass(y * mask_in)
    assert (cm_in - cm_out).abs().max() < 1.0  # voxels


def test_gamma_matches_formula_and_keeps_range():
    x = torch.randn(2, 1, 8, 8)
    tr = RandomGamma(1.0)
    p = _forced(tr, x, gamma=[0.5, 2.0])
    y = tr.apply(x, p)
    for b, g in enumerate([0.5, 2.0]):
        lo, hi = x[b].min(), x[b].max()
        assert torch.allclose(y[b], ((x[b] - lo) / (hi - lo)) ** g * (hi - lo) + lo, atol=1e-5)
    assert torch.allclose(y.amin((1, 2, 3)), x.amin((1, 2, 3))) and torch.allclose(y.amax((1, 2, 3)), x.amax((1, 2, 3)))


def test_bias_field_matches_naive_legendre_formula():
    x = torch.rand(1, 1, 6, 7, 5) + 1.0
    tr = RandomBiasField(1.0, coeff=0.3, order=3)
    p = _forced(tr, x, seed=2)
    c = p["coeffs"][0].numpy().astype(np.float64)
    u = [(np.arange(s) + 0.5) / s * 2 - 1 for s in (6, 7, 5)]
    field = legendre.leggrid3d(*u, c)  # sum_ijk c_ijk P_i(x) P_j(y) P_k(z)
    lo = x.min().item()
    ref = (x[0, 0].numpy() - lo) * np.exp(field) + lo
    assert np.allclose(tr.apply(x, p)[0, 0].numpy(), ref, atol=1e-5)
    i, j, k = np.meshgrid(*[np.arange(4)] * 3, indexing="ij")
    assert np.all(c[i + j + k > 3] == 0) and np.any(c != 0)


def test_blur_matches_scipy_per_sample_sigma():
    x = torch.randn(2, 1, 12, 14, 16)
    sigma = torch.tensor([[1.0, 0.6, 0.8], [0.5, 1.0, 0.7]])
    y = gaussian_blur(x, sigma).numpy()
    for b in range(2):
        ref = x[b, 0].numpy().astype(np.float64)
        for a in range(3):
            radius = 3  # ceil(3 * max sigma)
            ref = gaussian_filter1d(ref, float(sigma[b, a]), axis=a, mode="nearest", radius=radius)
        assert np.allclose(y[b, 0], ref, atol=1e-5)


def test_blur_on_axes_shorter_than_the_kernel():
    x = torch.randn(2, 1, 2, 3, 9)
    y = gaussian_blur(x, torch.tensor([[1.0, 1.0, 0.0], [0.5, 0.0, 1.0]])).numpy()
    for b, sig in enumerate([[1.0, 1.0, 0.0], [0.5, 0.0, 1.0]]):
        ref = x[b, 0].numpy().astype(np.float64)
        for a, s in enumerate(sig):
            if s > 0:
                ref = gaussian_filter1d(ref, s, axis=a, mode="nearest", radius=3)
        assert np.allclose(y[b, 0], ref, atol=1e-5)


def test_gaussian_noise_has_the_sampled_std():
    x = torch.zeros(3, 1, 32, 32, 32)
    tr = RandomGaussianNoise(1.0)
    p = _forced(tr, x, std=[0.05, 0.1, 0.2])
    y = tr.apply(x, p)
    assert torch.allclose(y.std((1, 2, 3, 4)), torch.tensor([0.05, 0.1, 0.2]), rtol=0.03)


def test_rician_noise_bias_on_flat_signal():
    a, s = 1.0, 0.2
    x = torch.full((1, 1, 64, 64, 16), a)
    x[..., :2] = 0.0  # background at the sample minimum
    tr = RandomRicianNoise(1.0)
    y = tr.apply(x, _forced(tr, x, std=s))
    # E|A + n| for Rician noise with A >> s: sqrt(A^2 + s^2); background: Rayleigh mean s*sqrt(pi/2)
    assert abs(y[..., 4:].mean().item() - (a**2 + s**2) ** 0.5) < 0.01
    assert abs(y[..., :2].mean().item() - s * (np.pi / 2) ** 0.5) < 0.01
    assert y.min() >= 0


@pytest.mark.parametrize("tr", [RandomGamma(0.5), RandomBiasField(0.5), RandomGaussianBlur(0.5), RandomScaleShift(0.5)],
                         ids=lambda t: t.name)
def test_subset_application_equals_transforming_the_selected_samples_alone(tr):
    x = blob_phantom((10, 12, 14), batch=7) - 0.2
    p = tr.sample_params(x.shape, gen(11))
    p["apply"] = torch.tensor([True, True, False, True, False, False, True])  # runs (0,2), (3,4), (6,7)
    y = tr.apply(x, p)
    idx = p["apply"].nonzero().squeeze(1)
    sub = {k: v[idx] for k, v in p.items()}
    assert torch.allclose(y[idx], tr._apply(x[idx], sub), atol=1e-6)
    assert torch.equal(y[~p["apply"]], x[~p["apply"]])


def test_scale_shift_draws_span_their_symmetric_ranges():
    p = RandomScaleShift(1.0, scale=(0.8, 1.2), shift=0.3).sample_params((2000, 1, 4, 4), gen(5))
    assert 0.8 <= p["scale"].min() < 0.82 and 1.18 < p["scale"].max() <= 1.2
    assert -0.3 <= p["shift"].min() < -0.28 and 0.28 < p["shift"].max() <= 0.3
    assert abs(p["shift"].mean()) < 0.02


@pytest.mark.parametrize("dims", [2, 3])
def test_bias_field_uses_every_term_up_to_the_total_degree(dims):
    """Coefficients are non-zero exactly for the C(order + D, D) products with total degree <= order."""
    tr = RandomBiasField(1.0, coeff=0.3, order=3)
    c = tr.sample_params((4, 1) + (8,) * dims, gen(6))["coeffs"]
    degree = sum(np.meshgrid(*[np.arange(4)] * dims, indexing="ij"))
    assert torch.equal(c[0] != 0, torch.from_numpy(degree <= 3)) and int((c[0] != 0).sum()) == math.comb(3 + dims, dims)


def test_gamma_is_log_uniform():
    """log(gamma) ~ U(log 0.5, log 2): gamma and 1 / gamma equally likely, median 1."""
    g = RandomGamma(1.0, gamma=(0.5, 2.0)).sample_params((4000, 1, 4, 4), gen(7))["gamma"]
    assert abs(g.median().item() - 1.0) < 0.05 and abs((g < 1).float().mean().item() - 0.5) < 0.03
