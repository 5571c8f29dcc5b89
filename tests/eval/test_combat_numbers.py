"""ComBat (``medssl/eval/combat.py``) edges the neuroCombat reference cases do not reach: a site of one row, a feature
of small scale, a covariate count that changes between fit and transform."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.eval.combat import ComBat


def test_each_site_needs_two_rows_and_messages_name_sites_as_given():
    """A site's scale is a sample variance: one row has none (ddof=1 gives NaN), so such a fit is refused. The
    messages name the sites as the data do ('b'), not as NumPy 2 reprs them (np.str_('b'))."""
    x = np.random.default_rng(1).normal(size=(6, 3))
    with pytest.raises(ValueError, match=r"at least 2 rows each; got \{'a': 4, 'b': 1\}$"):
        ComBat().fit(x[:5], np.array(["a", "a", "a", "a", "b"]))
    cb = ComBat().fit(x, np.array(["a", "a", "a", "b", "b", "b"]))
    assert cb.sites_ == ["a", "b"]
    with pytest.raises(ValueError, match=r"fitted on sites \['a', 'b'\]; cannot harmonise unseen site\(s\) \['z'\] "):
        cb.transform(x[:2], np.array(["a", "z"]))


def test_a_feature_of_small_scale_is_harmonised_like_the_others():
    """Only features without residual variance are left as they are; one a thousand times smaller than its
    neighbour (volumes in m³ beside mm³) still ends with equal site means (location/scale ComBat, hand check)."""
    rng = np.random.default_rng(0)
    site = np.repeat(["a", "b"], [30, 20])
    x = (rng.normal(0, 1, (50, 2)) + (site == "b")[:, None] * 3.0) * np.array([1.0, 1e-3])
    h = ComBat(empirical_bayes=False).fit_transform(x, site)
    grand = (30 * x[site == "a"].mean(0) + 20 * x[site == "b"].mean(0)) / 50
    for s in "ab":
        np.testing.assert_allclose(h[site == s].mean(0), grand, rtol=1e-8)


def test_transform_refuses_another_number_of_covariates():
    rng = np.random.default_rng(2)
    site = np.repeat(["a", "b"], 10)
    cb = ComBat().fit(rng.normal(size=(20, 3)), site, rng.normal(size=20))
    with pytest.raises(ValueError, match=r"fit used 1 covariate column\(s\), transform got 2"):
        cb.transform(rng.normal(size=(4, 3)), site[:4], rng.normal(size=(4, 2)))


def test_covariates_must_be_finite_and_separable_from_the_sites():
    rng = np.random.default_rng(3)
    site, x = np.repeat(["a", "b"], 10), rng.normal(size=(20, 3))
    age = rng.uniform(20, 80, 20)
    with pytest.raises(ValueError, match="finite"):
        ComBat().fit(x, site, np.where(np.arange(20) == 4, np.nan, age))
    with pytest.raises(ValueError, match="collinear with the sites"):
        ComBat().fit(x, site, (site == "b").astype(float))  # constant within each site


def test_empirical_bayes_needs_two_features_and_says_so():
    """The priors of γ and δ² are moments across features (sample variances, ddof=1): with one feature that varies
    they are NaN, and fit ran 10 000 NaN iterations into 'did not converge', a message that hid the cause.
    Now a ValueError says why; location/scale ComBat (no priors) still harmonises a single feature."""
    rng = np.random.default_rng(4)
    site = np.repeat(["a", "b"], 10)
    x = rng.normal(size=(20, 1)) + (site == "b")[:, None] * 2.0
    for feats in (x, np.c_[x, np.full(20, 3.0)]):  # one feature, or one beside a constant one
        with pytest.raises(ValueError, match=r"at least 2 features with residual variance \(got 1\).*empirical_bayes=False"):
            ComBat().fit(feats, site)
    h = ComBat(empirical_bayes=False).fit_transform(x, site)
    assert h[site == "a"].mean() == pytest.approx(h[site == "b"].mean(), abs=1e-10)
