"""Evaluation metrics in plain NumPy, with bootstrap confidence intervals.

Regression (ages in years): MAE, RMSE, R², Pearson r, and the brain-age gap with the usual
linear bias correction. Classification: balanced accuracy, macro F1, ROC AUC (binary, or
one-vs-rest macro for several classes) and, for multi-label targets (chest X-ray findings),
per-class and macro AUC / F1. Each function is checked against scikit-learn in
``tests/eval/test_metrics.py``; they are written in NumPy so that thousands of bootstrap
replicates take milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error (unit of the target, e.g. years)."""
    return float(np.mean(np.abs(np.asarray(y_true, float) - np.asarray(y_pred, float))))


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error (unit of the target)."""
    return float(np.sqrt(np.mean(np.square(np.asarray(y_true, float) - np.asarray(y_pred, float)))))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination 1 − SS_res/SS_tot (sklearn's convention: 0 if SS_tot = 0 and the fit is perfect)."""
    y, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    ss_res, ss_tot = float(np.sum((y - p) ** 2)), float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return 1.0 - ss_res / ss_tot


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant."""
    y, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    y, p = y - y.mean(), p - p.mean()
    den = float(np.sqrt(np.sum(y * y) * np.sum(p * p)))
    return float(np.sum(y * p) / den) if den > 0 else 0.0


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``{"mae", "rmse", "r2", "pearson_r"}``."""
    return {"mae": mae(y_true, y_pred), "rmse": rmse(y_true, y_pred), "r2": r2(y_true, y_pred),
            "pearson_r": pearson_r(y_true, y_pred)}


def fit_age_bias(age: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Slope α and intercept β of ``pred ≈ α·age + β`` (least squares).

    Fit this on *training* subjects only, with out-of-sample predictions (e.g. from
    cross-validation); predictions of a model on its own training rows regress less to the
    mean and would under-correct.
    """
    age, pred = np.asarray(age, float), np.asarray(pred, float)
    if age.size < 2 or np.ptp(age) == 0:
        raise ValueError("the brain-age bias correction needs at least two training subjects of different ages")
    slope, intercept = np.polyfit(age, pred, 1)
    return float(slope), float(intercept)


def brain_age_gap(age: np.ndarray, pred: np.ndarray, bias: tuple[float, float] | None = None) -> dict:
    """Brain-age gap (predicted − true age, years), raw and bias-corrected.

    The correction is the usual linear one (Smith et al., NeuroImage 2019; de Lange & Cole,
    NeuroImage: Clinical 2020): with ``pred ≈ α·age + β`` fitted on training data,
    ``gap_corrected = pred − (α·age + β)``, i.e. the corrected prediction is
    ``pred + age − (α·age + β)``. It removes the regression-to-the-mean dependence of the gap
    on age. (The corrected prediction uses the true age: its MAE is not an accuracy metric.)

    Args:
        age, pred: (N,) true and predicted ages of the evaluated (test) subjects.
        bias: ``(α, β)`` from :func:`fit_age_bias` on training subjects; None → no correction.

    Returns:
        ``{"gap_mean", "gap_std", "gap_age_r"}`` for the raw gap and, with ``bias``, the same
        with a ``corrected_`` prefix plus ``"bias_slope"`` and ``"bias_intercept"``; and the
        per-subject arrays ``"gap"`` / ``"corrected_gap"`` (dropped from metrics.json).
    """
    age, pred = np.asarray(age, float), np.asarray(pred, float)
    gap = pred - age
    out = {"gap_mean": float(gap.mean()), "gap_std": float(gap.std()), "gap_age_r": pearson_r(age, gap), "gap": gap}
    if bias is not None:
        slope, intercept = bias
        corrected = pred - (slope * age + intercept)
        out.update(bias_slope=slope, bias_intercept=intercept, corrected_gap_mean=float(corrected.mean()),
                   corrected_gap_std=float(corrected.std()), corrected_gap_age_r=pearson_r(age, corrected),
                   corrected_gap=corrected)
    return out


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (chance = 1/#classes)."""
    y, p = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean([np.mean(p[y == c] == c) for c in np.unique(y)]))


