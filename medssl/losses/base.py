"""Shared plumbing of the contrastive losses: input checks, gathering, normalisation, logits.

Subclasses only say which pairs attract (``positive_weights``) and how the core is configured
(``anchor_losses``); the numerics live in :mod:`medssl.losses.core`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medssl.losses.core import stack_views, tile_labels
from medssl.losses.distributed import gather_no_grad, gather_with_grad

LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_features(features: Tensor, who: str) -> Tensor:
    """Validate (N, V, D) features; returns them unchanged."""
    if not isinstance(features, Tensor) or features.dim() != 3:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(
            f"{who}: features must be a (N, V, D) tensor (N samples, V views, D dims), got {shape}; "
            "for a single view use features.unsqueeze(1)"
        )
    if not features.is_floating_point():
        raise ValueError(f"{who}: features must be floating point, got {features.dtype}")
    return features


def check_labels(labels: Tensor | None, n: int, who: str) -> Tensor | None:
    """Validate labels: None, (N,) int classes, or (N,) / (N, K) float metadata."""
    if labels is None:
        return None
    labels = torch.as_tensor(labels)
    if labels.dim() not in (1, 2) or labels.shape[0] != n:
        raise ValueError(
            f"{who}: labels must have shape (N,) or (N, K) with N={n} (the features' first "
            f"dimension), got {tuple(labels.shape)}"
        )
    return labels


def check_class_codes(labels: Tensor | None, who: str) -> None:
    """Refuse negative class codes (``MetadataCoder``'s -1 = missing), which would act as one more class.

    Called on the gathered labels, so under DDP every rank raises together (a check before the
    gather would stop one rank and leave the others waiting in the collective).
    """
    if labels is None or labels.is_floating_point():
        return
    rows = torch.nonzero((labels < 0).reshape(len(labels), -1).any(dim=1)).flatten().tolist()
    if rows:
        raise ValueError(f"{who}: class codes are missing (negative; -1 = missing) in rows {rows[:10]} of the batch "
                         "(of the gathered global batch under DDP); class codes must be >= 0 (recode e.g. ±1 labels "
                         "as 0/1), and scans without a label must be left out of pretraining (medssl pretrain does "
                         "this and lists them in excluded_from_pretraining.tsv)")


def views_positive(n: int, n_views: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(V*N, V*N) 1 where two rows are views of the same sample (diagonal included)."""
    ids = torch.arange(n, device=device).repeat(n_views)
    return (ids[:, None] == ids[None, :]).to(dtype)


def class_positive(labels: Tensor, n_views: int, dtype: torch.dtype, who: str) -> Tensor:
    """(V*N, V*N) 1 where two rows share a class label (diagonal included)."""
    if labels.is_floating_point() or labels.dim() != 1:
        raise ValueError(
            f"{who}: class labels must be a (N,) integer tensor, got {labels.dtype} {tuple(labels.shape)}; "
            "cast binned classes with .long(), or use a kernel loss ('yaware', 'threshold', 'exp') "
            "for continuous metadata"
        )
    check_class_codes(labels, who)  # the gathered labels (positives are built after the gather): every rank
    tiled = tile_labels(labels, n_views)
    return (tiled[:, None] == tiled[None, :]).to(dtype)


class ContrastiveLoss(nn.Module):
    """Base class: ``loss(features (N, V, D), labels=None) -> scalar``.

    The forward pass (1) gathers features and labels from all ranks when
    ``gather_distributed`` and torch.distributed is initialised (see
    :mod:`medssl.losses.distributed` for the gradient convention), (2) L2-normalises the
    features (float32 at least, autocast disabled, so bf16/fp16 inputs are safe), (3) stacks
    views view-major into M = V*N rows, (4) builds the logits ``z z^T / T`` and (5) averages
    the per-anchor losses of the core over all M anchors (anchors without positives count
    as 0).

    Args:
        temperature: T > 0 dividing the cosine similarities.
        base_temperature: if set, the loss is multiplied by ``T / base_temperature`` (SupCon /
            EIDOSLAB convention, where 0.07 is used). None (default): no scaling.
        gather_distributed: gather the global batch across ranks (with gradients).
    """

    def __init__(self, temperature: float, base_temperature: float | None = None, gather_distributed: bool = True):
        super().__init__()
        if not 0 < temperature < math.inf:  # T = inf: constant logits, zero gradient (a silent no-op)
            raise ValueError(f"{type(self).__name__}: temperature must be > 0 and finite, got {temperature}")
        if base_temperature is not None and not 0 < base_temperature < math.inf:
            raise ValueError(f"{type(self).__name__}: base_temperature must be > 0 and finite, or None, "
                             f"got {base_temperature}")
        self.temperature = float(temperature)
        self.base_temperature = base_temperature
        self.gather_distributed = gather_distributed

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, base_temperature={self.base_temperature}"

    def anchor_losses(self, logits: Tensor, labels: Tensor | None, n: int, n_views: int) -> Tensor:
        """(M, M) logits → (M,) per-anchor losses. Implemented by each loss."""
        raise NotImplementedError

    def forward(self, features: Tensor, labels: Tensor | None = None) -> Tensor:
        """Compute the loss.

        Args:
            features: (N, V, D) embeddings, V views of N samples (any scale; normalised here).
            labels: None, (N,) int classes, or (N,) / (N, K) float metadata (e.g. age, years).

        Returns:
            Scalar tensor (float32 for low-precision input), differentiable w.r.t. features.
        """
        who = type(self).__name__
        features = check_features(features, who)
        labels = check_labels(labels, features.shape[0], who)
        if labels is not None:
            labels = labels.to(features.device)
        if self.gather_distributed:
            features = gather_with_grad(features)
            labels = None if labels is None else gather_no_grad(labels)
        n, n_views, _ = features.shape
        with torch.autocast(device_type=features.device.type, enabled=False):
            if features.dtype in LOW_PRECISION:
                features = features.float()
            z = stack_views(F.normalize(features, dim=-1))
            logits = z @ z.T / self.temperature
            loss = self.anchor_losses(logits, labels, n, n_views).mean()
        if self.base_temperature is not None:
            loss = loss * (self.temperature / self.base_temperature)
        return loss
