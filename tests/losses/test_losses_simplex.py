"""Closed forms on a regular simplex: every off-diagonal similarity is the same, cos = -1/(M-1).

With all logits ``s`` equal, each paper's per-anchor loss is a plain number that depends on the
counts only (e.g. NT-Xent: ``-(s - log((M-1) e^s)) = log(M-1)`` at any temperature). At T = 0.01
in float32 the logits sit 133 below the self-similarity 1/T, so a log-sum-exp that shifts by the
wrong maximum (the anchor itself, or the 1e-6 term) underflows or overflows instead.
"""

from __future__ import annotations

import math

import pytest
import torch

import medssl.losses as L


def simplex(n, v, dtype):
    """(N, V, D) unit features, row v*N+i of the view-major stack = simplex vertex v*N+i."""
    m = n * v
    x = torch.eye(m, dtype=torch.float64) - 1.0 / m
    x = torch.nn.functional.normalize(x, dim=1)
    return x.reshape(v, n, m).transpose(0, 1).to(dtype).contiguous()


def closed_forms(n, v, t, eps):
    m = n * v
    s = -1.0 / (m - 1) / t
    pos, neg = v - 1, m - v
    return {
        "ntxent": (L.NTXentLoss(t), None, math.log(m - 1)),
        "supcon_classes": (L.SupConLoss(t), torch.arange(n) % 2, math.log(m - 1)),
        "yaware": (L.YAwareLoss(t, sigma=3.0), torch.linspace(20, 40, n, dtype=torch.float64), math.log(m - 1)),
        "threshold": (L.ThresholdLoss(t), None, math.log(1 + neg)),
        "exp": (L.ExpLoss(t), None, -(s - math.log(pos + neg * math.exp(s)))),
        "decoupled": (L.DecoupledLoss(t), None, math.log(neg)),
        "eps_out": (L.EpsSupInfoNCELoss(t, epsilon=eps), None, math.log(math.exp(-eps) + neg)),
        "eps_in": (L.EpsSupInfoNCELoss(t, epsilon=eps, form="in"), None, math.log(math.exp(-eps) + neg)),
        "eps_supcon": (L.EpsSupConLoss(t, epsilon=eps), None, math.log(pos * math.exp(-eps) + neg)),
        "base_temperature": (L.NTXentLoss(t, base_temperature=0.07), None, t / 0.07 * math.log(m - 1)),
    }


@pytest.mark.parametrize("dtype,t", [(torch.float64, 0.5), (torch.float64, 0.01), (torch.float32, 0.01)])
@pytest.mark.parametrize("n,v", [(2, 2), (3, 2), (2, 3)])
def test_equal_similarities_give_the_closed_form(dtype, t, n, v):
    features = simplex(n, v, dtype)
    z = features.transpose(0, 1).reshape(n * v, -1).double()
    off = ~torch.eye(n * v, dtype=torch.bool)
    torch.testing.assert_close((z @ z.T)[off], torch.full((n * v * (n * v - 1),), -1.0 / (n * v - 1), dtype=torch.float64))
    rtol = 1e-10 if dtype == torch.float64 else 1e-4
    for name, (loss, labels, expected) in closed_forms(n, v, t, eps=0.3).items():
        f = features.clone().requires_grad_(True)
        value = loss(f, labels)
        value.backward()
        assert value.dtype == dtype and torch.isfinite(f.grad).all(), name
        assert value.item() == pytest.approx(expected, rel=rtol), name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_released_code_term_1e6_at_low_temperature(dtype):
    """denominator_eps adds 1e-6·e^{1/T} (the released code's +1e-6 after its row-max shift): at T = 0.01
    that term is e^{133} times the others, which must not overflow float32 (one denominator per
    positive in ε-SupInfoNCE 'out', one shared denominator in its 'in' form and in ε-SupCon)."""
    n, v, t, eps = 2, 2, 0.01, 0.25
    m = n * v
    s = -1.0 / (m - 1) / t
    tiny = math.log(1e-6) + 1 / t
    one_positive = [s - eps, math.log(m - v) + s, tiny]  # V = 2: the 'in' form's mean over positives is e^s
    for loss, terms in ((L.EpsSupInfoNCELoss(t, epsilon=eps, denominator_eps=1e-6), one_positive),
                        (L.EpsSupInfoNCELoss(t, epsilon=eps, form="in", denominator_eps=1e-6), one_positive),
                        (L.EpsSupConLoss(t, epsilon=eps, denominator_eps=1e-6),
                         [math.log(v - 1) + s - eps, math.log(m - v) + s, tiny])):
        log_den = torch.logsumexp(torch.tensor(terms, dtype=torch.float64), 0).item()
        f = simplex(n, v, dtype).requires_grad_(True)
        value = loss(f)
        value.backward()
        assert value.item() == pytest.approx(-(s - log_den), rel=1e-10 if dtype == torch.float64 else 1e-5), loss
        assert torch.isfinite(f.grad).all()
