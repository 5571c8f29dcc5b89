"""Gathering embeddings and metadata across ranks so that DDP sees the global batch.

Contrastive losses compare every sample with every other one, so under data parallelism the
loss must be computed on the concatenated batch of all ranks, not on each local batch.

Gradient convention (read this before scaling a loss by the world size):

* :func:`gather_with_grad` concatenates the local tensors of all ranks (rank order) and
  keeps the graph: its backward sums, over all ranks, the gradient that each rank's copy of
  the loss sends to this rank's slice (the semantics of
  ``torch.distributed.nn.functional.all_gather``; we use our own small autograd function
  because that one is deprecated and, with gloo, scrambles non-contiguous gradients, which
  the view-major stacking of the losses produces).
* Every rank computes the same global loss ``L`` from the same global batch. After the
  backward, rank r holds ``world_size * dL/dz_r`` for its own embeddings and hence
  ``world_size * (its share of dL/dtheta)``.
* DDP averages parameter gradients over ranks (``/ world_size``), which cancels that factor:
  the averaged gradient is exactly ``dL/dtheta`` of one process running the concatenated
  batch. So: **return the loss unscaled; never multiply or divide it by the world size when
  training with DDP.** (If you all-reduce gradients yourself with a SUM, divide by the world
  size, as DDP does.)

All ranks must use the same local batch size (DDP's ``drop_last=True`` sampler); a mismatch
raises an error instead of silently mixing samples.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when torch.distributed is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _check_same_size(t: Tensor) -> None:
    size = torch.tensor([t.shape[0]], device=t.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    found = [int(s.item()) for s in sizes]
    if len(set(found)) != 1:
        raise ValueError(
            f"gathering a contrastive batch needs the same batch size on every rank, got {found} "
            "(rank order); use a sampler with drop_last=True"
        )


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward = all-reduce (sum) of the full gradient, own slice kept."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:  # noqa: D102
        t = t.contiguous()
        ctx.rank, ctx.rows = dist.get_rank(), t.shape[0]
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(t: Tensor) -> Tensor:
    """Concatenate ``t`` (B, ...) from all ranks along dim 0, differentiably.

    Identity when torch.distributed is not initialised or the world size is 1.

    Args:
        t: (B, ...) local tensor, same B on every rank.

    Returns:
        (world_size * B, ...) tensor; rows ``r*B:(r+1)*B`` come from rank r.
    """
    if not is_distributed():
        return t
    _check_same_size(t)
    return _GatherWithGrad.apply(t)


def gather_no_grad(t: Tensor) -> Tensor:
    """Concatenate ``t`` (B, ...) from all ranks along dim 0 (labels, metadata; no graph)."""
    if not is_distributed():
        return t
    _check_same_size(t)
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=0)
