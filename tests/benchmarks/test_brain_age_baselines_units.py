"""``benchmarks/brain_age_baselines.py`` and the folds of ``brain_age_ixi.py`` on synthetic data, against naive
formulas and scikit-learn: out-of-fold predictions never read a held-out age, pooled features are layer means,
the histogram is a density of the head voxels, and the y-aware runs are handed their fold's training scans only."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from benchmark_module import load_benchmark
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _base():
    return load_benchmark("brain_age_baselines")


def _folds(n, k=3):
    return [np.arange(i, n, k) for i in range(k)]


def test_cv_predictions_are_training_fold_fits_that_never_read_a_held_out_age():
    rng = np.random.default_rng(0)
    ages, x = rng.uniform(20, 80, 30), rng.normal(size=(30, 6))
    folds = _folds(30)
    mean = _base().cv_predictions(None, ages, folds)
    ridge = _base().cv_predictions(x, ages, folds)
    for te in folds:
        tr = np.setdiff1d(np.arange(30), te)
        assert np.allclose(mean[te], sum(ages[tr]) / len(tr))
        ref = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 15))).fit(x[tr], ages[tr])
        assert np.allclose(ridge[te], ref.predict(x[te]))
        moved = ages.copy()
        moved[te] += 40.0  # held-out ages changed: that fold's predictions are not
        assert np.allclose(_base().cv_predictions(None, moved, folds)[te], mean[te])
        assert np.allclose(_base().cv_predictions(x, moved, folds)[te], ridge[te])


def test_histogram_is_the_density_of_head_voxels_on_fixed_edges():
    """Voxels above background + 0.5 SD, 64 bins on [-1.5, 4], normalised to a density (integral 1)."""
    x = torch.full((2, 1, 4, 4, 4), -1.0)  # background at the minimum, -1: threshold -0.5
    x[0, 0, :2] = 0.0  # 32 head voxels at 0, 16 at 1.99; 8 voxels at -0.7 and 8 at -1 are background
    x[0, 0, 2, :] = 1.99
    x[0, 0, 3, :2] = -0.7
    x[1, 0, 0, 0, 0] = 0.3  # the only head voxel: -0.5, on the threshold, is not one
    x[1, 0, 0, 0, 1] = -0.5
    h = _base().histogram_features(x)
    width = 5.5 / 64
    assert h.shape == (2, 64) and np.allclose(h.sum(1) * width, 1)
    at = lambda v: int((v + 1.5) // width)  # noqa: E731 - bin of a value
    assert np.isclose(h[0, at(0.0)] * width, 32 / 48) and np.isclose(h[0, at(1.99)] * width, 16 / 48)
    assert np.isclose(h[1, at(0.3)] * width, 1.0)


def test_pooled_layers_are_the_means_of_the_pyramid_and_layer4_the_embedding():
    enc = load_benchmark("brain_age_encoders").cnn(load_benchmark("brain_age_data").Budget(width=4), 0).eval()
    x = torch.randn(5, 1, 16, 16, 16)
    pooled = _base().pooled_layers(enc, x, batch=2)
    assert [p.shape for p in pooled] == [(5, 4), (5, 8), (5, 16), (5, 32)]  # ResNet-18 widths w, 2w, 4w, 8w
    with torch.no_grad():
        levels = enc.forward_pyramid(x)[1:]
        assert np.allclose(pooled[3], enc(x).numpy(), atol=1e-5)
    for p, level in zip(pooled, levels):
        assert np.allclose(p, level.mean((2, 3, 4)).numpy(), atol=1e-5)


def test_network_variants_tap_the_named_layers_and_min_max_input():
    b = load_benchmark("brain_age_data").Budget(width=4)
    x = torch.randn(3, 1, 16, 16, 16) * 2 + 1
    got = _base().network_features(x, b, seed=2)
    enc = load_benchmark("brain_age_encoders").cnn(b, 10_002).eval()  # the main benchmark's random-init seed
    flat = x.flatten(1)
    unit = (x - flat.min(1).values.view(-1, 1, 1, 1, 1)) / (flat.max(1).values - flat.min(1).values).view(-1, 1, 1, 1, 1)
    with torch.no_grad():
        levels = [lv.mean((2, 3, 4)).numpy() for lv in enc.forward_pyramid(x)[1:]]
        assert np.allclose(got["layer4"], enc(x).numpy(), atol=1e-5)
        assert np.allclose(got["layer4_minmax"], enc(unit).numpy(), atol=1e-5)
    assert np.allclose(got["layer2"], levels[1], atol=1e-5)
    assert np.allclose(got["layers1-4"], np.concatenate(levels, 1), atol=1e-5)


def test_rows_give_mean_and_sample_sd_over_seeds_and_the_table_orders_them(monkeypatch, tmp_path):
    base = _base()
    rng = np.random.default_rng(0)
    ages = rng.uniform(20, 80, 15)  # 3 per age quintile: each in all 3 folds
    fake = {"ages": np.r_[np.nan, ages], "labelled": np.arange(1, 16), "shape": [8, 8, 8],
            "images": rng.normal(size=(16, 1, 8, 8, 8)).astype(np.float32)}
    monkeypatch.setattr(base, "load_ixi", lambda root, budget, cache: fake)
    rows = base.run(tmp_path, tmp_path, [8.0, 6.0], [4], [0, 1, 2], quick=True)
    for r in rows:
        maes = [float(np.abs(np.array(p) - ages).mean()) for p in r["pred"]]
        mean = sum(maes) / 3
        assert np.isclose(r["mae_mean"], mean, atol=2e-3)
        assert np.isclose(r["mae_sd"], (sum((m - mean) ** 2 for m in maes) / 2) ** 0.5, atol=2e-3)
        assert r["age"] == ages.tolist() and r["folds"] == 3
    mean_row = next(r for r in rows if r["variant"] == "mean")
    folds = load_benchmark("brain_age_data").age_folds(ages, 3, 1)  # seed 1's folds
    naive = np.empty(15)
    for te in folds:
        naive[te] = np.delete(ages, te).mean()
    assert np.allclose(mean_row["pred"][1], naive, atol=1e-3)
    lines = base.format_table(rows).splitlines()[2:]
    assert [line.split(" | ")[0] for line in lines] == ["| 8 mm"] * 6 + ["| 6 mm"] * 6  # coarser grid first
    assert [line.split(" | ")[2] for line in lines[:6]] == [base.LABELS[k] for k in ("mean", "histogram", *base.VARIANTS)]
    r = rows[0]
    assert f"| {r['mae_mean']:.2f} ± {r['mae_sd']:.2f} |" in base.format_table([r])


def _run_seed(monkeypatch, tmp_path, ages):
    """``brain_age_ixi.run_seed`` with y-aware and the probe baselines on synthetic scans; pretraining and the
    embeddings are stand-ins that record which scans each y-aware run was handed."""
    from medssl.data.dataset import MetadataCoder
    from medssl.data.manifest import Record

    bench = load_benchmark("brain_age_ixi", "bench_brain_age_ixi")
    all_ages = np.r_[np.nan, ages, np.nan]
    records = [Record(path=f"s{i}", subject=f"S{i:02d}", age=float(a)) for i, a in enumerate(all_ages)]
    data = {"images": np.random.default_rng(1).normal(size=(len(records), 1, 8, 8, 8)).astype(np.float32),
            "records": records, "ages": all_ages, "coder": MetadataCoder(records), "shape": [8, 8, 8],
            "labelled": np.flatnonzero(np.isfinite(all_ages))}
    handed = []
    monkeypatch.setattr(bench, "pretrain", lambda name, d, rows, *a, **k: handed.append((name, np.asarray(rows)))
                        or {"encoder": torch.nn.Identity(), "summary": {}})
    emb = np.random.default_rng(2).normal(size=(len(ages), 5))
    monkeypatch.setattr(bench, "features", lambda encoder, d, device: emb)
    monkeypatch.setattr(bench, "age_folds", lambda a, k, seed: _folds(len(a), k))  # folds that ignore the ages
    b = load_benchmark("brain_age_data").Budget(methods="yaware", scratch=False, finetune=False, width=4)
    return bench.run_seed(data, b, 0, tmp_path, "cpu"), handed, data


def test_y_aware_runs_are_handed_their_folds_training_scans_and_no_held_out_age_moves_a_prediction(monkeypatch, tmp_path):
    ages = np.random.default_rng(0).uniform(20, 80, 30)
    out, handed, data = _run_seed(monkeypatch, tmp_path, ages)
    assert [name for name, _ in handed] == ["yaware"] * 5
    subject = {r.subject: i for i, r in enumerate(data["records"])}
    for (_, rows), fold in zip(handed, out["folds"]):
        test = {subject[s] for s in fold["test_subjects"]}
        assert set(rows.tolist()) == set(data["labelled"].tolist()) - test  # the training subjects, all of them
        assert [data["records"][i].subject for i in rows] == fold["yaware_pretrained_on"]
    te = [subject[s] - 1 for s in out["folds"][0]["test_subjects"]]  # rows of the labelled ages
    moved = ages.copy()
    moved[te] += 40.0
    again, _, _ = _run_seed(monkeypatch, tmp_path / "again", moved)
    for key, pred in out["pred"].items():
        assert np.allclose(np.array(again["pred"][key])[te], np.array(pred)[te], atol=1e-3), key


def test_seed_mae_is_the_mean_absolute_error_of_the_pooled_out_of_fold_predictions(monkeypatch, tmp_path):
    """docs: a seed's MAE is over the pooled out-of-fold predictions of every subject with an age; the JSON keeps
    those subjects' ages only and the predictions to 10⁻³ y."""
    ages = np.random.default_rng(3).uniform(20, 80, 30)
    out, _, _ = _run_seed(monkeypatch, tmp_path, ages)
    assert out["age"] == ages.tolist()
    folds = _folds(len(ages), 5)
    for key, pred in out["pred"].items():
        assert not np.isnan(pred).any(), key
        assert out["mae"][key] == pytest.approx(sum(abs(p - a) for p, a in zip(pred, ages)) / len(ages), abs=2e-3), key
        assert all(round(p, 3) == p for p in pred), key
    train_mean = {int(i): ages[np.setdiff1d(np.arange(30), te)].mean() for te in folds for i in te}
    assert out["pred"]["mean"] == pytest.approx([train_mean[i] for i in range(30)], abs=1e-3)


def test_pretrain_folders_name_one_yaware_run_per_fold():
    bench = load_benchmark("brain_age_ixi", "bench_brain_age_ixi")
    b = load_benchmark("brain_age_data").Budget(methods="genesis,yaware", folds=4)
    assert bench.pretrain_folders(b, [2]) == ["seed2_genesis", *(f"seed2_yaware_fold{k}" for k in range(4))]
    probes_only = replace(b, methods="genesis", finetune=False)  # the probe alone still needs the pretraining
    assert bench.pretrain_folders(probes_only, [0, 1]) == ["seed0_genesis", "seed1_genesis"]
