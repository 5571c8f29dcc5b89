"""The OpenBHB challenge protocol: score, the kit's reference vectors, synthetic and real multi-site data."""

import csv

import numpy as np
import pytest

from medssl.eval.openbhb import (MAX_FEATURES, challenge_score, internal_external_split, openbhb_scores,
                                 run_openbhb)
from medssl.eval.probes import mean_predictor_mae


def test_published_resnet18_lexp_score():
    """Barbano et al. (ISBI 2023), ResNet-18 with L^exp: MAE_ext 3.761, BAcc 0.051 → L_c 1.540."""
    assert round(challenge_score(3.761, 0.051), 3) == 1.540
    assert challenge_score(2.0, 1.0) == 2.0 and challenge_score(2.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="fraction"):
        challenge_score(3.761, 5.1)  # a percentage, not a fraction
    ages = np.array([30.0, 40.0])
    with pytest.raises(ValueError, match="no internal-test row has a known site"):  # was "must be a fraction, got nan"
        openbhb_scores(ages, ages, np.array([-1, np.nan]), np.array([0, 1]), ages, ages + 1)


def test_pair_cases_match_the_kit(openbhb_reference):
    """Designed predictions (16 internal rows from 4 sites, 4 external) scored like the kit."""
    for case in openbhb_reference["pair_cases"]:
        n_ok, ext = case["n_internal_correct_of_16"], case["ext_mae"]
        site = np.repeat(np.arange(4), 4)
        pred_site = (site + 1) % 4  # all wrong …
        pred_site[:n_ok] = site[:n_ok]  # … but n_ok (4 per site: BAcc = n_ok / 16 wherever they are)
        age_int = np.linspace(20, 60, 16)
        scores = openbhb_scores(age_int, age_int + 1.0, site, pred_site, np.full(4, 40.0), np.full(4, 40.0 + ext))
        for k, v in case["scores"].items():
            assert scores[k] == pytest.approx(v, rel=1e-12), (k, case)


def test_rows_of_unknown_site_leave_the_site_bacc(openbhb_reference):
    """The kit drops internal rows whose true site is missing (-1 or NaN) from bacc_site; they must not
    count as one more site that is never predicted (which would lower the BAcc and the challenge score)."""
    case = openbhb_reference["pair_cases"][0]
    site = np.repeat(np.arange(4.0), 4)
    pred_site = (site + 1) % 4
    pred_site[: case["n_internal_correct_of_16"]] = site[: case["n_internal_correct_of_16"]]
    age_int = np.linspace(20, 60, 16)
    known = openbhb_scores(age_int, age_int + 1.0, site, pred_site, np.full(4, 40.0), np.full(4, 40.0 + case["ext_mae"]))
    site_u, pred_u = np.r_[site, -1, np.nan, -1], np.r_[pred_site, 0, 1, 2]
    age_u = np.r_[age_int, 30.0, 40.0, 50.0]
    with_unknown = openbhb_scores(age_u, age_u + 1.0, site_u, pred_u, np.full(4, 40.0), np.full(4, 40.0 + case["ext_mae"]))
    assert with_unknown["bacc_site"] == pytest.approx(case["scores"]["bacc_site"], rel=1e-12)
    assert with_unknown["challenge_metric"] == pytest.approx(known["challenge_metric"], rel=1e-12)


def test_e2e_cases_reproduce_predictions_selection_and_scores(openbhb_reference):
    sets = {s["id"]: s for s in openbhb_reference["e2e_input_sets"]}
    for case in openbhb_reference["e2e_cases"]:
        s = sets[case["input_set"]]
        res = run_openbhb(s["X_train"], s["age_train"], s["site_train"], s["X_test_internal"], s["age_test_internal"],
                          s["site_test_internal"], s["X_test_external"], s["age_test_external"])
        assert res["selected_site_C"] == case["selected_site_C"]
        assert res["selected_age_alpha"] == case["selected_age_alpha"]
        np.testing.assert_allclose(np.r_[res["pred_int"], res["pred_ext"]], case["predicted_age_test"], rtol=1e-10)
        n_int = len(s["X_test_internal"])
        np.testing.assert_array_equal(res["site_pred_int"], case["predicted_site_label_test"][:n_int])
        for k, v in case["scores"].items():
            assert res[k] == pytest.approx(v, rel=1e-10), k


