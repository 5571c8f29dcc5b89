"""Smoke test of ``benchmarks/view_strength.py --quick`` on real IXI scans."""

from __future__ import annotations

import json
import math

from benchmark_module import load_benchmark
from shared_data import SHARED, shared_path


def test_quick_run_trains_each_variant_and_reports_chance(tmp_path):
    """Every requested view set trains (finite losses, one row per seed) and chance is ln(2B − 1)."""
    shared_path("data", "ixi_t1_hh_2mm", "participants.tsv")
    bench = load_benchmark("view_strength", "bench_view_strength")
    res = bench.main(["--quick", "--threads", "2", "--data-root", str(SHARED / "data"), "--out", str(tmp_path / "run"),
                      "--variants", "brain_mri", "none", "physical", "--json", str(tmp_path / "r.json")])
    on_disk = json.loads((tmp_path / "r.json").read_text())
    assert on_disk["chance_ntxent"] == math.log(2 * on_disk["batch"] - 1)
    assert set(on_disk["rows"]) == {"brain_mri", "none", "physical"}
    for rows in on_disk["rows"].values():
        assert [r["seed"] for r in rows] == [0] and all(math.isfinite(r["last10"]) for r in rows)
    assert on_disk["variants"]["physical"]["physical_units"] and not on_disk["variants"]["brain_mri"]["physical_units"]
    assert res["figure"].endswith(".png")
    assert on_disk["machine"]["cpu"] and on_disk["machine"]["medssl_commit"] and on_disk["command"].endswith("r.json")
