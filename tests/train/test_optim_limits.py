"""Optimisers and the lr schedule at their limits (LARS with zero weights or gradients, momentum other than 0.9,
parameters without a gradient, the closure, an unknown name, past the last step): found by mutating
medssl/train/lars.py and optim.py."""

from __future__ import annotations

import math

import pytest
import torch

from medssl.train.lars import LARS
from medssl.train.optim import build_optimizer, warmup_cosine


def _weight(values) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))


def test_a_zero_gradient_leaves_the_weight_alone_and_a_zero_weight_takes_the_plain_gradient():
    """SimCLR's lars_optimizer.py: trust ratio eta·||w||/||g|| only when both norms are > 0, else 1. A weight
    matrix with a zero gradient (no weight decay) then does not move (eta·||w||/0 would make it inf · 0 = NaN), and a
    zero-initialised one takes w ← -lr·g (a trust ratio of 0 would keep it at 0 for ever)."""
    still, zero = _weight([[1.0, -2.0], [3.0, 0.5]]), _weight([[0.0, 0.0], [0.0, 0.0]])
    opt = LARS([still, zero], lr=0.5, momentum=0.9, weight_decay=0.0, eta=1e-3)
    g = torch.tensor([[0.2, -0.4], [1.0, 3.0]], dtype=torch.float64)
    still.grad, zero.grad = torch.zeros_like(still), g.clone()
    before = still.detach().clone()
    opt.step()
    assert torch.equal(still.detach(), before)
    assert torch.allclose(zero.detach(), -0.5 * g, rtol=1e-12, atol=0)


@pytest.mark.parametrize("optimizer", ["sgd", "lars"])
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_build_optimizer_uses_train_momentum(optimizer, momentum):
    """train.momentum (docs/training.md: 'for sgd and lars') reaches both: naive loops over three steps on one
    weight matrix, SGD with Nesterov momentum when m > 0 (b ← m·b + g, w ← w - lr·(g + m·b)) and LARS
    (b ← m·b + eta·||w||/||g||·g, w ← w - lr·b), give the same weights."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3, bias=False).double()
    opt = build_optimizer(model, optimizer, lr=0.2, weight_decay=0.0, momentum=momentum)
    w, buf, x = model.weight.detach().clone(), None, torch.randn(8, 4, dtype=torch.float64)
    for _ in range(3):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        g = model.weight.grad.clone()
        if optimizer == "lars":
            g = 1e-3 * w.norm() / g.norm() * g
        buf = g if buf is None else momentum * buf + g
        w = w - 0.2 * (g + momentum * buf if optimizer == "sgd" else buf)
        opt.step()
    assert torch.allclose(model.weight.detach(), w, rtol=1e-10, atol=1e-12)


def test_an_unknown_optimizer_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"unknown optimizer 'adam'; valid choices: adamw, sgd, lars"):
        build_optimizer(torch.nn.Linear(2, 2), "adam", lr=0.1, weight_decay=0.0)


def test_a_parameter_without_gradient_is_not_moved_and_gets_no_momentum_state():
    """torch.optim's contract: parameters whose .grad is None (unused in this step) are skipped: no step and no
    momentum buffer, which would otherwise move them in later steps."""
    used, unused = _weight([[1.0, 2.0]]), _weight([[3.0, 4.0]])
    opt = LARS([used, unused], lr=0.1)
    (used ** 2).sum().backward()
    opt.step()
    assert torch.equal(unused.detach(), torch.tensor([[3.0, 4.0]], dtype=torch.float64)) and unused not in opt.state
    assert not torch.equal(used.detach(), torch.tensor([[1.0, 2.0]], dtype=torch.float64))


def test_step_with_a_closure_evaluates_it_with_gradients_and_returns_its_loss():
    """torch.optim's contract (as torch.optim.SGD, and PyTorch Lightning's optimizer.step(closure=...)): step(closure)
    runs the closure with autograd enabled, although step itself runs under no_grad, and returns its loss; the step
    then equals one taken after calling the closure by hand."""
    by_closure, by_hand = _weight([[1.0, 2.0], [0.5, -1.0]]), _weight([[1.0, 2.0], [0.5, -1.0]])
    opt, ref = LARS([by_closure], lr=0.1, weight_decay=0.01), LARS([by_hand], lr=0.1, weight_decay=0.01)

    def closure():
        opt.zero_grad()
        loss = (by_closure ** 3).sum()
        loss.backward()
        return loss

    for _ in range(2):
        loss = opt.step(closure)
        ref.zero_grad()
        expected = (by_hand ** 3).sum()
        expected.backward()
        ref.step()
        assert loss.item() == expected.item()
    assert torch.equal(by_closure.detach(), by_hand.detach())


def test_after_the_last_step_the_lr_stays_at_the_final_fraction_and_that_defaults_to_one_percent():
    """docs/training.md: cosine decay to final_lr_fraction × lr (default 0.01) reached after the last step; one
    cycle only (no SGDR restart), so a scheduler stepped past total_steps stays there instead of rising again."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched, lrs = warmup_cosine(opt, 2, 10), []
    for _ in range(16):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[8] == pytest.approx(2.0 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 7 / 8))))  # step 9
    assert lrs[9:] == pytest.approx([2.0 * 0.01] * 7)  # step 10 = total_steps, and beyond


def test_lars_momentum_does_not_depend_on_how_gradients_are_zeroed():
    """zero_grad(set_to_none=False) zeroes the .grad tensors in place and backward accumulates into them: LARS's
    momentum buffers must be copies (biases and norm parameters take the plain gradient, the very .grad tensor),
    so both ways of zeroing give the same weights."""
    weights = []
    for set_to_none in (True, False):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4)).double()
        opt = build_optimizer(model, "lars", lr=0.1, weight_decay=0.01, momentum=0.9)
        x = torch.randn(6, 3, dtype=torch.float64)
        for _ in range(3):
            opt.zero_grad(set_to_none=set_to_none)
            model(x).pow(3).sum().backward()
            opt.step()
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
