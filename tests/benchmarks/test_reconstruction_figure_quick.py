"""Smoke test of ``benchmarks/reconstruction_figure.py --quick`` (MAE and Models Genesis on real IXI scans, CPU)."""

from __future__ import annotations

import math

import pytest
from benchmark_module import load_benchmark
from shared_data import shared_path


def test_quick_run_trains_both_methods_scores_them_with_their_baselines_and_draws_the_figure(tmp_path):
    """8 scans: 2 held out (test_fraction 0.25), 6 for training = 1 step of batch 4 per epoch, so 2 steps each.
    Both errors and both baselines are finite, the [0, 1] ones at most 1; the corruption really changes the
    scans; the figure is written; a second call reuses the runs (same numbers) and a changed budget is refused."""
    data = shared_path("data", "ixi_t1_hh_2mm", "participants.tsv").parent
    bench = load_benchmark("reconstruction_figure")
    argv = ["--quick", "--data", str(data), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "recon.png")]
    res = bench.main(argv)
    assert res["held_out"] == 2 and res["mae"]["steps"] == 2 and res["genesis"]["steps"] == 2
    mae, gen = res["mae"], res["genesis"]
    assert all(math.isfinite(v) and v > 0 for v in (mae["masked_mse"], mae["visible_mean_fill_mse"]))
    assert mae["masked_mse"] < 100 and mae["visible_mean_fill_mse"] < 100  # z-scored voxels
    assert 0 < gen["restored_mse"] <= 1 and 0 < gen["corrupted_input_mse"] <= 1  # min-max scans in [0, 1]
    assert (tmp_path / "recon.png").stat().st_size > 20_000
    assert bench.main(argv) == res  # finished runs are reused, evaluated with the same seeded masks/corruptions
    with pytest.raises(SystemExit, match="another budget"):
        bench.main([*argv[1:], "--subjects", "8", "--mae-steps", "3"])  # the same folder, not --quick
