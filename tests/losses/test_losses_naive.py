"""Every loss against a naive per-anchor loop from the paper's formula (values and gradients, f64)."""

from __future__ import annotations

import losses_naive as naive
import pytest
import torch

from medssl.losses import (
    DecoupledLoss,
    EpsSupConLoss,
    EpsSupInfoNCELoss,
    ExpLoss,
    FairKLLoss,
    NTXentLoss,
    SupConLoss,
    ThresholdLoss,
    YAwareLoss,
)

# (seed, N, V): several batch sizes, one and three views as well as the usual two.
SHAPES = [(0, 5, 2), (1, 7, 2), (2, 4, 3), (3, 9, 1)]


def make_inputs(seed, n, v, d=6, ties=False):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, v, d, generator=g, dtype=torch.float64) * 2.0
    classes = torch.randint(0, 3, (n,), generator=g)
    if ties:  # whole-year ages with repeats, so that kernel weights tie
        ages = torch.randint(20, 24, (n,), generator=g).to(torch.float64)
    else:
        ages = 20 + 20 * torch.rand(n, generator=g, dtype=torch.float64)
    return features, classes, ages


def check(ours_fn, naive_fn, features):
    """Values and gradients w.r.t. raw (non-unit) features agree to float64 precision."""
    f1 = features.clone().requires_grad_(True)
    f2 = features.clone().requires_grad_(True)
    ours, ref = ours_fn(f1), naive_fn(f2)
    assert ours.dim() == 0
    torch.testing.assert_close(ours, ref.to(ours.dtype), rtol=1e-10, atol=1e-12)
    ours.backward()
    if not ref.requires_grad:  # no anchor has a positive (one view, no labels): loss 0, grad 0
        assert torch.count_nonzero(f1.grad) == 0
        return
    ref.backward()
    torch.testing.assert_close(f1.grad, f2.grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("seed,n,v", SHAPES)
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_binary_positive_losses_match_naive(seed, n, v, temperature):
    features, classes, _ = make_inputs(seed, n, v)
    t = temperature
    for labels in (None, classes):
        check(lambda f: SupConLoss(t)(f, labels), lambda f: naive.supcon(f, labels, t), features)
        check(lambda f: DecoupledLoss(t)(f, labels), lambda f: naive.supcon(f, labels, t, decoupled=True), features)
        for eps in (0.0, 0.3):
            check(
                lambda f: EpsSupInfoNCELoss(t, epsilon=eps)(f, labels),
                lambda f: naive.supcon(f, labels, t, epsilon=eps, margin_each=True),
                features,
            )
            check(
                lambda f: EpsSupInfoNCELoss(t, epsilon=eps, form="in")(f, labels),
                lambda f: naive.eps_supinfonce_in(f, labels, t, epsilon=eps),
                features,
            )
            check(lambda f: EpsSupConLoss(t, epsilon=eps)(f, labels), lambda f: naive.supcon(f, labels, t, epsilon=eps), features)
    check(lambda f: NTXentLoss(t)(f, classes), lambda f: naive.supcon(f, None, t), features)


@pytest.mark.parametrize("seed,n,v", SHAPES[:3])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("kernel", ["rbf", "gaussian", "cauchy"])
def test_kernel_losses_match_naive(seed, n, v, ties, kernel):
    features, _, ages = make_inputs(seed, n, v, ties=ties)
    sigma = 3.0
    for norm in ("row", "column"):
        check(
            lambda f: YAwareLoss(0.1, sigma, kernel, weight_normalisation=norm)(f, ages),
            lambda f: naive.yaware(f, ages, 0.1, sigma, kernel, norm),
            features,
        )
    check(lambda f: ThresholdLoss(0.1, sigma, kernel)(f, ages), lambda f: naive.threshold_paper(f, ages, 0.1, sigma, kernel), features)
    for red in ("sum", "mean"):
        check(
            lambda f: ThresholdLoss(0.1, sigma, kernel, form="released", delta_reduction=red)(f, ages),
            lambda f: naive.threshold_released(f, ages, 0.1, sigma, kernel, red),
            features,
        )
    for shift in (False, True):
        check(
            lambda f: ExpLoss(0.1, sigma, kernel, row_max_shift=shift)(f, ages),
            lambda f: naive.exp_loss(f, ages, 0.1, sigma, kernel, shift),
            features,
        )


def test_multidimensional_metadata_with_per_dimension_sigma():
    g = torch.Generator().manual_seed(7)
    features = torch.randn(6, 2, 5, generator=g, dtype=torch.float64)
    meta = torch.stack([20 + 40 * torch.rand(6, generator=g), torch.randint(0, 2, (6,), generator=g).float()], 1)
    meta = meta.to(torch.float64)
    sigma = (5.0, 0.5)
    for kernel in ("rbf", "gaussian", "cauchy"):
        check(lambda f: YAwareLoss(0.2, sigma, kernel)(f, meta), lambda f: naive.yaware(f, meta, 0.2, sigma, kernel), features)
        check(lambda f: ThresholdLoss(0.2, sigma, kernel)(f, meta), lambda f: naive.threshold_paper(f, meta, 0.2, sigma, kernel), features)
        check(lambda f: ExpLoss(0.2, sigma, kernel)(f, meta), lambda f: naive.exp_loss(f, meta, 0.2, sigma, kernel), features)
    with pytest.raises(ValueError, match="one bandwidth per metadata column"):
        YAwareLoss(0.2, (1.0, 2.0, 3.0))(features, meta)


@pytest.mark.parametrize("seed", [0, 1])
def test_fairkl_matches_naive_group_statistics(seed):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(10, 2, 6, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 0, 1, 0, 1])
    bias = torch.tensor([0, 1, 0, 1, 0, 1, 1, 0, 0, 1])
    for t, kld in ((1.0, 1.0), (0.5, 0.0)):
        check(lambda f: FairKLLoss(t, kld)(f, labels, bias), lambda f: naive.fairkl_group(f, labels, bias, t, kld), features)
    # Missing groups: bias is a function of the label (no bias-conflicting positive pair)...
    labels3 = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 0])
    sites3 = (labels3 == 2).long()
    check(lambda f: FairKLLoss()(f, labels3, sites3), lambda f: naive.fairkl_group(f, labels3, sites3), features)
    # labels=None means sample identity (positives = the other view).
    distinct = torch.arange(10)
    check(lambda f: FairKLLoss()(f, None, bias), lambda f: naive.fairkl_group(f, distinct, bias), features)
    # ...and one view with all labels distinct: no positive pair at all.
    check(lambda f: FairKLLoss()(f[:, :1], distinct, bias), lambda f: naive.fairkl_group(f[:, :1], distinct, bias), features)
    # One view, each class scanned once at each of two sites: no bias-aligned positive pair, so the
    # (mu_pc - mu_pa)^2 and sd terms must be dropped, not computed against an empty group's mean 0.
    pairs, alternating = torch.arange(10) // 2, torch.arange(10) % 2
    check(lambda f: FairKLLoss()(f[:, :1], pairs, alternating), lambda f: naive.fairkl_group(f[:, :1], pairs, alternating),
          features)
    # A one-site batch (no bias-conflicting pair at all), and site = class (no pc, no na group: every term
    # is dropped, the loss is 0 with zero gradient, not mu_pa^2 + mu_nc^2 against empty groups).
    for sites in (torch.zeros(10, dtype=torch.long), labels3):
        check(lambda f: FairKLLoss()(f, labels3, sites),
              lambda f: torch.as_tensor(naive.fairkl_group(f, labels3, sites), dtype=f.dtype), features)
