"""LARS and the lr schedule at their limits."""

from __future__ import annotations

import torch

from medssl.train.lars import LARS


def _weight(values) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))


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
