"""Evaluation protocols on extracted features: which probes run on which rows.

Each function takes the output of :func:`~medssl.eval.features.extract_features` (``feats``:
``"features"`` plus metadata columns ``age`` (years, NaN = missing), ``site``/``sex``/``label``
(int codes, −1 = missing; ``label`` may be an (N, K) 0/1 matrix for multi-label findings) and
``subject``) and a boolean ``train_mask`` (the run's subject-level split). Rows outside the
mask are test rows: they are scored, never fitted on. An optional ``val_mask`` marks the
rows of an official validation split: they are neither training nor test rows, and the
probes choose their hyper-parameter on them (:func:`val_rows`). ``docs/evaluation.md`` says
when to use which protocol.
"""

from __future__ import annotations

import numpy as np

from medssl.eval import probes as P
from medssl.eval.embedding_map import embed_2d, pca_2d
from medssl.eval.fewshot import DEFAULT_FRACTIONS, DEFAULT_SEEDS, label_fraction_curve
from medssl.eval.openbhb import internal_external_split, openbhb_intervals, run_openbhb
from medssl.eval.site import harmonisation_baseline, leave_site_out, site_prediction

PROTOCOLS = ("default", "linear", "knn", "mlp", "site", "openbhb", "fewshot", "finetune")
REGRESSION_TARGETS = ("age",)
KIND_OF_PROBE = {"linear": "ridge / logistic regression", "knn": "k-nearest neighbours", "mlp": "one-hidden-layer MLP"}


def task_of(feats: dict, target: str) -> str:
    """``"regression"`` (age), ``"multilabel"`` ((N, K) label matrix) or ``"classification"``."""
    if target in REGRESSION_TARGETS:
        return "regression"
    return "multilabel" if np.ndim(feats[target]) == 2 else "classification"


def valid_rows(feats: dict, target: str) -> np.ndarray:
    """Rows whose ``target`` is known."""
    y = np.asarray(feats[target])
    if y.ndim == 2:
        return np.all(y >= 0, axis=1)
    return ~np.isnan(y.astype(float)) if target in REGRESSION_TARGETS else y >= 0


def val_rows(feats: dict, target: str, val_mask: np.ndarray | None) -> np.ndarray | None:
    """Validation rows usable to choose a hyper-parameter for ``target``, or None (then: CV on train).

    Usable: at least 2 rows with a known ``target``, with 2 classes (categories) or both values
    of every finding (multi-label), so that the selection score is defined.
    """
    if val_mask is None or not np.any(val_mask):
        return None
    va = np.asarray(val_mask, bool) & valid_rows(feats, target)
    y = np.asarray(feats[target])[va]
    task = task_of(feats, target)
    if va.sum() < 2 or (task == "classification" and len(np.unique(y)) < 2) or (
            task == "multilabel" and not np.all((y.min(0) == 0) & (y.max(0) == 1))):
        return None
    return va


def _split(feats: dict, target: str, train_mask: np.ndarray, min_train: int = 5, val_mask: np.ndarray | None = None):
    """``(train rows, test rows, y, task)`` of ``target``, or None when it cannot be evaluated (:func:`why_skipped`)."""
    if why_skipped(feats, target, train_mask, min_train, val_mask) is not None:
        return None
    return (*target_rows(feats, target, train_mask, val_mask), np.asarray(feats[target]), task_of(feats, target))


def target_rows(feats: dict, target: str, train_mask: np.ndarray, val_mask: np.ndarray | None):
    """Boolean (train, test) rows with a value of ``target``; validation rows are never test rows."""
    ok = valid_rows(feats, target)
    held_out = ~train_mask if val_mask is None else ~train_mask & ~np.asarray(val_mask, bool)
    return train_mask & ok, held_out & ok


def why_skipped(feats: dict, target: str, train_mask: np.ndarray, min_train: int = 5,
                val_mask: np.ndarray | None = None) -> str | None:
    """Why ``target`` cannot be evaluated on these rows, in words (None: it can): it is absent, fewer than
    ``min_train`` training or 2 held-out scans have a value, or the training scans hold one class only."""
    if target not in feats:
        return "the data have no such column"
    tr, te = target_rows(feats, target, train_mask, val_mask)
    if tr.sum() < min_train:
        return f"{int(tr.sum())} training scan(s) have a value, at least {min_train} are needed"
    if te.sum() < 2:
        return (f"{int(te.sum())} held-out scan(s) have a value, at least 2 are needed (a larger data.test_fraction; "
                "a card's official test split is kept as it is, and data.limit keeps only the card's first N scans)")
    if task_of(feats, target) == "classification" and len(np.unique(np.asarray(feats[target])[tr])) < 2:
        return "the training scans hold a single class"
    return None


