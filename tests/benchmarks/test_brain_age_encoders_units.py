"""``benchmarks/brain_age_encoders.py`` without real data or training: what each pretraining run and fine-tuning
fold is handed (the scans, the ages, the documented settings of docs/benchmarks_brain_age.md), caught before any
step runs, and the pooled-voxel features against a naive block mean."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from benchmark_module import load_benchmark

from medssl.data.dataset import MetadataCoder
from medssl.data.manifest import Record


def _enc():
    return load_benchmark("brain_age_encoders")


def _data(n: int = 12, shape=(8, 8, 8), unlabelled=(3,)) -> dict:
    rng = np.random.default_rng(0)
    ages = rng.uniform(20, 80, n)
    ages[list(unlabelled)] = np.nan
    records = [Record(path=f"s{i}.nii.gz", subject=f"S{i:02d}", age=float(a)) for i, a in enumerate(ages)]
    return {"images": rng.normal(size=(n, 1, *shape)).astype(np.float32), "records": records, "ages": ages,
            "coder": MetadataCoder(records), "shape": list(shape), "labelled": np.flatnonzero(np.isfinite(ages))}


def _caught_trainer(enc, monkeypatch):
    """Replace the training call: the Trainer built by ``pretrain`` is kept, no step runs."""
    seen = []
    monkeypatch.setattr(enc, "fit_resumable", lambda trainer, *a: seen.append(trainer) or {})
    return seen


@pytest.mark.parametrize("name", ["simclr", "yaware", "genesis", "mae"])
def test_pretraining_sees_only_the_scans_it_is_given_with_the_documented_settings(name, tmp_path, monkeypatch):
    """The in-fold y-aware run must train on its fold's training scans only; every run on exactly ``rows``,
    batch min(ssl_batch, scans), MAE twice the epochs, τ = 0.1 and the budget's σ in years."""
    enc = _enc()
    seen, views, real = _caught_trainer(enc, monkeypatch), [], enc.build_view_pipeline
    monkeypatch.setattr(enc, "build_view_pipeline", lambda *a, **k: views.append((a, k)) or real(*a, **k))
    data, rows = _data(), np.array([0, 2, 5, 7, 8])
    b = enc.Budget(crop=8, patch=3, width=4, ssl_epochs=30, ssl_batch=32, ssl_lr=2e-3, sigma=3.0, physical_units=True)
    enc.pretrain(name, data, rows, b, 4, tmp_path / name, "cpu")
    (trainer,) = seen
    expected = {"simclr": (("brain_mri", 3, (8, 8, 8)), {"spacing": (6.0,) * 3}),  # strengths rescaled to 6 mm
                "genesis": (("none", 3, (8, 8, 8), {"flip_prob": 0.5, "flip_axes": (0,)}), {}),  # RAS axis 0: left-right
                "mae": (("none", 3, (6, 6, 6), {"crop_scale": (0.8, 1.0), "flip_prob": 0.5, "flip_axes": (0,)}), {})}
    assert views == [expected["simclr" if name == "yaware" else name]]
    assert trainer.opt.weight_decay == (0.05 if name == "mae" else 1e-4)  # MAE: He et al.'s 0.05
    assert trainer.opt.warmup_epochs == trainer.opt.epochs / 20  # 5 % of the run
    assert list(trainer.dataset.indices) == rows.tolist()
    assert [trainer.dataset[i]["index"] for i in range(len(rows))] in (rows.tolist(), list(range(len(rows))))
    opt = trainer.opt
    assert (opt.epochs, opt.batch_size, opt.lr, opt.seed) == (60 if name == "mae" else 30, 5, 2e-3, 4)
    method = trainer.method
    if name in ("simclr", "yaware"):
        assert method.loss.temperature == 0.1
    if name == "yaware":
        assert method.loss.sigma == 3.0  # years (ages are not standardised on the way)
    if name == "mae":
        assert method.mask_ratio == 0.75 and len(method.decoder.blocks) == 2


