"""One numerically stable core for the whole contrastive family.

Every contrastive loss in :mod:`medssl.losses` is the same computation over the
``M x M`` logit matrix ``s_ab = <z_a, z_b> / T`` of the ``M = V*N`` stacked views (view-major:
row ``v*N + i`` is view ``v`` of sample ``i``). The anchor itself (``b = a``) never appears,
neither as a positive nor in a denominator. A loss only chooses:

* ``pos_weight`` ``P_ab >= 0``: how much pair (a, b) attracts (views of the same sample,
  class equality, or a kernel on metadata such as age). Normalised per anchor (``"row"``,
  weights ``P_ab / sum_c P_ac``) or, as in Dufumier's released code, per column
  (``"column"``, ``P_ab / sum_c P_bc``).
* the denominator, either

  - ``"shared"``: one per anchor, ``D_a = sum_{k != a} r_ak exp(u_ak)`` with pair weights
    ``r`` (default 1; 0 removes a pair, ``exp(-eps)`` down-weights it) and denominator logits
    ``u`` (default ``s``); or
  - ``"lower"``: one per positive, ``D_ab = exp(s_ab - margin) + sum_{k != a, P_ak < P_ab}
    exp(s_ak)``: only pairs attracting less than the positive repel it (ε-SupInfoNCE with
    binary weights, L^thr with kernel weights). Computed with one sort per row, tie-aware
    ranks and a log-cumsum-exp, so memory is O(M^2), never an O(M^3) mask.
* how several positives are combined: ``"outside"`` (weighted mean of log-ratios,
  ``-sum_b P~_ab (s_ab - log D_ab)``) or ``"inside"`` (log of the weighted mean,
  ``-(log sum_b P~_ab exp(s_ab) - log D_a)``).

Everything runs through max-shifted sums of exponentials, so a temperature of 0.01 does not
overflow. Anchors with no positive weight (or an empty shared denominator) contribute
exactly 0, with finite gradients.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

COMBINES = ("outside", "inside")
DENOMINATORS = ("shared", "lower")
NORMALISATIONS = ("row", "column")


def stack_views(features: Tensor) -> Tensor:
    """(N, V, D) → (V*N, D), view-major: row ``v*N + i`` is view ``v`` of sample ``i``."""
    n, v, d = features.shape
    return features.transpose(0, 1).reshape(v * n, d)


def tile_labels(labels: Tensor, n_views: int) -> Tensor:
    """(N, ...) labels → (V*N, ...) in the view-major order of :func:`stack_views`."""
    return labels.repeat(n_views, *([1] * (labels.dim() - 1)))


def off_diagonal(m: int, device: torch.device) -> Tensor:
    """(m, m) bool mask, False on the diagonal (the anchor-self pairs)."""
    return ~torch.eye(m, dtype=torch.bool, device=device)


def weighted_logsumexp(x: Tensor, weight: Tensor, extra: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Row-wise ``log(sum_k weight_k exp(x_k) + extra)``, stable, with empty rows handled.

    Args:
        x: (M, K) logits.
        weight: (M, K) non-negative weights; 0 removes an entry (its ``x`` is never used).
        extra: optional ((M,) log of an additive term, e.g. ``log(1e-6) + rowmax``).

    Returns:
        ``(value, nonempty)``, both (M,). Rows with nothing to sum get value 0 and
        ``nonempty=False`` (the caller must drop them); their gradient is 0, never NaN.
    """
    use = weight > 0
    nonempty = use.any(dim=1) if extra is None else torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    m = torch.where(use, x, torch.full_like(x, -math.inf)).amax(dim=1).detach()
    if extra is not None:
        m = torch.maximum(m, extra.detach())
    # Emptiness comes from the weights, never from the values: NaN/Inf logits must propagate
    # (a diverging run has to be seen by the trainer), not be dropped as "empty" rows.
    m = torch.where(nonempty, m, torch.zeros_like(m))
    shifted = torch.where(use, x - m[:, None], torch.zeros_like(x))
    total = (weight * torch.exp(shifted)).sum(dim=1)
    if extra is not None:
        total = total + torch.exp(extra - m)
    nonempty = nonempty & (total != 0)  # weights that underflow to 0; NaN != 0 keeps NaN rows
    total = torch.where(nonempty, total, torch.ones_like(total))
    return torch.log(total) + m, nonempty


def strict_rank(key: Tensor) -> tuple[Tensor, Tensor]:
    """Per row, how many entries are strictly smaller than each entry (ties share a rank).

    Args:
        key: (M, K) values compared within each row.

    Returns:
        ``(rank, order)``: (M, K) int64 counts in the original positions, and the (M, K)
        permutation that sorts each row (``key.sort(dim=1).indices``).
    """
    sorted_key, order = key.sort(dim=1)
    position = torch.arange(key.shape[1], device=key.device, dtype=torch.int32).expand(key.shape)
    starts_group = torch.ones_like(sorted_key, dtype=torch.bool)
    starts_group[:, 1:] = sorted_key[:, 1:] != sorted_key[:, :-1]
    # Position of the first member of each tie group = number of strictly smaller entries.
    first = torch.where(starts_group, position, torch.zeros_like(position)).cummax(dim=1).values
    rank = torch.empty(key.shape, dtype=torch.int64, device=key.device).scatter_(1, order, first.long())
    return rank, order


