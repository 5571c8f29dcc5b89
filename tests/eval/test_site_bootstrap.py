"""Intervals of the site protocol resample subjects, not scans: a subject scanned twice counts once.

The check needs no copy of the bootstrap: with every subject scanned twice (identical twin rows), a cluster
bootstrap over subjects draws the same subjects, from the same seed, as a row bootstrap over one row per
subject, and the MAE / R² of the doubled rows equal those of the single rows. So the interval of the twin
data must equal :func:`medssl.eval.metrics.bootstrap_ci` (no groups) on the de-duplicated predictions; a
bootstrap of the twin rows as independent scans draws other rows and gives a narrower interval.
"""

import numpy as np
import pytest

from medssl.eval import metrics as M
from medssl.eval.probes import regression_probe
from medssl.eval.site import harmonisation_baseline, leave_site_out, leave_site_out_splits

N_BOOT = 200


def _twins(n_subjects: int = 45, seed: int = 0):
    """(x, age, site, subject) with each subject's row repeated (two scans, one site)."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 80, n_subjects)
    site = np.arange(n_subjects) % 3
    x = np.c_[age + rng.normal(0, 6, n_subjects), rng.normal(0, 1, (n_subjects, 3)) + site[:, None]]
    twice = lambda a: np.repeat(a, 2, axis=0)  # noqa: E731
    return twice(x), twice(age), twice(site).astype(str), twice(np.arange(n_subjects)).astype(str)


def _single_row_ci(pred: np.ndarray, y: np.ndarray, subjects: np.ndarray) -> dict:
    """Row bootstrap over one row of each subject (rows come in twin pairs), subjects in sorted order (the
    order in which a cluster bootstrap numbers them)."""
    one = np.argsort(subjects[::2], kind="stable") * 2
    return {name: M.bootstrap_ci(fn, y[one], pred[one], n_boot=N_BOOT, seed=0) for name, fn in (("mae", M.mae), ("r2", M.r2))}


def test_leave_site_out_intervals_resample_subjects():
    x, age, site, subj = _twins()
    res = leave_site_out(x, age, site, subj, n_boot=N_BOOT)
    for name, tr, te in leave_site_out_splits(site, subj):
        pred = regression_probe(x[tr], age[tr], x[te], age[te], groups=subj[tr], n_boot=0)["pred"]
        expected = _single_row_ci(pred, age[te], subj[te])
        got = res["per_site"][name]
        assert got["mae_ci"] == pytest.approx(list(expected["mae"]), rel=1e-12)
        assert got["r2_ci"] == pytest.approx(list(expected["r2"]), rel=1e-12)


def test_harmonisation_baseline_intervals_resample_test_subjects():
    """harmonisation_baseline(n_boot > 0) had no way to name the test rows' subjects, so its intervals
    resampled twin scans as independent ones (too narrow); ``groups_test`` now makes them subject-level."""
    x, age, site, subj = _twins()
    tr = np.isin(subj.astype(int) % 4, [0, 1, 2])  # whole subjects on each side, every site on both
    te = ~tr
    res = harmonisation_baseline(x[tr], x[te], site[tr], site[te], {"age": (age[tr], age[te], "regression")},
                                 groups=subj[tr], groups_test=subj[te], n_boot=N_BOOT)
    pred = regression_probe(x[tr], age[tr], x[te], age[te], groups=subj[tr], n_boot=0)["pred"]
    expected = _single_row_ci(pred, age[te], subj[te])
    assert res["raw"]["age"]["mae_ci"] == pytest.approx(list(expected["mae"]), rel=1e-12)
    assert res["raw"]["age"]["r2_ci"] == pytest.approx(list(expected["r2"]), rel=1e-12)
    rows = harmonisation_baseline(x[tr], x[te], site[tr], site[te], {"age": (age[tr], age[te], "regression")},
                                  groups=subj[tr], n_boot=N_BOOT)  # without test subjects: a row bootstrap
    assert rows["raw"]["age"]["mae_ci"] != res["raw"]["age"]["mae_ci"]
