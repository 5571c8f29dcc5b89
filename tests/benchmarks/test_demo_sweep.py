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


def test_quick_run_trains_each_variant_and_probes_it_next_to_the_same_random_encoder(tmp_path):
    """--quick: a 30-subject cohort, one run per variant with the quick budget; the probes' numbers are valid,
    the random-init baseline (same encoder, same seed) is the same for every variant; a kept cohort of another
    size is refused rather than reused."""
    import csv
    import json

    sweep = _sweep()
    variants = ["simclr=method.name=simclr;method.loss={temperature: 0.1}", "yaware=method.name=yaware"]
    res = sweep.main(["--quick", "--jobs", "1", "--out", str(tmp_path), *(f"--variant={v}" for v in variants)])
    with open(tmp_path / "cohort-seed1" / "participants.tsv", newline="") as f:
        subjects = list(csv.DictReader(f, delimiter="\t"))
    assert len(subjects) == 30 and {s["site"] for s in subjects} == {"site-A", "site-B", "site-C"}
    assert [(r["label"], r["seed"]) for r in res["rows"]] == [("simclr", 0), ("yaware", 0)]
    for r in res["rows"]:
        assert all(o in r["overrides"] for o in sweep.QUICK["overrides"]) and r["seconds"] > 0
        assert 0 < r["age_mae"] < 100 and 0 < r["random_age_mae"] < 100  # years
        assert 0 <= r["site_bacc"] <= 1 and 0 <= r["random_site_bacc"] <= 1
    first, second = res["rows"]
    assert second["random_age_mae"] == pytest.approx(first["random_age_mae"])
    assert second["random_site_bacc"] == pytest.approx(first["random_site_bacc"])
    assert [(s["label"], s["n"], s["age_mae"][1]) for s in res["summary"]] == [("simclr", 1, None), ("yaware", 1, None)]
    assert json.loads((tmp_path / "sweep.json").read_text()) == json.loads(json.dumps(res))
    assert res["seeds"] == [0] and res["wall_seconds"] > 0 and res["machine"]["medssl_commit"]
    assert res["command"].startswith("python benchmarks/demo_sweep.py --quick --jobs 1")
    assert (tmp_path / "sweep.png").stat().st_size > 5_000
    with pytest.raises(FileExistsError, match="different synthetic cohort"):
        sweep.main(["--out", str(tmp_path), "--subjects", "60", "--jobs", "1"])
