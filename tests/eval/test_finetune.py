"""Fine-tuning: learns, freezes what it should, separate learning rates, early stopping, deterministic."""

import numpy as np
import pytest
import torch

from eval_helpers import make_tiny_encoder, state_copy
from medssl.eval.finetune import (FinetuneOptions, encoder_blocks, finetune, finetune_and_score, finetune_encoder_lrs,
                                  predict)
from medssl.eval.probes import mean_predictor_mae


def test_full_finetuning_learns_age_and_leaves_the_callers_encoder_untouched(data):
    tr, ytr, va, yva, te, yte = data
    enc = make_tiny_encoder()
    before = state_copy(enc)
    res = finetune_and_score(enc, tr, ytr, va, yva, te, yte,
                             FinetuneOptions(epochs=12, lr_encoder=3e-3, lr_head=3e-2, batch_size=12, patience=12), n_boot=50)
    assert res["mae"] < 0.5 * mean_predictor_mae(ytr, yte)
    assert res["mae_ci"][0] <= res["mae"] <= res["mae_ci"][1]
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    assert res["finetune"]["best_epoch"] >= 1 and len(res["history"]) == 12


def test_head_mode_freezes_the_encoder_and_last_mode_trains_only_the_last_blocks(data):
    tr, ytr, va, yva, *_ = data
    enc = make_tiny_encoder()
    before = state_copy(enc)
    head = finetune(enc, tr, ytr, va, yva, FinetuneOptions(mode="head", epochs=2, lr_head=1e-2))
    assert head.n_trainable == 0
    assert all(torch.equal(before[k], v) for k, v in head.model.encoder.state_dict().items())  # incl. BN statistics
    last = finetune(enc, tr, ytr, va, yva, FinetuneOptions(mode="last", last_blocks=2, epochs=2, lr_encoder=1e-2))
    blocks = encoder_blocks(enc)
    assert [type(b).__name__ for b in blocks] == ["Conv3d", "BatchNorm3d", "Conv3d", "BatchNorm3d"]
    after = last.model.encoder.state_dict()
    frozen = [k for k in before if k.startswith(("net.0.", "net.1."))]
    trained = [k for k in before if k.startswith(("net.3.weight", "net.4.weight"))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # BN stats of frozen blocks too
    assert trained and all(not torch.equal(before[k], after[k]) for k in trained)
    with pytest.raises(ValueError, match="blocks"):
        finetune(enc, tr, ytr, va, yva, FinetuneOptions(mode="last", last_blocks=9, epochs=1))


def test_frozen_norm_stats_keep_the_pretrained_statistics_and_train_the_rest(data):
    """freeze_norm_stats: BatchNorm running statistics stay the pretrained ones (they move by default,
    even at lr 0), while BatchNorm scale/shift and the convolutions are trained."""
    tr, ytr, va, yva, *_ = data
    enc = make_tiny_encoder()
    before = state_copy(enc)
    stats = [k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(stats) == 6
    still = finetune(enc, tr, ytr, va, yva, FinetuneOptions(epochs=1, lr_encoder=0.0, lr_head=0.0, weight_decay=0.0))
    assert all(not torch.equal(before[k], still.model.encoder.state_dict()[k]) for k in stats)  # default: batch stats
    frozen = finetune(enc, tr, ytr, va, yva, FinetuneOptions(epochs=3, lr_encoder=1e-2, patience=3,
                                                             freeze_norm_stats=True))
    after = frozen.model.encoder.state_dict()
    assert frozen.best_epoch >= 1 and all(torch.equal(before[k], after[k]) for k in stats)
    trained = [k for k in before if k not in stats]
    assert any(".1.weight" in k for k in trained) and all(not torch.equal(before[k], after[k]) for k in trained)


def test_encoder_lr_grid_keeps_the_best_validation_run_and_replays_exactly(data):
    """finetune_encoder_lrs: one run per lr, scored on validation (default: lowest validation loss; or a
    criterion to maximise); the kept run predicts exactly like a run with that lr alone."""
    tr, ytr, va, yva, te, _ = data
    enc, opts, lrs = make_tiny_encoder(), FinetuneOptions(epochs=2, patience=2, seed=1), (3e-2, 1e-6)
    alone = {lr: finetune(enc, tr, ytr, va, yva, FinetuneOptions(epochs=2, patience=2, seed=1, lr_encoder=lr)) for lr in lrs}
    loss = {lr: min(h["val_loss"] for h in r.history) for lr, r in alone.items()}
    assert loss[3e-2] != loss[1e-6]
    best, scores = finetune_encoder_lrs(enc, tr, ytr, va, yva, lrs, opts)
    assert scores == loss and best.options.lr_encoder == min(loss, key=loss.get)
    np.testing.assert_array_equal(predict(best, te), predict(alone[best.options.lr_encoder], te))
    worst, _ = finetune_encoder_lrs(enc, tr, ytr, va, yva, lrs, opts, criterion=lambda r: loss[r.options.lr_encoder],
                                    maximise=True)
    assert worst.options.lr_encoder == max(loss, key=loss.get)
    with pytest.raises(ValueError, match="empty"):
        finetune_encoder_lrs(enc, tr, ytr, va, yva, (), opts)


def test_separate_learning_rates_and_determinism(data, monkeypatch):
    tr, ytr, va, yva, te, _ = data
    seen = {}
    original = torch.optim.AdamW.__init__

    def spy(self, groups, **kw):
        seen["lrs"] = sorted(g["lr"] for g in groups)
        original(self, groups, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "__init__", spy)
    opts = FinetuneOptions(epochs=2, lr_encoder=1e-4, lr_head=5e-3, seed=3)
    a = predict(finetune(make_tiny_encoder(), tr, ytr, va, yva, opts), te)
    assert seen["lrs"] == [1e-4, 5e-3]
    b = predict(finetune(make_tiny_encoder(), tr, ytr, va, yva, opts), te)
    np.testing.assert_array_equal(a, b)


def test_early_stopping_keeps_the_best_epoch(data):
    tr, ytr, va, yva, *_ = data
    res = finetune(make_tiny_encoder(), tr, ytr, va, yva,
                   FinetuneOptions(epochs=40, lr_encoder=0.3, lr_head=0.3, patience=2, batch_size=8))
    losses = [h["val_loss"] for h in res.history]
    assert len(losses) < 40 and res.best_epoch == int(np.argmin(losses)) + 1
    assert len(losses) - res.best_epoch == 2  # stopped after `patience` epochs without improvement
    with torch.no_grad():
        out = res.model(torch.stack([d["image"] for d in va])).squeeze(1)
    val_loss = torch.nn.functional.huber_loss(out, torch.as_tensor((yva - res.target_mean) / res.target_std,
                                                                   dtype=torch.float32))
    assert float(val_loss) == pytest.approx(min(losses), rel=1e-5)


def test_classification_and_multilabel_heads(data):
    tr, ytr, va, yva, te, yte = data
    cls = lambda y: (y > 50).astype(int)  # noqa: E731
    res = finetune_and_score(make_tiny_encoder(), tr, cls(ytr), va, cls(yva), te, cls(yte),
                             FinetuneOptions(task="classification", epochs=15, lr_encoder=3e-3, lr_head=3e-2), n_boot=20)
    assert res["balanced_accuracy"] > 0.7 and res["chance"] == 0.5
    ml = lambda y: np.c_[y > 50, y > 35].astype(int)  # noqa: E731
    res = finetune_and_score(make_tiny_encoder(), tr, ml(ytr), va, ml(yva), te, ml(yte),
                             FinetuneOptions(task="multilabel", epochs=15, lr_encoder=3e-3, lr_head=3e-2), n_boot=20,
                             class_names=["old", "middle"])
    assert set(res["per_class"]) == {"old", "middle"} and res["auc_macro"] > 0.7
    assert res["pred"].shape == (len(te), 2) and np.all((res["pred"] >= 0) & (res["pred"] <= 1))
    with pytest.raises(ValueError, match="task"):
        FinetuneOptions(task="segmentation")


def test_augmentation_sees_every_training_batch_and_never_validation_images(data):
    """The batch transform runs on each training batch (seeded, so two runs agree) and not on val/test."""
    tr, ytr, va, yva, *_ = data
    seen = []

    def augment(x, generator):
        seen.append(x.shape[0])
        return x + 0.05 * torch.randn(x.shape, generator=generator, device=x.device)

    opts = FinetuneOptions(epochs=2, batch_size=12, patience=5)
    a = finetune(make_tiny_encoder(), tr, ytr, va, yva, opts, augment=augment)
    assert sum(seen) == 2 * len(tr)  # 2 epochs x 36 training images, none of the 12 validation ones
    b = finetune(make_tiny_encoder(), tr, ytr, va, yva, opts, augment=augment)
    c = finetune(make_tiny_encoder(), tr, ytr, va, yva, opts)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), c.model.state_dict().values()))