def probe_targets(feats: dict, train_mask: np.ndarray, targets: list[str], kind: str = "linear", seed: int = 0,
                  n_boot: int = 1000, names: dict[str, list[str]] | None = None,
                  val_mask: np.ndarray | None = None) -> dict:
    """One probe per target (``kind``: linear | knn | mlp); targets lacking data are skipped.

    ``names`` (``{target: class names}``) labels the per-finding results of multi-label targets.
    ``val_mask`` (N,): official validation rows; where usable for a target (:func:`val_rows`)
    the probe's hyper-parameter is chosen on them, otherwise by CV on the training rows.

    Returns:
        ``{target: metrics}`` (see :mod:`medssl.eval.probes`); age probes include the
        bias-corrected brain-age gap for linear probes.
    """
    out = {}
    for target in targets:
        if (split := _split(feats, target, train_mask, val_mask=val_mask)) is None:
            continue
        tr, te, y, task = split
        out[target] = _probe(feats["features"], y, tr, te, feats.get("subject"), task, kind, seed, n_boot,
                             bias_correction=target == "age", names=(names or {}).get(target),
                             va=val_rows(feats, target, val_mask))
    return out


def _probe(x, y, tr, te, subjects, task: str, kind: str, seed: int, n_boot: int, bias_correction: bool = False,
           names: list[str] | None = None, va=None) -> dict:
    """Fit the ``kind`` probe on rows ``tr`` (mask or indices), score on rows ``te``; with rows ``va``,
    the hyper-parameter is chosen on them (never fitted on)."""
    if kind not in KIND_OF_PROBE:
        raise ValueError(f"unknown probe kind {kind!r}; valid: {sorted(KIND_OF_PROBE)}")
    g_tr, g_te = (subjects[tr], subjects[te]) if subjects is not None else (None, None)
    if task == "classification":
        y = np.asarray(y).astype(int)
    common = dict(seed=seed, groups=g_tr, n_boot=n_boot, groups_test=g_te, val=None if va is None else (x[va], y[va]))
    if task == "multilabel":
        return P.multilabel_probe(x[tr], y[tr], x[te], y[te], names=names, **common)
    if kind == "linear" and task == "regression":
        return P.regression_probe(x[tr], y[tr], x[te], y[te], bias_correction=bias_correction, **common)
    if kind == "linear":
        return P.classification_probe(x[tr], y[tr], x[te], y[te], **common)
    return (P.knn_probe if kind == "knn" else P.mlp_probe)(x[tr], y[tr], x[te], y[te], task, **common)


def site_effect(feats: dict, train_mask: np.ndarray, seed: int = 0, n_boot: int = 1000, targets=("age",),
                site_names: list[str] | None = None) -> dict:
    """Site prediction, leave-site-out evaluation of each target and the ComBat baseline.

    Returns:
        ``{"prediction": site probe metrics, "leave_site_out": {target: …},
        "harmonisation": {"raw"|"combat": {target: metrics}, "covariates": …}}``; parts that
        the data cannot support (no labels, too few scans per site) are left out. Leave-site-out
        results are keyed by ``site_names[code]`` when given.

    Raises:
        ValueError: fewer than 2 sites among the scans (nothing of the protocol can run).
    """
    x, site, subjects = feats["features"], np.asarray(feats["site"]), np.asarray(feats["subject"])
    n_sites = len(np.unique(site[site >= 0]))
    if n_sites < 2:
        raise ValueError(f"the site protocol needs scans of at least 2 sites, found {n_sites} (the card's site column); "
                         "on single-site data use the default protocol (linear probes)")
    out: dict = {}
    split = _split(feats, "site", train_mask)
    if split is None:
        return out
    tr, te, _, _ = split
    out["prediction"] = site_prediction(x[tr], site[tr], x[te], site[te], subjects[tr], subjects[te], seed, n_boot)
    out["prediction"].pop("pred")
    known = site >= 0
    out["leave_site_out"] = {}
    for target in targets:
        if target not in feats or task_of(feats, target) == "multilabel":
            continue
        rows = known & valid_rows(feats, target)
        if len(np.unique(site[rows])) >= 2:
            y = np.asarray(feats[target])[rows]
            names = np.asarray(site_names)[site[rows]] if site_names else site[rows]
            out["leave_site_out"][target] = leave_site_out(x[rows], y if target == "age" else y.astype(int), names,
                                                           subjects[rows], task_of(feats, target), seed)
    te_seen = te & np.isin(site, np.unique(site[tr]))
    used = tr | te_seen
    candidates = [t for t in targets if t in feats and t != "site" and task_of(feats, t) != "multilabel"]
    left_out = {c: f"{int((~valid_rows(feats, c)[used]).sum())} of {int(used.sum())} scans lack it"
                for c in dict.fromkeys([*candidates, "age", "sex"]) if c in feats and not valid_rows(feats, c)[used].all()}
    probe_targets_ = {t: (np.asarray(feats[t])[tr], np.asarray(feats[t])[te_seen], task_of(feats, t))
                      for t in candidates if t not in left_out}
    covariates = {c: (np.asarray(feats[c])[tr].astype(float), np.asarray(feats[c])[te_seen].astype(float))
                  for c in ("age", "sex") if c in feats and c not in left_out}
    counts = np.unique(site[tr], return_counts=True)[1]
    if len(counts) >= 2 and counts.min() >= 2 and te_seen.sum() >= 2:
        out["harmonisation"] = harmonisation_baseline(x[tr], x[te_seen], site[tr], site[te_seen], probe_targets_, covariates,
                                                      subjects[tr], seed, groups_test=subjects[te_seen])
        out["harmonisation"]["left_out"] = left_out  # ComBat needs every row's value: said, not silently dropped
    return out


