"""LP-FT: the probe-initialised head is the scikit-learn probe, and fine-tuning keeps it when nothing beats it."""

import numpy as np
import pytest
import torch
from eval_helpers import make_tiny_encoder
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medssl.eval.finetune import FinetuneOptions, finetune, predict
from medssl.eval.probe_head import fit_probe_head, fold_standardisation
from medssl.eval.probes import LOGISTIC_CS, RIDGE_ALPHAS


def _features(encoder, ds):
    encoder.eval()
    with torch.no_grad():
        return encoder(torch.stack([d["image"] for d in ds])).numpy()


def test_folded_standardisation_equals_the_pipelines_decision_function():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, [0.1, 5.0, 1.0, 40.0], size=(50, 4))
    y = x @ [1.0, -0.2, 0.5, 0.01] + rng.normal(size=50)
    for pipe in (make_pipeline(StandardScaler(), Ridge(alpha=2.0)).fit(x, y),
                 make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y > np.median(y)),
                 make_pipeline(StandardScaler(), LogisticRegression()).fit(x, np.digitize(y, np.quantile(y, [0.33, 0.66])))):
        w, b = fold_standardisation(pipe[0], pipe[-1].coef_, np.atleast_1d(pipe[-1].intercept_))
        expected = pipe.decision_function(x) if hasattr(pipe[-1], "predict_proba") else pipe.predict(x)
        np.testing.assert_allclose((x @ w.T + b).squeeze(), expected, rtol=1e-4, atol=1e-4)


def _naive_choice(make, grid, x, t, xv, tv, loss):
    """The first grid value with the lowest validation loss, fitted on the training rows only."""
    losses = [loss(tv, make(v).fit(x, t), xv) for v in grid]
    return grid[int(np.argmin(losses))]


def test_regression_probe_head_is_the_ridge_probe_and_lr_zero_keeps_it(data):
    tr, ytr, va, yva, te, _ = data
    enc = make_tiny_encoder()
    res = finetune(enc, tr, ytr, va, yva, FinetuneOptions(mode="head", head_init="probe", lr_head=0.0, epochs=2,
                                                          patience=5, batch_size=12))
    mean, std = ytr.mean(), ytr.std()
    x, xv, xs = _features(enc, tr), _features(enc, va), _features(enc, te)
    make = lambda a: make_pipeline(StandardScaler(), Ridge(alpha=a))  # noqa: E731
    alpha = _naive_choice(make, RIDGE_ALPHAS, x, (ytr - mean) / std, xv, (yva - mean) / std,
                          lambda t, m, xv: np.mean((m.predict(xv) - t) ** 2))
    assert res.extra["probe_alpha"] == pytest.approx(alpha)
    expected = make(alpha).fit(x, (ytr - mean) / std).predict(xs) * std + mean
    np.testing.assert_allclose(predict(res, te), expected, atol=1e-3)  # years
    assert res.best_epoch == 0 and [h["epoch"] for h in res.history] == [0, 1, 2]
    assert res.summary()["epochs_run"] == 2 and "probe_alpha" in res.summary()


@pytest.mark.parametrize("n_classes", [2, 3])
def test_classification_probe_head_gives_the_logistic_probes_probabilities(data, n_classes):
    tr, ytr, va, yva, te, _ = data
    edges = np.quantile(ytr, np.linspace(0, 1, n_classes + 1)[1:-1])
    cls = lambda y: np.digitize(y, edges)  # noqa: E731
    enc = make_tiny_encoder()
    res = finetune(enc, tr, cls(ytr), va, cls(yva), FinetuneOptions(task="classification", mode="head",
                                                                    head_init="probe", lr_head=0.0, epochs=1))
    x, xv, xs = _features(enc, tr), _features(enc, va), _features(enc, te)
    make = lambda c: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))  # noqa: E731
    c = _naive_choice(make, LOGISTIC_CS, x, cls(ytr), xv, cls(yva),
                      lambda t, m, xv: log_loss(t, m.predict_proba(xv), labels=m.classes_))
    assert res.extra["probe_C"] == pytest.approx(c)
    np.testing.assert_allclose(predict(res, te), make(c).fit(x, cls(ytr)).predict_proba(xs), atol=1e-4)


