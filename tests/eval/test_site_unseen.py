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
