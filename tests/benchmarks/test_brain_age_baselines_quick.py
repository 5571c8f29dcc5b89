"""Smoke test of ``benchmarks/brain_age_baselines.py --quick`` on real IXI scans."""

from __future__ import annotations

import math

import numpy as np
from benchmark_module import load_benchmark
from shared_data import SHARED, shared_path


def test_quick_run_matches_the_main_benchmarks_random_probe(tmp_path, capsys):
    """The layer4 row taps the same embedding as brain_age_ixi.py's random-init probe (hooks vs the encoder's
    output, same seed, folds and Ridge), so both MAEs agree; every MAE is the pooled out-of-fold error."""
    shared_path("data", "ixi_t1_hh_2mm", "participants.tsv")
    data = ["--data-root", str(SHARED / "data")]
    bench = load_benchmark("brain_age_baselines")
    res = bench.main(["--quick", "--threads", "2", "--seeds", "0", "1", "--out", str(tmp_path / "b"), *data])
    assert "features + Ridge (3-fold CV)" in capsys.readouterr().out and res["rows"][0]["folds"] == 3  # --quick: 3 folds
    again = bench.main(["--from-json", str(tmp_path / "b" / "result.json"), "--figure", str(tmp_path / "f.png")])
    assert again["rows"] == res["rows"] and (tmp_path / "f.png").stat().st_size > 10_000
    rows = {(r["variant"], r["width"]): r for r in res["rows"]}
    assert {v for v, _ in rows} == {"mean", "histogram", "layer4", "layer2", "layers1-4", "layer4_minmax"}
    for r in res["rows"]:
        age = np.array(r["age"])
        for p, m in zip(r["pred"], r["mae_per_seed"]):
            assert np.all(np.isfinite(p)) and math.isclose(m, np.abs(np.array(p) - age).mean(), abs_tol=2e-3)
    main = load_benchmark("brain_age_ixi").main(["--quick", "--threads", "2", "--seeds", "0", "1", "--out",
                                                 str(tmp_path / "m"), "--set", "methods=", "scratch=false", *data])
    width = main["budget"]["width"]
    assert np.allclose(rows[("layer4", width)]["mae_per_seed"], main["summary"]["random_cnn_probe"]["mae_per_seed"],
                       atol=2e-3)
    assert np.allclose(rows[("mean", None)]["mae_per_seed"], main["summary"]["mean"]["mae_per_seed"], atol=2e-3)
