"""Fine-tuning settings that the end-to-end tests do not pin down: which learning rate moves which part, the
returned model's mode, the training loss of an epoch, the options' limits and the scores' references."""

import numpy as np
import pytest
import torch
from eval_helpers import make_image_dataset, make_tiny_encoder, state_copy
from sklearn.metrics import roc_auc_score

from medssl.eval import metrics as M
from medssl.eval.finetune import FinetuneOptions, encoder_blocks, finetune, finetune_and_score, predict


def test_each_learning_rate_moves_its_own_part_and_the_model_comes_back_in_eval_mode(data):
    """lr_encoder=0 (no weight decay, BatchNorm statistics frozen): the encoder is exactly the pretrained one and the
    head moves; lr_head=0: the head keeps its initial weights and the encoder moves. The kept model is in eval mode."""
    tr, ytr, va, yva, *_ = data
    enc = make_tiny_encoder()
    common = dict(epochs=2, patience=2, batch_size=12, weight_decay=0.0, freeze_norm_stats=True)
    head_only = finetune(enc, tr, ytr, va, yva, FinetuneOptions(lr_encoder=0.0, lr_head=1e-2, **common))
    assert all(torch.equal(v, head_only.model.encoder.state_dict()[k]) for k, v in enc.state_dict().items())
    assert head_only.best_epoch >= 1 and not torch.all(head_only.model.head.bias == 0)
    enc_only = finetune(enc, tr, ytr, va, yva, FinetuneOptions(lr_encoder=1e-2, lr_head=0.0, **common))
    assert enc_only.best_epoch >= 1 and torch.all(enc_only.model.head.bias == 0)
    assert not torch.equal(enc_only.model.encoder.net[0].weight, enc.net[0].weight)
    assert not head_only.model.training and not any(m.training for m in enc_only.model.modules())


def test_an_epochs_training_loss_is_the_mean_loss_over_the_rows_it_trained_on(data):
    """mode="head" at lr 0: every output is fixed, so an epoch's train_loss is the Huber loss of the initial model over
    exactly the rows the epoch saw (40 rows in batches of 12: three batches, the last 4 rows are dropped)."""
    tr, ytr, *_ = data
    ds, age = make_image_dataset(52, seed=2)
    train, y, val, y_val = ds[:40], age[:40], ds[40:], age[40:]
    images = torch.stack([d["image"] for d in train])
    seen = []

    def augment(x, generator):  # identity; records which training rows each batch holds
        seen.extend(int(torch.argmin(((images - xi) ** 2).flatten(1).sum(1))) for xi in x)
        return x

    res = finetune(make_tiny_encoder(), train, y, val, y_val,
                   FinetuneOptions(mode="head", lr_head=0.0, epochs=1, batch_size=12), augment=augment)
    assert len(seen) == 36 and len(set(seen)) == 36
    with torch.no_grad():
        out = res.model(images[seen]).squeeze(1)
    t = torch.as_tensor((y[seen] - res.target_mean) / res.target_std, dtype=torch.float32)
    assert res.history[0]["train_loss"] == pytest.approx(float(torch.nn.functional.huber_loss(out, t)), rel=1e-5)
    assert (res.target_mean, res.target_std) == pytest.approx((y.mean(), y.std()))  # training rows only


def test_last_blocks_may_be_every_block_and_options_out_of_range_are_refused(data):
    tr, ytr, va, yva, *_ = data
    enc = make_tiny_encoder()
    n = len(encoder_blocks(enc))
    res = finetune(enc, tr, ytr, va, yva, FinetuneOptions(mode="last", last_blocks=n, epochs=1, lr_encoder=1e-2))
    assert res.n_trainable == sum(p.numel() for p in enc.parameters())
    assert not torch.equal(res.model.encoder.net[0].weight, enc.net[0].weight)
    for bad in ({"patience": 0}, {"epochs": 0}, {"batch_size": 0}):
        with pytest.raises(ValueError, match="epochs, batch_size and patience must be >= 1"):
            FinetuneOptions(**bad)
    with pytest.raises(ValueError, match=r"targets \(36, 11\) do not match the datasets \(36, 12\)"):
        finetune(enc, tr, ytr, va, yva[:-1], FinetuneOptions(epochs=1))


