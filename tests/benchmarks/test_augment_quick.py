"""Smoke test of ``benchmarks/augment.py --quick`` (CPU comparison with MONAI) and of its view-grid figure."""

from __future__ import annotations

import json
import math
import re

import pytest
from benchmark_module import load_benchmark
from shared_data import shared_path

PER_VIEW = ("medssl_cpu_s_per_view", "monai_cpu_s_per_view", "medssl_wall_s_per_view", "monai_wall_s_per_view",
            "medssl_brain_mri_full_preset_cpu_s_per_view", "one_view_grid_sample_cpu_s", "one_view_affine_trilinear_cpu_s")


def test_quick_run_times_both_pipelines_in_the_same_run_and_writes_the_grid(tmp_path):
    """The docs table's rows (medssl, MONAI baseline, full preset, one interpolated view) are measured, positive and
    finite; the speed-ups are their ratios; the stage breakdown names the compared transforms; the grid PNG is written."""
    shared_path("data", "ixi_t1_hh_2mm", "images")
    shared_path("data", "dicom_cxr_nih_dx")
    bench = load_benchmark("augment")
    res = bench.main(["--quick", "--json", str(tmp_path / "r.json"), "--grid", str(tmp_path / "views.png")])
    assert res["device"] == "cpu" and res["threads"] == 1
    assert (res["shape"], res["crop"], res["batch"], res["repeats"]) == ([48, 56, 48], [32, 32, 32], 4, 1)
    for key in PER_VIEW:
        assert math.isfinite(res[key]) and 0 < res[key] < 1.0, key  # seconds per 32³ view: far below one
    assert res["speedup_cpu_time"] == pytest.approx(res["monai_cpu_s_per_view"] / res["medssl_cpu_s_per_view"])
    assert res["speedup_wall"] == pytest.approx(res["monai_wall_s_per_view"] / res["medssl_wall_s_per_view"])
    assert len(res["speedup_cpu_time_per_round"]) == 1  # one ratio per interleaved round
    assert res["speedup_cpu_time_per_round"][0] == pytest.approx(res["speedup_cpu_time"])  # one round: it is the best
    stages = res["medssl_stage_cpu_ms_per_view"]
    names = [re.fullmatch(r"(.+) \((\d+)(?: moved)?/4\)", k).group(1) for k in stages]
    assert names == ["spatial", "bias_field", "gamma", "gaussian_blur", "gaussian_noise", "cutout"]  # COMPARED's
    assert all(math.isfinite(v) and v >= 0 for v in stages.values())
    assert json.loads((tmp_path / "r.json").read_text()) == res
    assert res["machine"]["cpu"] and res["machine"]["medssl_commit"] and res["wall_seconds"] > 0
    assert res["command"] == f"python benchmarks/augment.py --quick --json {tmp_path / 'r.json'} --grid {tmp_path / 'views.png'}"
    assert (tmp_path / "views.png").stat().st_size > 50_000  # two rows of six images
