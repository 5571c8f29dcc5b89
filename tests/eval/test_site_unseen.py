"""unseen_features at its documented threshold: a spread ≥ 10× the training sites' counts (docs/evaluation.md, the
report's footnote), a constant feature never does."""

import numpy as np

from medssl.eval.site import UNSEEN_SPREAD_RATIO, unseen_features


def test_a_feature_with_exactly_ten_times_the_training_spread_is_unseen_and_a_constant_one_is_not():
    sign = np.array([-1.0, 1.0, -1.0, 1.0])  # SD 1 exactly; k * sign has SD k exactly
    train = np.c_[sign, sign, np.full(4, 3.0), np.zeros(4), sign, sign]
    test = np.c_[10 * sign, 9.9 * sign, np.full(4, 3.0), sign, 11 * sign, 0.1 * sign]
    # columns: exactly 10x (counted), 9.9x (not), constant on both (not), silent on train (counted), 11x, 0.1x
    assert UNSEEN_SPREAD_RATIO == 10.0
    assert unseen_features(train, test).tolist() == [0, 3, 4]
    assert unseen_features(train, test, ratio=9.9).tolist() == [0, 1, 3, 4]


def test_a_held_out_site_with_fewer_than_five_training_scans_is_skipped():
    """docs/evaluation.md: a leave-site-out fold trains on at least 5 scans; holding out the 10-scan site leaves
    2 + 2 (skipped, listed) or 3 + 2 (fitted) scans of the other sites."""
    from medssl.eval.site import leave_site_out

    for n_second, skipped in ((2, ["0"]), (3, [])):
        sites = np.array([0] * 10 + [1] * n_second + [2] * 2)
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(len(sites), 3)), rng.uniform(20, 80, len(sites))
        res = leave_site_out(x, y, sites, np.arange(len(sites)).astype(str))
        assert res["skipped"] == skipped
        assert sorted(res["per_site"]) == sorted({"0", "1", "2"} - set(skipped))
