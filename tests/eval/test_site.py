"""Site effect: ComBat against neuroCombat, leave-site-out folds, site probes, harmonisation on real data."""

import json
from pathlib import Path

import numpy as np
import pytest

from medssl.eval.combat import ComBat
from medssl.eval.report import _site_tables
from medssl.eval.site import harmonisation_baseline, leave_site_out, leave_site_out_splits, site_prediction

REFERENCE = Path(__file__).with_name("data") / "combat_reference.json"


@pytest.mark.parametrize("eb", [True, False])
def test_combat_matches_neurocombat(eb):
    """Reference outputs of neuroCombat 0.2.12 (tests/eval/data/make_combat_reference.py)."""
    for case in json.loads(REFERENCE.read_text())["cases"]:
        x, site = np.array(case["x"]), np.array(case["site"])
        cov = np.c_[case["age"], case["sex"]].astype(np.float32).astype(float)  # neuroCombat's float32 covariates
        cb = ComBat(empirical_bayes=eb).fit(x, site, cov)
        key = f"eb_{eb}".lower()
        np.testing.assert_allclose(cb.transform(x, site, cov), case[f"harmonised_{key}"], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(cb.gamma_star_, case[f"gamma_star_{key}"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(cb.delta_star_, case[f"delta_star_{key}"], rtol=1e-10)


def test_location_scale_combat_equalises_site_means_and_variances():
    """Without covariates and shrinkage, every site ends with the pooled mean and variance (hand check)."""
    rng = np.random.default_rng(0)
    site = np.repeat(["a", "b", "c"], [30, 20, 25])
    k = np.unique(site, return_inverse=True)[1]
    x = rng.normal(0, 1, (75, 4)) * np.array([1.0, 2.0, 3.0])[k][:, None] + np.array([0.0, 5.0, -3.0])[k][:, None]
    h = ComBat(empirical_bayes=False).fit_transform(x, site)
    site_means = np.array([x[site == s].mean(0) for s in "abc"])
    grand = np.array([30, 20, 25]) / 75 @ site_means  # ComBat's reference: the sample-weighted mean of site means
    np.testing.assert_allclose(np.array([h[site == s].mean(0) for s in "abc"]), np.tile(grand, (3, 1)), atol=1e-10)
    sds = np.array([h[site == s].std(0, ddof=1) for s in "abc"])
    np.testing.assert_allclose(sds, np.tile(sds[0], (3, 1)), rtol=1e-10)


def test_combat_fit_on_train_applies_to_new_rows_and_refuses_unseen_sites():
    rng = np.random.default_rng(1)
    site = np.repeat(["a", "b"], 40)
    x = rng.normal(0, 1, (80, 3)) + (site == "b")[:, None] * 4.0
    x[:, 2] = 7.0  # a constant feature is left as it is
    cb = ComBat().fit(x[::2], site[::2])
    h = cb.transform(x[1::2], site[1::2])
    gap_before = abs(x[1::2][site[1::2] == "a", 0].mean() - x[1::2][site[1::2] == "b", 0].mean())
    gap_after = abs(h[site[1::2] == "a", 0].mean() - h[site[1::2] == "b", 0].mean())
    assert gap_before > 3 and gap_after < 0.6 and np.all(h[:, 2] == 7.0)
    with pytest.raises(ValueError, match="unseen site"):
        cb.transform(x[:2], np.array(["a", "z"]))


def test_leave_site_out_folds_never_train_on_the_test_site():
    rng = np.random.default_rng(2)
    sites = rng.choice(["s1", "s2", "s3", "s4"], 60)
    subjects = np.array([f"p{i // 2}" for i in range(60)])  # some subjects scanned at two sites
    folds = leave_site_out_splits(sites, subjects)
    assert [f[0] for f in folds] == ["s1", "s2", "s3", "s4"]
    for name, tr, te in folds:
        assert set(sites[te]) == {name} and name not in set(sites[tr])
        assert not set(subjects[tr]) & set(subjects[te])
        assert len(te) == np.sum(sites == name)


def _site_data(shift: float, n=150, seed=3):
    rng = np.random.default_rng(seed)
    site = np.arange(n) % 3
    age = rng.uniform(20, 80, n)
    x = rng.normal(0, 1, (n, 8))
    x[:, 0] += (age - 50) / 10
    x[:, 1:4] += shift * np.eye(3)[site]
    return x, age, site, np.arange(n).astype(str)


def test_site_prediction_sees_planted_site_effects_and_only_those():
    x, _, site, subj = _site_data(shift=3.0)
    tr = np.arange(len(x)) < 100
    strong = site_prediction(x[tr], site[tr], x[~tr], site[~tr], n_boot=0)
    x0, _, _, _ = _site_data(shift=0.0)
    none = site_prediction(x0[tr], site[tr], x0[~tr], site[~tr], n_boot=0)
    assert strong["balanced_accuracy"] > 0.9 and strong["chance"] == pytest.approx(1 / 3)
    assert abs(none["balanced_accuracy"] - 1 / 3) < 0.2


def test_leave_site_out_evaluation_scores_every_site():
    x, age, site, subj = _site_data(shift=1.0)
    res = leave_site_out(x, age, site, subj)
    assert sorted(res["per_site"]) == ["0", "1", "2"] and res["skipped"] == []
    assert all(m["n_test"] == 50 and m["n_train"] == 100 for m in res["per_site"].values())
    assert res["pooled"]["mae"] < 8
    # min_train skips folds with *fewer* training rows: 100 rows are enough for min_train=100
    assert leave_site_out(x, age, site, subj, min_train=100)["skipped"] == []
    assert leave_site_out(x, age, site, subj, min_train=101)["skipped"] == ["0", "1", "2"]
    assert all(m["n_unseen_features"] == 0 for m in res["per_site"].values())
    site_names = np.asarray(site).astype(str)
    naive = {s: np.abs(age[site_names == s] - age[site_names != s].mean()) for s in ("0", "1", "2")}
    for s, errors in naive.items():  # each fold's floor: the other sites' mean age
        assert res["per_site"][s]["mean_predictor_mae"] == pytest.approx(errors.mean())
    assert res["pooled"]["mean_predictor_mae"] == pytest.approx(np.concatenate(list(naive.values())).mean())
    table = "\n".join(_site_tables({"site": {"e": {"leave_site_out": {"age": res}}}}))
    m0 = res["per_site"]["0"]
    assert f"| 0 | 50 | 100 | MAE {m0['mae']:.2f} y | MAE {m0['mean_predictor_mae']:.2f} y | 0 |" in table


def test_leave_site_out_flags_a_channel_silent_on_the_training_sites():
    """A feature that fires on site 2 only (and once, weakly, elsewhere): standardising it with the
    training SD multiplies site 2's values ~1000×, which is what the count must point at."""
    x, age, site, subj = _site_data(shift=1.0)
    silent = np.where(site == 2, np.random.default_rng(0).uniform(0.5, 1.5, len(x)), 0.0)
    silent[0] = 1e-2  # site 0
    res = leave_site_out(np.c_[x, silent], age, site, subj)
    counts = {s: m["n_unseen_features"] for s, m in res["per_site"].items()}
    assert counts == {"0": 0, "1": 0, "2": 1}
    clean = leave_site_out(x, age, site, subj)
    assert res["per_site"]["2"]["mae"] > 3 * clean["per_site"]["2"]["mae"]  # the inflation the count explains
    report = "\n".join(_site_tables({"site": {"pretrained": {"leave_site_out": {"age": res}}}}))
    assert "| 2 | 50 | 100 | MAE" in report and "unseen features" in report


def test_combat_removes_real_scanner_effects_from_ixi_volumes(ixi_table):
    """Real data: site is decodable from IXI ROI volumes; ComBat (fitted on training subjects) removes most of it
    while age prediction survives. The probed target is never a ComBat covariate (it would leak test labels)."""
    x, age, sex, site = np.log(ixi_table["x"]), ixi_table["age"], ixi_table["sex"], ixi_table["site"]
    tr = np.random.default_rng(0).random(len(x)) < 0.7
    res = harmonisation_baseline(x[tr], x[~tr], site[tr], site[~tr], {"age": (age[tr], age[~tr], "regression")},
                                 {"age": (age[tr], age[~tr]), "sex": (sex[tr], sex[~tr])})
    assert res["covariates"] == {"site": ["age", "sex"], "age": ["sex"]}
    raw, hb = res["raw"], res["combat"]
    assert raw["site"]["balanced_accuracy"] > 0.75 and hb["site"]["balanced_accuracy"] < 0.55
    assert hb["age"]["mae"] < raw["age"]["mae"] + 1.0


def test_site_effect_says_which_targets_and_covariates_combat_left_out():
    """ComBat needs every row's value: a target or covariate some scans lack is left out and said so (it used to
    vanish from the table silently), and the rest still runs."""
    from medssl.eval.protocols import site_effect

    rng = np.random.default_rng(0)
    n = 60
    site = np.repeat([0, 1, 2], n // 3)
    age = rng.uniform(20, 80, n)
    sex = rng.integers(0, 2, n)
    sex[7] = -1  # one scan without sex
    label = rng.integers(0, 2, n)
    feats = {"features": rng.normal(size=(n, 5)) + site[:, None] + age[:, None] / 30, "site": site, "age": age,
             "sex": sex, "label": label, "subject": np.array([f"s{i}" for i in range(n)])}
    train = rng.random(n) < 0.7
    h = site_effect(feats, train, 0, 0, ["age", "sex", "label"])["harmonisation"]
    assert h["left_out"] == {"sex": f"1 of {n} scans lack it"}
    assert set(h["raw"]) == set(h["combat"]) == {"age", "label", "site"}
    assert h["covariates"] == {"age": [], "label": ["age"], "site": ["age"]}  # sex kept out of every fit


def test_the_site_protocol_on_single_site_data_says_so_instead_of_an_empty_report():
    """`medssl evaluate RUN --protocol site` on the one-site IXI Hammersmith set wrote a report with an empty
    metrics table and no reason (site_effect returned {}); the openbhb protocol already refused such data."""
    from medssl.eval.driver import EvalOptions, run_protocol
    from medssl.eval.protocols import site_effect

    rng = np.random.default_rng(0)
    n = 40
    feats = {"features": rng.normal(size=(n, 4)), "site": np.zeros(n, int), "subject": np.arange(n).astype(str),
             "age": rng.uniform(20, 80, n), "index": np.arange(n)}
    train = np.arange(n) < 30
    with pytest.raises(ValueError, match=r"at least 2 sites, found 1 .*default protocol"):
        run_protocol(EvalOptions(protocol="site", n_boot=0, map_method="none"), {"e": feats}, train, {}, 0, ["age", "site"])
    feats["site"] = np.where(np.arange(n) % 2 == 0, 0, 1)  # two sites: the protocol runs
    assert "prediction" in site_effect(feats, train, 0, 0, ["age"])


def test_leave_site_out_chooses_alpha_by_subject_grouped_cv():
    """Two near-identical scans per subject and more features than training rows: row-level CV would score each
    scan against its twin (another α); each fold's α is the one of a naive subject-grouped CV loop."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from medssl.eval.probes import RIDGE_ALPHAS, inner_folds

    from eval_helpers import twin_scan_cohort

    x, age, site, subj = twin_scan_cohort(60, 100)
    res = leave_site_out(x, age, site, subj)
    for s in ("0", "1", "2"):
        tr = site.astype(str) != s
        xt, yt = x[tr], age[tr]
        mae = [np.mean([np.abs(make_pipeline(StandardScaler(), Ridge(alpha=a)).fit(xt[f], yt[f]).predict(xt[v]) - yt[v]).mean()
                        for f, v in inner_folds(yt, subj[tr], False, 0)]) for a in RIDGE_ALPHAS]
        assert res["per_site"][s]["alpha"] == RIDGE_ALPHAS[int(np.argmin(mae))]


def test_combat_baseline_is_fitted_on_the_training_rows_only():
    """The ComBat probes equal probes on features harmonised by a ComBat fitted by hand on the training rows
    (a ComBat that also saw the test rows' site means and variances gives other numbers)."""
    from medssl.eval.probes import classification_probe, regression_probe

    x, age, site, subj = _site_data(shift=2.0)
    x[:, 4:] *= 1 + site[:, None]  # a scale effect too
    tr = np.random.default_rng(1).random(len(x)) < 0.6
    res = harmonisation_baseline(x[tr], x[~tr], site[tr], site[~tr], {"age": (age[tr], age[~tr], "regression")},
                                 groups=subj[tr])
    combat = ComBat().fit(x[tr], site[tr])
    h_tr, h_te = combat.transform(x[tr], site[tr]), combat.transform(x[~tr], site[~tr])
    ref_age = regression_probe(h_tr, age[tr], h_te, age[~tr], groups=subj[tr], n_boot=0)
    ref_site = classification_probe(h_tr, site[tr], h_te, site[~tr], groups=subj[tr], n_boot=0)
    assert res["combat"]["age"]["mae"] == pytest.approx(ref_age["mae"], rel=1e-9)
    assert res["combat"]["site"]["balanced_accuracy"] == pytest.approx(ref_site["balanced_accuracy"], rel=1e-9)