def test_genesis_encoder_is_read_on_min_max_rescaled_scans(tmp_path, monkeypatch):
    """Models Genesis pretrains on each scan rescaled to [0, 1]: its probe features are the network on that input."""
    enc = _enc()
    seen = _caught_trainer(enc, monkeypatch)
    out = enc.pretrain("genesis", _data(), np.arange(6), enc.Budget(crop=8, width=4), 0, tmp_path, "cpu")["encoder"]
    net = seen[0].method.encoder.eval()
    x = torch.randn(2, 1, 8, 8, 8) * 3 + 5
    lo, hi = x.amin((1, 2, 3, 4), keepdim=True), x.amax((1, 2, 3, 4), keepdim=True)
    with torch.no_grad():
        assert torch.allclose(out.eval()(x), net((x - lo) / (hi - lo)), atol=1e-5)


def test_networks_are_seeded_and_mae_crops_are_patch_multiples():
    enc = _enc()
    b = enc.Budget(crop=20, patch=6, width=4)
    assert enc.mae_crop(b) == (18, 18, 18) and enc.mae_crop(enc.Budget()) == (24, 24, 24)  # the largest multiple ≤ crop
    assert enc.mae_crop(enc.Budget(crop=4, patch=8)) == (8, 8, 8)  # at least one patch
    for build in (enc.cnn, enc.vit):
        one, again, other = (build(b, s).state_dict() for s in (3, 3, 4))
        assert all(torch.equal(one[k], again[k]) for k in one)
        assert not all(torch.equal(one[k], other[k]) for k in one)


def test_voxel_features_are_block_means_of_the_labelled_scans():
    """Average pooling by ``pool`` with partial blocks at odd edges kept (ceil mode), over labelled scans only."""
    data = _data(n=5, shape=(5, 3, 4), unlabelled=(1,))
    x = data["images"][data["labelled"], 0]
    naive = []
    for v in x:
        blocks = [v[i:i + 2, j:j + 2, k:k + 2].mean() for i in range(0, 5, 2) for j in range(0, 3, 2) for k in range(0, 4, 2)]
        naive.append(blocks)
    got = _enc().voxel_features(data, 2)
    assert got.shape == (4, 3 * 2 * 2) and np.allclose(got, naive, atol=1e-6)


def test_finetuning_fold_splits_its_training_subjects_only(monkeypatch):
    """Fit and early-stopping rows are 80 / 20 % of the fold's training subjects (never a test subject), with
    the fold's ages in years; the budget's options reach fine-tuning; predictions are of the test rows."""
    enc = _enc()
    seen = {}

    def fake_lrs(encoder, train, y_train, val, y_val, lrs, opts, augment):
        seen.update(train=list(train.indices), y_train=y_train, val=list(val.indices), y_val=y_val, lrs=lrs, opts=opts,
                    augment=augment)
        return type("R", (), {"best_epoch": 1, "history": [], "options": opts})(), {}

    monkeypatch.setattr(enc, "finetune_encoder_lrs", fake_lrs)
    monkeypatch.setattr(enc, "predict", lambda result, ds: seen.setdefault("test", list(ds.indices)))
    data = _data(n=60, unlabelled=(3, 10))
    lab, ages = data["labelled"], data["ages"]
    te, tr = np.arange(0, 58, 5), np.setdiff1d(np.arange(58), np.arange(0, 58, 5))
    b = enc.Budget(ft_epochs=7, ft_patience=2, ft_batch=4, ft_lr_encoder=1e-4, ft_lr_head=2e-3, ft_augment="none",
                   ft_freeze_bn=True, ft_head_init="probe")
    enc.finetune_fold(torch.nn.Identity(), data, tr, te, b, 0, "cpu")
    val_of_seed0 = seen["val"]
    assert not set(seen["train"]) & set(seen["val"]) and sorted(seen["train"] + seen["val"]) == sorted(lab[tr])
    assert len(seen["val"]) == math.ceil(0.2 * len(tr)) and seen["test"] == lab[te].tolist()
    assert np.array_equal(seen["y_train"], ages[seen["train"]]) and np.array_equal(seen["y_val"], ages[seen["val"]])
    o = seen["opts"]
    assert (o.epochs, o.patience, o.batch_size, o.lr_head, o.head_init, o.freeze_norm_stats, o.task) == \
        (7, 2, 4, 2e-3, "probe", True, "regression")
    assert tuple(seen["lrs"]) == (1e-4,) and seen["augment"] is None
    other = []
    monkeypatch.setattr(enc, "finetune_encoder_lrs", lambda *a: other.append(a[5]) or fake_lrs(*a))
    enc.finetune_fold(torch.nn.Identity(), data, tr, te, enc.Budget(ft_lr_encoders=(1e-3, 1e-5)), 1, "cpu")
    assert tuple(other[0]) == (1e-3, 1e-5) and seen["augment"] is not None
    assert seen["val"] != val_of_seed0  # the early-stopping subjects are redrawn with the seed


