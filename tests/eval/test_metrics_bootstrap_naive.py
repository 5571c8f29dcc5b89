"""Bootstrap intervals (``medssl/eval/metrics.py``) against a naive bootstrap written here: the same units
(subjects) drawn with the same NumPy generator, each replicate scored by SciPy / scikit-learn, the same percentiles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from medssl.eval import metrics as M


def _naive_subject_draws(groups: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """Whole subjects drawn with replacement, subjects numbered in sorted order of their ids."""
    ids = sorted(set(groups.tolist()))
    rows = [np.flatnonzero(groups == s) for s in ids]
    picks = np.random.default_rng(seed).integers(0, len(ids), size=(n_boot, len(ids)))
    return [np.concatenate([rows[j] for j in pick]) for pick in picks]


@pytest.mark.parametrize("level, tails", [(0.95, (2.5, 97.5)), (0.9, (5.0, 95.0)), (0.5, (25.0, 75.0))])
def test_subject_bootstrap_interval_has_the_coverage_asked_for(level, tails):
    """``level`` sets the percentiles: 0.9 gives the 5th and 95th (it was not checked below the default 0.95)."""
    rng = np.random.default_rng(7)
    groups = np.array([f"sub-{s:02d}" for s in rng.integers(0, 15, 40)])  # 1 to several scans per subject
    y = rng.uniform(20, 80, 40)
    p = y + rng.normal(0, 6, 40)
    naive = [skm.mean_absolute_error(y[d], p[d]) for d in _naive_subject_draws(groups, 300, seed=3)]
    ci = M.bootstrap_ci(M.mae, y, p, n_boot=300, seed=3, groups=groups, level=level)
    assert ci == pytest.approx(tuple(np.percentile(naive, tails)), rel=1e-12)


def test_pearson_interval_counts_a_resample_of_one_repeated_prediction_as_r_0():
    """A collapsed age model (nearly always the same prediction): a resample whose predictions are all equal has
    r = 0 (``pearson_r``'s convention), in the vectorised replicates as in the plain ones."""
    y = np.linspace(20.0, 80.0, 10)
    p = np.r_[np.full(9, 50.0), 60.0]  # about a third of the resamples miss the one other prediction
    draws = _naive_subject_draws(np.arange(10), 400, seed=1)
    naive = [0.0 if np.ptp(p[d]) == 0 else stats.pearsonr(y[d], p[d])[0] for d in draws if np.ptp(y[d]) > 0]
    assert sum(np.ptp(p[d]) == 0 for d in draws) > 50
    lo, hi = M.bootstrap_ci(M.pearson_r, y, p, n_boot=400, seed=1)
    assert (lo, hi) == pytest.approx(tuple(np.percentile(naive, [2.5, 97.5])), rel=1e-9, abs=1e-12)
    assert lo == 0.0  # the replicates of r = 0 are the low end


def test_pearson_interval_leaves_out_resamples_of_one_repeated_truth():
    """Nine test subjects of one age and one older: a resample without the older one has no r (its 0 is only
    the point value's convention) and is left out, as the docstring says, instead of counting as r = 0."""
    y = np.r_[np.full(9, 30.0), 60.0]
    p = np.linspace(25.0, 70.0, 10)
    draws = _naive_subject_draws(np.arange(10), 400, seed=2)
    naive = [stats.pearsonr(y[d], p[d])[0] for d in draws if np.ptp(y[d]) > 0]
    assert 50 < len(draws) - len(naive) < 250
    lo, hi = M.bootstrap_ci(M.pearson_r, y, p, n_boot=400, seed=2)
    assert (lo, hi) == pytest.approx(tuple(np.percentile(naive, [2.5, 97.5])), rel=1e-9)


def test_multilabel_f1_counts_a_score_at_the_threshold_as_positive():
    """The documented rule ``score ≥ threshold``: scores of exactly 0.5 (a logit of 0) are positive calls."""
    y = np.array([[1], [1], [0], [0]])
    s = np.array([[0.5], [0.9], [0.5], [0.1]])
    f1 = M.multilabel_metrics(y, s)["per_class"]["0"]["f1"]
    assert f1 == pytest.approx(skm.f1_score(y[:, 0], [1, 1, 1, 0]))  # 2 TP, 1 FP: 2·2/(2·2+1) = 0.8
    assert f1 == pytest.approx(0.8)


def test_multilabel_counts_the_positives_of_each_finding():
    y = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 1], [1, 1, 1]])
    per = M.multilabel_metrics(y, np.full((4, 3), 0.3), names=["a", "b", "c"])["per_class"]
    assert [per[k]["n_positive"] for k in "abc"] == [3, 1, 3]
