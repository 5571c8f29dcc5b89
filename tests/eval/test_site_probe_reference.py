"""The site probe against a naive recomputation: scikit-learn on the same rows, C by a subject-grouped CV loop,
intervals over subjects, chance over the training sites, and its two limits (one-hot site → 1, noise → chance).

Twin data (each subject scanned twice, identical rows, more features than subjects per site): row-level CV
scores each scan against its twin and chooses another C than a subject-grouped CV; a row bootstrap draws twin
rows as independent scans. With whole twin pairs, a subject bootstrap equals a row bootstrap over one row per
subject (subjects in sorted order), which is the independent reference of the intervals
(as in tests/eval/test_site_bootstrap.py).
"""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medssl.eval import metrics as M
from medssl.eval.probes import LOGISTIC_CS, inner_folds
from medssl.eval.site import leave_site_out, site_prediction

N_BOOT = 100


def _twins(n=60, d=40, shift=0.6, seed=0, n_sites=4):
    """(x, site, subject, label): every subject's row twice (identical scans), a weak planted site effect and label."""
    rng = np.random.default_rng(seed)
    site, label = np.arange(n) % n_sites, rng.integers(0, 2, n)
    base = rng.normal(size=(n, d))
    base[:, :n_sites] += shift * np.eye(n_sites)[site]
    base[:, n_sites] += 1.5 * label
    idx = np.repeat(np.arange(n), 2)
    return base[idx], site[idx], idx.astype(str), label[idx]


def _naive(x_tr, y_tr, subj_tr, x_te, seed):
    """C of a hand-written subject-grouped CV loop (balanced accuracy, first best), then a plain refit."""
    fit = lambda c, rows: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x_tr[rows], y_tr[rows])  # noqa: E731
    scores = [np.mean([balanced_accuracy_score(y_tr[v], fit(c, f).predict(x_tr[v]))
                       for f, v in inner_folds(y_tr, subj_tr, True, seed)]) for c in LOGISTIC_CS]
    c = float(LOGISTIC_CS[int(np.argmax(scores))])
    return c, fit(c, np.arange(len(y_tr))).predict(x_te)


def _subject_ci(y, pred, subjects, seed):
    one = np.argsort(subjects[::2], kind="stable") * 2  # one row of each twin pair, subjects sorted
    return list(M.bootstrap_ci(M.balanced_accuracy, y[one], pred[one], n_boot=N_BOOT, seed=seed))


def test_site_prediction_equals_a_grouped_cv_logistic_refit_with_subject_intervals():
    x, site, subj, _ = _twins()
    tr = subj.astype(int) % 3 != 0
    res = site_prediction(x[tr], site[tr], x[~tr], site[~tr], subj[tr], subj[~tr], seed=3, n_boot=N_BOOT)
    c, pred = _naive(x[tr], site[tr], subj[tr], x[~tr], seed=3)
    assert res["C"] == c
    assert res["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(site[~tr], pred), abs=1e-12)
    assert res["balanced_accuracy_ci"] == pytest.approx(_subject_ci(site[~tr], pred, subj[~tr], seed=3), abs=1e-12)
    assert res["chance"] == 0.25


def test_site_probe_limits_one_hot_sites_noise_and_chance_over_training_sites():
    """Embeddings equal to the one-hot site: every test scan's site is found (BAcc 1); pure noise: near chance;
    chance is 1/#training sites even when the test scans come from two of the four sites."""
    rng = np.random.default_rng(1)
    site = np.arange(160) % 4
    tr = np.arange(160) < 120
    onehot = np.eye(4)[site]
    res = site_prediction(onehot[tr], site[tr], onehot[~tr], site[~tr], n_boot=0)
    assert res["balanced_accuracy"] == 1.0 and res["chance"] == 0.25
    noise = rng.normal(size=(160, 6))
    assert abs(site_prediction(noise[tr], site[tr], noise[~tr], site[~tr], n_boot=0)["balanced_accuracy"] - 0.25) < 0.12
    two = ~tr & (site < 2)
    res = site_prediction(onehot[tr], site[tr], onehot[two], site[two], n_boot=0)
    assert res["chance"] == 0.25 and res["balanced_accuracy"] == 1.0


def test_leave_site_out_classification_uses_subject_grouped_cv_and_subject_intervals():
    """A class target (diagnosis) left out site by site: each fold's C and score equal the naive grouped-CV refit on
    the other sites, and its interval resamples the held-out site's subjects."""
    x, site, subj, label = _twins(n=72, n_sites=3, seed=0)
    res = leave_site_out(x, label, site, subj, task="classification", seed=2, n_boot=N_BOOT)
    assert sorted(res["per_site"]) == ["0", "1", "2"]
    for s in ("0", "1", "2"):
        te = site.astype(str) == s
        c, pred = _naive(x[~te], label[~te], subj[~te], x[te], seed=2)
        got = res["per_site"][s]
        assert got["C"] == c and got["chance"] == 0.5
        assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(label[te], pred), abs=1e-12)
        assert got["balanced_accuracy_ci"] == pytest.approx(_subject_ci(label[te], pred, subj[te], seed=2), abs=1e-12)


