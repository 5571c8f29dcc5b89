"""The learning-rate schedule: linear warm-up, then cosine decay to final_fraction × lr."""

import math

import pytest
import torch

from medssl.train.optim import warmup_cosine


def _lrs(warmup, total, final_fraction):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched, lrs = warmup_cosine(opt, warmup, total, final_fraction), []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("final_fraction", [0.01, 0.2])
def test_warmup_then_cosine_matches_the_formula(final_fraction):
    warmup, total = 4, 24
    lrs = _lrs(warmup, total, final_fraction)
    assert lrs[:warmup] == pytest.approx([0.5 * (s + 1) / warmup for s in range(warmup)])
    for s in range(warmup, total):  # Loshchilov & Hutter (SGDR, ICLR 2017), eq. 5, one cycle
        t = (s - warmup) / (total - warmup)
        assert lrs[s] == pytest.approx(0.5 * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * t))))
    assert min(lrs[warmup:]) > 0.5 * final_fraction


def test_final_fraction_one_keeps_the_lr_constant_after_warmup():
    lrs = _lrs(3, 20, 1.0)
    assert lrs[:3] == pytest.approx([0.5 / 3, 1.0 / 3, 0.5])
    assert lrs[3:] == pytest.approx([0.5] * 17)
