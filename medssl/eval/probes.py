"""Linear probes on frozen embeddings (scikit-learn).

Standardisation and the regularisation strength are fitted on the training split only
(inner cross-validation); the test split is used once, for the reported metrics.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error, r2_score, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

RIDGE_ALPHAS = np.logspace(-2, 5, 15)
LOGISTIC_CS = np.logspace(-3, 2, 6)


def regression_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> dict:
    """Ridge regression, α by efficient leave-one-out CV on the training split.

    Returns: ``{"mae", "r2", "pearson_r", "alpha", "pred"}`` (MAE in the target's unit, e.g. years).
    """
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
    model.fit(x_train, y_train)
    pred = model.predict(x_test)
    return {"mae": float(mean_absolute_error(y_test, pred)), "r2": float(r2_score(y_test, pred)),
            "pearson_r": float(np.corrcoef(y_test, pred)[0, 1]) if np.std(pred) > 0 else 0.0,
            "alpha": float(model[-1].alpha_), "pred": pred}


def classification_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                         seed: int = 0) -> dict:
    """Logistic regression, C by stratified 5-fold CV (balanced accuracy) on the training split.

    Returns: ``{"balanced_accuracy", "chance", "auc" (binary only), "C", "pred"}``.
    """
    n_classes = len(np.unique(y_train))
    folds = min(5, int(np.bincount(y_train).min()) if n_classes > 1 else 2)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    search = GridSearchCV(model, {"logisticregression__C": LOGISTIC_CS}, scoring="balanced_accuracy",
                          cv=StratifiedKFold(max(folds, 2), shuffle=True, random_state=seed))
    search.fit(x_train, y_train)
    pred = search.predict(x_test)
    out = {"balanced_accuracy": float(balanced_accuracy_score(y_test, pred)), "chance": 1.0 / n_classes,
           "C": float(search.best_params_["logisticregression__C"]), "pred": pred}
    if n_classes == 2 and len(np.unique(y_test)) == 2:
        out["auc"] = float(roc_auc_score(y_test, search.predict_proba(x_test)[:, 1]))
    return out


def mean_predictor_mae(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """MAE of always predicting the training mean (the floor any probe must beat)."""
    return float(mean_absolute_error(y_test, np.full_like(y_test, y_train.mean())))
