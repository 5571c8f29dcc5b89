"""Smoke test of ``benchmarks/encoders.py --quick`` (tiny CPU run of every encoder family)."""

from __future__ import annotations

import json
import math

import pytest
from benchmark_module import load_benchmark


def test_quick_run_measures_every_encoder_and_variant(tmp_path):
    """One row per encoder × variant of the quick grid (AlexNet at 72³, the others at 32³), each timed and finite;
    the parameter counts are those of the encoder built here; the JSON lines file holds the same rows."""
    from medssl.encoders import build_encoder

    bench = load_benchmark("encoders")
    rows = bench.main(["--quick", "--json", str(tmp_path / "enc.jsonl")])
    encoders = ["resnet10", "densenet121", "alexnet", "vit_tiny"]
    assert [(r["encoder"], r["variant"]) for r in rows] == [(e, v) for e in encoders for v in ("plain", "ckpt")]
    for r in rows:
        assert r["status"] == "ok" and r["device"] == "cpu" and not r["bf16"] and r["peak_mib"] is None
        assert (r["crop"], r["batch"], r["dims"]) == (72 if r["encoder"] == "alexnet" else 32, 2, 3)
        assert math.isfinite(r["samples_per_s"]) and r["samples_per_s"] > 0
        assert r["ms_per_step"] == pytest.approx(1000 * r["batch"] / r["samples_per_s"])
    for name in encoders:
        plain, ckpt = (r for r in rows if r["encoder"] == name)
        options = bench.encoder_options(name, plain["crop"], 3, quick=True)
        n = sum(p.numel() for p in build_encoder(name, spatial_dims=3, in_channels=1, **options).parameters())
        assert plain["params_m"] == ckpt["params_m"] == pytest.approx(n / 1e6)  # checkpointing adds no weights
    on_disk = [json.loads(line) for line in (tmp_path / "enc.jsonl").read_text().splitlines()]
    assert on_disk == rows
