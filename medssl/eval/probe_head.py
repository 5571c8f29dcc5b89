"""Linear heads fitted as probes on frozen embeddings, for probe-initialised fine-tuning (LP-FT).

Kumar et al., "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution",
ICLR 2022: fine-tuning from a random head sends large, noisy gradients into the pretrained
encoder during the first steps; fitting the linear probe first and starting fine-tuning from it
avoids that. :func:`fit_probe_head` fits the probe (scikit-learn, standardisation + ridge or
logistic regression, hyper-parameter chosen on the validation rows) and returns it as the weight
and bias of an ``nn.Linear`` on the *raw* embeddings — the standardisation is folded in, so
``x @ W.T + b`` equals the pipeline's ``decision_function`` (``tests/eval/test_probe_head.py``).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss, make_scorer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medssl.eval.probes import LOGISTIC_CS, RIDGE_ALPHAS, _search


def fold_standardisation(scaler: StandardScaler, coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights on standardised features → weights on raw features.

    ``coef @ ((x - μ) / σ) + c = (coef / σ) @ x + (c - coef @ (μ / σ))``.

    Args:
        scaler: fitted :class:`StandardScaler` (``mean_`` μ, ``scale_`` σ, both (D,)).
        coef: (K, D); intercept: (K,).

    Returns:
        ``(W (K, D), b (K,))`` float32.
    """
    coef = np.atleast_2d(coef)
    w = coef / scaler.scale_
    b = np.asarray(intercept, float).reshape(-1) - coef @ (scaler.mean_ / scaler.scale_)
    return w.astype(np.float32), b.astype(np.float32)


def _fit(task: str, x, t, x_val, t_val, n_classes: int = 2):
    if task == "regression":
        model, params, _ = _search(make_pipeline(StandardScaler(), Ridge()), {"ridge__alpha": RIDGE_ALPHAS}, x, t, None,
                                   "neg_mean_squared_error", val=(x_val, t_val))
        return model, {"alpha": float(params["ridge__alpha"])}
    # log-loss over every class, also when the validation rows hold only some of them
    scorer = make_scorer(log_loss, greater_is_better=False, response_method="predict_proba", labels=np.arange(n_classes))
    model, params, _ = _search(make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
                               {"logisticregression__C": LOGISTIC_CS}, x, t, None, scorer, val=(x_val, t_val))
    return model, {"C": float(params["logisticregression__C"])}


def fit_probe_head(x: np.ndarray, t: np.ndarray, x_val: np.ndarray, t_val: np.ndarray, task: str,
                   n_outputs: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """The linear probe as a fine-tuning head.

    Args:
        x, x_val: (N, D) / (M, D) embeddings of the training / validation rows.
        t, t_val: the fine-tuning targets: (N,) standardised values (``"regression"``; ridge, α by
            validation MSE), (N,) class codes 0..K-1 (``"classification"``; multinomial logistic
            regression, C by validation log-loss) or (N, K) 0/1 (``"multilabel"``; one logistic
            regression per label, C by its validation log-loss).
        task: as :class:`medssl.eval.finetune.FinetuneOptions`.
        n_outputs: the head's outputs (1 for regression, K otherwise).

    Returns:
        ``(W (n_outputs, D), b (n_outputs,), info)`` with the chosen hyper-parameter(s) in ``info``.
        Classification: a binary probe's logit ``z`` becomes the logits ``(0, z)``, whose softmax
        is the probe's probability.

    Raises:
        ValueError: a class (or a label's positive/negative) is missing from the training rows.
    """
    if task == "regression":
        model, info = _fit(task, x, t, x_val, t_val)
        return (*fold_standardisation(model[0], model[-1].coef_, np.atleast_1d(model[-1].intercept_)), info)
    if task == "multilabel":
        weights, biases, cs = [], [], []
        for k in range(t.shape[1]):
            if len(np.unique(t[:, k])) < 2:
                raise ValueError(f"head_init='probe': label {k} has a single value in the training rows; "
                                 "use head_init='random' or more labelled rows")
            w, b, info = fit_probe_head(x, t[:, k], x_val, t_val[:, k], "classification", 2)
            weights.append(w[1])
            biases.append(b[1])
            cs.append(info["C"])
        return np.stack(weights), np.asarray(biases, np.float32), {"C": cs}
    missing = sorted(set(range(n_outputs)) - set(np.unique(t).tolist()))
    if missing:
        raise ValueError(f"head_init='probe': classes {missing} are absent from the training rows; "
                         "use head_init='random' or more labelled rows")
    model, info = _fit(task, x, t, x_val, t_val, n_outputs)
    w, b = fold_standardisation(model[0], model[-1].coef_, model[-1].intercept_)
    if n_outputs == 2:  # scikit-learn's binary model: one logit for class 1
        w, b = np.concatenate([np.zeros_like(w), w]), np.concatenate([np.zeros_like(b), b])
    return w, b, info
