"""Intensity transforms applied with given parameters (naive formulas), independence of their random draws
across samples and axes, and the defaults they share with AugmentParams (mutation testing, third pass)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from aug_helpers import forced_params, gen
from numpy.polynomial import legendre

from medssl.transforms.intensity import (RandomBiasField, RandomGamma, RandomGaussianBlur, RandomGaussianNoise,
                                         RandomRicianNoise, RandomScaleShift)
from medssl.transforms.presets import AugmentParams


def test_scale_shift_multiplies_by_the_drawn_scale_then_adds_the_drawn_shift():
    x = torch.randn(2, 2, 5, 6)
    tr = RandomScaleShift(1.0)
    y = tr.apply(x, forced_params(tr, x, scale=[2.0, 0.5], shift=[0.3, -0.2]))
    assert torch.allclose(y[0], x[0] * 2.0 + 0.3, atol=1e-6) and torch.allclose(y[1], x[1] * 0.5 - 0.2, atol=1e-6)


def test_bias_field_2d_matches_naive_legendre_formula_on_a_non_square_image():
    # c[i, j] multiplies P_i along axis 0 (6 voxels) and P_j along axis 1 (9 voxels), at voxel centres
    x = torch.rand(2, 1, 6, 9) + 1.0
    tr = RandomBiasField(1.0, coeff=0.4, order=3)
    p = forced_params(tr, x, seed=3)
    y = tr.apply(x, p)
    u = [(np.arange(s) + 0.5) / s * 2 - 1 for s in (6, 9)]
    for b in range(2):
        c = p["coeffs"][b].numpy().astype(np.float64)
        lo = x[b].min().item()
        ref = (x[b, 0].numpy() - lo) * np.exp(legendre.leggrid2d(*u, c)) + lo
        assert np.allclose(y[b, 0].numpy(), ref, atol=1e-5)


def test_gaussian_noise_fields_are_independent_across_samples_and_channels():
    # docs: "every voxel adds an independent normal value": no field shared by two samples or two channels
    x = torch.zeros(4, 2, 16, 16, 16)
    tr = RandomGaussianNoise(1.0)
    n = tr.apply(x, forced_params(tr, x, std=1.0)).reshape(8, -1).double()
    corr = torch.corrcoef(n)
    off = corr[~torch.eye(8, dtype=torch.bool)]
    assert off.abs().max() < 0.08  # 4096 voxels: SD of a null correlation 0.016
    assert torch.allclose(n.std(1), torch.ones(8, dtype=torch.float64), atol=0.05)


def test_rician_noise_fields_are_independent_across_samples():
    # flat signal of 2: the noise of each sample is y - sqrt(4 + s^2) on average; no two samples share it
    x = torch.full((4, 1, 16, 16, 16), 2.0)
    x[:, :, 0, 0, 0] = 0.0  # sample minimum 0
    tr = RandomRicianNoise(1.0)
    y = tr.apply(x, forced_params(tr, x, std=0.3)).reshape(4, -1)[:, 1:].double()
    corr = torch.corrcoef(y)
    assert corr[~torch.eye(4, dtype=torch.bool)].abs().max() < 0.08


def test_blur_draws_one_sigma_per_axis_independently():
    # docs/augmentations.md: blur_sigma "one sigma per axis": the three axes of a sample are not one shared draw
    s = RandomGaussianBlur(1.0, sigma=(0.25, 1.0)).sample_params((2000, 1, 8, 8, 8), gen(4))["sigma"]
    assert s.shape == (2000, 3) and (s[:, 0] != s[:, 1]).all() and (s[:, 1] != s[:, 2]).all()
    corr = torch.corrcoef(s.T.double())
    assert corr[~torch.eye(3, dtype=torch.bool)].abs().max() < 0.1  # null SD 0.022


def test_transform_defaults_are_the_augment_params_defaults():
    """A transform built without arguments has the ranges an AugmentParams() pipeline gives it."""
    d = AugmentParams()
    assert RandomGamma().gamma == d.gamma
    assert (RandomScaleShift().scale, RandomScaleShift().shift) == (d.intensity_scale, d.intensity_shift)
    assert RandomBiasField().coeff == d.bias_coeff and RandomBiasField().order == 3
    assert RandomGaussianBlur().sigma == d.blur_sigma
    assert RandomGaussianNoise().std == d.noise_std
    assert RandomRicianNoise().std == d.rician_std


def test_gamma_and_bias_field_leave_a_constant_sample_unchanged():
    # a crop of pure background is constant: range 0, so (x - min) / range must not turn it into NaN
    x = torch.stack([torch.full((1, 6, 6), -0.7), torch.rand(1, 6, 6)])
    for tr, values in ((RandomGamma(1.0), {"gamma": [0.5, 0.5]}), (RandomBiasField(1.0), {})):
        y = tr.apply(x, forced_params(tr, x, **values))
        assert torch.equal(y[0], x[0]) and torch.isfinite(y).all(), tr.name


def test_gamma_matches_monai_adjust_contrast_sample_by_sample_over_all_channels():
    """The docstring's reference: MONAI ``AdjustContrast(gamma)`` on each (C, *S) sample, whose min and range are
    those of all its channels."""
    monai_transforms = pytest.importorskip("monai.transforms")
    x = torch.randn(3, 2, 5, 6, 4)
    x[:, 1] += 2.0  # the channels have different ranges
    gammas = [0.6, 1.0, 1.8]
    tr = RandomGamma(1.0)
    y = tr.apply(x, forced_params(tr, x, gamma=gammas))
    for b, g in enumerate(gammas):
        ref = torch.as_tensor(monai_transforms.AdjustContrast(gamma=g)(x[b].clone()))
        assert torch.allclose(y[b], ref, atol=1e-5), g
