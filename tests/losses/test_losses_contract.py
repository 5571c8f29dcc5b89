"""Documented contracts no other loss test pinned: the defaults of docs/losses.md, refused
arguments, the stop-gradient on positive weights, empty rows of the log-sum-exp."""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path

import pytest
import torch

import medssl.losses as L
from medssl.losses.core import contrastive_core, weighted_logsumexp
from medssl.registry import LOSSES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "losses.md"
# docs/losses.md "defaults" column token → constructor argument and value
TOKENS = {r"T=([\d.]+)": ("temperature", float), r"σ=([\d.]+)": ("sigma", float), r"ε=([\d.]+)": ("epsilon", float),
          r"kld=([\d.]+)": ("kld", float), r"form=\"(\w+)\"": ("form", str)}
WORDS = {"rbf": ("kernel", "rbf"), "row": ("weight_normalisation", "row"), "out": ("form", "out")}


def documented_defaults():
    rows = {}
    for line in DOCS.read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 7 and re.fullmatch(r"`\w+`", cells[1]) and cells[1].strip("`") in LOSSES.list():
            rows[cells[1].strip("`")] = cells[4].replace("`", "")
    return rows


def test_constructor_defaults_are_the_documented_ones():
    rows = documented_defaults()
    assert sorted(rows) == LOSSES.list()
    for name, text in rows.items():
        params = inspect.signature(LOSSES.get(name)).parameters
        expected = {}
        for part in (p.strip() for p in text.split(",")):
            for pattern, (arg, cast) in TOKENS.items():
                if (match := re.fullmatch(pattern, part)):
                    expected[arg] = cast(match.group(1))
            if part in WORDS:
                expected[WORDS[part][0]] = WORDS[part][1]
        assert "temperature" in expected, (name, text)
        for arg, value in expected.items():
            assert params[arg].default == value, (name, arg)


def test_refused_arguments():
    features = torch.randn(4, 2, 3, dtype=torch.float64)
    # T / 0 made the loss infinite at the first step.
    with pytest.raises(ValueError, match="base_temperature must be > 0"):
        L.SupConLoss(0.1, base_temperature=0.0)
    # ε >= 0 (docstrings): a negative margin rewards positives that are *less* similar than negatives.
    for cls in (L.EpsSupInfoNCELoss, L.EpsSupConLoss):
        with pytest.raises(ValueError, match="epsilon must be a finite number >= 0"):
            cls(epsilon=-0.1)
    # sigma = inf made every kernel weight 1: every sample a positive of every other, silently.
    with pytest.raises(ValueError, match="positive finite"):
        L.YAwareLoss(sigma=math.inf)
    # ...and every one of several bandwidths is checked, not only when all are bad (a 0 divides by zero).
    for sigma in ((5.0, 0.0), (math.nan, 0.5)):
        with pytest.raises(ValueError, match="positive finite"):
            L.ExpLoss(sigma=sigma)
        with pytest.raises(ValueError, match="positive finite"):
            L.kernel_weights(torch.zeros(3, 2), sigma, "rbf")
    with pytest.raises(ValueError, match="floating point"):
        L.NTXentLoss()(features.long())


def test_positive_weights_carry_no_gradient():
    """contrastive_core: ``pos_weight`` is "no gradient" (attraction weights, not a learnable input)."""
    g = torch.Generator().manual_seed(0)
    s = torch.randn(6, 6, generator=g, dtype=torch.float64)
    w = torch.rand(6, 6, generator=g, dtype=torch.float64)
    for kw in ({}, {"normalisation": "column"}, {"denominator": "lower"}):
        weights = ((w + w.T) / 2).requires_grad_(True)
        value = contrastive_core(s, weights, **kw).sum()
        assert not value.requires_grad, kw


def test_empty_rows_of_the_weighted_logsumexp_are_zero_with_zero_gradient():
    """weighted_logsumexp: "rows with nothing to sum get value 0 and nonempty=False; their gradient is 0"."""
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64, requires_grad=True)
    weight = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    value, nonempty = weighted_logsumexp(x, weight)
    assert nonempty.tolist() == [True, False]
    assert value[0].item() == pytest.approx(math.log(math.exp(2.0) + 2 * math.exp(3.0)), rel=1e-12)
    assert value[1].item() == 0.0
    value[1].backward()
    assert torch.count_nonzero(x.grad) == 0


