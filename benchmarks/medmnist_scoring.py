"""Scoring of the MedMNIST rows (``benchmarks/medmnist.py``): test AUC / ACC of a linear probe or a fine-tuned model.

* :func:`score` — test AUC and ACC with 95 % bootstrap intervals;
* :func:`linear_probe` — standardisation + logistic regression on frozen embeddings, C in
  :data:`PROBE_CS` chosen by validation AUC;
* :func:`finetune_score` — full fine-tuning with :func:`ft_augment`, early stopping on the official
  validation split, :func:`few_label_epochs` epochs at a label fraction.

The test split is scored once per model; every choice uses the validation split.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from medssl.eval import metrics as M
from medssl.eval.finetune import FinetuneOptions, finetune_encoder_lrs, predict
from medssl.transforms.views import build_view_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from medmnist_data import Budget, Images  # next to this file

PROBE_CS = tuple(10.0 ** k for k in range(-4, 3))


def score(y: np.ndarray, p1: np.ndarray, seed: int, n_boot: int) -> dict:
    """Test AUC (positive-class score ``p1``) and ACC (p1 ≥ 0.5) with 95 % bootstrap intervals."""
    pred = (p1 >= 0.5).astype(int)
    return {"auc": M.binary_auc(y, p1), "acc": _accuracy(y, pred),
            "auc_ci": list(M.bootstrap_ci(M.binary_auc, y, p1, n_boot=n_boot, seed=seed)),
            "acc_ci": list(M.bootstrap_ci(_accuracy, y, pred, n_boot=n_boot, seed=seed)), "n_test": len(y)}


def _accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(y == pred))


def linear_probe(feats: dict, rows: np.ndarray, seed: int, n_boot: int) -> dict:
    """Standardisation + logistic regression on ``rows`` of train; C by validation AUC (on a tie the smallest C,
    the strongest regularisation); scored on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (xt, yt), (xv, yv), (xs, ys) = feats["train"], feats["val"], feats["test"]
    xt, yt = xt[rows], yt[rows]
    best = (-math.inf, None, None)
    for c in PROBE_CS:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, random_state=seed)).fit(xt, yt)
        auc = M.binary_auc(yv, model.predict_proba(xv)[:, 1])
        if auc > best[0]:
            best = (auc, c, model)
    out = score(ys, best[2].predict_proba(xs)[:, 1], seed, n_boot)
    out.update(C=best[1], val_auc=best[0], n_train=len(rows))
    return out


def ft_augment(spatial_dims: int, size: int):
    """Fine-tuning augmentation: a small affine (±10°, scale 0.9–1.1, shift 5 %) at the input size; flips on
    all axes for the 3D shape masks only (a left-right flip of a chest X-ray swaps the heart's side)."""
    flips = {"flip_prob": 0.5} if spatial_dims == 3 else {}
    return build_view_pipeline("none", spatial_dims, (size,) * spatial_dims,
                               {"affine_prob": 0.8, "rotate": 10.0, "scale": (0.9, 1.1), "translate": 0.05, **flips})


def few_label_epochs(b: Budget, fraction: float) -> int:
    """More passes over fewer labels (about the same number of optimiser steps as ~1/√fraction)."""
    return int(min(30, round(b.ft_epochs / math.sqrt(fraction))))


def finetune_score(encoder, data: dict, rows: np.ndarray, b: Budget, fraction: float, seed: int, device: str,
                   n_boot: int, lr: float = 0.0, encoder_lrs: tuple = ()) -> dict:
    """Full fine-tuning on ``rows`` of train (head learning rate ``lr``, default ``b.ft_lr``), early stopping on
    the official val loss, scored once on test.

    With several ``encoder_lrs`` (default: the head's), each starts from the same ``encoder`` weights and the
    one with the best official-val AUC is scored; the test split is never seen by the choice.
    """
    (xt, yt), (xv, yv), (xs, ys) = data["train"], data["val"], data["test"]
    epochs = few_label_epochs(b, fraction)
    lr = lr or b.ft_lr
    augment = ft_augment(xt.ndim - 2, xt.shape[-1]) if b.ft_augment else None
    t0 = time.time()
    opts = FinetuneOptions(task="classification", mode="full", lr_head=lr, epochs=epochs, batch_size=b.ft_batch,
                           patience=max(b.patience, epochs // 4), device=device, seed=seed, head_init=b.ft_head_init)
    result, val_auc = finetune_encoder_lrs(encoder, Images(xt[rows]), yt[rows], Images(xv), yv, encoder_lrs or (lr,),
                                           opts, augment, lambda r: M.binary_auc(yv, predict(r, Images(xv))[:, 1]),
                                           maximise=True)  # each run trains a copy of the encoder
    lr_encoder = result.options.lr_encoder
    out = score(ys, predict(result, Images(xs))[:, 1], seed, n_boot)
    out.update(best_epoch=result.best_epoch, epochs_run=len(result.history), n_train=len(rows),
               seconds=round(time.time() - t0, 1), history=result.history, lr_encoder=lr_encoder,
               val_auc=val_auc[lr_encoder])
    if len(val_auc) > 1:
        out["val_auc_per_encoder_lr"] = {str(k): v for k, v in val_auc.items()}
    return out
