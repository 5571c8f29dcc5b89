"""Known limits written without the group machinery: FairKL with one bias group or one site per sample,
NT-Xent with identical views as T -> 0, and ε-SupInfoNCE as ε grows (Barbano et al., ICLR 2023; Chen et al. 2020)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import medssl.losses as L


def _features(n=8, v=2, d=6, seed=0):
    return torch.randn(n, v, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_fairkl_with_one_bias_group_is_the_mean_similarity_of_the_negative_pairs():
    """Every pair bias-aligned: both conflicting groups are empty, so every mean and std term drops and only
    ``+ mu_na`` is left, the plain mean of s_ab = <z_a, z_b>/T over the pairs of different labels (naive loop)."""
    features, labels = _features(), torch.tensor([0, 1, 1, 0, 2, 2, 0, 1])
    z = F.normalize(features, dim=-1)
    total, count = 0.0, 0
    for i in range(8):
        for j in range(8):
            if labels[i] != labels[j]:
                for u in range(2):
                    for w in range(2):
                        total += float(z[i, u] @ z[j, w]) / 0.5
                        count += 1
    loss = L.FairKLLoss(temperature=0.5, kld=1.0)(features, labels, torch.zeros(8, dtype=torch.long))
    assert math.isclose(loss.item(), total / count, rel_tol=1e-12)


def test_fairkl_with_one_site_per_sample_and_no_labels_is_zero():
    """labels=None, every sample its own site: the positives (the other view) are all aligned and the negatives all
    conflicting, so no group has a counterpart: the regulariser is exactly 0 and pushes nothing."""
    features = _features().requires_grad_()
    loss = L.FairKLLoss()(features, None, torch.arange(8))
    loss.backward()
    assert loss.item() == 0.0 and not features.grad.any()


def test_ntxent_of_identical_views_vanishes_as_the_temperature_goes_to_zero():
    """z1 = z2 with distinct samples (cosine <= 0.9 between samples): each anchor's positive has cosine 1, so
    l_a = log(1 + sum_{k != positive} exp((s_ak - 1)/T)) -> 0 as T -> 0; at T = 1 it is near log(2N - 1)."""
    one = F.normalize(_features(v=1, seed=1), dim=-1)
    cos = one[:, 0] @ one[:, 0].T
    assert (cos - torch.eye(8)).max() <= 0.9
    features = one.expand(8, 2, 6)
    losses = [L.NTXentLoss(t)(features).item() for t in (1.0, 0.1, 0.02)]
    assert losses[0] > losses[1] > losses[2] and losses[2] < 7 * 2 * math.exp(-0.1 / 0.02)
    assert abs(losses[0] - math.log(15)) < 1.0


def test_eps_supinfonce_tends_to_the_decoupled_loss_as_epsilon_grows():
    """ε-SupInfoNCE ('out'): the positive's own denominator term is exp(s_ap - ε); ε -> ∞ removes it, which is the
    decoupled loss (positives out of the denominator), and the loss decreases with ε (a margin, not a penalty)."""
    features = _features(seed=2)
    values = [L.EpsSupInfoNCELoss(0.2, epsilon=e)(features).item() for e in (0.0, 0.5, 2.0, 40.0)]
    assert values[0] == pytest.approx(L.NTXentLoss(0.2)(features).item(), rel=1e-12)
    assert values[0] > values[1] > values[2] > values[3]
    assert math.isclose(values[3], L.DecoupledLoss(0.2)(features).item(), rel_tol=1e-12)
