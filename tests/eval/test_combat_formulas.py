"""ComBat (``medssl/eval/combat.py``) against its formulas written out for a tiny case (Johnson et al. 2007, as in
neuroCombat): 2 sites, 3 features, 1 covariate; and two properties an additive site shift must have."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from medssl.eval.combat import ComBat


def _tiny(seed: int = 0):
    rng = np.random.default_rng(seed)
    site = np.repeat(["b", "a"], [7, 5])  # site b's rows first: site a is still the first site (sorted labels)
    age = rng.uniform(20, 80, 12)
    x = 3 + 0.04 * age[:, None] + rng.normal(0, 1, (12, 3)) * np.where(site == "b", 1.8, 0.7)[:, None]
    return x + np.where(site == "b", 1.5, -0.5)[:, None] * np.array([1.0, 0.4, 2.0]), site, age


def _combat_by_hand(x, site, age, iterations=2000):
    """Per feature: x = α + β·age + γ_site + δ_site·ε. Site means, pooled variance, standardised data, per-site
    γ̂ (mean) and δ̂² (sample variance), priors across features, then the EB fixed point for γ*, δ*."""
    n = len(x)
    labels = ["a", "b"]
    design = np.c_[site == "a", site == "b", age].astype(float)
    beta = np.linalg.lstsq(design, x, rcond=None)[0]
    counts = np.array([np.sum(site == s) for s in labels])
    grand = counts / n @ beta[:2]  # sample-weighted mean of the site intercepts
    var_pooled = ((x - design @ beta) ** 2).sum(0) / n  # 1/N, as neuroCombat
    stand = grand + age[:, None] * beta[2]
    z = (x - stand) / np.sqrt(var_pooled)
    g_star, d_star = [], []
    for s, n_k in zip(labels, counts):
        zk = z[site == s]
        g_hat, d_hat = zk.mean(0), zk.var(0, ddof=1)
        g_bar, tau2 = g_hat.mean(), g_hat.var(ddof=1)  # normal prior of γ across features
        m, v = d_hat.mean(), d_hat.var(ddof=1)  # inverse-gamma prior of δ² by the method of moments
        a, b = (2 * v + m**2) / v, (m * v + m**3) / v
        g, d = g_hat, d_hat
        for _ in range(iterations):
            g = (n_k * tau2 * g_hat + d * g_bar) / (n_k * tau2 + d)
            d = (0.5 * ((zk - g) ** 2).sum(0) + b) / (n_k / 2 + a - 1)
        g_star.append(g)
        d_star.append(d)
    g_star, d_star = np.array(g_star), np.array(d_star)
    k = (site == "b").astype(int)
    out = (z - g_star[k]) / np.sqrt(d_star[k]) * np.sqrt(var_pooled) + stand
    return g_star, d_star, out


def test_empirical_bayes_combat_follows_the_formulas_and_names_sites_in_sorted_order():
    x, site, age = _tiny()
    g_star, d_star, out = _combat_by_hand(x, site, age)
    cb = ComBat(tol=1e-12).fit(x, site, age)
    assert cb.sites_ == ["a", "b"]  # rows of gamma_star_ / delta_star_ follow sites_
    np.testing.assert_allclose(cb.gamma_star_, g_star, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cb.delta_star_, d_star, rtol=1e-9)
    np.testing.assert_allclose(cb.transform(x, site, age), out, rtol=1e-9)


@pytest.mark.parametrize("eb", [True, False])
def test_an_additive_site_shift_is_removed_whole(eb):
    """Adding c to every feature of site b's rows changes nothing but the reference level, which moves by the
    site's share n_b/N of c: the harmonised features are those of the unshifted data plus n_b·c/N. (With
    empirical Bayes, for a shift of the same size in every feature's pooled SD: a shift of other sizes moves
    the prior across features, towards which γ is shrunk.)"""
    x, site, age = _tiny(1)
    c = np.array([4.0, -2.5, 10.0])
    if eb:
        design = np.c_[site == "a", site == "b", age].astype(float)
        residual = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
        c = 3.0 * np.sqrt(np.mean(residual**2, axis=0))
    shifted = x + (site == "b")[:, None] * c
    base = ComBat(empirical_bayes=eb, tol=1e-12).fit_transform(x, site, age)
    moved = ComBat(empirical_bayes=eb, tol=1e-12).fit_transform(shifted, site, age)
    np.testing.assert_allclose(moved, base + 7 / 12 * c, rtol=1e-8, atol=1e-8)


def test_a_constant_feature_raises_no_division_warning():
    """A dead unit (constant feature) is left as it is, without a 'divide by zero' RuntimeWarning on the way."""
    x, site, age = _tiny(2)
    x[:, 1] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = ComBat().fit_transform(x, site, age)
    assert (h[:, 1] == 0.0).all()
