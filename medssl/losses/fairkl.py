"""FairKL debiasing regulariser (Barbano et al., "Unbiased supervised contrastive learning", ICLR 2023).

Pairs are split by target label and by bias label (e.g. acquisition site):

* positives (same label): bias-aligned (same site) vs bias-conflicting (other site);
* negatives (other label): bias-aligned vs bias-conflicting.

FairKL fits a Gaussian to the similarities of each group and asks the aligned and conflicting
distributions to match, so that the site does not change how similar two scans look. As in the
authors' released function we use the moment-matching form::

    L = (mu_pc - mu_pa)^2 + (mu_na - mu_nc)^2
        + kld * ((sd_pa - sd_pc)^2 + (sd_na - sd_nc)^2)
        - mu_pc + mu_na

(p/n = positive/negative, a/c = aligned/conflicting); the last two terms pull conflicting
positives together and push aligned negatives apart. Terms that involve a group absent from
the batch (or, for a std, with fewer than 2 pairs) are dropped. It is a regulariser: add it,
with a weight, to a contrastive loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medssl.losses.base import LOW_PRECISION, check_class_codes, check_labels
from medssl.losses.core import off_diagonal, stack_views, tile_labels
from medssl.losses.distributed import gather_no_grad, gather_with_grad
from medssl.registry import LOSSES


def _group_stats(sim: Tensor, mask: Tensor, std_over: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Mean and unbiased std of ``sim`` over ``mask``, and whether each is defined (0/1)."""
    maskf = mask.to(sim.dtype)
    count = maskf.sum()
    masked = sim * maskf
    mean = masked.sum() / count.clamp_min(1)
    if std_over == "matrix":  # released code: std of the whole masked matrix, zeros included
        var = masked.var()
    else:
        var = ((sim - mean).square() * maskf).sum() / (count - 1).clamp_min(1)
    return mean, torch.sqrt(var.clamp_min(1e-12)), (count > 0).to(sim.dtype), (count > 1).to(sim.dtype)


@LOSSES.register("fairkl")
class FairKLLoss(nn.Module):
    """FairKL regulariser: ``loss(features, labels, bias_labels) -> scalar``.

    Args:
        temperature: T dividing the cosine similarities (paper scripts: 1.0).
        kld: weight of the standard-deviation (KL) term (paper scripts: 1.0).
        include_self: also count the anchor-self pairs (similarity 1/T) in the
            same-label/same-bias group, as the released code does. Default False: self
            pairs are excluded, as everywhere in medssl.
        std_over: ``"group"`` (default): std of the similarities inside each group;
            ``"matrix"``: unbiased std of the whole masked M x M matrix with zeros outside the
            group, as the released code computes it.
        gather_distributed: gather the global batch across ranks (see
            :mod:`medssl.losses.distributed`).
    """

    def __init__(
        self,
        temperature: float = 1.0,
        kld: float = 1.0,
        include_self: bool = False,
        std_over: str = "group",
        gather_distributed: bool = True,
    ):
        super().__init__()
        if not 0 < temperature < math.inf:  # T = inf: constant similarities, zero gradient
            raise ValueError(f"FairKLLoss: temperature must be > 0 and finite, got {temperature}")
        if std_over not in ("group", "matrix"):
            raise ValueError(f"FairKLLoss: std_over must be 'group' or 'matrix', got {std_over!r}")
        self.temperature, self.kld = float(temperature), float(kld)
        self.include_self, self.std_over = include_self, std_over
        self.gather_distributed = gather_distributed

    def forward(self, features: Tensor, labels: Tensor | None, bias_labels: Tensor) -> Tensor:
        """Compute the regulariser.

        Args:
            features: (N, V, D) or (N, D) embeddings (normalised here).
            labels: (N,) int target classes, or None: each sample is its own class (its
                views are the positives), numbered over the global batch under DDP.
            bias_labels: (N,) int bias classes (e.g. site ids).

        Returns:
            Scalar tensor, differentiable w.r.t. features.
        """
        if features.dim() == 2:
            features = features[:, None, :]
        if features.dim() != 3:
            raise ValueError(f"FairKLLoss: features must be (N, V, D) or (N, D), got {tuple(features.shape)}")
        n = features.shape[0]
        labels = check_labels(labels, n, "FairKLLoss (labels)")
        bias_labels = check_labels(bias_labels, n, "FairKLLoss (bias_labels)")
        if bias_labels is None or bias_labels.dim() != 1 or (labels is not None and labels.dim() != 1):
            raise ValueError("FairKLLoss: bias_labels must be given as an (N,) class tensor, labels as (N,) or None")
        bias_labels = bias_labels.to(features.device)
        labels = None if labels is None else labels.to(features.device)
        if self.gather_distributed:
            features = gather_with_grad(features)
            bias_labels = gather_no_grad(bias_labels)
            labels = None if labels is None else gather_no_grad(labels)
        check_class_codes(labels, "FairKLLoss (labels)")
        check_class_codes(bias_labels, "FairKLLoss (bias_labels)")
        if labels is None:  # sample identity, numbered after gathering so it is global
            labels = torch.arange(features.shape[0], device=features.device)
        n_views = features.shape[1]
        with torch.autocast(device_type=features.device.type, enabled=False):
            if features.dtype in LOW_PRECISION:
                features = features.float()
            z = stack_views(F.normalize(features, dim=-1))
            sim = z @ z.T / self.temperature
            y, b = tile_labels(labels, n_views), tile_labels(bias_labels, n_views)
            aligned = b[:, None] == b[None, :]
            same_label = y[:, None] == y[None, :]
            pos, neg = same_label, ~same_label  # the self pair is a same-label, aligned pair
            if not self.include_self:
                pos = pos & off_diagonal(z.shape[0], z.device)
            # Terms that involve a group absent from the batch are dropped (their factor is 0).
            mu_pa, sd_pa, has_pa, two_pa = _group_stats(sim, pos & aligned, self.std_over)
            mu_pc, sd_pc, has_pc, two_pc = _group_stats(sim, pos & ~aligned, self.std_over)
            mu_na, sd_na, has_na, two_na = _group_stats(sim, neg & aligned, self.std_over)
            mu_nc, sd_nc, has_nc, two_nc = _group_stats(sim, neg & ~aligned, self.std_over)
            mu_loss = has_pc * has_pa * (mu_pc - mu_pa).square() + has_na * has_nc * (mu_na - mu_nc).square()
            sd_loss = two_pa * two_pc * (sd_pa - sd_pc).square() + two_na * two_nc * (sd_na - sd_nc).square()
            return mu_loss + self.kld * sd_loss - has_pc * mu_pc + has_na * mu_na
