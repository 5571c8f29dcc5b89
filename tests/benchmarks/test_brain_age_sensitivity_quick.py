"""Smoke test of ``benchmarks/brain_age_sensitivity.py --quick`` on real IXI scans, plus its blur."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from benchmark_module import load_benchmark
from shared_data import SHARED, shared_path


def test_blur_is_a_normalised_gaussian_along_every_axis():
    bench = load_benchmark("brain_age_sensitivity")
    x = torch.zeros(1, 1, 9, 9, 9)
    x[0, 0, 4, 4, 4] = 1.0
    y = bench.gaussian_blur(x, 0.5)
    k = np.exp(-np.arange(-2, 3) ** 2 / 0.5)
    k /= k.sum()
    np.testing.assert_allclose(y[0, 0, 2:7, 2:7, 2:7].numpy(), np.einsum("i,j,k->ijk", k, k, k), atol=1e-6)
    assert float(y.sum()) == pytest.approx(1.0, abs=1e-5)


def test_quick_run_the_copy_changes_nothing_and_every_perturbation_is_measured(tmp_path):
    shared_path("data", "ixi_t1_hh_2mm", "participants.tsv")
    bench = load_benchmark("brain_age_sensitivity")
    res = bench.main(["--quick", "--threads", "2", "--data-root", str(SHARED / "data"), "--out", str(tmp_path / "s")])
    rows = res["per_seed"][0]["rows"]
    assert list(rows) == list(bench.PERTURBATIONS)
    copy = rows["identity (copy)"]["random-init"]
    assert copy["feature_shift_sd"] == 0 and copy["prediction_change_y"] == 0
    assert copy["test_mae_y"] == pytest.approx(res["per_seed"][0]["probe_test_mae_y"]["random-init"])
    for label, row in rows.items():
        assert -1 <= row["image_corr"] <= 1 and np.isfinite(row["random-init"]["prediction_change_y"]), label
        if label != "identity (copy)":
            assert row["image_corr"] < 1 and row["random-init"]["feature_shift_sd"] > 0, label
    with pytest.raises(SystemExit, match="no checkpoint"):
        bench.main(["--quick", "--data-root", str(SHARED / "data"), "--out", str(tmp_path / "s"),
                    "--run", str(tmp_path / "nothing")])


def test_run_encoder_is_loaded_never_trained_and_reproduces_the_benchmarks_fold0_probe(tmp_path):
    """--run loads the benchmark's finished fold-0 y-aware encoder: its unperturbed probe gives the benchmark's
    fold-0 MAE, and a budget that is not the run's is refused without touching the run's folder."""
    shared_path("data", "ixi_t1_hh_2mm", "participants.tsv")
    data = ["--data-root", str(SHARED / "data"), "--cache", str(tmp_path / "cache")]
    run = load_benchmark("brain_age_ixi").main(["--quick", "--threads", "2", "--out", str(tmp_path / "run" / "s0"),
                                                 "--figure", str(tmp_path / "f.png"), *data,
                                                 "--set", "methods=yaware", "scratch=false", "finetune=false"])
    seed = run["per_seed"][0]
    index = {s: i for i, s in enumerate(seed["subjects"])}
    te = [index[s] for s in seed["folds"][0]["test_subjects"]]
    fold0_mae = np.abs(np.array(seed["pred"]["yaware_probe"])[te] - np.array(seed["age"])[te]).mean()
    folder = tmp_path / "run" / "s0" / "seed0_yaware_fold0"
    before = {p.name: p.read_bytes() for p in [folder / "metrics.jsonl", *(folder / "checkpoints").glob("*.pt")]}
    bench = load_benchmark("brain_age_sensitivity")
    common = ["--quick", "--threads", "2", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "s"), *data]
    res = bench.main([*common, "--set", "methods=yaware"])
    assert res["per_seed"][0]["probe_test_mae_y"]["y-aware (fold 0)"] == pytest.approx(fold0_mae, abs=2e-3)
    with pytest.raises(SystemExit, match="not a finished run of"):  # 3 epochs: the run did 1; never train it on
        bench.main([*common, "--set", "methods=yaware", "ssl_epochs=3"])
    after = {p.name: p.read_bytes() for p in [folder / "metrics.jsonl", *(folder / "checkpoints").glob("*.pt")]}
    assert after == before


def _perturb(label, x, seed=0):
    bench = load_benchmark("brain_age_sensitivity")
    return bench.PERTURBATIONS[label][0](x, torch.Generator().manual_seed(seed), tuple(x.shape[2:]))


def test_flip_is_left_right_and_the_half_voxel_shift_is_the_mean_with_the_rolled_neighbour():
    """The scans are RAS (brain_age_data.py): the first spatial axis is left-right, the axis the fine-tuning
    flips use (flip_axes (0,)). The half-voxel shift averages each voxel with its neighbour along the axis of the
    1-voxel roll, so a constant scan stays constant."""
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 1, 4, 5, 6)).astype(np.float32))
    np.testing.assert_array_equal(_perturb("left-right flip", x).numpy(), x.numpy()[:, :, ::-1])
    rolled = _perturb("roll by 1 voxel", x).numpy()
    axes = [ax for ax in (2, 3, 4) if np.array_equal(rolled, np.roll(x.numpy(), 1, axis=ax))]
    assert len(axes) == 1
    half = _perturb("half-voxel shift (mean of 2 neighbours)", x).numpy()
    np.testing.assert_allclose(half, 0.5 * (x.numpy() + np.roll(x.numpy(), 1, axis=axes[0])), atol=1e-6)
    ones = torch.ones(1, 1, 4, 5, 6)
    for label in ("half-voxel shift (mean of 2 neighbours)", "Gaussian blur, σ = 0.5 voxel"):
        np.testing.assert_allclose(_perturb(label, ones).numpy(), 1.0, atol=1e-6, err_msg=label)  # replicate padding


def test_blur_row_uses_the_sigma_its_label_states():
    x = torch.zeros(1, 1, 9, 9, 9)
    x[0, 0, 4, 4, 4] = 1.0
    k = np.exp(-np.arange(-2, 3) ** 2 / (2 * 0.5 ** 2))
    k /= k.sum()
    y = _perturb("Gaussian blur, σ = 0.5 voxel", x)[0, 0, 2:7, 2:7, 2:7].numpy()
    np.testing.assert_allclose(y, np.einsum("i,j,k->ijk", k, k, k), atol=1e-6)


def test_every_affine_row_moves_every_scan_and_translation_stays_within_3_percent():
    """Each affine perturbation is applied to every scan (probability 1); "translation ≤ 3 %" moves a central
    blob's centre of mass by at most 3 % of the grid and "scale 0.95–1.05" its width by about 5 % (plus
    interpolation slack)."""
    n, size = 8, 24
    g = np.arange(size) - (size - 1) / 2
    blob = np.exp(-(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2) / (2 * 3.0 ** 2))
    x = torch.from_numpy(np.repeat(blob[None, None], n, 0).astype(np.float32))
    for label in ("rotation ≤ 1°", "rotation ≤ 5°", "scale 0.95–1.05", "translation ≤ 3 %"):
        y = _perturb(label, x, seed=3)
        assert all(not torch.allclose(y[i], x[i], atol=1e-4) for i in range(n)), label
    y = _perturb("translation ≤ 3 %", x, seed=3).numpy()[:, 0]
    for v in y:
        com = [float((v.sum(axis=tuple(a for a in range(3) if a != ax)) * g).sum() / v.sum()) for ax in range(3)]
        assert max(abs(c) for c in com) <= 0.03 * size + 0.1, com
    sd = lambda v: np.sqrt((v * (g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)).sum() / v.sum())
    widths = [sd(v) / sd(blob) for v in _perturb("scale 0.95–1.05", x, seed=3).numpy()[:, 0]]
    assert all(0.93 <= w <= 1.07 for w in widths), widths  # a zoom by 0.95–1.05 (or its inverse), plus slack


def _naive_probe(xtr, ytr, xte, yte, n_boot=0):
    """Least squares with an intercept: a stand-in probe written out here."""
    w = np.linalg.lstsq(np.c_[xtr, np.ones(len(xtr))], ytr, rcond=None)[0]
    pred = np.c_[xte, np.ones(len(xte))] @ w
    return {"pred": pred, "mae": float(np.abs(pred - yte).mean())}


def test_run_seed_fits_the_probe_on_unchanged_training_embeddings_and_scores_the_seeds_perturbation(monkeypatch):
    bench = load_benchmark("brain_age_sensitivity")
    rng = np.random.default_rng(0)
    n = 20
    ages = np.r_[np.nan, rng.uniform(20, 80, n)]
    data = {"images": rng.normal(size=(n + 1, 1, 4, 4, 4)).astype(np.float32), "ages": ages, "shape": [4, 4, 4],
            "labelled": np.arange(1, n + 1)}
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    torch.nn.init.normal_(lin[1].weight, generator=torch.Generator().manual_seed(1))
    te = np.arange(0, n, 4)
    monkeypatch.setattr(bench, "fold0_encoders", lambda *a: {"lin": lin})
    monkeypatch.setattr(bench, "age_folds", lambda a, k, seed: [te])
    monkeypatch.setattr(bench, "regression_probe", _naive_probe)
    noise = lambda x, g, s: x + torch.randn(x.shape, generator=g)
    monkeypatch.setattr(bench, "PERTURBATIONS", {"noise": (noise, False)})
    out = {s: bench.run_seed(data, bench.Budget(), s, None) for s in (0, 1)}
    x = data["images"][1:]
    tr = np.setdiff1d(np.arange(n), te)
    with torch.no_grad():
        f0 = lin(torch.from_numpy(x)).numpy()
        f = lin(noise(torch.from_numpy(x), torch.Generator().manual_seed(1), None)).numpy()
    y = ages[1:]
    p0, p = _naive_probe(f0[tr], y[tr], f0[te], y[te])["pred"], _naive_probe(f0[tr], y[tr], f[te], y[te])["pred"]
    row = out[1]["rows"]["noise"]["lin"]
    assert (out[1]["n_train"], out[1]["n_test"]) == (len(tr), len(te))
    sd = np.mean([np.std(f0[:, j]) for j in range(3)])  # between-subject SD of each dimension
    assert row["feature_shift_sd"] == pytest.approx(np.abs(f - f0).mean() / sd, rel=1e-4)
    assert row["prediction_change_y"] == pytest.approx(np.abs(p - p0).mean(), rel=1e-4)
    assert row["test_mae_y"] == pytest.approx(np.abs(p - y[te]).mean(), rel=1e-4)
    assert out[0]["rows"]["noise"]["lin"] != row  # each seed draws its own perturbation


def test_table_gives_the_mean_over_seeds():
    bench = load_benchmark("brain_age_sensitivity")
    per_seed = [{"encoders": ["e"], "rows": {label: {"image_corr": c, "e": {"feature_shift_sd": s, "prediction_change_y": d}}
                                             for label in bench.PERTURBATIONS}}
                for c, s, d in ((0.1, 1.0, 3.0), (0.2, 2.0, 4.0), (0.9, 6.0, 11.0))]
    line = bench.format_table(per_seed).splitlines()[2]
    assert line == f"| {next(iter(bench.PERTURBATIONS))} | 0.400 | 3.00 | 6.00 |"


def test_random_init_encoder_is_the_main_benchmarks_of_the_same_seed():
    """brain_age_ixi.run_seed's random-init row uses ``cnn(b, 10_000 + seed)``; the study must measure that encoder."""
    bench = load_benchmark("brain_age_sensitivity")
    b = bench.replace(bench.Budget(), **bench.QUICK)
    ours = bench.fold0_encoders({}, b, 2, None, np.arange(3))["random-init"].state_dict()
    main = load_benchmark("brain_age_encoders").cnn(b, 10_002).state_dict()
    assert ours.keys() == main.keys() and all(torch.equal(ours[k], main[k]) for k in ours)
    assert not torch.equal(ours[next(iter(ours))], load_benchmark("brain_age_encoders").cnn(b, 10_000).state_dict()[next(iter(ours))])
