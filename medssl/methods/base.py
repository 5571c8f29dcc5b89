"""The method contract shared by every pretraining method (DESIGN.md §3)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class StepOutput:
    """What a training step returns: a scalar loss and the terms to log, as 0-dim tensors (detached; the trainer
    reads them from the device once per optimiser step, after the backward passes) or floats. Under DDP each is
    logged as its mean over the ranks, so every rank must return the same keys."""

    loss: torch.Tensor
    logs: dict = field(default_factory=dict)


class Method(nn.Module):
    """Base class: an ``encoder`` plus whatever the objective needs.

    Subclasses implement ``training_step(batch, generator) -> StepOutput`` where ``batch`` is
    a dict of tensors already on the right device (``image``: (B, C, *S), ``age``: (B,),
    ``site``/``sex``/``label``: (B,) int codes) and ``generator`` is the
    :class:`torch.Generator` (on the batch's device) that drives all randomness of the step.
    ``on_step_end(step, total)`` is an optional hook for momentum/EMA updates.
    """

    #: registry name of the loss used when the config does not name one ("" = not a contrastive method)
    default_loss: str = ""
    #: which batch metadata the objective consumes: "none", "metadata" (continuous) or "class"
    uses: str = "none"
    encoder: nn.Module

    def forward(self, batch: dict, generator: torch.Generator) -> StepOutput:
        """Calls ``training_step`` (so DistributedDataParallel can wrap any method)."""
        return self.training_step(batch, generator)

    def compile_modules(self) -> list[nn.Module]:
        """The modules a training step calls (their ``__call__``), which ``train.compile`` compiles in
        place: the encoder by default; methods that enter it elsewhere (``forward_tokens``,
        ``forward_pyramid``) name its blocks instead."""
        return [self.encoder]

    def on_step_end(self, step: int, total: int) -> None:
        """Called after each optimiser step; no-op by default."""
