"""The OpenBHB challenge protocol ("brain age with site removal"), exactly as its kit.

Reference: Dufumier et al., "OpenBHB: a Large-Scale Multi-Site Brain MRI Data-set for Age
Prediction and Debiasing", NeuroImage 2022, and the RAMP kit
``ramp-kits/brain_age_with_site_removal`` (``problem.py``). Barbano et al., "Contrastive
learning for regression in multi-site brain age prediction", ISBI 2023, report the challenge
score used here.

Given frozen embeddings (at most :data:`MAX_FEATURES` per scan):

* age probe: ``GridSearchCV(Ridge(), alpha ∈ {10⁻², …, 10²}, cv=5, scoring="r2")`` (un-shuffled
  5-fold), refit on all training rows;
* site probe: ``GridSearchCV(LogisticRegression(solver="saga", max_iter=150), C ∈ {10⁻², …, 10²},
  cv=5, scoring="balanced_accuracy")`` (un-shuffled stratified 5-fold), refit on all training rows;
* both fitted on the training embeddings only, **without feature scaling** (as the kit);
* scores: internal-test MAE and RMSE (sites seen in training), site balanced accuracy on the
  internal test (rows of unknown site dropped), external-test MAE (unseen sites), and the
  challenge score ``L_c = MAE_ext · BAcc^0.3`` (BAcc as a fraction; lower is better — the kit
  flags it "higher is better", which is wrong in spirit).

One deliberate difference: without an external part the kit returns 0 for ``ext_mae_age`` and
the score; we return NaN so that a missing external set cannot read as a perfect score.
The saga solver draws random row orders; the kit leaves ``random_state`` unset, we fix it
(``random_state=0``) so that runs repeat; the reference vectors of the kit are reproduced with it.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV

from medssl.eval import metrics as M

MAX_FEATURES = 10_000
AGE_ALPHAS = 10.0 ** np.arange(-2, 3)  #: {0.01, 0.1, 1, 10, 100}
SITE_CS = 10.0 ** np.arange(-2, 3)  #: {0.01, 0.1, 1, 10, 100}
BACC_EXPONENT = 0.3


def challenge_score(ext_mae: float, bacc: float) -> float:
    """OpenBHB challenge score ``L_c = MAE_ext · BAcc^0.3`` (years; lower is better).

    Args:
        ext_mae: age MAE on the external test (unseen sites), years.
        bacc: site balanced accuracy on the internal test, as a fraction in [0, 1].
    """
    if bacc != bacc:  # NaN: openbhb_scores found no row to score
        raise ValueError("bacc is NaN: no internal-test row has a known site (rows with site -1 / NaN are left out "
                         "of the site balanced accuracy), so L_c cannot be computed")
    if not 0.0 <= bacc <= 1.0:
        raise ValueError(f"bacc must be a fraction in [0, 1] (not a percentage), got {bacc}")
    return float(ext_mae) * float(bacc) ** BACC_EXPONENT


def openbhb_scores(age_int: np.ndarray, pred_int: np.ndarray, site_int: np.ndarray, site_pred_int: np.ndarray,
                   age_ext: np.ndarray | None = None, pred_ext: np.ndarray | None = None) -> dict[str, float]:
    """The kit's five scores from predictions.

    Args:
        age_int, pred_int: (N_int,) true / predicted ages of the internal test (years).
        site_int, site_pred_int: (N_int,) true / predicted site ids; rows whose true site is
            unknown (-1 or NaN) are dropped from the balanced accuracy.
        age_ext, pred_ext: (N_ext,) external test ages; None or empty → NaN ``ext_mae_age``.

    Returns:
        ``{"challenge_metric", "mae_age", "rmse_age", "bacc_site", "ext_mae_age"}``.
    """
    site_int = np.asarray(site_int, float)
    known = np.isfinite(site_int) & (site_int != -1)
    bacc = M.balanced_accuracy(site_int[known], np.asarray(site_pred_int, float)[known])
    has_ext = age_ext is not None and len(age_ext) > 0
    ext_mae = M.mae(age_ext, pred_ext) if has_ext else float("nan")
    return {"challenge_metric": challenge_score(ext_mae, bacc) if has_ext else float("nan"),
            "mae_age": M.mae(age_int, pred_int), "rmse_age": M.rmse(age_int, pred_int), "bacc_site": bacc,
            "ext_mae_age": ext_mae}


def openbhb_intervals(age_int: np.ndarray, pred_int: np.ndarray, site_int: np.ndarray, site_pred_int: np.ndarray,
                      age_ext: np.ndarray | None = None, pred_ext: np.ndarray | None = None,
                      groups_int: np.ndarray | None = None, groups_ext: np.ndarray | None = None,
                      n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of the five scores of :func:`openbhb_scores` over test subjects.

    Not part of the kit, which reports point estimates. The internal and external test sets
    hold different subjects, so each replicate resamples both, independently (whole subjects
    when ``groups_*`` hold subject ids), and scores it with :func:`openbhb_scores`: ``L_c``'s
    interval combines each replicate's external MAE with the same replicate's internal site BAcc.

    Args: as :func:`openbhb_scores`; ``groups_int`` / ``groups_ext``: (N_int,) / (N_ext,)
        subject ids; ``n_boot`` replicates; ``level`` coverage.

    Returns:
        ``{"<score>_ci": [low, high]}`` for each score (NaN bounds when a test set has < 2 rows).
    """
    arrays_int = [np.asarray(a) for a in (age_int, pred_int, site_int, site_pred_int)]
    has_ext = age_ext is not None and len(age_ext) > 0
    arrays_ext = [np.asarray(a) for a in (age_ext, pred_ext)] if has_ext else []
    keys = ("challenge_metric", "mae_age", "rmse_age", "bacc_site", "ext_mae_age")
    if len(arrays_int[0]) < 2 or (has_ext and len(arrays_ext[0]) < 2):
        return {f"{k}_ci": [float("nan")] * 2 for k in keys}
    rng = np.random.default_rng(seed)
    draws_int = M.bootstrap_draws(len(arrays_int[0]), n_boot, rng, groups_int)
    draws_ext = M.bootstrap_draws(len(arrays_ext[0]), n_boot, rng, groups_ext) if has_ext else [None] * n_boot
    reps = [openbhb_scores(*(a[i] for a in arrays_int), *(a[e] for a in arrays_ext))
            for i, e in zip(draws_int, draws_ext)]
    return {f"{k}_ci": list(M.percentile_interval([r[k] for r in reps], level)) for k in keys}


