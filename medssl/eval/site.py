"""Site effect in embeddings: site prediction, leave-site-out evaluation, ComBat baseline.

* :func:`site_prediction` — how well the acquisition site can be decoded from an embedding
  (balanced accuracy; chance = 1/#sites). Lower means less site information.
* :func:`leave_site_out` — the downstream task (e.g. age) scored on each site while the probe
  is fitted on the other sites only: generalisation to an unseen scanner.
* :func:`harmonisation_baseline` — the same probes after ComBat (:class:`~medssl.eval.combat.ComBat`,
  fitted on the training rows only): what a classic post-hoc harmonisation achieves.
"""

from __future__ import annotations

import numpy as np

from medssl.data.manifest import Record
from medssl.data.splits import leave_site_out_folds
from medssl.eval import metrics as M
from medssl.eval.combat import ComBat
from medssl.eval.probes import classification_probe, mean_predictor_mae, regression_probe

#: a feature whose SD on the held-out site is at least this many times its SD on the training sites
#: is one the standardised probe extrapolates on (see :func:`unseen_features`)
UNSEEN_SPREAD_RATIO = 10.0


def site_prediction(x_train: np.ndarray, site_train: np.ndarray, x_test: np.ndarray, site_test: np.ndarray,
                    groups: np.ndarray | None = None, groups_test: np.ndarray | None = None, seed: int = 0,
                    n_boot: int = 1000) -> dict:
    """Logistic site probe (standardised embeddings, C by grouped CV on the training rows).

    Returns:
        The :func:`~medssl.eval.probes.classification_probe` dict: ``"balanced_accuracy"`` (+ CI),
        ``"chance"`` = 1/#training sites, ``"confusion"`` (rows: true site, columns: predicted).
    """
    return classification_probe(x_train, np.asarray(site_train), x_test, np.asarray(site_test), seed=seed,
                                groups=groups, n_boot=n_boot, groups_test=groups_test)


