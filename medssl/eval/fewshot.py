"""Few-label curves: the downstream score when only 1 %, 10 % or 100 % of the training labels are kept.

A self-supervised encoder is most useful when labels are scarce; these curves show it. For
each fraction and seed, a subject-level subset of the labelled training rows is drawn
(stratified by class for classification), a probe or a fine-tuning run is fitted on it
alone, and it is scored on the *full*, unchanged test split. The subsets are nested across
fractions for a given seed (the 1 % subjects are inside the 10 % subset), so a curve is not
jagged because of different draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

DEFAULT_FRACTIONS = (0.01, 0.1, 1.0)
DEFAULT_SEEDS = (0, 1, 2)


def subsample_subjects(rows: np.ndarray, subjects: np.ndarray, fraction: float, seed: int,
                       y: np.ndarray | None = None, min_per_class: int = 2, min_subjects: int = 3) -> np.ndarray:
    """A seeded subject-level subset of ``rows`` holding about ``fraction`` of their subjects.

    Args:
        rows: (N,) indices of the labelled training rows.
        subjects: subject id of every row of the full table (indexed by ``rows``).
        fraction: in (0, 1]; the number of subjects kept is ``ceil(fraction · n_subjects)``,
            raised to ``min_subjects`` (regression) or ``min_per_class`` per class
            (classification: pass ``y``) so that the probe's inner CV can run. The actual
            count is what the curves report.
        seed: NumPy seed. For one seed, smaller fractions give subsets of larger ones.
        y: class code of every row (classification; subjects are stratified by the class
            of their first row), or None.

    Returns:
        Sorted indices (a subset of ``rows``).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    rows = np.asarray(rows)
    subj = np.asarray(subjects)[rows]
    order, first = np.unique(subj, return_index=True)
    rng = np.random.default_rng(seed)
    n_total = len(order)
    n_keep = math.ceil(fraction * n_total)
    if y is None:
        perm = order[rng.permutation(n_total)]
        keep = set(perm[: min(n_total, max(n_keep, min_subjects))])
    else:
        cls = np.asarray(y)[rows][first]
        keep = set()
        per_class = {c: order[cls == c][rng.permutation(int(np.sum(cls == c)))] for c in np.unique(cls)}
        # per class: the first ceil(fraction · n_class) of one seeded permutation (at least min_per_class)
        for c, members in per_class.items():
            share = max(min_per_class, math.ceil(fraction * len(members)))
            keep.update(members[: min(len(members), share)])
    return np.sort(rows[np.isin(subj, list(keep))])


def label_fraction_curve(fit_score: Callable[[np.ndarray, int], dict], rows: np.ndarray, subjects: np.ndarray,
                         metric: str, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                         seeds: Sequence[int] = DEFAULT_SEEDS, y: np.ndarray | None = None) -> dict:
    """Run ``fit_score(train_rows, seed) -> metrics`` for every fraction × seed.

    At fraction 1.0 every seed uses the same rows, so only the first seed is run there
    (a deterministic probe would repeat itself); fine-tuning callers can pass several
    fractions < 1 for seed variance.

    Args:
        fit_score: fits on the given training rows (never the test rows) and returns a dict
            of test metrics containing ``metric``.
        rows, subjects, y: as :func:`subsample_subjects`.
        metric: the metric to summarise (e.g. ``"mae"``, ``"balanced_accuracy"``).

    Returns:
        ``{"metric", "points": [{"fraction", "seed", "n_subjects", "n_rows", metric}],
        "summary": [{"fraction", "n_subjects", "mean", "std" (None for one seed), "n_seeds"}]}``.
    """
    points = []
    for fraction in fractions:
        for seed in (seeds[:1] if fraction >= 1 else seeds):
            sub = subsample_subjects(rows, subjects, fraction, seed, y)
            res = fit_score(sub, seed)
            points.append({"fraction": float(fraction), "seed": int(seed), "n_rows": int(len(sub)),
                           "n_subjects": int(len(np.unique(np.asarray(subjects)[sub]))), metric: float(res[metric])})
    summary = []
    for fraction in fractions:
        vals = [p for p in points if p["fraction"] == float(fraction)]
        v = np.array([p[metric] for p in vals])
        summary.append({"fraction": float(fraction), "n_subjects": int(np.mean([p["n_subjects"] for p in vals])),
                        "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None,  # one seed: no spread
                        "n_seeds": len(v)})
    return {"metric": metric, "points": points, "summary": summary}