def test_anchor_without_negatives_has_zero_gradient():
    """One class only: no anchor has a negative, DecoupledLoss is 0 and so is its gradient (not NaN)."""
    f = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    value = L.DecoupledLoss(0.1)(f, torch.zeros(4, dtype=torch.long))
    value.backward()
    assert value.item() == 0.0 and torch.count_nonzero(f.grad) == 0


def test_fairkl_group_of_one_pair_has_std_zero_and_a_finite_gradient():
    """One view; classes {0,1} {2,3} {4,5}; only samples 0 and 1 share a class at different sites: the
    bias-conflicting positive group is one pair, whose similarity std is 0 (the naive loop's value). The
    sqrt is guarded so the gradient stays finite (d sqrt / d var is infinite at 0)."""
    import losses_naive as naive

    g = torch.Generator().manual_seed(4)
    features = torch.randn(6, 1, 5, generator=g, dtype=torch.float64)
    labels, bias = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 0, 0, 1, 1])
    f = features.clone().requires_grad_(True)
    value = L.FairKLLoss()(f, labels, bias)
    value.backward()
    assert value.item() == pytest.approx(naive.fairkl_group(features, labels, bias).item(), rel=1e-5)
    assert torch.isfinite(f.grad).all()


def test_the_diagonal_of_the_logits_is_ignored():
    """contrastive_core: "logits (M, M) s_ab (diagonal ignored)": a diagonal masked with -inf / NaN / +inf (as
    callers often mask self-similarities) gives the value of a finite diagonal and finite gradients."""
    g = torch.Generator().manual_seed(6)
    s0 = torch.randn(7, 7, generator=g, dtype=torch.float64)
    w = torch.rand(7, 7, generator=g, dtype=torch.float64)
    w = (w + w.T) / 2
    configs = ({}, {"normalisation": "column"}, {"combine": "inside"}, {"denom_weight": 1 - w}, {"denominator": "lower"},
               {"denominator": "lower", "margin": 0.3}, {"denominator": "lower", "binary": True, "pos_weight": w > 0.5})
    for kw, d in [(kw, d) for kw in configs for d in (-math.inf, math.nan, math.inf)]:
        kw = dict(kw)
        weights = kw.pop("pos_weight", w).double()
        s = s0.clone().fill_diagonal_(d).requires_grad_(True)
        value = contrastive_core(s, weights, **kw)
        torch.testing.assert_close(value, contrastive_core(s0, weights, **kw), rtol=1e-12, atol=1e-12, msg=f"{kw} {d}")
        value.sum().backward()
        assert torch.isfinite(s.grad).all() and torch.count_nonzero(s.grad.diagonal()) == 0, (kw, d)


def test_kernel_weights_take_integer_metadata_as_numbers():
    """docs/losses.md: "Integer labels are used as numbers." kernel_weights on whole-year ages built its
    bandwidths in the metadata's dtype, so an int64 sigma truncated 2.5 to 2 and 0.5 to 0 (every weight NaN)."""
    years = [20, 25, 31]
    for sigma in (2.5, 0.5, 3):
        expected = torch.tensor([[math.exp(-((a - b) / sigma) ** 2 / 2) for b in years] for a in years])
        weights = L.kernel_weights(torch.tensor(years), sigma, "rbf")
        assert weights.is_floating_point(), sigma
        torch.testing.assert_close(weights, expected.to(weights.dtype), rtol=1e-6, atol=1e-12, msg=str(sigma))


def _kernel_inputs(seed=8, n=6):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, 2, 5, generator=g, dtype=torch.float64)
    ages = 20 + 40 * torch.rand(n, generator=g, dtype=torch.float64)
    return features, ages, torch.stack([ages, torch.rand(n, generator=g, dtype=torch.float64)], 1)


