"""InfoNCE-type losses with binary positives: NT-Xent, SupCon, decoupled, ε-SupInfoNCE, ε-SupCon.

Positives are the other views of the same sample (``labels=None``) or, with (N,) integer
class labels, every other row of the same class. Each class below is a configuration of
:func:`medssl.losses.core.contrastive_core`; see docs/losses.md for formulas and conventions.
"""

from __future__ import annotations

import math

from torch import Tensor

from medssl.losses.base import ContrastiveLoss, class_positive, views_positive
from medssl.losses.core import contrastive_core, normalise_weights, off_diagonal
from medssl.registry import LOSSES


class _BinaryPositives(ContrastiveLoss):
    """Positives from sample identity (labels=None) or class equality (int labels)."""

    def positive_weights(self, logits: Tensor, labels: Tensor | None, n: int, n_views: int) -> Tensor:
        if labels is None:
            return views_positive(n, n_views, logits.device, logits.dtype)
        return class_positive(labels, n_views, logits.dtype, type(self).__name__)


@LOSSES.register("ntxent")
class NTXentLoss(_BinaryPositives):
    """SimCLR NT-Xent (Chen et al., ICML 2020): the positive of an anchor is its other view(s).

    ``l_a = -mean_{b in views(a)} log( exp(s_ab) / sum_{k != a} exp(s_ak) )``, mean over the
    V*N anchors. Labels, if given, are ignored.

    Args:
        temperature: T (SimCLR: 0.1 with large batches; monai's default is 0.5).
        base_temperature, gather_distributed: see :class:`ContrastiveLoss`.
    """

    def __init__(self, temperature: float = 0.1, base_temperature: float | None = None, gather_distributed: bool = True):
        super().__init__(temperature, base_temperature, gather_distributed)

    def anchor_losses(self, logits: Tensor, labels: Tensor | None, n: int, n_views: int) -> Tensor:
        return contrastive_core(logits, self.positive_weights(logits, None, n, n_views))


@LOSSES.register("supcon")
class SupConLoss(_BinaryPositives):
    """Supervised contrastive loss, L_out (Khosla et al., NeurIPS 2020).

    ``l_a = -mean_{b: y_b = y_a, b != a} log( exp(s_ab) / sum_{k != a} exp(s_ak) )``. With
    ``labels=None`` it is NT-Xent. Anchors alone in their class (one view) contribute 0.

    Args:
        temperature: T (paper: 0.1). ``base_temperature=0.07`` reproduces the paper code's
            ``T/0.07`` scaling.
    """

    def __init__(self, temperature: float = 0.1, base_temperature: float | None = None, gather_distributed: bool = True):
        super().__init__(temperature, base_temperature, gather_distributed)

    def anchor_losses(self, logits: Tensor, labels: Tensor | None, n: int, n_views: int) -> Tensor:
        return contrastive_core(logits, self.positive_weights(logits, labels, n, n_views))


@LOSSES.register("decoupled")
class DecoupledLoss(_BinaryPositives):
    """Decoupled contrastive loss (Yeh et al., ECCV 2022): positives leave the denominator.

    ``l_a = -mean_{b in pos(a)} ( s_ab - log sum_{k in neg(a)} exp(s_ak) )``. Works label-free
    or with class labels; anchors without negatives contribute 0.
    """

    def __init__(self, temperature: float = 0.1, base_temperature: float | None = None, gather_distributed: bool = True):
        super().__init__(temperature, base_temperature, gather_distributed)

    def anchor_losses(self, logits: Tensor, labels: Tensor | None, n: int, n_views: int) -> Tensor:
        positives = self.positive_weights(logits, labels, n, n_views)
        return contrastive_core(logits, positives, denom_weight=1.0 - positives)