def test_feature_limit_and_missing_external_part():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, MAX_FEATURES + 1))
    with pytest.raises(ValueError, match="at most 10000"):
        run_openbhb(x, np.arange(20.0), np.arange(20) % 2, x[:4], np.arange(4.0), np.arange(4) % 2)
    s = openbhb_scores(np.ones(4), np.ones(4), np.arange(4) % 2, np.arange(4) % 2)
    assert np.isnan(s["ext_mae_age"]) and np.isnan(s["challenge_metric"]) and s["bacc_site"] == 1.0
    with pytest.raises(ValueError, match="not found"):
        internal_external_split(np.array(["a", "b"]), np.array([True, False]), ["c"])


def test_protocol_on_the_synthetic_cohort_with_an_external_site(small_cohort):
    """Hand-made features of the synthetic cohort (block means of the images), site-C external."""
    import nibabel as nib

    rows = list(csv.DictReader((small_cohort / "participants.tsv").open(), delimiter="\t"))
    x = np.stack([np.asarray(nib.load(small_cohort / r["participant_id"] / "anat" / f"{r['participant_id']}_T1w.nii.gz")
                             .dataobj, float).reshape(6, 4, 6, 4, 6, 4).mean((1, 3, 5)).ravel() for r in rows])
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    age = np.array([float(r["age"]) for r in rows])
    site = np.array([r["site"] for r in rows])
    is_train = np.arange(len(rows)) % 4 != 0
    m = internal_external_split(site, is_train, ["site-C"])
    assert not (m["train"] & m["external"]).any() and set(site[m["external"]]) == {"site-C"}
    assert set(site[m["train"]]) == set(site[m["internal"]]) == {"site-A", "site-B"}
    codes = np.unique(site, return_inverse=True)[1]
    res = run_openbhb(x[m["train"]], age[m["train"]], codes[m["train"]], x[m["internal"]], age[m["internal"]],
                      codes[m["internal"]], x[m["external"]], age[m["external"]])
    assert res["n_external"] == np.sum(site == "site-C") and res["n_sites_train"] == 2
    assert res["challenge_metric"] == pytest.approx(res["ext_mae_age"] * res["bacc_site"] ** 0.3)
    assert res["bacc_site"] > 0.75  # the synthetic sites differ in intensity: raw blocks reveal them
    assert res["mae_age"] < 20 and np.isfinite(res["ext_mae_age"])


def test_protocol_on_the_real_ixi_multisite_table(ixi_table):
    """Real DLMUSE ROI volumes of 291 IXI subjects: Guys + HH internal, IOP (GE 1.5T) external."""
    x, age, site = ixi_table["x"], ixi_table["age"], ixi_table["site"]
    is_train = np.random.default_rng(0).random(len(x)) < 0.7
    m = internal_external_split(site, is_train, ["IOP"])
    # the "feature extractor": log volumes standardised with training statistics (fitted on training rows only)
    logv = np.log(x)
    z = (logv - logv[m["train"]].mean(0)) / logv[m["train"]].std(0)
    codes = np.unique(site, return_inverse=True)[1]
    res = run_openbhb(z[m["train"]], age[m["train"]], codes[m["train"]], z[m["internal"]], age[m["internal"]],
                      codes[m["internal"]], z[m["external"]], age[m["external"]])
    assert res["n_external"] == 24 and res["n_sites_train"] == 2
    assert res["mae_age"] < 0.6 * mean_predictor_mae(age[m["train"]], age[m["internal"]])  # real age signal
    assert res["bacc_site"] > 0.7  # scanner (Philips 1.5T vs 3T) is visible in regional volumes
    assert res["ext_mae_age"] > res["mae_age"]  # an unseen scanner costs accuracy
    assert res["challenge_metric"] == pytest.approx(res["ext_mae_age"] * res["bacc_site"] ** 0.3)


def _scored_sets(seed: int = 0):
    rng = np.random.default_rng(seed)
    age_int, age_ext = rng.uniform(20, 80, 40), rng.uniform(20, 80, 15)
    site = np.repeat([0, 1], 20)
    site_pred = np.where(rng.random(40) < 0.3, 1 - site, site)
    return age_int, age_int + rng.normal(0, 5, 40), site, site_pred, age_ext, age_ext + rng.normal(3, 6, 15)


