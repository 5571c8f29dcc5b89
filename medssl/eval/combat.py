"""ComBat harmonisation of features across sites (parametric empirical Bayes), fit/apply.

Johnson, Li & Rabinovic, "Adjusting batch effects in microarray expression data using
empirical Bayes methods", Biostatistics 2007; applied to neuroimaging features by Fortin et
al., NeuroImage 2017/2018. The model per feature v is

    x_iv = α_v + C_i β_v + γ_{site(i), v} + δ_{site(i), v} ε_iv,

with biological covariates C (e.g. age, sex) whose effect is *kept*. The site shifts γ and
scales δ are estimated per site on standardised data and shrunk towards a per-site prior
across features (normal prior on γ, inverse-gamma prior on δ²), then removed.

Why our own implementation: ``neuroHarmonize`` 2.5.2 requires ``numpy<2`` (we use NumPy 2), and
``neuroCombat`` 0.2.12 (2021) needs pandas and uses the removed ``np.int``. This class follows
neuroCombat's parametric algorithm step for step (same estimators, priors, convergence rule
``1e-4``); ``tests/eval/test_site.py`` compares it with reference outputs of neuroCombat
0.2.12 stored in ``tests/eval/data/combat_reference.json``.

Unlike neuroCombat (one call on all data), :class:`ComBat` separates ``fit`` (on training
rows only) from ``transform`` (any rows of the sites seen in ``fit``), like
``neuroHarmonize.harmonizationLearn`` / ``harmonizationApply``, so that an evaluation never
estimates the site effects from test subjects.
"""

from __future__ import annotations

import numpy as np