def test_finetuning_augmentation_is_the_documented_one(monkeypatch):
    """docs/benchmarks_brain_age.md: left–right flips (p 0.5) plus a small affine (p 0.8; ±5°, ±5 % scale, ±3 % shift)."""
    enc = _enc()
    calls = []
    monkeypatch.setattr(enc, "build_view_pipeline", lambda *a: calls.append(a) or "views")
    enc.ft_augment((6, 7, 8), "affine")
    enc.ft_augment((6, 7, 8), "flip")
    (preset, dims, shape, affine), (_, _, _, flip) = calls
    assert (preset, dims, tuple(shape)) == ("none", 3, (6, 7, 8))
    assert affine == {"flip_prob": 0.5, "flip_axes": (0,), "affine_prob": 0.8, "rotate": 5.0, "scale": (0.95, 1.05),
                      "translate": 0.03}
    assert flip == {"flip_prob": 0.5, "flip_axes": (0,)}


def test_peer_y_aware_gets_the_rows_ages_and_sigma_squared(monkeypatch):
    """nidl's y-aware estimator is handed the given rows' scans (min-max rescaled) and ages, bandwidth σ²."""
    enc = _enc()
    seen = {}

    def fake_pretrain(images, dims, epochs, batch, lr, seed, device, crop, encoder_kwargs, history, **extra):
        seen.update(images=images, epochs=epochs, batch=batch, lr=lr, seed=seed, crop=crop, **extra)
        history.append({"loss": 1.0})
        return torch.nn.Identity()

    monkeypatch.setitem(enc.PEERS, "fake", type("P", (), {"pretrain": staticmethod(fake_pretrain)})())
    data, rows = _data(), np.array([1, 4, 6, 9])
    enc.pretrain_peer("fake", data, rows, enc.Budget(sigma=4.0, ssl_batch=32, ssl_epochs=2), 7, "cpu", yaware=True)
    x = data["images"][rows].reshape(4, -1)
    naive = (x - x.min(1, keepdims=True)) / (x.max(1, keepdims=True) - x.min(1, keepdims=True))
    assert np.allclose(np.asarray(seen["images"]).reshape(4, -1), naive, atol=1e-6)
    assert np.array_equal(seen["aux"], data["ages"][rows]) and seen["bandwidth"] == 16.0
    assert (seen["epochs"], seen["batch"], seen["seed"]) == (2, 4, 7)


def test_resume_settings_name_the_scans_trained_on(tmp_path, monkeypatch):
    """--resume refuses a checkpoint of other scans: the run's settings differ for any other set of rows (here the
    same count and first row), and are the same for the same rows."""
    enc = _enc()
    seen = _caught_trainer(enc, monkeypatch)
    b, data = enc.Budget(crop=8, width=4), _data()
    for k, rows in enumerate(([0, 2, 5, 7], [0, 2, 5, 8], [0, 2, 5, 7])):
        enc.pretrain("yaware", data, np.array(rows), b, 0, tmp_path / str(k), "cpu")
    first, other, same = (t.config for t in seen)
    assert first != other and first == same and first["benchmark"]["scans"] == 4
