"""Kernel-weighted contrastive losses on continuous metadata: y-aware, L^thr, L^exp.

Positive weights are ``w_ab = K_sigma(y_a - y_b)`` on the (tiled) metadata, see
:mod:`medssl.losses.kernels`; the other view of the same sample has weight ``K(0)``. With
``labels=None`` the weights fall back to sample identity (the losses then reduce to
NT-Xent-like objectives). Integer labels are used as numbers (e.g. age in whole years).
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
from torch import Tensor

from medssl.losses.base import ContrastiveLoss, views_positive
from medssl.losses.core import contrastive_core, off_diagonal, strict_rank, tile_labels
from medssl.losses.kernels import KERNELS, bandwidths, kernel_weights
from medssl.registry import LOSSES


class _KernelLoss(ContrastiveLoss):
    kernel_on_metadata = True  #: positives weighted by a kernel on continuous metadata (checked against the method)

    def __init__(self, temperature, sigma, kernel, base_temperature, gather_distributed):
        super().__init__(temperature, base_temperature, gather_distributed)
        if kernel not in KERNELS:
            raise ValueError(f"{type(self).__name__}: unknown kernel {kernel!r}; choose one of {KERNELS}")
        n_dims = 1 if isinstance(sigma, (numbers.Real, str, bytes)) else len(sigma)
        bandwidths(sigma, n_dims, torch.device("cpu"), torch.float64)  # validates early
        self.sigma = float(sigma) if isinstance(sigma, numbers.Real) else tuple(float(s) for s in sigma)
        self.kernel = kernel

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sigma={self.sigma}, kernel={self.kernel!r}"

    def positive_weights(self, logits: Tensor, labels: Tensor | None, n: int, n_views: int) -> Tensor:
        """(M, M) kernel weights on the tiled metadata (views of one sample: K(0))."""
        if labels is None:
            return views_positive(n, n_views, logits.device, logits.dtype)
        if labels.dim() == 1 and isinstance(self.sigma, tuple) and len(self.sigma) != 1:
            raise ValueError(f"{type(self).__name__}: sigma has {len(self.sigma)} values but labels are (N,)")
        finite = torch.isfinite(labels) if labels.dim() == 1 else torch.isfinite(labels).all(dim=1)
        if not bool(finite.all()):  # a NaN weight empties every row: the loss would be a silent 0
            rows = torch.nonzero(~finite).flatten().tolist()
            raise ValueError(
                f"{type(self).__name__}: metadata (labels) has non-finite values (NaN = missing) in rows {rows[:10]} "
                "of the batch (of the gathered global batch under DDP); drop those samples or impute their values"
            )
        metadata = tile_labels(labels.to(logits.dtype), n_views)
        return kernel_weights(metadata, self.sigma, self.kernel)


@LOSSES.register("yaware")
class YAwareLoss(_KernelLoss):
    """y-aware InfoNCE (Dufumier et al., MICCAI 2021).

    ``l_a = -sum_{b != a} w~_ab log( exp(s_ab) / sum_{k != a} exp(s_ak) )`` with
    ``w~_ab = w_ab / sum_{c != a} w_ac`` (row normalisation, default). As sigma → 0 (distinct
    metadata) only the other view keeps weight and the loss is NT-Xent.

    Args:
        temperature: T (paper/code: 0.1).
        sigma: kernel bandwidth in metadata units (code default 5, ages in years); a float or
            one value per metadata column for (N, K) metadata.
        kernel: ``"rbf"`` (paper), ``"gaussian"`` or ``"cauchy"``; the scale of w cancels.
        weight_normalisation: ``"row"`` (per anchor, as the paper writes) or ``"column"``
            (entry (a,b) divided by the weight sum of b, as Dufumier's and nidl's code do;
            their value is then twice ours, because they sum the two per-view means).
    """

    def __init__(
        self,
        temperature: float = 0.1,
        sigma: float | Sequence[float] = 5.0,
        kernel: str = "rbf",
        weight_normalisation: str = "row",
        base_temperature: float | None = None,
        gather_distributed: bool = True,
    ):
        super().__init__(temperature, sigma, kernel, base_temperature, gather_distributed)
        if weight_normalisation not in ("row", "column"):
            raise ValueError(f"YAwareLoss: weight_normalisation must be 'row' or 'column', got {weight_normalisation!r}")
        self.weight_normalisation = weight_normalisation

    def anchor_losses(self, logits: Tensor, labels: Tensor | None, n: int, n_views: int) -> Tensor:
        weights = self.positive_weights(logits, labels, n, n_views)
        return contrastive_core(logits, weights, normalisation=self.weight_normalisation)


@LOSSES.register("threshold")
class ThresholdLoss(_KernelLoss):
    """L^thr, contrastive regression with a threshold (Barbano et al., ISBI 2023).

    ``form="paper"`` (default): a positive b of anchor a is repelled only by the samples that
    are less similar in metadata than b itself::

        l_a = -sum_b w~_ab log( exp(s_ab) / (exp(s_ab) + sum_{k != a, w_ak < w_ab} exp(s_ak)) )

    (row-normalised w~; ties are not "lower"). With binary weights this is SupInfoNCE.
    Computed by sorting each row once (O(M^2) memory, O(M^2 log M) time).

    ``form="released"``: what the authors' code computes (one denominator per anchor,
    ``sum_{b != a} c_ab exp(s_ab)`` with ``c_ab = #{c : w_bc < w_ab}``, divided by M when
    ``delta_reduction="mean"``), for comparison with published numbers.

    Args:
        temperature: T (code default 0.1).
        sigma, kernel: see :class:`YAwareLoss` (sigma default 2, metadata units; tune it).
        form: ``"paper"`` or ``"released"``.
        delta_reduction: ``"sum"`` or ``"mean"`` (``form="released"`` only).
    """

    def __init__(
        self,
        temperature: float = 0.1,
        sigma: float | Sequence[float] = 2.0,
        kernel: str = "rbf",
        form: str = "paper",
        delta_reduction: str = "sum",
        base_temperature: float | None = None,
        gather_distributed: bool = True,
    ):
        super().__init__(temperature, sigma, kernel, base_temperature, gather_distributed)
        if form not in ("paper", "released"):
            raise ValueError(f"ThresholdLoss: form must be 'paper' or 'released', got {form!r}")
        if delta_reduction not in ("sum", "mean"):
            raise ValueError(f"ThresholdLoss: delta_reduction must be 'sum' or 'mean', got {delta_reduction!r}")
        self.form, self.delta_reduction = form, delta_reduction

    def anchor_losses(self, logits: Tensor, labels: Tensor | None, n: int, n_views: int) -> Tensor:
        weights = self.positive_weights(logits, labels, n, n_views)
        if self.form == "paper":  # labels=None: identity weights, so the sort can be skipped
            return contrastive_core(logits, weights, denominator="lower", binary=labels is None)
        m = logits.shape[0]
        key = weights.masked_fill(~off_diagonal(m, logits.device), math.inf)  # self never counts
        # rank[b, a] = #{c != b : w_bc < w_ba}; kernel weights are symmetric, so w_ba = w_ab.
        counts = strict_rank(key)[0].T.to(logits.dtype)  # counts[a, b] = #{c : w_bc < w_ab}
        if self.delta_reduction == "mean":
            counts = counts / m
        return contrastive_core(logits, weights, denom_weight=counts)


@LOSSES.register("exp")
class ExpLoss(_KernelLoss):
    """L^exp, contrastive regression with exponential repulsion (Barbano et al., ISBI 2023).

    ``l_a = -sum_b w~_ab log( exp(s_ab) / sum_{k != a} exp(s_ak (1 - w_ak)) )``: a sample is
    repelled less the closer its metadata is to the anchor's (w = 1 → no repulsion).
    Meant for kernels with ``K(0) = 1`` (rbf, cauchy).

    Args:
        temperature, sigma, kernel: see :class:`ThresholdLoss`.
        row_max_shift: subtract each row's maximum logit (including the anchor itself, i.e.
            1/T) before applying ``(1 - w)``, as the released code does; this changes the
            value. False (default) is the formula above.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        sigma: float | Sequence[float] = 2.0,
        kernel: str = "rbf",
        row_max_shift: bool = False,
        base_temperature: float | None = None,
        gather_distributed: bool = True,
    ):
        super().__init__(temperature, sigma, kernel, base_temperature, gather_distributed)
        self.row_max_shift = row_max_shift

    def anchor_losses(self, logits: Tensor, labels: Tensor | None, n: int, n_views: int) -> Tensor:
        weights = self.positive_weights(logits, labels, n, n_views)
        if self.row_max_shift:
            logits = logits - logits.detach().amax(dim=1, keepdim=True)
        return contrastive_core(logits, weights, denom_logits=logits * (1.0 - weights))