def lower_logsumexp(logits: Tensor, pos_weight: Tensor, binary: bool) -> tuple[Tensor, Tensor]:
    """``log sum_{k != a, P_ak < P_ab} exp(s_ak)`` for every pair (a, b), in O(M^2) memory.

    Each row's weights are sorted once; ``logcumsumexp`` of the logits in that order gives,
    for every threshold, the log-sum over all strictly lower-weighted pairs, and the rank of
    ``P_ab`` in its row (ties are not lower) says where to read it.

    Args:
        logits: (M, M) ``s``; diagonal ignored.
        pos_weight: (M, M) ``P``; diagonal ignored.
        binary: ``P`` only takes the values 0 and one positive value per row (class
            equality): then the lower set of every positive is the anchor's negatives, and the
            sort is skipped.

    Returns:
        ``(value, nonempty)``, both (M, M); value is 0 where the lower set is empty.
    """
    m = logits.shape[0]
    offdiag = off_diagonal(m, logits.device)
    if binary:
        negatives = (pos_weight <= 0) & offdiag
        value, nonempty = weighted_logsumexp(logits, negatives.to(logits.dtype))
        return value[:, None].expand(m, m), nonempty[:, None].expand(m, m)
    # The anchor itself sorts last (+inf key) and is never strictly below any finite weight.
    rank, order = strict_rank(pos_weight.detach().masked_fill(~offdiag, math.inf))
    cumulative = torch.logcumsumexp(logits.gather(1, order), dim=1)
    nonempty = rank > 0
    value = cumulative.gather(1, (rank - 1).clamp_min_(0))
    return torch.where(nonempty, value, torch.zeros_like(value)), nonempty


def normalise_weights(pos_weight: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    """Zero the diagonal and normalise per anchor; returns ``(P~, has_positive)`` (M, M), (M,)."""
    m = pos_weight.shape[0]
    p = pos_weight * off_diagonal(m, pos_weight.device).to(pos_weight.dtype)
    row = p.sum(dim=1)
    has_positive = row > 0
    if mode == "row":
        return p / torch.where(has_positive, row, torch.ones_like(row))[:, None], has_positive
    if mode == "column":  # entry (a, b) divided by the weight sum of row b (Dufumier's code)
        return p / torch.where(has_positive, row, torch.ones_like(row))[None, :], has_positive
    raise ValueError(f"weight normalisation must be one of {NORMALISATIONS}, got {mode!r}")


def contrastive_core(
    logits: Tensor,
    pos_weight: Tensor,
    *,
    denominator: str = "shared",
    denom_weight: Tensor | None = None,
    denom_logits: Tensor | None = None,
    margin: float = 0.0,
    binary: bool = False,
    combine: str = "outside",
    normalisation: str = "row",
    denominator_eps: float = 0.0,
) -> Tensor:
    """Per-anchor contrastive loss, the one computation behind every loss of the family.

    Args:
        logits: (M, M) ``s_ab = <z_a, z_b> / T`` (diagonal ignored).
        pos_weight: (M, M) ``P_ab >= 0`` attraction weights (diagonal ignored, no gradient).
        denominator: ``"shared"`` or ``"lower"`` (see module docstring).
        denom_weight: (M, M) ``r_ak >= 0`` for ``"shared"``; default 1 off the diagonal.
        denom_logits: (M, M) ``u_ak`` for ``"shared"``; default ``logits`` (L^exp passes
            ``s (1 - w)``).
        margin: ε of ``"lower"``: the positive's own term is ``exp(s_ab - ε)``.
        binary: see :func:`lower_logsumexp`.
        combine: ``"outside"`` (mean of logs) or ``"inside"`` (log of mean; ``"shared"`` only).
        normalisation: ``"row"`` (per anchor) or ``"column"`` (Dufumier's released code).
        denominator_eps: adds ``eps * exp(max_k s_ak)`` (max including the anchor itself) to
            every denominator; 1e-6 reproduces the EIDOSLAB ε-losses, which add 1e-6 after
            shifting each row by its maximum. 0 (default) adds nothing.

    Returns:
        (M,) loss of each anchor; exactly 0 for anchors without positives or with an empty
        shared denominator.
    """
    if denominator not in DENOMINATORS:
        raise ValueError(f"denominator must be one of {DENOMINATORS}, got {denominator!r}")
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
    m = logits.shape[0]
    offdiag = off_diagonal(m, logits.device)
    weights, valid = normalise_weights(pos_weight.detach(), normalisation)
    extra = None
    if denominator_eps > 0:
        row_max = logits.detach().amax(dim=1)  # includes the anchor itself, as the reference
        extra = math.log(denominator_eps) + row_max

    if denominator == "lower":
        if combine != "outside":
            raise ValueError("denominator='lower' has one denominator per positive; use combine='outside'")
        # Diagonal → 0: a masked one (±inf, NaN) would reach the gradient through logaddexp / logcumsumexp.
        logits = torch.where(offdiag, logits, torch.zeros_like(logits))
        lower, has_lower = lower_logsumexp(logits, pos_weight.detach(), binary)
        log_den = logits - margin
        log_den = torch.where(has_lower, torch.logaddexp(log_den, lower), log_den)
        if extra is not None:
            log_den = torch.logaddexp(log_den, extra[:, None])
        per_pair = torch.where(weights > 0, logits - log_den, torch.zeros_like(logits))
        loss = -(weights * per_pair).sum(dim=1)
        return torch.where(valid, loss, torch.zeros_like(loss))

    r = offdiag.to(logits.dtype) if denom_weight is None else denom_weight * offdiag
    u = logits if denom_logits is None else denom_logits
    log_den, nonempty = weighted_logsumexp(u, r, extra)
    valid = valid & nonempty
    if combine == "outside":
        safe_logits = torch.where(offdiag, logits, torch.zeros_like(logits))
        loss = -((weights * safe_logits).sum(dim=1) - weights.sum(dim=1) * log_den)
    else:
        log_num, _ = weighted_logsumexp(logits, weights)
        loss = -(log_num - log_den)
    return torch.where(valid, loss, torch.zeros_like(loss))