def f1_macro(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes in ``y_true`` ∪ ``y_pred`` (sklearn's macro F1)."""
    y, p = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for c in np.union1d(y, p):
        tp, fp, fn = np.sum((p == c) & (y == c)), np.sum((p == c) & (y != c)), np.sum((p != c) & (y == c))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores))


def binary_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC = P(score_pos > score_neg) + ½·P(tie) (Mann–Whitney U); NaN if one class is absent."""
    y, s = np.asarray(y_true).astype(bool), np.asarray(score, float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average ranks of ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def multiclass_auc(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray | None = None) -> float:
    """One-vs-rest macro ROC AUC over the classes present in ``y_true``.

    Args:
        y_true: (N,) labels.
        proba: (N, K) scores, column k for ``classes[k]`` (default ``0..K-1``); for K = 2 the
            binary AUC of column 1 is returned.
    """
    proba = np.asarray(proba, float)
    classes = np.arange(proba.shape[1]) if classes is None else np.asarray(classes)
    if proba.shape[1] == 2:
        return binary_auc(np.asarray(y_true) == classes[1], proba[:, 1])
    aucs = [binary_auc(np.asarray(y_true) == c, proba[:, k]) for k, c in enumerate(classes) if np.any(y_true == c)]
    return float(np.nanmean(aucs)) if aucs else float("nan")


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None = None,
                           classes: np.ndarray | None = None) -> dict[str, float]:
    """``{"balanced_accuracy", "f1_macro", "accuracy"}`` plus ``"auc"`` when scores are given."""
    out = {"balanced_accuracy": balanced_accuracy(y_true, y_pred), "f1_macro": f1_macro(y_true, y_pred),
           "accuracy": float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))}
    if proba is not None:
        out["auc"] = multiclass_auc(y_true, proba, classes)
    return out


def multilabel_metrics(y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5,
                       names: list[str] | None = None) -> dict:
    """Per-class and macro AUC and F1 for multi-label targets (e.g. chest X-ray findings).

    Args:
        y_true: (N, K) 0/1 matrix.
        score: (N, K) probabilities (sigmoid outputs).
        threshold: decision threshold for F1 (a score ≥ ``threshold`` is a positive call).
        names: K class names (default ``"0".."K-1"``).

    Returns:
        ``{"auc_macro", "f1_macro", "per_class": {name: {"auc", "f1", "n_positive"}}}``; classes
        without positives or negatives in ``y_true`` get AUC NaN and are left out of the macro mean.
    """
    y, s = np.asarray(y_true).astype(int), np.asarray(score, float)
    names = names or [str(k) for k in range(y.shape[1])]
    per = {}
    for k, name in enumerate(names):
        p = (s[:, k] >= threshold).astype(int)
        tp, fp, fn = np.sum(p & y[:, k]), np.sum(p & (1 - y[:, k])), np.sum((1 - p) & y[:, k])
        per[name] = {"auc": binary_auc(y[:, k], s[:, k]), "f1": float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0,
                     "n_positive": int(y[:, k].sum())}
    aucs = [v["auc"] for v in per.values() if not np.isnan(v["auc"])]
    return {"auc_macro": float(np.mean(aucs)) if aucs else float("nan"),
            "f1_macro": float(np.mean([v["f1"] for v in per.values()])), "per_class": per}


def bootstrap_draws(n: int, n_boot: int, rng: np.random.Generator, groups: np.ndarray | None = None):
    """Row indices of ``n_boot`` bootstrap resamples of ``n`` rows.

    Rows are drawn with replacement, or whole subjects at a time when ``groups`` holds
    (n,) subject ids (a cluster bootstrap: repeated scans do not narrow the interval).

    Returns:
        an (n_boot, n) int array, or a list of ``n_boot`` index arrays of varying length
        when subjects have different numbers of rows.
    """
    if groups is None:
        return rng.integers(0, n, size=(n_boot, n))
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    picks = rng.integers(0, len(members), size=(n_boot, len(members)))
    draws = [np.concatenate([members[g] for g in row]) for row in picks]
    if all(len(m) == 1 for m in members):  # one row per subject: same draws as a row bootstrap
        draws = np.array(draws)
    return draws


def percentile_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, ignoring undefined (NaN) ones; ``(nan, nan)`` if none."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def bootstrap_ci(metric: Callable[..., float], *arrays: np.ndarray, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0, groups: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``metric(*arrays)`` over test rows.

    Rows are resampled with replacement (whole subjects at a time when ``groups`` holds
    subject ids, so repeated scans do not narrow the interval; :func:`bootstrap_draws`).
    Replicates where the metric is undefined (NaN, e.g. an AUC whose resample lacks a class;
    R² and Pearson r of a resample whose truths are all equal) are ignored.

    Args:
        metric: function of the arrays (e.g. :func:`mae`), returning a float.
        arrays: aligned arrays with N rows (truth, prediction, scores…).
        n_boot: number of bootstrap replicates.
        level: coverage, e.g. 0.95 for a 95 % interval.
        seed: NumPy seed (same seed → same interval).
        groups: (N,) subject ids for a cluster bootstrap.

    Returns:
        ``(low, high)``; ``(nan, nan)`` when fewer than 2 rows.
    """
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0])
    if n < 2:
        return float("nan"), float("nan")
    draws = bootstrap_draws(n, n_boot, np.random.default_rng(seed), groups)
    fast = _VECTORISED.get(metric)
    if fast is not None and isinstance(draws, np.ndarray) and len(arrays) == 2 and arrays[0].ndim == 1:
        values = fast(arrays[0][draws], arrays[1][draws])
    else:
        values = np.array([metric(*(a[d] for a in arrays)) for d in draws], float)
    if metric in (r2, pearson_r):  # a resample of one repeated truth has no R² / r (the point value's 0 is a convention)
        constant = [np.ptp(arrays[0][d]) == 0 for d in draws]
        values = np.where(constant, np.nan, values)
    return percentile_interval(values, level)


