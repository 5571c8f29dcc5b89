"""Which scans the site protocol (protocols.site_effect) counts: scans of unknown site (-1) are no site, neither for
the '2 sites' check nor as a leave-site-out fold; a target known at one site only has no leave-site-out table."""

import numpy as np
import pytest

from medssl.eval.protocols import site_effect


def _feats(site, seed=0):
    rng = np.random.default_rng(seed)
    n = len(site)
    age = rng.uniform(20, 80, n)
    x = rng.normal(size=(n, 5))
    x[:, 0] += (age - 50) / 10
    return {"features": x, "site": np.asarray(site), "subject": np.array([f"s{i}" for i in range(n)]), "age": age}


def test_scans_of_unknown_site_are_not_a_second_site():
    feats = _feats([0] * 30 + [-1] * 10)
    with pytest.raises(ValueError, match="at least 2 sites, found 1"):
        site_effect(feats, np.arange(40) % 4 != 0, 0, 0, ["age"])


def test_leave_site_out_folds_are_the_known_sites_and_need_two_of_them_per_target():
    site = np.r_[np.arange(60) % 3, [-1] * 12]
    feats = _feats(site)
    feats["label"] = np.where(site == 0, np.arange(len(site)) % 2, -1)  # a diagnosis known at site 0 only
    out = site_effect(feats, np.arange(len(site)) % 4 != 0, 0, 0, ["age", "label"])
    assert sorted(out["leave_site_out"]) == ["age"]  # one site with labels: nothing to leave out
    lso = out["leave_site_out"]["age"]
    assert sorted(lso["per_site"]) == ["0", "1", "2"] and lso["skipped"] == []
    assert all(m["n_test"] == 20 and m["n_train"] == 40 for m in lso["per_site"].values())


def test_combat_runs_on_the_training_sites_test_scans_and_needs_two_training_scans_per_site():
    """ComBat cannot harmonise a site it was not fitted on: test scans of a site with no training scan are left out
    of the ComBat table (not an error), and a site with one training scan (no variance) leaves the table out."""
    site = np.r_[np.arange(60) % 3, [3] * 6]
    train = np.r_[np.arange(60) % 4 != 0, [False] * 6]  # site 3: test scans only
    out = site_effect(_feats(site), train, 0, 0, ["age"])
    assert set(out["harmonisation"]["raw"]) == {"age", "site"}
    one = np.r_[np.arange(60) % 4 != 0, [True] + [False] * 5]  # site 3: one training scan
    out = site_effect(_feats(site), one, 0, 0, ["age"])
    assert "harmonisation" not in out and "prediction" in out


def test_the_protocol_seed_reaches_the_leave_site_out_probes():
    """Twin scans per subject, more features than subjects: each fold's α comes from a subject-grouped CV whose
    shuffle depends on the seed (here seeds 0 and 1 choose other α for two of the three folds); the protocol's
    folds are those of its own seed."""
    from medssl.eval.site import leave_site_out

    from eval_helpers import twin_scan_cohort

    x, age, site, subj = twin_scan_cohort(36, 40)
    feats = {"features": x, "site": site, "subject": subj, "age": age}
    got = site_effect(feats, np.repeat(np.arange(36), 2) % 4 != 0, 1, 0, ["age"])["leave_site_out"]["age"]["per_site"]
    ref = leave_site_out(x, age, site, subj, seed=1)["per_site"]
    assert [got[s]["alpha"] for s in "012"] == [ref[s]["alpha"] for s in "012"]


def test_openbhb_site_chance_counts_the_training_sites_not_those_of_the_internal_test():
    from medssl.eval.openbhb import run_openbhb

    rng = np.random.default_rng(0)
    site = np.arange(90) % 3
    x = rng.normal(size=(90, 4)) + np.eye(3, 4)[site]
    age = rng.uniform(20, 80, 90)
    tr, te = np.arange(90) < 60, (np.arange(90) >= 60) & (site < 2)  # the internal test holds 2 of the 3 sites
    res = run_openbhb(x[tr], age[tr], site[tr], x[te], age[te], site[te])
    assert res["n_sites_train"] == 3 and res["site_chance"] == pytest.approx(1 / 3)
