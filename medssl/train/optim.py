"""Optimiser, learning-rate schedule and training precision."""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights with decay; biases and normalisation parameters (ndim ≤ 1) without."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9) -> torch.optim.Optimizer:
    """AdamW, SGD (Nesterov momentum) or LARS over :func:`param_groups` (no decay on norms/biases)."""
    from medssl.train.lars import LARS

    groups = param_groups(model, weight_decay)
    on_gpu = any(p.is_cuda for p in model.parameters())
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, fused=on_gpu or None)  # one fused kernel per step on GPU
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; valid choices: adamw, sgd, lars")


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                  final_fraction: float = 0.01) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps`` then cosine decay to ``final_fraction`` × lr."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.precision`` (``auto`` | ``bf16`` | ``fp32``) on ``device``; None = fp32.

    ``auto`` is bf16 on a GPU with native bf16 (compute capability >= 8: A100, H100/H200, RTX 30xx+) and fp32
    elsewhere: CPUs, and older GPUs (V100, T4), which only emulate bf16, without tensor cores for it.
    """
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        return torch.bfloat16
    return None