def with_ci(metrics: dict, fns: dict[str, Callable[..., float]], *arrays: np.ndarray, n_boot: int = 1000,
            seed: int = 0, groups: np.ndarray | None = None) -> dict:
    """Add ``"<name>_ci": [low, high]`` to ``metrics`` for every metric function in ``fns``."""
    for name, fn in fns.items():
        metrics[f"{name}_ci"] = list(bootstrap_ci(fn, *arrays, n_boot=n_boot, seed=seed, groups=groups))
    return metrics


def _r2_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    ss_res = np.sum((y - p) ** 2, axis=1)
    ss_tot = np.sum((y - y.mean(1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))


def _pearson_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    y, p = y - y.mean(1, keepdims=True), p - p.mean(1, keepdims=True)
    den = np.sqrt(np.sum(y * y, 1) * np.sum(p * p, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, np.sum(y * p, 1) / den, 0.0)


def _bacc_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    classes = np.unique(y)
    hits = np.stack([np.sum((y == c) & (p == c), 1) for c in classes])
    counts = np.stack([np.sum(y == c, 1) for c in classes])
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(counts > 0, hits / counts, np.nan)
    return np.nanmean(recall, axis=0)  # mean over the classes present in each replicate


def _f1_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    scores = []
    for c in np.union1d(np.unique(y), np.unique(p)):
        tp, fp, fn = (np.sum(a & b, 1) for a, b in (((p == c), (y == c)), ((p == c), (y != c)), ((p != c), (y == c))))
        den = 2 * tp + fp + fn
        with np.errstate(divide="ignore", invalid="ignore"):
            scores.append(np.where(den > 0, 2 * tp / den, np.nan))  # absent from y and p of a replicate: left out
    return np.nanmean(np.stack(scores), axis=0)


#: row-wise (one bootstrap replicate per row) versions of the metrics above, same values
_VECTORISED = {
    mae: lambda y, p: np.mean(np.abs(y.astype(float) - p), axis=1),
    rmse: lambda y, p: np.sqrt(np.mean((y.astype(float) - p) ** 2, axis=1)),
    r2: lambda y, p: _r2_rows(y.astype(float), p.astype(float)),
    pearson_r: lambda y, p: _pearson_rows(y.astype(float), p.astype(float)),
    balanced_accuracy: _bacc_rows,
    f1_macro: _f1_rows,
}