class ComBat:
    """Fit site effects on training rows; remove them from any rows of known sites.

    Args:
        empirical_bayes: shrink the per-site estimates (True, the ComBat default) or use the
            raw per-site location/scale estimates (False; "L/S" adjustment). The shrinkage priors
            are estimated across features: it needs at least 2 features with residual variance.
        tol: relative convergence tolerance of the empirical-Bayes iterations.
        max_iter: iteration cap (reached only in pathological cases; raises).

    Attributes (after ``fit``):
        sites_: sorted site labels. beta_: (K + Q, D) regression coefficients (site
        indicators then covariates). var_pooled_: (D,). active_: (D,) bool, features with
        residual variance (the others are returned unchanged). gamma_star_, delta_star_:
        (K, D_active) adjusted site shifts and variances on the standardised scale.
    """

    def __init__(self, empirical_bayes: bool = True, tol: float = 1e-4, max_iter: int = 10_000) -> None:
        self.empirical_bayes, self.tol, self.max_iter = empirical_bayes, tol, max_iter

    @staticmethod
    def _covariates(covariates: np.ndarray | None, n: int) -> np.ndarray:
        if covariates is None:
            return np.zeros((n, 0))
        c = np.asarray(covariates, float)
        c = c[:, None] if c.ndim == 1 else c
        if len(c) != n or not np.all(np.isfinite(c)):
            raise ValueError(f"covariates must be a finite (N, Q) array with N={n} rows, got shape {c.shape}")
        return c

    def _site_design(self, sites: np.ndarray) -> np.ndarray:
        sites = np.asarray(sites).astype(str)
        unknown = sorted(set(sites.tolist()) - set(self.sites_))  # plain str: messages name 'z', not np.str_('z')
        if unknown:
            raise ValueError(f"ComBat was fitted on sites {self.sites_}; cannot harmonise unseen site(s) {unknown} "
                             "(leave-site-out evaluation cannot use ComBat on the held-out site)")
        return (sites[:, None] == np.asarray(self.sites_)[None, :]).astype(float)

    def fit(self, x: np.ndarray, sites: np.ndarray, covariates: np.ndarray | None = None) -> ComBat:
        """Estimate site effects from (N, D) features ``x`` of sites ``sites`` (N,) with covariates (N, Q)."""
        x = np.asarray(x, float)
        n = len(x)
        self.sites_ = sorted(set(np.asarray(sites).astype(str).tolist()))
        batch = self._site_design(sites)
        counts = batch.sum(0)
        if len(self.sites_) < 2 or counts.min() < 2:
            raise ValueError(f"ComBat needs at least 2 sites with at least 2 rows each; got "
                             f"{dict(zip(self.sites_, counts.astype(int).tolist()))}")
        cov = self._covariates(covariates, n)
        design = np.hstack([batch, cov])
        if np.linalg.matrix_rank(design) < design.shape[1]:
            raise ValueError("covariates are collinear with the sites (e.g. a covariate constant within each site); "
                             "ComBat cannot separate them — drop that covariate")
        self.beta_ = np.linalg.solve(design.T @ design, design.T @ x)
        self.grand_mean_ = (counts / n) @ self.beta_[: len(self.sites_)]
        self.var_pooled_ = np.mean((x - design @ self.beta_) ** 2, axis=0)
        # features without residual variance (e.g. dead ReLU units) carry no site effect: left as they are
        self.active_ = self.var_pooled_ > 1e-12 * max(float(self.var_pooled_.max()), 1e-300)
        if not self.active_.any():
            raise ValueError("every feature is constant within sites after the covariates; nothing to harmonise")
        if self.empirical_bayes and self.active_.sum() < 2:  # the priors are sample variances across features
            raise ValueError(f"empirical-Bayes ComBat estimates its priors across features and needs at least 2 "
                             f"features with residual variance (got {int(self.active_.sum())}); use "
                             "ComBat(empirical_bayes=False) to harmonise a single feature")
        self.var_pooled_ = np.where(self.active_, self.var_pooled_, 1.0)
        z = self._standardise(x, cov)[:, self.active_]
        gamma_hat = np.linalg.solve(batch.T @ batch, batch.T @ z)
        delta_hat = np.stack([z[batch[:, k] == 1].var(axis=0, ddof=1) for k in range(len(self.sites_))])
        if self.empirical_bayes:
            self.gamma_star_, self.delta_star_ = self._shrink(z, batch, gamma_hat, delta_hat)
        else:
            self.gamma_star_, self.delta_star_ = gamma_hat, delta_hat
        return self

    def _stand_mean(self, cov: np.ndarray) -> np.ndarray:
        """(N, D) expected features of a reference site given the covariates."""
        return self.grand_mean_ + cov @ self.beta_[len(self.sites_):]

    def _standardise(self, x: np.ndarray, cov: np.ndarray) -> np.ndarray:
        return (x - self._stand_mean(cov)) / np.sqrt(self.var_pooled_)

    def _shrink(self, z, batch, gamma_hat, delta_hat) -> tuple[np.ndarray, np.ndarray]:
        gamma_bar = gamma_hat.mean(axis=1)
        t2 = gamma_hat.var(axis=1, ddof=1)
        m, s2 = delta_hat.mean(axis=1), delta_hat.var(axis=1, ddof=1)
        a_prior, b_prior = (2 * s2 + m**2) / s2, (m * s2 + m**3) / s2
        gammas, deltas = [], []
        for k in range(len(self.sites_)):
            zk = z[batch[:, k] == 1]
            n_k = len(zk)
            g_old, d_old = gamma_hat[k], delta_hat[k]
            for _ in range(self.max_iter):
                g_new = (t2[k] * n_k * gamma_hat[k] + d_old * gamma_bar[k]) / (t2[k] * n_k + d_old)
                sum2 = np.sum((zk - g_new) ** 2, axis=0)
                d_new = (0.5 * sum2 + b_prior[k]) / (n_k / 2.0 + a_prior[k] - 1.0)
                # as sva's it.sol and neuroCombat: relative change divided by the signed old value
                change = max(np.max(np.abs(g_new - g_old) / g_old), np.max(np.abs(d_new - d_old) / d_old))
                g_old, d_old = g_new, d_new
                if change <= self.tol:
                    break
            else:
                raise RuntimeError(f"ComBat empirical Bayes did not converge for site {self.sites_[k]!r}")
            gammas.append(g_new)
            deltas.append(d_new)
        return np.stack(gammas), np.stack(deltas)

    def transform(self, x: np.ndarray, sites: np.ndarray, covariates: np.ndarray | None = None) -> np.ndarray:
        """Harmonised copy of (N, D) ``x``; the covariate effects are preserved."""
        if not hasattr(self, "beta_"):
            raise RuntimeError("call ComBat.fit on training rows before transform")
        x = np.asarray(x, float)
        batch = self._site_design(sites)
        cov = self._covariates(covariates, len(x))
        if cov.shape[1] != self.beta_.shape[0] - len(self.sites_):
            raise ValueError(f"fit used {self.beta_.shape[0] - len(self.sites_)} covariate column(s), transform got "
                             f"{cov.shape[1]}")
        a = self.active_
        z = self._standardise(x, cov)[:, a]
        adjusted = (z - batch @ self.gamma_star_) / np.sqrt(batch @ self.delta_star_)
        out = x.copy()
        out[:, a] = adjusted * np.sqrt(self.var_pooled_[a]) + self._stand_mean(cov)[:, a]
        return out

    def fit_transform(self, x: np.ndarray, sites: np.ndarray, covariates: np.ndarray | None = None) -> np.ndarray:
        return self.fit(x, sites, covariates).transform(x, sites, covariates)
