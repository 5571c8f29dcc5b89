"""Metrics against scikit-learn / hand-computed values; bootstrap intervals."""

import numpy as np
import pytest
from sklearn import metrics as skm

from medssl.eval import metrics as M


@pytest.fixture
def reg():
    rng = np.random.default_rng(0)
    y = rng.uniform(20, 80, 50)
    return y, y + rng.normal(0, 5, 50)


def test_regression_metrics_match_sklearn(reg):
    y, p = reg
    m = M.regression_metrics(y, p)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-12)
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)), rel=1e-12)
    assert m["r2"] == pytest.approx(skm.r2_score(y, p), rel=1e-12)
    assert m["pearson_r"] == pytest.approx(np.corrcoef(y, p)[0, 1], rel=1e-12)


def test_regression_metrics_hand_values():
    m = M.regression_metrics([1.0, 2.0, 3.0], [2.0, 2.0, 5.0])
    assert m["mae"] == pytest.approx(1.0) and m["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert m["r2"] == pytest.approx(1 - 5 / 2)  # SS_res = 1 + 0 + 4, SS_tot = 2
    assert M.pearson_r([1, 2, 3], [5, 5, 5]) == 0.0


def test_brain_age_gap_bias_correction_hand_computed():
    age_tr = np.array([20.0, 40.0, 60.0, 80.0])
    pred_tr = 0.5 * age_tr + 25  # regression to the mean: slope 0.5
    slope, intercept = M.fit_age_bias(age_tr, pred_tr)
    assert (slope, intercept) == pytest.approx((0.5, 25.0))
    age_te = np.array([30.0, 70.0])
    pred_te = np.array([42.0, 58.0])  # 0.5*age+25 = 40, 60 → corrected gaps +2, −2
    g = M.brain_age_gap(age_te, pred_te, (slope, intercept))
    np.testing.assert_allclose(g["gap"], [12.0, -12.0])
    np.testing.assert_allclose(g["corrected_gap"], [2.0, -2.0])
    assert g["gap_age_r"] == pytest.approx(-1.0) and g["corrected_gap_mean"] == pytest.approx(0.0)
    # population SDs (ddof=0) of the raw gaps (12, -12) and of the corrected gaps (2, -2)
    assert g["gap_std"] == pytest.approx(12.0) and g["corrected_gap_std"] == pytest.approx(2.0)
    assert g["gap_mean"] == pytest.approx(0.0) and g["corrected_gap_age_r"] == pytest.approx(-1.0)


def test_bias_correction_removes_age_dependence_of_the_gap():
    rng = np.random.default_rng(1)
    age = rng.uniform(20, 80, 400)
    pred = 0.6 * age + 20 + rng.normal(0, 3, 400)
    g = M.brain_age_gap(age[200:], pred[200:], M.fit_age_bias(age[:200], pred[:200]))
    assert g["gap_age_r"] < -0.8 and abs(g["corrected_gap_age_r"]) < 0.15
    with pytest.raises(ValueError, match="two training subjects"):
        M.fit_age_bias([30.0, 30.0], [1.0, 2.0])


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 80)
    p = np.where(rng.random(80) < 0.6, y, rng.integers(0, 3, 80))
    p[0] = 3  # a predicted class absent from y_true
    assert M.balanced_accuracy(y, p) == pytest.approx(skm.balanced_accuracy_score(y, p))
    assert M.f1_macro(y, p) == pytest.approx(skm.f1_score(y, p, average="macro"))
    assert M.classification_metrics(y, p)["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    proba = rng.dirichlet(np.ones(3), 80)
    assert M.multiclass_auc(y, proba) == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))


def test_binary_auc_with_ties_matches_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.random(60) + 0.3 * y, 1)  # many ties
    assert M.binary_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), rel=1e-12)
    assert np.isnan(M.binary_auc(np.ones(5), np.arange(5.0)))
    two = np.c_[1 - s, s]
    assert M.multiclass_auc(y, two) == pytest.approx(skm.roc_auc_score(y, s))


def test_two_class_auc_scores_the_second_class_against_every_other_test_scan():
    """docs/evaluation.md: with two training classes, AUC is the second class against every other test scan, a
    test-only class included (not the mean of both one-vs-rest AUCs, which differs once a third class is present)."""
    rng = np.random.default_rng(8)
    y = rng.integers(0, 3, 60)  # class 2 never seen in training: no column of its own
    p1 = np.clip(0.5 + 0.2 * (y == 1) - 0.1 * (y == 2) + rng.normal(0, 0.2, 60), 0, 1)
    proba = np.c_[1 - p1, p1]
    assert M.multiclass_auc(y, proba) == pytest.approx(skm.roc_auc_score(y == 1, p1), rel=1e-12)
    assert M.classification_metrics(y, (p1 > 0.5).astype(int), proba)["auc"] == pytest.approx(skm.roc_auc_score(y == 1, p1))


def test_multilabel_metrics_match_sklearn_per_class():
    rng = np.random.default_rng(4)
    y = (rng.random((70, 4)) < [0.5, 0.3, 0.1, 0.0]).astype(int)  # last finding never present
    s = np.clip(y * 0.3 + rng.random((70, 4)) * 0.8, 0, 1)
    m = M.multilabel_metrics(y, s, names=["a", "b", "c", "d"])
    for k, name in enumerate("abc"):
        assert m["per_class"][name]["auc"] == pytest.approx(skm.roc_auc_score(y[:, k], s[:, k]))
        assert m["per_class"][name]["f1"] == pytest.approx(skm.f1_score(y[:, k], s[:, k] >= 0.5))
    assert np.isnan(m["per_class"]["d"]["auc"])
    assert m["auc_macro"] == pytest.approx(skm.roc_auc_score(y[:, :3], s[:, :3], average="macro"))