@pytest.mark.parametrize("field", ["lr_encoder", "lr_head", "weight_decay"])
def test_a_negative_learning_rate_or_decay_is_refused(field):
    """torch's AdamW checks only its default lr, not a parameter group's: `medssl evaluate --protocol finetune
    --lr-encoder -1` fine-tuned by gradient ascent and reported the result. 0 stays valid (a frozen control)."""
    with pytest.raises(ValueError, match=f"fine-tuning {field} must be >= 0, got -0.001"):
        FinetuneOptions(**{field: -1e-3})
    assert getattr(FinetuneOptions(**{field: 0.0}), field) == 0.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a CUDA GPU")
def test_a_missing_gpu_is_a_device_error_and_auto_falls_back_to_the_cpu(data):
    """docs/evaluation.md's example passed device="cuda": on a CPU machine that was torch's bare
    "Torch not compiled with CUDA enabled" AssertionError; the CLI already gave medssl's DeviceError."""
    from medssl.train.trainer import DeviceError
    tr, ytr, va, yva, _, _ = data
    with pytest.raises(DeviceError, match=r"FinetuneOptions.device=cuda but no CUDA GPU is visible; use device='cpu'"):
        finetune(make_tiny_encoder(), tr, ytr, va, yva, FinetuneOptions(device="cuda", epochs=1))
    res = finetune(make_tiny_encoder(), tr, ytr, va, yva, FinetuneOptions(device="auto", epochs=1, batch_size=12))
    assert res.options.device == "cpu" and next(res.model.parameters()).device.type == "cpu"