def test_one_float_or_int_sigma_serves_every_metadata_column():
    """kernels.py: "a float is used for every dimension"; a YAML ``sigma: 3`` arrives as an int."""
    import losses_naive as naive

    features, _, meta = _kernel_inputs()
    for sigma in (3.0, 3):
        for name in ("rbf", "gaussian", "cauchy"):
            expected = torch.tensor(naive.weight_matrix(meta, list(range(6)), 3.0, name), dtype=torch.float64)
            torch.testing.assert_close(L.kernel_weights(meta, sigma, name), expected, rtol=1e-12, atol=0)
        torch.testing.assert_close(L.YAwareLoss(0.2, sigma)(features, meta), naive.yaware(features, meta, 0.2, 3.0),
                                   rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="unknown kernel 'laplace'"):  # not a silent rbf
        L.kernel_weights(meta, 3.0, "laplace")


def test_kernel_loss_arguments_are_checked_when_built_and_named_when_called():
    features, ages, _ = _kernel_inputs()
    with pytest.raises(ValueError, match="weight_normalisation must be"):
        L.YAwareLoss(weight_normalisation="columns")
    with pytest.raises(ValueError, match="form must be"):
        L.ThresholdLoss(form="published")
    with pytest.raises(ValueError, match="delta_reduction must be"):
        L.ThresholdLoss(form="released", delta_reduction="max")
    # Two bandwidths (tuple or list) for (N,) ages: the message names the labels' shape.
    for sigma in ((5.0, 0.5), [5.0, 0.5]):
        for cls in (L.YAwareLoss, L.ThresholdLoss, L.ExpLoss):
            with pytest.raises(ValueError, match=r"sigma has 2 values but labels are \(N,\)"):
                cls(sigma=sigma)(features, ages)
    # Every missing age is named, not only the first.
    ages[[1, 4]] = math.nan
    with pytest.raises(ValueError, match=r"rows \[1, 4\]"):
        L.YAwareLoss()(features, ages)
    text = repr(L.ExpLoss(0.2, 3.0, "cauchy"))
    assert "temperature=0.2" in text and "sigma=3.0" in text and "kernel='cauchy'" in text


def test_released_threshold_sums_the_counts_by_default():
    """ThresholdLoss docstring: ``delta_reduction="sum"`` (default) or ``"mean"`` (counts / M)."""
    import losses_naive as naive

    features, ages, _ = _kernel_inputs(9, n=7)
    value = L.ThresholdLoss(0.1, 3.0, form="released")(features, ages)
    torch.testing.assert_close(value, naive.threshold_released(features, ages, 0.1, 3.0, "rbf", "sum"), rtol=1e-10, atol=0)
    assert abs(value - naive.threshold_released(features, ages, 0.1, 3.0, "rbf", "mean")) > 1e-3


def test_exp_loss_formula_holds_where_a_gaussian_weight_exceeds_one():
    """L^exp's ``s (1 - w)`` as written, not clipped at w = 1: a gaussian kernel with sigma < 1/sqrt(2 pi) has
    K(0) > 1 (docs/losses.md: the density; its scale matters only for L^exp), so 1 - w is negative there."""
    import losses_naive as naive

    features, _, _ = _kernel_inputs(10)
    ages = torch.tensor([30.0, 30.1, 30.25, 31.0, 40.0, 40.2], dtype=torch.float64)
    assert L.kernel_weights(ages, 0.2, "gaussian").diagonal().min() > 1.9
    f1, f2 = features.clone().requires_grad_(True), features.clone().requires_grad_(True)
    ours, ref = L.ExpLoss(0.5, 0.2, "gaussian")(f1, ages), naive.exp_loss(f2, ages, 0.5, 0.2, "gaussian")
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(f1.grad, f2.grad, rtol=1e-8, atol=1e-10)