def test_bootstrap_ci_is_seeded_and_covers_the_estimate(reg):
    y, p = reg
    lo, hi = M.bootstrap_ci(M.mae, y, p, n_boot=500, seed=0)
    assert lo < M.mae(y, p) < hi and hi - lo < 5
    assert (lo, hi) == M.bootstrap_ci(M.mae, y, p, n_boot=500, seed=0)
    assert (lo, hi) != M.bootstrap_ci(M.mae, y, p, n_boot=500, seed=1)
    # the interval shrinks like 1/sqrt(n): 4x the rows → about half the width
    y4, p4 = np.tile(y, 4), np.tile(p, 4)
    lo4, hi4 = M.bootstrap_ci(M.mae, y4, p4, n_boot=500, seed=0)
    assert 0.35 < (hi4 - lo4) / (hi - lo) < 0.7


def test_cluster_bootstrap_ignores_repeated_scans(reg):
    """Two identical scans per subject, resampled by subject, give the interval of one scan each."""
    y, p = reg
    groups = np.repeat(np.arange(len(y)), 2)
    single = M.bootstrap_ci(M.mae, y, p, n_boot=300, seed=5)
    clustered = M.bootstrap_ci(M.mae, np.repeat(y, 2), np.repeat(p, 2), n_boot=300, seed=5, groups=groups)
    assert clustered == pytest.approx(single)
    # subject ids as they come from a manifest (strings; sorted like the integers above): same draws
    ids = np.array([f"sub-{g:03d}" for g in groups])
    assert M.bootstrap_ci(M.mae, np.repeat(y, 2), np.repeat(p, 2), n_boot=300, seed=5, groups=ids) == clustered


@pytest.mark.parametrize("metric", [M.mae, M.rmse, M.r2, M.pearson_r, M.balanced_accuracy, M.f1_macro])
def test_vectorised_bootstrap_equals_the_plain_loop(metric, monkeypatch):
    rng = np.random.default_rng(6)
    if metric in (M.balanced_accuracy, M.f1_macro):
        y, p = rng.integers(0, 3, 40), rng.integers(0, 4, 40)  # class 3 only ever predicted
    else:
        y, p = rng.normal(size=40), rng.normal(size=40)
    fast = M.bootstrap_ci(metric, y, p, n_boot=300, seed=2)
    monkeypatch.setattr(M, "_VECTORISED", {})
    slow = M.bootstrap_ci(metric, y, p, n_boot=300, seed=2)
    assert fast == pytest.approx(slow, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("metric", [M.f1_macro, M.balanced_accuracy])
def test_vectorised_bootstrap_leaves_out_a_class_absent_from_a_resample(metric, monkeypatch):
    """A class with one row is missing from about a third of the resamples; there F1 / BAcc average over
    the classes that are present, so the vectorised replicates must not count it as a score of 0."""
    y = np.r_[np.zeros(10, int), np.ones(10, int), [2]]
    p = y.copy()
    p[:3] = 1
    fast = M.bootstrap_ci(metric, y, p, n_boot=300, seed=2)
    monkeypatch.setattr(M, "_VECTORISED", {})
    assert fast == pytest.approx(M.bootstrap_ci(metric, y, p, n_boot=300, seed=2), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("groups", [None, np.array([0, 1, 2, 2])])
def test_r2_and_r_intervals_leave_out_resamples_of_one_repeated_age(groups):
    """Three test subjects: a resample of one subject's age has no R² (SS_tot = 0), but it counted as R² = 0,
    so a walk-through's report showed R² [-2.497, 0.000]. Undefined replicates are now left out, as for AUC."""
    y, p = np.array([20.0, 40.0, 60.0, 60.0]), np.array([45.0, 30.0, 35.0, 38.0])  # a poor fit: R² mostly < 0
    draws = M.bootstrap_draws(len(y), 400, np.random.default_rng(0), groups)
    for metric in (M.r2, M.pearson_r):
        naive = [metric(y[d], p[d]) for d in draws if len(set(y[d])) > 1]
        assert len(naive) < len(draws)  # some resamples hold one age only
        lo, hi = M.bootstrap_ci(metric, y, p, n_boot=400, seed=0, groups=groups)
        assert (lo, hi) == pytest.approx(tuple(np.percentile(naive, [2.5, 97.5])))


def test_r2_of_a_constant_truth_and_intervals_of_one_row_follow_sklearn_and_the_docstring():
    """sklearn's r2_score: 1.0 for a perfect fit of a constant truth, 0.0 otherwise; bootstrap_ci: NaN for < 2 rows."""
    const = np.full(3, 5.0)
    assert M.r2(const, const) == skm.r2_score(const, const) == 1.0
    assert M.r2(const, [4.0, 5.0, 6.0]) == skm.r2_score(const, [4.0, 5.0, 6.0]) == 0.0
    assert np.isnan(M.bootstrap_ci(M.mae, [30.0], [32.0], n_boot=50)).all()