def test_every_epoch_trains_on_every_training_row_once_in_a_new_order(data):
    """The augmentation hook sees the training batches: each epoch is a permutation of the training rows (a
    new one each epoch, not the dataset order), and a training set smaller than one batch is still trained
    on (one batch, nothing dropped)."""
    tr, ytr, va, yva, *_ = data
    images = torch.stack([d["image"] for d in tr])

    def run(n, batch_size, epochs):
        seen = []

        def augment(x, generator):
            seen.extend(int(torch.argmin(((images - xi) ** 2).flatten(1).sum(1))) for xi in x)
            return x

        finetune(make_tiny_encoder(), tr[:n], ytr[:n], va, yva,
                 FinetuneOptions(epochs=epochs, batch_size=batch_size, patience=epochs), augment=augment)
        return [seen[e * n:(e + 1) * n] for e in range(epochs)], len(seen)

    (first, second), total = run(36, 12, 2)
    assert total == 72 and sorted(first) == sorted(second) == list(range(36))
    assert first != second and first != list(range(36))
    _, total = run(8, 16, 2)
    assert total == 16


def test_encoder_lr_ties_keep_the_earlier_lr_and_history_metric_is_in_target_units(data):
    """finetune_encoder_lrs: equal criteria keep the first lr of the grid (as documented). The history's
    val_metric is the validation MAE in years of the model of that epoch (here: the kept, best one)."""
    tr, ytr, va, yva, *_ = data
    opts = FinetuneOptions(epochs=2, patience=2, batch_size=12)
    best, scores = finetune_encoder_lrs(make_tiny_encoder(), tr, ytr, va, yva, (1e-3, 1e-2), opts, criterion=lambda r: 1.0)
    assert scores == {1e-3: 1.0, 1e-2: 1.0} and best.options.lr_encoder == 1e-3
    mae = float(np.mean(np.abs(predict(best, va) - yva)))
    assert best.history[best.best_epoch - 1]["val_metric"] == pytest.approx(mae, rel=1e-5)
