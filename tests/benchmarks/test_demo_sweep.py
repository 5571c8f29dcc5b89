"""``benchmarks/demo_sweep.py``: mean ± SD of the sweep's runs (the loss study of docs/benchmarks.md)."""

from __future__ import annotations

import math
import sys

import pytest
from benchmark_module import BENCHMARKS, load_benchmark


def _sweep():
    if str(BENCHMARKS) not in sys.path:  # demo_sweep imports seed_runs from its own folder
        sys.path.insert(0, str(BENCHMARKS))
    return load_benchmark("demo_sweep")


def _row(label: str, mae: float) -> dict:
    return {"label": label, "age_mae": mae, "site_bacc": 0.5, "random_age_mae": 9.0, "random_site_bacc": 0.9}


def test_summary_is_the_sample_sd_over_runs_and_none_for_one_run(tmp_path):
    """Three runs: mean and SD (ddof=1) written naively here; one run: no SD, never a fake ± 0."""
    sweep = _sweep()
    vals = [5.0, 6.0, 10.0]
    a, b = sweep.summarise([_row("a", v) for v in vals] + [_row("b", 7.0)])
    mean = sum(vals) / 3
    assert a["n"] == 3 and a["age_mae"][0] == pytest.approx(mean)
    assert a["age_mae"][1] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in vals) / 2))
    assert b["n"] == 1 and b["age_mae"] == (7.0, None) and b["site_bacc"] == (0.5, None)
    assert sweep._mean_sd(b["age_mae"], 8, 2) == "    7.00" and sweep._mean_sd(a["site_bacc"], 9, 3) == "    0.500 ± 0.000"
    sweep.plot([b], tmp_path / "one_run.png")  # a missing SD draws no error bar
    assert (tmp_path / "one_run.png").stat().st_size > 5_000
