"""Probes on frozen embeddings (scikit-learn): ridge / logistic, kNN and a small MLP.

Every probe is a pipeline whose first step is a :class:`~sklearn.preprocessing.StandardScaler`,
so standardisation — like the hyper-parameter choice (cross-validation inside the training
split, folds grouped by subject so that scans of one subject never sit on both sides of an
inner fold) — sees the training rows only. The test rows are used once, to score.
``tests/eval/test_probes.py`` checks this with a spy on ``fit`` and with shuffled labels.

With ``val=(x_val, y_val)`` (a data set's official validation split) the hyper-parameter is
chosen on those rows instead: each grid value is fitted on the training rows and scored once
on the validation rows (same grid; the cross-validation's score, except that ridge's
leave-one-subject-out CV scores the squared error and the validation rows the MAE); the best (the first
on ties) is refitted on the training rows alone. Validation rows never enter a fit.
``tests/eval/test_official_val.py`` checks the choice against a naive loop.

Each probe returns a dict of metrics (with bootstrap 95 % intervals ``<metric>_ci``), the
chosen hyper-parameter, ``"selection"`` (how it was chosen, in words) and ``"pred"`` (test
predictions; dropped from metrics.json).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge, RidgeCV
from sklearn.model_selection import (GridSearchCV, GroupKFold, PredefinedSplit, StratifiedGroupKFold,
                                     cross_val_predict)
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

from medssl.eval import metrics as M

RIDGE_ALPHAS = np.logspace(-2, 5, 15)
LOGISTIC_CS = np.logspace(-3, 2, 6)
KNN_KS = (1, 3, 5, 10, 20, 50)
MLP_ALPHAS = (1e-3, 1e-1, 10.0)
REGRESSION_CI = {"mae": M.mae, "rmse": M.rmse, "r2": M.r2, "pearson_r": M.pearson_r}
CLASSIFICATION_CI = {"balanced_accuracy": M.balanced_accuracy, "f1_macro": M.f1_macro}


def inner_folds(y: np.ndarray, groups: np.ndarray | None, classification: bool, seed: int = 0,
                n_splits: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """Subject-grouped inner CV folds over the training rows (stratified for classes when possible).

    Args:
        y: (N,) training targets.
        groups: (N,) subject ids (None: one subject per row).
        classification: stratify by class (each fold keeps every class when counts allow); folds
            whose training part holds a single class (a class with one training subject, held out)
            are left out, since a classifier cannot be fitted on them. A class with one training subject
            is in one validation fold at most: with three or more classes the folds, as many as the classes
            of several subjects allow, are stratified (each of those is in every validation fold); with two,
            the other folds validate on one class only (scikit-learn warns "A single label was found") and C
            is chosen on that class's rows, which is all such data can tell.
        seed: shuffling seed.
        n_splits: at most this many folds (fewer when there are few subjects / small classes).
    """
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    n_groups = len(np.unique(groups))
    k = min(n_splits, n_groups)
    if classification:
        # subjects per class (stratifying on rows would split a class whose rows are one subject's scans)
        codes = np.unique(y, return_inverse=True)[1]
        per_class = np.bincount(np.unique(np.stack([np.unique(groups, return_inverse=True)[1], codes]), axis=1)[1])
        several = per_class >= 2
        # a class of one subject can be in one validation fold only: the folds' number follows the others, and it
        # keeps its own stratum (counted with the largest class, it could take the place of that class's subject
        # in a fold and leave another fold without that class)
        k_strat = min(k, int(per_class[several].min())) if several.sum() >= 2 else 0
        if k_strat >= 2:
            with warnings.catch_warnings():  # "The least populated class in y has only 1 members": said above
                warnings.filterwarnings("ignore", "The least populated class", UserWarning)
                folds = list(StratifiedGroupKFold(k_strat, shuffle=True, random_state=seed).split(y, y, groups))
            return _fittable(folds, y)
    if k < 2:
        raise ValueError(f"a probe needs at least 2 training subjects for its inner cross-validation, got {n_groups}")
    # seeded shuffle of the subjects (GroupKFold's own shuffle needs scikit-learn >= 1.6)
    _, inverse = np.unique(groups, return_inverse=True)
    relabelled = np.random.default_rng(seed).permutation(n_groups)[inverse]
    folds = list(GroupKFold(k).split(y, y, relabelled))
    return _fittable(folds, y) if classification else folds


def _fittable(folds: list, y: np.ndarray) -> list:
    """The folds whose training part holds at least 2 classes (a classifier needs them)."""
    kept = [(fit, val) for fit, val in folds if len(np.unique(y[fit])) >= 2]
    if not kept:
        raise ValueError(f"every inner cross-validation fold leaves a single class to fit (training classes and "
                         f"their rows: {dict(zip(*(a.tolist() for a in np.unique(y, return_counts=True))))}); "
                         "a classification probe needs at least 2 training subjects in 2 classes")
    return kept


def _search(model, grid: dict, x, y, folds, scoring, error_score="raise", val=None) -> tuple:
    """Grid search → ``(model fitted on (x, y) with the best value, best params, selection in words)``.

    Without ``val``: :class:`GridSearchCV` over ``folds`` (inner CV of the training rows), refitted
    on all of them. With ``val=(x_val, y_val)``: one :class:`PredefinedSplit` (fit on ``x``, score
    on ``x_val``), then the best value is refitted on ``(x, y)`` alone — never on ``x_val``.
    """
    if val is not None:
        n_val = len(val[0])
        folds = PredefinedSplit(np.r_[np.full(len(x), -1), np.zeros(n_val, int)])
        x_all, y_all = np.concatenate([x, val[0]]), np.concatenate([np.asarray(y), np.asarray(val[1])])
    else:
        x_all, y_all = x, y
    search = GridSearchCV(model, grid, scoring=scoring, cv=folds, error_score=error_score, refit=val is None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(x_all, y_all)
        if val is None:
            return search.best_estimator_, search.best_params_, f"cross-validation on train ({len(folds)} folds)"
        best = clone(model).set_params(**search.best_params_).fit(x, y)
    return best, search.best_params_, f"official validation split (n={n_val})"


def _regression_report(y_test, pred, n_boot: int, seed: int, groups_test) -> dict:
    out = M.regression_metrics(y_test, pred)
    if n_boot:
        M.with_ci(out, REGRESSION_CI, y_test, pred, n_boot=n_boot, seed=seed, groups=groups_test)
    out["pred"] = pred
    return out


def classification_report(y_test, pred, proba, classes, n_boot: int, seed: int, groups_test) -> dict:
    """Scores of class predictions, as every classifier of medssl reports them (probes and fine-tuning).

    Args:
        y_test: (N,) true classes; pred: (N,) predicted classes (one of ``classes``);
        proba: (N, K) scores, column k for ``classes[k]`` (the training classes), or None;
        n_boot, seed, groups_test: bootstrap resamples (0: no intervals), their seed, subjects of the rows.

    Returns:
        metrics, ``chance`` (1/K), ``classes`` (training classes, then any class only in ``y_test``),
        ``confusion`` over them (rows: true), ``<metric>_ci`` and ``pred``.
    """
    out = M.classification_metrics(y_test, pred, proba, classes)
    out["chance"] = 1.0 / len(classes)
    # a class only in the test rows (never predicted) counts in balanced accuracy: it is a row of the matrix too
    labels = np.concatenate([classes, np.setdiff1d(np.unique(y_test), classes)])
    out["classes"] = [int(c) if np.issubdtype(labels.dtype, np.integer) else str(c) for c in labels]
    out["confusion"] = [[int(np.sum((y_test == a) & (pred == b))) for b in labels] for a in labels]
    if n_boot:
        M.with_ci(out, CLASSIFICATION_CI, y_test, pred, n_boot=n_boot, seed=seed, groups=groups_test)
        if proba is not None and len(classes) == 2:
            out["auc_ci"] = list(M.bootstrap_ci(M.binary_auc, y_test == classes[1], proba[:, 1], n_boot=n_boot,
                                                seed=seed, groups=groups_test))
    out["pred"] = pred
    return out


def regression_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                     groups: np.ndarray | None = None, seed: int = 0, n_boot: int = 1000,
                     bias_correction: bool = False, groups_test: np.ndarray | None = None, val=None) -> dict:
    """Standardisation + ridge regression; α ∈ :data:`RIDGE_ALPHAS` chosen on the training split.

    With one row per subject (``groups`` None or all distinct) α is chosen by efficient
    leave-one-subject-out CV (``RidgeCV``); otherwise by 5-fold subject-grouped CV; with
    ``val=(x_val, y_val)`` by the MAE on those validation rows.

    Args:
        x_train, x_test: (N, D) embeddings. y_train, y_test: (N,) targets (e.g. age, years).
        groups, groups_test: subject ids of the rows (grouped CV / cluster bootstrap).
        seed: CV shuffling and bootstrap seed. n_boot: bootstrap replicates (0: no intervals).
        bias_correction: add ``"brain_age_gap"`` with the linear bias correction fitted on
            out-of-fold predictions of the *training* rows (:func:`medssl.eval.metrics.brain_age_gap`).
        val: ``(x_val (M, D), y_val (M,))`` validation rows for choosing α (module docstring).

    Returns:
        ``{"mae", "rmse", "r2", "pearson_r", "<metric>_ci", "alpha", "selection", "pred"}`` (+ ``"brain_age_gap"``).
    """
    unique = groups is None or len(np.unique(groups)) == len(groups)
    if unique and val is None:
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS)).fit(x_train, y_train)
        alpha, selection = float(model[-1].alpha_), "leave-one-subject-out CV on train"
    else:
        folds = None if val is not None else inner_folds(y_train, groups, False, seed)
        model, params, selection = _search(make_pipeline(StandardScaler(), Ridge()), {"ridge__alpha": RIDGE_ALPHAS},
                                           x_train, y_train, folds, "neg_mean_absolute_error", val=val)
        alpha = float(params["ridge__alpha"])
    pred = model.predict(x_test)
    out = _regression_report(y_test, pred, n_boot, seed, groups_test)
    out["alpha"], out["selection"] = alpha, selection
    if bias_correction:
        oof = cross_val_predict(make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS)), x_train, y_train,
                                cv=inner_folds(y_train, groups, False, seed))
        out["brain_age_gap"] = M.brain_age_gap(y_test, pred, M.fit_age_bias(y_train, oof))
    return out


def classification_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                         seed: int = 0, groups: np.ndarray | None = None, n_boot: int = 1000,
                         groups_test: np.ndarray | None = None, val=None) -> dict:
    """Standardisation + logistic regression; C ∈ :data:`LOGISTIC_CS` by subject-grouped,
    stratified CV (balanced accuracy) on the training split, or by the balanced accuracy on
    ``val=(x_val, y_val)`` when given.

    Returns:
        ``{"balanced_accuracy", "f1_macro", "accuracy", "auc", "chance" (1/#training classes),
        "classes" (the training classes, then any class only in the test rows), "confusion" (rows: true,
        columns: predicted, over ``classes``: its sum is the number of test rows), "<metric>_ci", "C",
        "selection", "pred"}``.
    """
    folds = None if val is not None else inner_folds(y_train, groups, True, seed)
    model, params, selection = _search(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                                       {"logisticregression__C": LOGISTIC_CS}, x_train, y_train, folds,
                                       "balanced_accuracy", val=val)
    proba = model.predict_proba(x_test)
    classes = model.classes_
    pred = classes[proba.argmax(1)]
    out = classification_report(np.asarray(y_test), pred, proba, classes, n_boot, seed, groups_test)
    out["C"], out["selection"] = float(params["logisticregression__C"]), selection
    return out


def knn_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, task: str,
              seed: int = 0, groups: np.ndarray | None = None, n_boot: int = 1000,
              groups_test: np.ndarray | None = None, val=None) -> dict:
    """k-nearest neighbours on standardised, L2-normalised embeddings (cosine neighbourhoods).

    k ∈ :data:`KNN_KS` (those smaller than the inner training folds) is chosen by grouped CV
    (MAE for ``task="regression"``, balanced accuracy for ``"classification"``), or by the
    same score on ``val=(x_val, y_val)`` when given.

    Returns:
        The metrics of :func:`regression_probe` / :func:`classification_probe`, with ``"k"``.
    """
    classification = _check_task(task)
    folds = None if val is not None else inner_folds(y_train, groups, classification, seed)
    n_fit = len(y_train) if val is not None else min(len(tr) for tr, _ in folds)
    ks = [k for k in KNN_KS if k <= n_fit] or [1]
    est = KNeighborsClassifier() if classification else KNeighborsRegressor()
    name = type(est).__name__.lower()
    model, params, selection = _search(make_pipeline(StandardScaler(), Normalizer(), est), {f"{name}__n_neighbors": ks},
                                       x_train, y_train, folds,
                                       "balanced_accuracy" if classification else "neg_mean_absolute_error", val=val)
    out = _predict_report(model, x_test, y_test, classification, n_boot, seed, groups_test)
    out["k"], out["selection"] = int(params[f"{name}__n_neighbors"]), selection
    return out


def mlp_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, task: str,
              seed: int = 0, groups: np.ndarray | None = None, n_boot: int = 1000, hidden: int = 256,
              groups_test: np.ndarray | None = None, val=None) -> dict:
    """One-hidden-layer MLP (ReLU, Adam, 300 epochs; no early stopping — too noisy on small sets).

    The L2 penalty ∈ :data:`MLP_ALPHAS` is chosen by grouped CV (or on ``val=(x_val, y_val)``);
    regression targets are standardised with training statistics (``TransformedTargetRegressor``). Seeded.

    Returns:
        The metrics of :func:`regression_probe` / :func:`classification_probe`, with ``"alpha"``.
    """
    classification = _check_task(task)
    kw = dict(hidden_layer_sizes=(hidden,), max_iter=300, random_state=seed)
    if classification:
        model, key = make_pipeline(StandardScaler(), MLPClassifier(**kw)), "mlpclassifier__alpha"
    else:
        model = TransformedTargetRegressor(make_pipeline(StandardScaler(), MLPRegressor(**kw)), transformer=StandardScaler())
        key = "regressor__mlpregressor__alpha"
    folds = None if val is not None else inner_folds(y_train, groups, classification, seed)
    model, params, selection = _search(model, {key: MLP_ALPHAS}, x_train, y_train, folds,
                                       "balanced_accuracy" if classification else "neg_mean_absolute_error", val=val)
    out = _predict_report(model, x_test, y_test, classification, n_boot, seed, groups_test)
    out["alpha"], out["selection"] = float(params[key]), selection
    return out


def multilabel_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                     seed: int = 0, groups: np.ndarray | None = None, n_boot: int = 1000,
                     groups_test: np.ndarray | None = None, names: list[str] | None = None, val=None) -> dict:
    """One logistic regression per finding (one-vs-rest) on standardised embeddings.

    Args:
        y_train, y_test: (N, K) 0/1 matrices (e.g. chest X-ray findings). A shared C ∈
            :data:`LOGISTIC_CS` is chosen by grouped CV on the macro ROC AUC of the training rows
            (or on ``val=(x_val, y_val (M, K))`` when given).
        names: K finding names for the per-class table.

    Returns:
        ``{"auc_macro", "f1_macro", "per_class", "auc_macro_ci", "C", "selection", "pred" ((N, K) probabilities)}``.
    """
    from sklearn.multiclass import OneVsRestClassifier

    y_train, y_test = np.asarray(y_train).astype(int), np.asarray(y_test).astype(int)
    folds = None if val is not None else inner_folds(y_train[:, 0], groups, False, seed)
    # macro AUC over the findings a fold can score: a rare finding absent from one fold must not void every C
    # (scikit-learn's "roc_auc" is undefined for the whole fold then, and the grid's first C won by default).
    # A plain (estimator, x, y) scorer: make_scorer takes classes_ [0, 1] (two findings) for a binary task
    # and keeps one probability column.
    def macro_auc(estimator, x, y) -> float:
        return M.multilabel_metrics(y, _findings(estimator.predict_proba(x), y.shape[1]))["auc_macro"]

    model, params, selection = _search(
        make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(max_iter=2000))),
        {"onevsrestclassifier__estimator__C": LOGISTIC_CS}, x_train, y_train, folds, macro_auc,
        error_score=np.nan, val=val)
    proba = _findings(model.predict_proba(x_test), y_train.shape[1])
    out = M.multilabel_metrics(y_test, proba, names=names)
    if n_boot:
        out["auc_macro_ci"] = list(M.bootstrap_ci(lambda y, p: M.multilabel_metrics(y, p)["auc_macro"], y_test, proba,
                                                  n_boot=n_boot, seed=seed, groups=groups_test))
    out["C"], out["selection"] = float(params["onevsrestclassifier__estimator__C"]), selection
    out["pred"] = proba
    return out


def _findings(proba: np.ndarray, k: int) -> np.ndarray:
    """(N, K) per-finding probabilities; one-vs-rest on a single finding column returns (N, 2) (absent, present)."""
    return proba[:, -k:]


def _check_task(task: str) -> bool:
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    return task == "classification"


def _predict_report(model, x_test, y_test, classification: bool, n_boot: int, seed: int, groups_test) -> dict:
    if not classification:
        return _regression_report(y_test, model.predict(x_test), n_boot, seed, groups_test)
    proba = model.predict_proba(x_test)
    return classification_report(np.asarray(y_test), model.classes_[proba.argmax(1)], proba, model.classes_,
                                  n_boot, seed, groups_test)


def mean_predictor_mae(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """MAE of always predicting the training mean (the floor any probe must beat)."""
    return M.mae(y_test, np.full(len(y_test), float(np.mean(y_train))))
