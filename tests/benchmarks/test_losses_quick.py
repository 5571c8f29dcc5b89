"""Smoke test of ``benchmarks/losses.py --quick`` (CPU: each case in a fresh worker process)."""

from __future__ import annotations

import json
import math

from benchmark_module import load_benchmark


def test_quick_run_measures_ours_and_the_naive_references_in_worker_processes(tmp_path):
    """Rows of the docs table for NT-Xent and the two naive references at 2N = 256, 512: times and peak-RSS deltas
    finite, the (M, M, M) float32 mask of naive L^thr seen in its peak memory, the stable NT-Xent finite at T = 0.01
    where the naive exp/sum forms overflow; a naive case over --naive-max-gib is skipped, not run."""
    bench = load_benchmark("losses")
    losses = ["ntxent", "naive_ntxent", "naive_threshold"]
    res = bench.main(["--quick", "--threads", "1", "--repeats", "1", "--losses", *losses,
                      "--naive-max-gib", "0.5", "--json", str(tmp_path / "r.json")])
    assert res["threshold_vs_naive_max_abs_diff"] < 1e-10  # our L^thr equals the O(M^3) form (float64)
    rows = {(r["loss"], r["2N"]): r for r in res["rows"]}
    assert [(r["loss"], r["2N"]) for r in res["rows"]] == [(name, m) for m in (256, 512) for name in losses]
    assert "O(M^3) mask" in rows["naive_threshold", 512]["skip"]  # 5 · 512³ B ≈ 0.63 GiB > 0.5 GiB
    measured = [r for r in res["rows"] if "skip" not in r]
    assert len(measured) == 5
    for r in measured:
        assert math.isfinite(r["ms"]) and r["ms"] > 0 and math.isfinite(r["mib"]) and r["mib"] > -1, r
        assert r["finite"] is (r["loss"] == "ntxent"), r  # exp(1 / 0.01) overflows float32
    assert rows["naive_threshold", 256]["mib"] >= 4 * 256**3 / 2**20  # its float32 (M, M, M) mask alone
    assert json.loads((tmp_path / "r.json").read_text()) == res
