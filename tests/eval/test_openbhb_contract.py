"""OpenBHB protocol details the kit's output vectors do not pin: the probe settings the kit states,
input checks, split errors, and the bootstrap intervals' edge cases."""

import re

import numpy as np
import pytest

from medssl.eval.openbhb import (MAX_FEATURES, check_features, fit_openbhb_probes, internal_external_split,
                                 openbhb_intervals, run_openbhb)


def test_probe_settings_are_the_ones_the_kit_states(openbhb_reference):
    """The e2e vectors select C = 0.1 and alpha = 100 with any nearby grid, iteration cap or CV score,
    so the settings are compared with the kit's own description in the reference file."""
    text = openbhb_reference["conventions"]["probes"]
    age_text, site_text = text.split("Site probe:")
    grid = [[float(v) for v in re.search(r"in \{([^}]*)\}", t).group(1).split(",")] for t in (age_text, site_text)]
    s = openbhb_reference["e2e_input_sets"][0]
    age, site = fit_openbhb_probes(s["X_train"], s["age_train"], s["site_train"])
    assert list(age.param_grid["alpha"]) == grid[0] and list(site.param_grid["C"]) == grid[1]
    assert (age.scoring, site.scoring) == tuple(re.findall(r"scoring (\w+)", text))
    assert [age.cv, site.cv] == [int(k) for k in re.findall(r"(\d+)-fold", text)]
    lr = site.best_estimator_
    assert lr.max_iter == int(re.search(r"max_iter=(\d+)", text).group(1))
    assert lr.solver == re.search(r"solver='(\w+)'", text).group(1)
    res = run_openbhb(s["X_train"], s["age_train"], s["site_train"], s["X_test_internal"], s["age_test_internal"],
                      s["site_test_internal"], s["X_test_external"], s["age_test_external"])
    n_sites = len(set(s["site_train"]))
    assert res["n_sites_train"] == n_sites == 3 and res["site_chance"] == pytest.approx(1 / 3)


def test_embedding_checks_name_the_problem():
    check_features(np.zeros((2, MAX_FEATURES)))  # "at most 10,000" includes 10,000
    with pytest.raises(ValueError, match="at most 10000"):
        check_features(np.zeros((2, MAX_FEATURES + 1)))
    with pytest.raises(ValueError, match="expected a 2D"):
        check_features(np.zeros(5))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3))
    bad = x[:4].copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="internal test embeddings: contains NaN"):
        run_openbhb(x, rng.uniform(20, 80, 20), np.arange(20) % 2, bad, np.arange(4.0), np.arange(4) % 2)


def test_split_errors():
    sites = np.array(["a", "a", "b", "b", "c", "c"])
    with pytest.raises(ValueError, match="every site is external"):
        internal_external_split(sites, np.ones(6, bool), ["a", "b", "c"])
    # Site b has test rows only: one internal site (a) left to train the site probe on.
    with pytest.raises(ValueError, match="at least 2 internal sites; here 1 internal site"):
        internal_external_split(sites, np.array([True, False, False, False, True, True]), ["c"])


def test_intervals_need_two_rows_on_each_side_and_resample_the_sides_independently():
    rng = np.random.default_rng(0)
    age, pred = rng.uniform(20, 80, 12), rng.uniform(20, 80, 12)
    site = np.arange(12) % 2
    one_int = openbhb_intervals(age[:1], pred[:1], site[:1], site[:1], age, pred, n_boot=50)
    one_ext = openbhb_intervals(age, pred, site, site, age[:1], pred[:1], n_boot=50)
    for ci in (one_int, one_ext):
        assert all(np.isnan(v).all() for v in ci.values())
    # The same errors on both sides: independent resamples give different MAE intervals.
    ci = openbhb_intervals(age, pred, site, site, age, pred, n_boot=200, seed=1)
    assert ci["ext_mae_age_ci"] != ci["mae_age_ci"]