def test_intervals_of_the_internal_scores_are_the_plain_bootstrap_over_the_same_draws():
    """The internal test is resampled first from the seed, so its intervals equal :func:`bootstrap_ci`'s
    (vectorised metrics, another code path); every interval holds its point estimate."""
    from medssl.eval import metrics as M
    from medssl.eval.openbhb import openbhb_intervals

    a_int, p_int, s_int, sp_int, a_ext, p_ext = _scored_sets()
    ci = openbhb_intervals(a_int, p_int, s_int, sp_int, a_ext, p_ext, n_boot=400, seed=3)
    assert ci["mae_age_ci"] == list(M.bootstrap_ci(M.mae, a_int, p_int, n_boot=400, seed=3))
    assert ci["rmse_age_ci"] == list(M.bootstrap_ci(M.rmse, a_int, p_int, n_boot=400, seed=3))
    assert ci["bacc_site_ci"] == list(M.bootstrap_ci(M.balanced_accuracy, s_int, sp_int, n_boot=400, seed=3))
    scores = openbhb_scores(a_int, p_int, s_int, sp_int, a_ext, p_ext)
    for k, v in scores.items():
        lo, hi = ci[f"{k}_ci"]
        assert lo < v < hi, k


def test_with_perfect_site_predictions_the_score_interval_is_the_external_mae_interval():
    """BAcc = 1 in every replicate, so L_c = MAE_ext per replicate (a known limit); subjects with two
    scans each give the same intervals as one scan each when resampled by subject."""
    from medssl.eval.openbhb import openbhb_intervals

    a_int, p_int, s_int, _, a_ext, p_ext = _scored_sets(1)
    ci = openbhb_intervals(a_int, p_int, s_int, s_int, a_ext, p_ext, n_boot=300, seed=0)
    assert ci["challenge_metric_ci"] == ci["ext_mae_age_ci"] and ci["bacc_site_ci"] == [1.0, 1.0]
    twice = [np.repeat(a, 2) for a in (a_int, p_int, s_int, s_int, a_ext, p_ext)]
    grouped = openbhb_intervals(*twice, groups_int=np.repeat(np.arange(40), 2), groups_ext=np.repeat(np.arange(15), 2),
                                n_boot=300, seed=0)
    assert grouped["ext_mae_age_ci"] == pytest.approx(ci["ext_mae_age_ci"])
    assert grouped["mae_age_ci"] == pytest.approx(ci["mae_age_ci"])
    none = openbhb_intervals(a_int, p_int, s_int, s_int, n_boot=50)
    assert np.isnan(none["ext_mae_age_ci"]).all() and np.isnan(none["challenge_metric_ci"]).all()


def test_a_subject_scanned_at_an_external_site_never_trains_the_probes():
    """Travelling subjects: subject k has a training-split scan at an internal site and a scan at
    the external site. Fitting on the first and scoring the second would put one subject on both
    sides, so (as the leave-site-out folds do) such subjects leave the training rows."""
    from medssl.eval.protocols import openbhb_protocol

    rng = np.random.default_rng(0)
    n = 60
    subject = np.array([f"s{i}" for i in range(n)] + ["s0", "s1", "s2"] + [f"e{i}" for i in range(7)])
    site = np.r_[np.arange(n) % 2, np.full(10, 2)]
    train_mask = np.r_[np.arange(n) % 5 != 4, np.zeros(10, bool)]  # s0, s1, s2 are training subjects
    feats = {"features": rng.normal(size=(len(site), 6)), "age": rng.uniform(20, 80, len(site)), "site": site,
             "subject": subject}
    m = internal_external_split(site, train_mask, [2], subject)
    assert not set(subject[m["train"]]) & set(subject[m["external"]])
    assert m["train"].sum() == train_mask.sum() - 3 and m["external"].sum() == 10
    res = openbhb_protocol(feats, train_mask, [2])
    assert res["n_train"] == train_mask.sum() - 3 and res["n_external"] == 10


def test_fewer_than_two_internal_training_sites_is_a_clear_error_not_sklearns_failed_fits():
    """The site probe needs two internal sites to tell apart: two sites with one external left sklearn's
    "All the 25 fits failed" with an embedded traceback as the whole error of `medssl evaluate --protocol openbhb`."""
    from medssl.eval.protocols import openbhb_protocol

    rng = np.random.default_rng(0)
    site = np.arange(40) % 2
    feats = {"features": rng.normal(size=(40, 5)), "age": rng.uniform(20, 80, 40), "site": site,
             "subject": np.array([f"s{i}" for i in range(40)])}
    train_mask = np.arange(40) % 4 != 3
    with pytest.raises(ValueError, match="at least 2 internal sites") as e:
        openbhb_protocol(feats, train_mask)  # default: the last site is external
    assert "Traceback" not in str(e.value) and "--external-sites" in str(e.value)
    with pytest.raises(ValueError, match="at least 2 internal sites"):
        internal_external_split(np.array(["a", "a", "b", "c"]), np.array([True, False, True, True]), ["b", "c"])
