"""Unit tests of ``benchmarks/reconstruction_figure.py`` with the two training runs faked (no data, no training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from benchmark_module import load_benchmark


class _FakeMAE:
    """Reconstruction off by 0.5 on masked voxels and by 2 on visible ones."""

    def reconstruct(self, x, g):
        mask = (torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) < 0.75).float()
        return {"mask": mask, "reconstruction": x + 0.5 * mask + 2.0 * (1 - mask), "masked": x * (1 - mask)}


class _FakeGenesis:
    def corruption(self, x, g):
        return x * 0.5, x

    def restore(self, c):
        return c * 2 + 0.1


def test_scores_are_masked_voxel_mse_and_restoration_mse_against_naive_baselines(tmp_path, monkeypatch):
    bench = load_benchmark("reconstruction_figure", "bench_reconstruction_figure_units")
    g = np.random.default_rng(0)
    x_mae = torch.from_numpy(g.normal(size=(3, 1, 8, 8, 8)) + np.arange(3).reshape(3, 1, 1, 1, 1)).float()
    x_gen = torch.from_numpy(g.uniform(size=(3, 1, 8, 8, 8))).float()
    fakes = {"mae": (None, _FakeMAE(), x_mae, [(1, 2.0), (2, 1.0)], 2),
             "genesis": (None, _FakeGenesis(), x_gen, [(1, 0.5), (2, 0.4)], 2)}
    monkeypatch.setattr(bench, "run", lambda name, extra, steps, args: fakes[name])
    res = bench.main(["--data", str(tmp_path), "--work", str(tmp_path / "w"), "--out", str(tmp_path / "f.png")])
    x = x_mae.numpy()
    m = _FakeMAE().reconstruct(x_mae, None)["mask"].numpy() > 0
    fill = np.concatenate([((x[i][~m[i]].mean() - x[i]) ** 2)[m[i]] for i in range(3)])  # visible mean of its own scan
    assert res["held_out"] == 3
    assert res["mae"]["masked_mse"] == pytest.approx(0.25, abs=1e-5)  # masked voxels only
    assert res["mae"]["visible_mean_fill_mse"] == pytest.approx(fill.mean(), rel=1e-5)
    assert res["genesis"]["restored_mse"] == pytest.approx(0.01, abs=1e-5)
    assert res["genesis"]["corrupted_input_mse"] == pytest.approx(((0.5 * x_gen.numpy()) ** 2).mean(), rel=1e-5)


def test_epochs_are_the_steps_over_the_training_scans_batches(tmp_path, monkeypatch):
    """24 subjects: 18 train (test_fraction 0.25) = 4 batches of 4 per epoch, so 300 steps = 75 epochs."""
    bench = load_benchmark("reconstruction_figure", "bench_reconstruction_figure_units")
    seen = []

    def fake_load_config(path, overrides):
        seen.append(overrides)
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.setattr(bench, "load_config", fake_load_config)
    args = type("A", (), {"work": str(tmp_path), "subjects": 24, "data": "d"})
    for steps, epochs in ((300, 75), (1000, 250), (2, 1), (1, 1)):
        with pytest.raises(KeyboardInterrupt):
            bench.run("mae", bench.MAE, steps, args)
        assert seen[-1][-1] == f"train.epochs={epochs}" and "data.test_fraction=0.25" in seen[-1]
        assert "data.limit=24" in seen[-1]
