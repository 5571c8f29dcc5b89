"""Contrastive pretraining: encoder → projection head → loss on V augmented views.

All contrastive methods share this composition and differ only in which loss they use and
which batch metadata they pass to it (none, continuous metadata, class labels, bias labels).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from medssl.heads import ProjectionHead
from medssl.methods.base import Method, StepOutput
from medssl.registry import METHODS
from medssl.transforms.views import make_views


class ContrastiveMethod(Method):
    """Generic contrastive method.

    Args:
        encoder: any registered encoder.
        loss: a contrastive loss ``(features (N, V, D), labels) -> scalar``.
        views: a :class:`~medssl.transforms.views.ViewPipeline` (random views of a batch).
        n_views: V views per sample (2 in SimCLR).
        proj_hidden_dim, proj_dim: projection head sizes.
        label_keys: batch keys passed to the loss as labels: none → label-free; one int key
            (e.g. "label") → class labels (B,); float keys (e.g. ["age"]) → metadata (B, K).
        continuous: True when ``label_keys`` are continuous metadata (stacked as float (B, K)).
        fairkl: optional FairKL regulariser ``(features, labels, bias) -> scalar``.
        fairkl_weight: its weight λ.
        bias_key: batch key of the bias labels (e.g. "site").
        views_per_pass: "joint" encodes all B·V views in one pass, so BatchNorm statistics span every
            view; "separate" runs one pass per view (B samples each), as the stock MONAI recipe and
            nidl do.
    """

    def __init__(self, encoder: nn.Module, loss: nn.Module, views, n_views: int = 2,
                 proj_hidden_dim: int = 512, proj_dim: int = 128, label_keys: Sequence[str] = (),
                 continuous: bool = False, fairkl: nn.Module | None = None, fairkl_weight: float = 0.0,
                 bias_key: str = "site", views_per_pass: str = "joint") -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = ProjectionHead(encoder.out_dim, proj_hidden_dim, proj_dim)
        self.loss, self.views, self.n_views = loss, views, n_views
        self.label_keys, self.continuous = list(label_keys), continuous
        self.fairkl, self.fairkl_weight, self.bias_key = fairkl, fairkl_weight, bias_key
        if views_per_pass not in ("joint", "separate"):
            raise ValueError(f"views_per_pass must be 'joint' or 'separate', got {views_per_pass!r}")
        self.views_per_pass = views_per_pass

    def make_views(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, C, *S) → (B, V, C, *crop), independent random parameters per sample and view."""
        return make_views(self.views, x, self.n_views, generator)

    def labels(self, batch: dict) -> torch.Tensor | None:
        if not self.label_keys:
            return None
        if self.continuous:
            return torch.stack([batch[k].float() for k in self.label_keys], dim=1)
        # missing values (NaN ages, -1 codes) are refused by the loss after gathering, so on every rank
        return batch[self.label_keys[0]]

    def embed(self, views: torch.Tensor) -> torch.Tensor:
        """(B, V, C, *S) → projections (B, V, D)."""
        b, v = views.shape[:2]
        if self.views_per_pass == "separate":
            return torch.stack([self.projector(self.encoder(views[:, i])) for i in range(v)], dim=1)
        z = self.projector(self.encoder(views.flatten(0, 1)))
        return z.view(b, v, -1)

    def training_step(self, batch: dict, generator: torch.Generator) -> StepOutput:
        z = self.embed(self.make_views(batch["image"], generator))
        labels = self.labels(batch)
        loss = self.loss(z, labels)
        logs = {"contrastive": loss.detach()}
        if self.fairkl is not None and self.fairkl_weight > 0:
            # FairKL targets: class labels when given, else None = each sample its own class (FairKL numbers
            # the samples after gathering across ranks, so ids never collide under DDP).
            target = labels if labels is not None and not self.continuous else None
            reg = self.fairkl(z, target, batch[self.bias_key])
            loss = loss + self.fairkl_weight * reg
            logs["fairkl"] = reg.detach()
        return StepOutput(loss=loss, logs=logs)


@METHODS.register("simclr")
class SimCLR(ContrastiveMethod):
    """SimCLR (Chen et al., ICML 2020): NT-Xent between views, no metadata."""

    default_loss = "ntxent"


@METHODS.register("yaware")
class YAware(ContrastiveMethod):
    """y-aware contrastive learning (Dufumier et al., MICCAI 2021): positives weighted by a
    kernel on continuous metadata (``method.metadata``, e.g. age)."""

    default_loss = "yaware"
    uses = "metadata"


@METHODS.register("supinfonce")
class SupInfoNCE(ContrastiveMethod):
    """ε-SupInfoNCE (Barbano et al., ICLR 2023); label-free unless ``method.label_column`` is
    set; optional FairKL on ``method.bias_column``."""

    default_loss = "eps_supinfonce"
    uses = "class"


@METHODS.register("contrastive_regression")
class ContrastiveRegression(ContrastiveMethod):
    """Contrastive regression (Barbano et al., ISBI 2023): L^exp by default, L^thr with
    ``method.loss.name=threshold``; kernel on ``method.metadata``."""

    default_loss = "exp"
    uses = "metadata"