def openbhb_protocol(feats: dict, train_mask: np.ndarray, external_sites: list[int] | None = None,
                     n_boot: int = 0, seed: int = 0) -> dict:
    """The OpenBHB challenge protocol (:func:`~medssl.eval.openbhb.run_openbhb`) on a run's split.

    Training rows: training-split rows of internal sites; internal test: test-split rows of
    internal sites; external test: every row of ``external_sites`` (site codes; default: the
    last site code); subjects also scanned at an external site are left out of the training rows.
    Rows without age or site are dropped. With ``n_boot`` > 0 the scores get
    95 % bootstrap intervals over test subjects (:func:`~medssl.eval.openbhb.openbhb_intervals`).
    """
    ok = valid_rows(feats, "age") & valid_rows(feats, "site")
    site = np.asarray(feats["site"])
    sites = sorted(np.unique(site[ok]).tolist())
    if len(sites) < 2:
        raise ValueError(f"the OpenBHB protocol needs at least 2 sites (internal + external), found {len(sites)}")
    external = list(external_sites) if external_sites else [sites[-1]]
    subjects = np.asarray(feats["subject"])[ok] if "subject" in feats else None
    m = internal_external_split(site[ok], train_mask[ok], external, subjects)
    x, age = feats["features"][ok], np.asarray(feats["age"])[ok]
    res = run_openbhb(x[m["train"]], age[m["train"]], site[ok][m["train"]], x[m["internal"]], age[m["internal"]],
                      site[ok][m["internal"]], x[m["external"]], age[m["external"]])
    if n_boot:
        g_int, g_ext = (None, None) if subjects is None else (subjects[m["internal"]], subjects[m["external"]])
        res.update(openbhb_intervals(age[m["internal"]], res["pred_int"], site[ok][m["internal"]], res["site_pred_int"],
                                     age[m["external"]], res["pred_ext"], g_int, g_ext, n_boot, seed))
    res["external_sites"] = [int(s) for s in external]
    res["age_int"], res["age_ext"] = age[m["internal"]], age[m["external"]]
    train_mean = float(age[m["train"]].mean())  # the naive baseline on the protocol's own test sets
    res["mean_predictor_mae_int"] = float(np.abs(age[m["internal"]] - train_mean).mean())
    res["mean_predictor_mae_ext"] = float(np.abs(age[m["external"]] - train_mean).mean())
    return res


def fewshot_protocol(feats: dict, train_mask: np.ndarray, targets: list[str], fractions=DEFAULT_FRACTIONS,
                     seeds=DEFAULT_SEEDS, kind: str = "linear", val_mask: np.ndarray | None = None) -> dict:
    """Few-label curves of the ``kind`` probes: ``{target: curve}`` (see :func:`label_fraction_curve`).

    Only the training labels are subsampled; with ``val_mask`` every point chooses its
    hyper-parameter on the full validation split (as in the MedMNIST protocol).
    """
    out = {}
    x, subjects = feats["features"], np.asarray(feats["subject"])
    for target in targets:
        split = _split(feats, target, train_mask, val_mask=val_mask)
        if split is None or split[3] == "multilabel":
            continue
        tr, te, y, task = split
        metric = "mae" if task == "regression" else "balanced_accuracy"
        va = val_rows(feats, target, val_mask)

        def fit_score(rows, seed, te=te, y=y, task=task, va=va):
            return _probe(x, y, rows, te, subjects, task, kind, seed, n_boot=0, va=va)

        out[target] = label_fraction_curve(fit_score, np.flatnonzero(tr), subjects, metric, fractions, seeds,
                                           None if task == "regression" else y)
        if task == "classification":  # as the probes state it: 1 / training classes
            out[target]["chance"] = 1.0 / len(np.unique(np.asarray(y)[tr]))
    return out


def embedding_maps(feats: dict, method: str, seed: int = 0) -> dict:
    """``{"xy": (N, 2), "method", "explained", "age", "site", "label"}`` for
    :func:`~medssl.eval.embedding_map.plot_embedding_maps` (``explained``: each PCA axis's share of
    the variance of the standardised embeddings; None for t-SNE)."""
    if method == "pca":
        xy, explained = pca_2d(feats["features"], seed)
    else:
        xy, explained = embed_2d(feats["features"], method, seed), None
    out = {"xy": xy, "method": method, "explained": explained}
    for k in ("age", "site", "label"):
        if k in feats and np.ndim(feats[k]) == 1:
            out[k] = np.asarray(feats[k])
    return out
