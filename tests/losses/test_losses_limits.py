"""Known limits and relations between the losses, numerical robustness, errors, the registry."""

from __future__ import annotations

import math

import pytest
import torch
from monai.losses import ContrastiveLoss

import medssl.losses as L
from medssl.losses.core import contrastive_core, lower_logsumexp
from medssl.registry import LOSSES, UnknownNameError


ALL = ["ntxent", "supcon", "eps_supinfonce", "eps_supcon", "yaware", "threshold", "exp", "decoupled", "fairkl"]


def inputs(seed=0, n=12, v=2, d=8, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, v, d, generator=g, dtype=dtype)
    ages = 20 + 40 * torch.rand(n, generator=g, dtype=torch.float64)  # distinct a.s.
    classes = torch.randint(0, 3, (n,), generator=g)
    return features, ages, classes


def make(name, **kw):
    return LOSSES.get(name)(**kw)


def call(name, loss, features, ages, classes):
    if name == "fairkl":
        return loss(features, classes, (classes + torch.arange(len(classes))) % 2)
    return loss(features, ages if name in ("yaware", "threshold", "exp") else classes)


def test_registry_names_and_contract():
    assert LOSSES.list() == sorted(ALL)
    with pytest.raises(UnknownNameError, match="Did you mean 'yaware'"):
        LOSSES.get("yawre")
    features, ages, classes = inputs()
    for name in LOSSES.list():
        f = features.clone().requires_grad_(True)
        value = call(name, make(name), f, ages, classes)
        assert value.shape == () and torch.isfinite(value), name
        value.backward()
        assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0, name


def test_ntxent_matches_monai_contrastive_loss():
    features, _, _ = inputs(1, n=16, d=32, dtype=torch.float32)
    for t in (0.1, 0.5):
        f1 = features.clone().requires_grad_(True)
        f2 = features.clone().requires_grad_(True)
        ours = L.NTXentLoss(t)(f1)
        theirs = ContrastiveLoss(temperature=t)(f2[:, 0], f2[:, 1])
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        ours.backward()
        theirs.backward()
        torch.testing.assert_close(f1.grad, f2.grad, rtol=1e-4, atol=1e-6)