@LOSSES.register("eps_supinfonce")
class EpsSupInfoNCELoss(_BinaryPositives):
    """ε-SupInfoNCE (Barbano et al., "Unbiased supervised contrastive learning", ICLR 2023).

    ``form="out"`` (default, the paper's loss): for every positive p of anchor a,
    ``-log( exp(s_ap) / (exp(s_ap - ε) + sum_{n in neg(a)} exp(s_an)) )``, averaged over a's
    positives. Each positive sees only itself and the negatives, never the other positives.

    ``form="in"``: ``-log( mean_p exp(s_ap) / (exp(-ε) mean_p exp(s_ap) + sum_n exp(s_an)) )``
    (the average over positives inside the log). The released code puts the *sum* over
    positives in the numerator; that is ``log(#positives)`` per anchor more negative
    (same gradients).

    Label-free with ``labels=None`` (positive = other view(s)), supervised with int labels.
    ε = 0 gives SupInfoNCE / InfoNCE. ε is in logit units (it is subtracted after dividing by T).

    Args:
        temperature: T (paper: 0.1).
        epsilon: margin ε >= 0 (0 = no margin; the paper tunes e.g. 0.1, 0.25, 0.5).
        form: ``"out"`` or ``"in"``.
        denominator_eps: finite, >= 0; 1e-6 reproduces the released code's ``+1e-6`` after its row-max
            shift (see :func:`contrastive_core`); 0 (default) is the exact formula.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        epsilon: float = 0.0,
        form: str = "out",
        base_temperature: float | None = None,
        denominator_eps: float = 0.0,
        gather_distributed: bool = True,
    ):
        super().__init__(temperature, base_temperature, gather_distributed)
        if form not in ("out", "in"):
            raise ValueError(f"EpsSupInfoNCELoss: form must be 'out' or 'in', got {form!r}")
        if not (epsilon >= 0 and math.isfinite(epsilon)):
            raise ValueError(f"EpsSupInfoNCELoss: epsilon must be a finite number >= 0, got {epsilon}")
        if not (denominator_eps >= 0 and math.isfinite(denominator_eps)):
            raise ValueError(f"EpsSupInfoNCELoss: denominator_eps must be a finite number >= 0, got {denominator_eps}")
        self.epsilon, self.form, self.denominator_eps = float(epsilon), form, float(denominator_eps)

    def anchor_losses(self, logits: Tensor, labels: Tensor | None, n: int, n_views: int) -> Tensor:
        positives = self.positive_weights(logits, labels, n, n_views)
        if self.form == "out":
            return contrastive_core(
                logits, positives, denominator="lower", margin=self.epsilon, binary=True,
                denominator_eps=self.denominator_eps,
            )
        mean_weights, _ = normalise_weights(positives, "row")
        negatives = (positives <= 0) & off_diagonal(logits.shape[0], logits.device)
        denom_weight = negatives.to(logits.dtype) + math.exp(-self.epsilon) * mean_weights
        return contrastive_core(
            logits, positives, denom_weight=denom_weight, combine="inside", denominator_eps=self.denominator_eps
        )


@LOSSES.register("eps_supcon")
class EpsSupConLoss(_BinaryPositives):
    """ε-SupCon (Barbano et al., ICLR 2023): SupCon with all positives down-weighted by e^{-ε}.

    ``l_a = -mean_p log( exp(s_ap) / (e^{-ε} sum_{p'} exp(s_ap') + sum_n exp(s_an)) )``: one
    denominator per anchor that contains every positive. ε = 0 gives SupCon.

    Args:
        temperature, epsilon, denominator_eps: as :class:`EpsSupInfoNCELoss`.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        epsilon: float = 0.0,
        base_temperature: float | None = None,
        denominator_eps: float = 0.0,
        gather_distributed: bool = True,
    ):
        super().__init__(temperature, base_temperature, gather_distributed)
        if not (epsilon >= 0 and math.isfinite(epsilon)):
            raise ValueError(f"EpsSupConLoss: epsilon must be a finite number >= 0, got {epsilon}")
        if not (denominator_eps >= 0 and math.isfinite(denominator_eps)):
            raise ValueError(f"EpsSupConLoss: denominator_eps must be a finite number >= 0, got {denominator_eps}")
        self.epsilon, self.denominator_eps = float(epsilon), float(denominator_eps)

    def anchor_losses(self, logits: Tensor, labels: Tensor | None, n: int, n_views: int) -> Tensor:
        positives = self.positive_weights(logits, labels, n, n_views)
        denom_weight = 1.0 + (math.exp(-self.epsilon) - 1.0) * positives
        return contrastive_core(logits, positives, denom_weight=denom_weight, denominator_eps=self.denominator_eps)