def test_without_labels_the_other_view_has_weight_one_whatever_the_kernel():
    """kernelised.py: ``labels=None`` falls back to sample identity (weight 1 for the other view, 0 elsewhere),
    not to K(0) of the kernel (0.2 for a gaussian with sigma 2): L^exp's (1 - w) sees the difference. The
    naive loop gets identity weights from an rbf on ages 10^9 apart."""
    import losses_naive as naive

    features, _, _ = _kernel_inputs(11)
    far = torch.arange(6, dtype=torch.float64) * 1e9
    for name in ("rbf", "gaussian", "cauchy"):
        torch.testing.assert_close(L.ExpLoss(0.2, 2.0, name)(features, None), naive.exp_loss(features, far, 0.2, 2.0, "rbf"),
                                   rtol=1e-10, atol=1e-12, msg=name)


def test_sigma_is_a_number_or_numbers_never_the_characters_of_a_string():
    """A quoted YAML ``sigma: '10'`` reached the loss as a string and was read character by character: '10' failed
    as "got [1.0, 0.0]", '2.5' on float('.'), and '5' passed as (5.0,). NumPy scalars are numbers (they raised
    TypeError on len())."""
    import losses_naive as naive
    import numpy as np

    for bad in ("10", "5", "2.5"):
        with pytest.raises(ValueError, match=f"sigma must be a number.*'{bad}'"):
            L.ThresholdLoss(sigma=bad)
        with pytest.raises(ValueError, match="sigma must be a number"):
            L.kernel_weights(torch.zeros(3), bad, "rbf")
    features, ages, _ = _kernel_inputs(12)
    for sigma in (np.float32(3.0), np.int64(3)):
        torch.testing.assert_close(L.YAwareLoss(0.2, sigma)(features, ages), naive.yaware(features, ages, 0.2, 3.0),
                                   rtol=1e-10, atol=1e-12)


def test_eps_and_fairkl_arguments_are_refused_by_name():
    """ε = inf (docstring: a finite number >= 0), an unknown std_over, (N, K) labels or bias labels, a missing class
    code (-1) among FairKL's target labels, (1, N, V, D) features: each a ValueError saying so, never a loss computed
    with a silently reinterpreted argument; a float class label names the loss that refused it."""
    f = torch.randn(6, 2, 4, dtype=torch.float64)
    labels, bias = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match="EpsSupInfoNCELoss: epsilon must be a finite number >= 0, got inf"):
        L.EpsSupInfoNCELoss(epsilon=math.inf)
    with pytest.raises(ValueError, match="std_over must be 'group' or 'matrix', got 'grup'"):
        L.FairKLLoss(std_over="grup")
    for bad_labels, bad_bias in ((labels, torch.stack([bias, bias], 1)), (torch.stack([labels, labels], 1), bias)):
        with pytest.raises(ValueError, match=r"bias_labels must be given as an \(N,\) class tensor, labels as \(N,\)"):
            L.FairKLLoss()(f, bad_labels, bad_bias)
    with pytest.raises(ValueError, match=r"FairKLLoss \(labels\): class codes are missing .* rows \[5\]"):
        L.FairKLLoss()(f, torch.tensor([0, 0, 1, 1, 2, -1]), bias)
    with pytest.raises(ValueError, match=r"features must be \(N, V, D\) or \(N, D\), got \(1, 6, 2, 4\)"):
        L.FairKLLoss()(f[None], labels, bias)
    with pytest.raises(ValueError, match="^EpsSupInfoNCELoss: class labels must be a"):
        L.EpsSupInfoNCELoss()(f, labels.double())


def test_a_negative_or_non_finite_denominator_eps_is_refused():
    """denominator_eps adds eps * e^{max_k s_ak} to each denominator: a negative one was silently taken as 0 (no term;
    abs() or a sign slip passed every test) and NaN too. Both ε-losses refuse it, as they refuse a bad ε."""
    for cls in (L.EpsSupInfoNCELoss, L.EpsSupConLoss):
        for bad in (-1e-6, math.nan, math.inf):
            with pytest.raises(ValueError, match=f"{cls.__name__}: denominator_eps must be a finite number >= 0"):
                cls(denominator_eps=bad)
        assert cls(denominator_eps=0.0).denominator_eps == 0.0 and cls(denominator_eps=1e-6).denominator_eps == 1e-6