def leave_site_out_splits(sites: np.ndarray, subjects: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(held-out site, train rows, test rows)`` per site, sites sorted.

    Uses :func:`medssl.data.splits.leave_site_out_folds`: the test rows are every row of the
    held-out site; the training rows are the other sites' rows minus any subject also scanned
    at the held-out site. No training row ever comes from the held-out site.
    """
    records = [Record(path=str(i), subject=str(s), site=str(site)) for i, (s, site) in enumerate(zip(subjects, sites))]
    folds = leave_site_out_folds(records)
    names = sorted({r.site for r in records})
    return [(name, np.asarray(tr, int), np.asarray(te, int)) for name, (tr, te) in zip(names, folds)]


def unseen_features(x_train: np.ndarray, x_test: np.ndarray, ratio: float = UNSEEN_SPREAD_RATIO) -> np.ndarray:
    """Indices of features that vary on the test rows ≥ ``ratio`` × as much as on the training rows.

    Typically a ReLU channel of the encoder that is silent on the training sites and fires on the
    held-out one. The probes standardise with the training SD, so such a feature enters the
    held-out predictions multiplied by up to ``SD_test / SD_train``; one of them can move the
    leave-site-out MAE by hundreds of years. A feature constant on both sides is not one of them.
    Shapes: (N, D), (M, D) → (K,) column indices.
    """
    sd_train, sd_test = np.std(x_train, axis=0), np.std(x_test, axis=0)
    return np.flatnonzero((sd_test >= ratio * sd_train) & (sd_test > 0))


def leave_site_out(x: np.ndarray, y: np.ndarray, sites: np.ndarray, subjects: np.ndarray, task: str = "regression",
                   seed: int = 0, n_boot: int = 0, min_train: int = 5) -> dict:
    """Fit the probe on all sites but one, score on the held-out site; repeat for each site.

    Args:
        x: (N, D) embeddings. y: (N,) targets (years for regression, int codes for classes).
        sites, subjects: (N,) site and subject of each row.
        task: "regression" (ridge) or "classification" (logistic).
        seed, n_boot: probe seed and bootstrap replicates per site (0: no intervals; they resample the
            held-out site's subjects, so a subject scanned twice counts once).
        min_train: skip folds with fewer training rows (reported in ``"skipped"``).

    Returns:
        ``{"per_site": {site: metrics + "n_test", "n_train", "n_unseen_features"}, "pooled": metrics
        over all held-out predictions, "skipped": [sites]}``; metrics as the ridge / logistic probes, and for
        regression ``"mean_predictor_mae"`` (predicting the training sites' mean) per site and pooled;
        ``n_unseen_features`` counts :func:`unseen_features` (a large error with a non-zero count is
        the encoder's site-specific channels, amplified by the probe's standardisation).
    """
    y, subjects = np.asarray(y), np.asarray(subjects)
    per_site, skipped, preds, truths, naive = {}, [], [], [], []
    for site, tr, te in leave_site_out_splits(sites, subjects):
        if len(tr) < min_train or (task == "classification" and len(np.unique(y[tr])) < 2):
            skipped.append(site)
            continue
        if task == "regression":
            res = regression_probe(x[tr], y[tr], x[te], y[te], groups=subjects[tr], seed=seed, n_boot=n_boot,
                                   groups_test=subjects[te])
        else:
            res = classification_probe(x[tr], y[tr], x[te], y[te], seed=seed, groups=subjects[tr], n_boot=n_boot,
                                       groups_test=subjects[te])
        preds.append(res.pop("pred"))
        truths.append(y[te])
        per_site[site] = {**res, "n_test": int(len(te)), "n_train": int(len(tr)),
                          "n_unseen_features": int(len(unseen_features(x[tr], x[te])))}
        if task == "regression":  # the fold's own floor: the training sites' mean age
            per_site[site]["mean_predictor_mae"] = mean_predictor_mae(y[tr], y[te])
            naive.append(np.full(len(te), float(np.mean(y[tr]))))
    out: dict = {"per_site": per_site, "skipped": skipped}
    if preds:
        t, p = np.concatenate(truths), np.concatenate(preds)
        out["pooled"] = M.regression_metrics(t, p) if task == "regression" else M.classification_metrics(t, p)
        if task == "regression":
            out["pooled"]["mean_predictor_mae"] = M.mae(t, np.concatenate(naive))
    return out


def harmonisation_baseline(x_train: np.ndarray, x_test: np.ndarray, site_train: np.ndarray, site_test: np.ndarray,
                           targets: dict[str, tuple[np.ndarray, np.ndarray, str]],
                           covariates: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                           groups: np.ndarray | None = None, seed: int = 0, n_boot: int = 0,
                           groups_test: np.ndarray | None = None) -> dict:
    """Probes on raw vs ComBat-harmonised embeddings (ComBat fitted on the training rows).

    A covariate that is also the probed target is left out of ComBat for that target: the
    transform of a test row uses its covariates, so a target covariate would leak the test
    label into the harmonised features (e.g. age, when predicting age). Test rows must come
    from training sites (ComBat cannot harmonise an unseen site).

    Args:
        x_train, x_test: (N, D) embeddings. site_train, site_test: (N,) sites.
        targets: ``{name: (y_train, y_test, "regression"|"classification")}``; the site itself
            is always probed (``"site"``).
        covariates: ``{name: (c_train, c_test)}`` biological covariates to preserve (age, sex…).
        groups: training subject ids (grouped CV). seed, n_boot: probe settings.
        groups_test: test subject ids: the intervals (``n_boot`` > 0) resample subjects, as every interval
            of the protocol does (without them, rows: a subject's repeated scans would narrow the interval).

    Returns:
        ``{"raw": {target: metrics}, "combat": {target: metrics}, "covariates": {target: [names]}}``
        where metrics are MAE/R² (regression) or balanced accuracy/chance (classification).
    """
    covariates = covariates or {}
    all_targets = {"site": (np.asarray(site_train), np.asarray(site_test), "classification"), **targets}
    out: dict = {"raw": {}, "combat": {}, "covariates": {}}
    for name, (y_tr, y_te, task) in all_targets.items():
        used = [c for c in covariates if c != name]
        c_tr = np.column_stack([covariates[c][0] for c in used]) if used else None
        c_te = np.column_stack([covariates[c][1] for c in used]) if used else None
        combat = ComBat().fit(x_train, site_train, c_tr)
        h_tr, h_te = combat.transform(x_train, site_train, c_tr), combat.transform(x_test, site_test, c_te)
        out["covariates"][name] = used
        for key, (a, b) in (("raw", (x_train, x_test)), ("combat", (h_tr, h_te))):
            if task == "regression":
                res = regression_probe(a, y_tr, b, y_te, groups=groups, seed=seed, n_boot=n_boot, groups_test=groups_test)
            else:
                res = classification_probe(a, y_tr, b, y_te, seed=seed, groups=groups, n_boot=n_boot,
                                           groups_test=groups_test)
            res.pop("pred")
            out[key][name] = res
    return out