def test_limits_reduce_to_ntxent():
    features, ages, _ = inputs(2)
    ntxent = L.NTXentLoss(0.2)(features)
    distinct = torch.arange(len(ages))
    close = dict(rtol=1e-12, atol=1e-12)
    # y-aware with sigma → 0 and distinct ages: only the other view keeps weight.
    for kernel in ("rbf", "gaussian", "cauchy"):
        sigma = 1e-3 if kernel != "cauchy" else 1e-9  # cauchy decays polynomially
        torch.testing.assert_close(L.YAwareLoss(0.2, sigma, kernel)(features, ages), ntxent, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(L.YAwareLoss(0.2, 1e-3)(features, ages), ntxent, **close)
    torch.testing.assert_close(L.YAwareLoss(0.2)(features, None), ntxent, **close)
    # SupCon with all-distinct labels (2 views), ε = 0 forms, label-free forms.
    torch.testing.assert_close(L.SupConLoss(0.2)(features, distinct), ntxent, **close)
    torch.testing.assert_close(L.SupConLoss(0.2)(features), ntxent, **close)
    torch.testing.assert_close(L.EpsSupConLoss(0.2, epsilon=0.0)(features), ntxent, **close)
    for form in ("out", "in"):
        torch.testing.assert_close(L.EpsSupInfoNCELoss(0.2, epsilon=0.0, form=form)(features), ntxent, **close)
    # L^thr with binary (identity) weights: the positive is the top weight, everything is lower.
    torch.testing.assert_close(L.ThresholdLoss(0.2)(features, None), ntxent, **close)
    torch.testing.assert_close(L.ThresholdLoss(0.2, 1e-3)(features, ages), ntxent, **close)
    # L^exp is not NT-Xent there: the positive (w = 1) enters its own denominator as e^(s·0) = 1.
    z = torch.nn.functional.normalize(features, dim=-1).transpose(0, 1).reshape(2 * len(ages), -1)
    s, m = z @ z.T / 0.2, 2 * len(ages)
    naive_exp = torch.stack([-(s[a, (a + m // 2) % m] - torch.log(1 + sum(torch.exp(s[a, k]) for k in range(m)
                                                                          if k not in (a, (a + m // 2) % m))))
                             for a in range(m)]).mean()
    for labels in (None, ages):
        exp = L.ExpLoss(0.2, 1e-3)(features, labels)
        torch.testing.assert_close(exp, naive_exp, **close)
        assert abs(exp - ntxent) > 1e-3
    # Decoupled = NT-Xent minus the positive in the denominator: value is lower.
    assert L.DecoupledLoss(0.2)(features) < ntxent


def test_supervised_limits():
    features, _, classes = inputs(3, v=2)
    supcon = L.SupConLoss(0.2)(features, classes)
    torch.testing.assert_close(L.EpsSupConLoss(0.2, epsilon=0.0)(features, classes), supcon, rtol=1e-12, atol=0)
    # ε-SupInfoNCE(0) is SupInfoNCE (each positive alone): never above SupCon (fewer terms in denominator).
    assert L.EpsSupInfoNCELoss(0.2)(features, classes) < supcon
    # L^thr on class labels used as metadata with a tiny sigma = SupInfoNCE.
    thr = L.ThresholdLoss(0.2, 1e-3)(features, classes.double())
    torch.testing.assert_close(thr, L.EpsSupInfoNCELoss(0.2)(features, classes), rtol=1e-12, atol=0)
    # -log(e^s+ / (e^(s+ - ε) + Σ e^s-)) = -ε + log(1 + Σ e^(s- - s+ + ε)): value + ε grows with ε.
    margins = (0.0, 0.25, 0.5, 1.0)
    values = [L.EpsSupInfoNCELoss(0.2, epsilon=e)(features, classes).item() + e for e in margins]
    assert values == sorted(values)


def test_rank_based_lower_sum_equals_binary_fast_path():
    features, _, classes = inputs(4, n=10, v=3)
    z = torch.nn.functional.normalize(features, dim=-1).transpose(0, 1).reshape(30, -1)
    s = z @ z.T / 0.1
    tiled = classes.repeat(3)
    p = (tiled[:, None] == tiled[None, :]).double()
    fast, fast_ok = lower_logsumexp(s, p, binary=True)
    ranked, ranked_ok = lower_logsumexp(s, p, binary=False)
    use = (p > 0) & ~torch.eye(30, dtype=torch.bool)  # the anchor-self entry is never used
    torch.testing.assert_close(ranked[use & ranked_ok], fast[use & fast_ok], rtol=1e-12, atol=1e-12)
    assert torch.equal(ranked_ok[use], fast_ok[use])


def test_gradcheck_core_configurations():
    g = torch.Generator().manual_seed(5)
    s = torch.randn(7, 7, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.rand(7, 7, generator=g, dtype=torch.float64)
    w = (w + w.T) / 2
    for kw in ({}, {"denominator": "lower"}, {"denominator": "lower", "margin": 0.3}, {"normalisation": "column"}):
        assert torch.autograd.gradcheck(lambda x: contrastive_core(x, w, **kw).sum(), (s,))
    assert torch.autograd.gradcheck(lambda x: contrastive_core(x, w, denom_logits=x * (1 - w)).sum(), (s,))
    assert torch.autograd.gradcheck(lambda x: contrastive_core(x, (w > 0.5).double(), combine="inside").sum(), (s,))


@pytest.mark.parametrize("name", ALL)
def test_finite_in_bf16_autocast_at_low_temperature(name):
    features, ages, classes = inputs(6, n=16, d=16, dtype=torch.float32)
    encoder = torch.nn.Linear(16, 16)
    kw = {"temperature": 0.01}
    loss = make(name, **kw)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embedded = encoder(features)
        assert embedded.dtype == torch.bfloat16
        value = call(name, loss, embedded, ages, classes)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters())
    # float32 at T=0.01 agrees with float64 (no overflow in the log-sum-exp).
    f32 = call(name, loss, features, ages, classes)
    f64 = call(name, loss, features.double(), ages, classes)
    torch.testing.assert_close(f32.double(), f64, rtol=1e-4, atol=1e-4)


def test_anchors_without_positive_contribute_nothing():
    features, _, _ = inputs(7, n=6, v=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 3])  # samples 4 and 5 are alone in their class
    for cls in (L.SupConLoss, L.EpsSupInfoNCELoss, L.EpsSupConLoss, L.DecoupledLoss):
        f = features.clone().requires_grad_(True)
        value = cls(0.1)(f, labels)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(f.grad).all()
    # Nothing positive at all (one view, no labels): exactly 0 with a zero gradient.
    f = features.clone().requires_grad_(True)
    value = L.SupConLoss(0.1)(f)
    value.backward()
    assert value.item() == 0.0 and torch.count_nonzero(f.grad) == 0
    # Decoupled with one class only: no negatives anywhere → 0, not NaN.
    assert L.DecoupledLoss(0.1)(inputs(8, n=4)[0], torch.zeros(4, dtype=torch.long)).item() == 0.0


def test_unit_norm_input_is_unchanged_and_scale_invariant():
    features, ages, _ = inputs(9)
    unit = torch.nn.functional.normalize(features, dim=-1)
    loss = L.YAwareLoss(0.1, 5.0)
    torch.testing.assert_close(loss(unit, ages), loss(3.7 * features, ages), rtol=1e-12, atol=0)
    base = L.SupConLoss(0.1, base_temperature=0.07)(features)
    torch.testing.assert_close(base, L.SupConLoss(0.1)(features) * (0.1 / 0.07), rtol=1e-12, atol=0)


def test_helpful_errors():
    features, ages, classes = inputs(10)
    with pytest.raises(ValueError, match=r"\(N, V, D\).*unsqueeze"):
        L.NTXentLoss()(features[:, 0])
    with pytest.raises(ValueError, match="labels must have shape"):
        L.SupConLoss()(features, classes[:-1])
    with pytest.raises(ValueError, match="integer tensor.*yaware"):
        L.SupConLoss()(features, ages)
    with pytest.raises(ValueError, match="unknown kernel 'laplace'"):
        L.YAwareLoss(kernel="laplace")
    with pytest.raises(ValueError, match="positive finite"):
        L.YAwareLoss(sigma=0.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        L.ThresholdLoss(temperature=0.0)
    # T = inf made every logit 0: a constant loss with zero gradient, silently.
    for bad in ({"temperature": math.inf}, {"base_temperature": math.inf}):
        with pytest.raises(ValueError, match="temperature must be > 0 and finite"):
            L.NTXentLoss(**bad)
    with pytest.raises(ValueError, match="temperature must be > 0 and finite"):
        L.FairKLLoss(temperature=math.inf)
    with pytest.raises(ValueError, match="form must be"):
        L.EpsSupInfoNCELoss(form="middle")
    with pytest.raises(ValueError, match="epsilon"):
        L.EpsSupConLoss(epsilon=math.inf)
    with pytest.raises(ValueError, match="bias_labels must be given"):
        L.FairKLLoss()(features, classes, None)


@pytest.mark.parametrize("name", ["yaware", "threshold", "exp"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_metadata_is_an_error_not_a_silent_zero(name, bad):
    # A NaN age made every kernel row sum NaN, so every anchor "had no positive": loss 0, gradient 0.
    features, ages, _ = inputs(11, n=8)
    ages[2] = bad
    with pytest.raises(ValueError, match=r"non-finite.*rows \[2\]"):
        make(name)(features, ages)
    multi = torch.stack([torch.arange(8.0), ages], dim=1)  # (N, K) metadata: the bad column is named by row too
    with pytest.raises(ValueError, match=r"non-finite.*rows \[2\]"):
        make(name, sigma=(1.0, 5.0))(features, multi)


@pytest.mark.parametrize("name", ["yaware", "threshold", "exp"])
def test_kernel_losses_take_negative_integer_metadata_as_numbers(name):
    # Integer metadata are numbers for a kernel loss (e.g. centred age in whole years): -3 is a value,
    # not a missing class code, so the loss equals the one on the same values as floats.
    features, _, _ = inputs(12, n=8)
    years = torch.tensor([-3, -1, 0, 2, -3, 5, 1, -2])
    torch.testing.assert_close(make(name)(features, years), make(name)(features, years.double()))