def test_multilabel_probe_head_is_one_logistic_probe_per_label(data):
    tr, ytr, va, yva, te, _ = data
    ml = lambda y: np.c_[y > 50, y > 35].astype(int)  # noqa: E731
    enc = make_tiny_encoder()
    res = finetune(enc, tr, ml(ytr), va, ml(yva), FinetuneOptions(task="multilabel", mode="head", head_init="probe",
                                                                  lr_head=0.0, epochs=1))
    x, xs = _features(enc, tr), _features(enc, te)
    for k, c in enumerate(res.extra["probe_C"]):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(x, ml(ytr)[:, k])
        np.testing.assert_allclose(predict(res, te)[:, k], probe.predict_proba(xs)[:, 1], atol=1e-4)


def test_lpft_keeps_the_probe_when_every_fine_tuning_epoch_is_worse(data):
    """A destructive learning rate: every epoch's validation loss is above the probe's, so the probe is kept
    (BatchNorm statistics included), and its validation loss is the history's epoch 0."""
    tr, ytr, va, yva, te, _ = data
    enc = make_tiny_encoder()
    probe = finetune(enc, tr, ytr, va, yva, FinetuneOptions(mode="head", head_init="probe", lr_head=0.0, epochs=1))
    res = finetune(enc, tr, ytr, va, yva, FinetuneOptions(head_init="probe", lr_encoder=5.0, lr_head=5.0, epochs=3,
                                                          patience=3, batch_size=12))
    assert res.history[0]["val_loss"] == pytest.approx(probe.history[0]["val_loss"])
    assert all(h["val_loss"] > res.history[0]["val_loss"] for h in res.history[1:])
    assert res.best_epoch == 0
    np.testing.assert_allclose(predict(res, te), predict(probe, te), atol=1e-5)


def _pretrained_like(ds):
    """The tiny encoder with BatchNorm running statistics of the images (as a pretrained encoder has them;
    the probe is fitted on eval-mode embeddings, which use those statistics)."""
    enc = make_tiny_encoder().train()
    with torch.no_grad():
        for _ in range(40):
            enc(torch.stack([d["image"] for d in ds]))
    return enc


def test_lpft_improves_on_its_probe_and_beats_a_random_head_at_the_same_budget(data):
    tr, ytr, va, yva, *_ = data
    opts = dict(epochs=12, lr_encoder=1e-3, lr_head=1e-3, batch_size=12, patience=12)
    lpft = finetune(_pretrained_like(tr), tr, ytr, va, yva, FinetuneOptions(head_init="probe", **opts))
    random_head = finetune(_pretrained_like(tr), tr, ytr, va, yva, FinetuneOptions(**opts))
    assert lpft.best_epoch > 0 and lpft.history[lpft.best_epoch]["val_loss"] < lpft.history[0]["val_loss"]
    assert min(h["val_loss"] for h in lpft.history) < 0.1 * min(h["val_loss"] for h in random_head.history)


def test_a_class_missing_from_the_training_rows_is_refused_by_name(data):
    tr, _, va, *_ = data
    y, y_val = np.zeros(len(tr), int), np.r_[np.zeros(len(va) - 1, int), 2]
    y[:5] = 1
    with pytest.raises(ValueError, match=r"classes \[2\] are absent"):
        finetune(make_tiny_encoder(), tr, y, va, y_val, FinetuneOptions(task="classification", head_init="probe"))
    with pytest.raises(ValueError, match="head_init"):
        FinetuneOptions(head_init="zeros")
    # validation rows of a single class still score every C (log-loss over all classes)
    rng = np.random.default_rng(0)
    w, _, info = fit_probe_head(rng.normal(size=(20, 3)), np.r_[np.zeros(10, int), np.ones(10, int)],
                                rng.normal(size=(4, 3)), np.zeros(4, int), "classification", 2)
    assert w.shape == (2, 3) and info["C"] in LOGISTIC_CS
    with pytest.raises(ValueError, match="label 1 has a single value"):
        fit_probe_head(np.ones((4, 2)), np.c_[[0, 1, 0, 1], [1, 1, 1, 1]], np.ones((2, 2)), np.c_[[0, 1], [1, 1]],
                       "multilabel", 2)