def test_scores_equal_their_references_on_the_models_own_predictions(data):
    """Regression intervals: the subject-grouped bootstrap (two scans per subject) with the run's seed; three
    classes: chance 1/3; two classes: the AUC of the predicted probability of class 1 (scikit-learn) and, per
    epoch, the validation balanced accuracy (mean per-class recall)."""
    tr, ytr, va, yva, te, yte = data
    opts = FinetuneOptions(mode="head", epochs=2, lr_head=1e-2, batch_size=12, seed=5)
    groups = np.repeat(np.arange(len(te) // 2), 2)
    res = finetune_and_score(make_tiny_encoder(), tr, ytr, va, yva, te, yte, opts, groups_test=groups, n_boot=200)
    ref = M.with_ci({}, {"mae": M.mae}, yte, res["pred"], n_boot=200, seed=5, groups=groups)
    assert res["mae_ci"] == ref["mae_ci"]
    edges = np.quantile(ytr, [1 / 3, 2 / 3])
    cls3 = lambda y: np.digitize(y, edges)  # noqa: E731
    copts = FinetuneOptions(task="classification", mode="head", epochs=2, lr_head=1e-2, batch_size=12)
    three = finetune_and_score(make_tiny_encoder(), tr, cls3(ytr), va, cls3(yva), te, cls3(yte), copts, n_boot=0)
    assert three["chance"] == pytest.approx(1 / 3)
    cls2 = lambda y: (y > 50).astype(int)  # noqa: E731
    copts = FinetuneOptions(task="classification", epochs=4, lr_encoder=3e-3, lr_head=3e-2, batch_size=12)
    two = finetune_and_score(make_tiny_encoder(), tr, cls2(ytr), va, cls2(yva), te, cls2(yte), copts, n_boot=0)
    kept = finetune(make_tiny_encoder(), tr, cls2(ytr), va, cls2(yva), copts)
    proba = predict(kept, te)
    val_pred, y_val = predict(kept, va).argmax(1), cls2(yva)  # the history's val_metric: validation balanced accuracy
    naive = np.mean([np.mean(val_pred[y_val == c] == c) for c in (0, 1)])
    assert kept.history[kept.best_epoch - 1]["val_metric"] == pytest.approx(naive) and naive > 0.6
    np.testing.assert_array_equal(two["pred"], proba.argmax(1))
    assert two["auc"] == pytest.approx(roc_auc_score(cls2(yte), proba[:, 1]))


def test_training_batches_use_batch_statistics_even_for_an_encoder_handed_over_in_eval_mode(data):
    """Every epoch trains in train mode (after validating in eval mode): BatchNorm running statistics move in each
    epoch by default, also when the caller's encoder is in eval mode, and the caller's module keeps its mode."""
    tr, ytr, va, yva, *_ = data
    enc = make_tiny_encoder().eval()
    before = state_copy(enc)
    res = finetune(enc, tr, ytr, va, yva, FinetuneOptions(epochs=2, patience=2, lr_encoder=0.0, lr_head=0.0,
                                                          weight_decay=0.0, batch_size=12))
    after = res.model.encoder.state_dict()
    assert int(after["net.1.num_batches_tracked"] - before["net.1.num_batches_tracked"]) == 3 * res.best_epoch >= 3
    assert not torch.equal(after["net.1.running_mean"], before["net.1.running_mean"])
    assert not enc.training and all(torch.equal(v, enc.state_dict()[k]) for k, v in before.items())


def test_last_mode_trains_only_the_last_blocks_of_net_and_multilabel_heads_have_one_output_per_label(data):
    """mode="last": a module of the encoder outside ``net`` (here a projection after it) is frozen with the earlier
    blocks; n_trainable counts the last block only. Three findings: three head outputs and probabilities."""
    from torch import nn

    tr, ytr, va, yva, te, yte = data

    class _WithProjection(nn.Module):
        spatial_dims, in_channels, out_dim = 3, 1, 4

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 8, 3, padding=1))
            self.proj = nn.Linear(8, 4)

        def forward(self, x):
            return self.proj(self.net(x).mean(dim=(2, 3, 4)))

    enc = _WithProjection()
    res = finetune(enc, tr, ytr, va, yva, FinetuneOptions(mode="last", last_blocks=1, epochs=1, lr_encoder=1e-2))
    assert res.n_trainable == sum(p.numel() for p in enc.net[2].parameters())
    assert torch.equal(res.model.encoder.proj.weight, enc.proj.weight)
    assert not torch.equal(res.model.encoder.net[2].weight, enc.net[2].weight)
    ml = lambda y: np.c_[y > 50, y > 35, y < 30].astype(int)  # noqa: E731
    out = finetune_and_score(make_tiny_encoder(), tr, ml(ytr), va, ml(yva), te, ml(yte),
                             FinetuneOptions(task="multilabel", epochs=1, batch_size=12), n_boot=0)
    assert out["pred"].shape == (len(te), 3) and np.all((out["pred"] > 0) & (out["pred"] < 1))