def test_leave_site_out_skips_a_class_fold_whose_training_sites_hold_one_class():
    """Site 0 holds every diagnosed subject: without it the training rows have one class (no classifier can be
    fitted), so that fold is skipped and said; the other folds (both classes in training) are scored."""
    x, site, subj, _ = _twins(n=36, n_sites=3, seed=1)
    label = (site == 0).astype(int)
    res = leave_site_out(x, label, site, subj, task="classification")
    assert res["skipped"] == ["0"] and sorted(res["per_site"]) == ["1", "2"]


def test_harmonisation_baseline_site_probe_uses_subject_grouped_cv_and_subject_intervals():
    """The ComBat table's raw site row is the site probe above: the same C (subject-grouped CV), score and
    subject interval as the naive refit (without subject groups it chose C by row-level CV, without test
    subjects its interval resampled twin scans as independent ones)."""
    from medssl.eval.site import harmonisation_baseline

    x, site, subj, _ = _twins()
    tr = subj.astype(int) % 3 != 0
    res = harmonisation_baseline(x[tr], x[~tr], site[tr], site[~tr], {}, groups=subj[tr], seed=3, n_boot=N_BOOT,
                                 groups_test=subj[~tr])["raw"]["site"]
    c, pred = _naive(x[tr], site[tr], subj[tr], x[~tr], seed=3)
    assert res["C"] == c
    assert res["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(site[~tr], pred), abs=1e-12)
    assert res["balanced_accuracy_ci"] == pytest.approx(_subject_ci(site[~tr], pred, subj[~tr], seed=3), abs=1e-12)


def test_the_site_protocol_site_probe_uses_subject_grouped_cv_and_subject_intervals():
    """`medssl evaluate --protocol site`'s site prediction is the probe above on the training / test scans."""
    from medssl.eval.protocols import site_effect

    x, site, subj, _ = _twins()
    tr = subj.astype(int) % 3 != 0
    res = site_effect({"features": x, "site": site, "subject": subj}, tr, seed=3, n_boot=N_BOOT, targets=[])
    c, pred = _naive(x[tr], site[tr], subj[tr], x[~tr], seed=3)
    assert res["prediction"]["C"] == c
    assert res["prediction"]["balanced_accuracy_ci"] == pytest.approx(_subject_ci(site[~tr], pred, subj[~tr], seed=3),
                                                                      abs=1e-12)


def test_harmonisation_baseline_age_probe_uses_the_given_seed():
    """The raw age row is the ridge probe of the same rows at the caller's seed: its interval's bootstrap draws
    (and any grouped-CV shuffle) come from that seed (a probe at seed 0 draws others)."""
    from medssl.eval.probes import regression_probe
    from medssl.eval.site import harmonisation_baseline

    x, site, subj, _ = _twins(n=36)
    age = 20 + 60 * np.random.default_rng(2).random(len(x) // 2).repeat(2)
    x[:, -1] += age / 10
    tr = subj.astype(int) % 3 != 0
    res = harmonisation_baseline(x[tr], x[~tr], site[tr], site[~tr], {"age": (age[tr], age[~tr], "regression")},
                                 groups=subj[tr], seed=5, n_boot=N_BOOT, groups_test=subj[~tr])["raw"]["age"]
    ref = regression_probe(x[tr], age[tr], x[~tr], age[~tr], groups=subj[tr], seed=5, n_boot=N_BOOT, groups_test=subj[~tr])
    assert res["alpha"] == ref["alpha"] and res["mae_ci"] == pytest.approx(ref["mae_ci"], abs=1e-12)