def check_features(x: np.ndarray, where: str = "embeddings") -> np.ndarray:
    """(N, D) float array with D ≤ :data:`MAX_FEATURES`; raises a clear error otherwise."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"{where}: expected a 2D (N, D) array, got shape {x.shape}")
    if x.shape[1] > MAX_FEATURES:
        raise ValueError(f"{where}: {x.shape[1]} features; the OpenBHB challenge allows at most {MAX_FEATURES} "
                         "per scan (use a smaller encoder output or pool the feature maps)")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{where}: contains NaN or infinite values")
    return x


def fit_openbhb_probes(x_train: np.ndarray, age_train: np.ndarray, site_train: np.ndarray,
                       random_state: int | None = 0, n_jobs: int | None = None) -> tuple[GridSearchCV, GridSearchCV]:
    """Fit the kit's age and site probes on training embeddings (no scaling).

    Returns:
        ``(age_search, site_search)``: fitted ``GridSearchCV`` objects (``best_params_``,
        ``cv_results_`` hold the selection).
    """
    x_train = check_features(x_train, "training embeddings")
    age = GridSearchCV(Ridge(), {"alpha": AGE_ALPHAS}, cv=5, scoring="r2", n_jobs=n_jobs)
    age.fit(x_train, np.asarray(age_train, float))
    site = GridSearchCV(LogisticRegression(solver="saga", max_iter=150, random_state=random_state), {"C": SITE_CS},
                        cv=5, scoring="balanced_accuracy", n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=150 is the protocol, not a mistake
        site.fit(x_train, np.asarray(site_train).astype(int))
    return age, site


def run_openbhb(x_train: np.ndarray, age_train: np.ndarray, site_train: np.ndarray, x_int: np.ndarray,
                age_int: np.ndarray, site_int: np.ndarray, x_ext: np.ndarray | None = None,
                age_ext: np.ndarray | None = None, random_state: int | None = 0) -> dict:
    """The full protocol: fit both probes on the training rows, predict, score.

    Args:
        x_train: (N_train, D) embeddings, D ≤ 10,000; age_train (years); site_train (int ids).
        x_int, age_int, site_int: internal test (sites seen in training).
        x_ext, age_ext: external test (sites not in training); optional.
        random_state: saga's row-order seed (the kit: None).

    Returns:
        The scores of :func:`openbhb_scores` plus ``"selected_age_alpha"``, ``"selected_site_C"``,
        ``"n_train"``, ``"n_internal"``, ``"n_external"``, ``"n_sites_train"``, ``"site_chance"``
        and the prediction arrays ``"pred_int"``, ``"pred_ext"``, ``"site_pred_int"``.
    """
    age_search, site_search = fit_openbhb_probes(x_train, age_train, site_train, random_state)
    x_int = check_features(x_int, "internal test embeddings")
    pred_int = age_search.predict(x_int)
    site_pred = site_search.classes_[site_search.predict_proba(x_int).argmax(1)]
    has_ext = x_ext is not None and len(x_ext) > 0
    pred_ext = age_search.predict(check_features(x_ext, "external test embeddings")) if has_ext else np.zeros(0)
    scores = openbhb_scores(age_int, pred_int, site_int, site_pred, age_ext if has_ext else None, pred_ext)
    n_sites = len(site_search.classes_)
    return {**scores, "selected_age_alpha": float(age_search.best_params_["alpha"]),
            "selected_site_C": float(site_search.best_params_["C"]), "n_train": int(len(x_train)),
            "n_internal": int(len(x_int)), "n_external": int(len(pred_ext)), "n_sites_train": n_sites,
            "site_chance": 1.0 / n_sites, "pred_int": pred_int, "pred_ext": pred_ext, "site_pred_int": site_pred}


def internal_external_split(sites: np.ndarray, is_train: np.ndarray, external_sites: list,
                            subjects: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Row masks of the protocol from a train/test split and a list of external sites.

    Training rows are the ``is_train`` rows of internal sites; internal test rows are the
    other rows of internal sites; external rows are every row of the external sites (they
    must never be used for fitting). With ``subjects`` (N,), a subject also scanned at an
    external site (a travelling subject) leaves the training rows, as in the leave-site-out
    folds (:func:`medssl.data.splits.leave_site_out_folds`): no subject is on both sides.

    Returns:
        ``{"train", "internal", "external"}`` boolean masks over the rows.
    """
    sites, is_train = np.asarray(sites), np.asarray(is_train, bool)
    unknown = sorted(set(map(str, external_sites)) - set(map(str, sites)))
    if unknown:
        raise ValueError(f"external site(s) {unknown} not found; sites are {sorted(set(map(str, sites)))}")
    ext = np.isin(sites.astype(str), [str(s) for s in external_sites])
    if ext.all():
        raise ValueError("every site is external; keep at least one site for training and the internal test")
    train = is_train & ~ext
    if subjects is not None:
        subjects = np.asarray(subjects)
        train &= ~np.isin(subjects, subjects[ext])
    n_internal, n_sites = len(np.unique(sites[train])), len(np.unique(sites))
    if n_internal < 2:  # the site probe (logistic regression) cannot be fitted on one class
        raise ValueError(f"the OpenBHB site probe needs training scans of at least 2 internal sites; here {n_internal} "
                         f"internal site(s) of {n_sites} have them ({len(set(map(str, external_sites)))} external): "
                         "name fewer sites with --external-sites, or evaluate on data from 3 or more sites")
    return {"train": train, "internal": ~is_train & ~ext, "external": ext}
