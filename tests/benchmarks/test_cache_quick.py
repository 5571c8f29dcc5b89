"""Smoke test of ``benchmarks/cache.py --quick --cold`` on real IXI scans."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from benchmark_module import load_benchmark
from shared_data import shared_path


def test_quick_run_times_every_read_path_against_the_cache_of_the_same_run(tmp_path):
    """The docs table's rows (cache, decode + preprocess, nibabel decode; warm and cold) are measured and
    finite, each ratio is against the cache read of the same run; the cache kept on disk is 8 float16 volumes
    of the card's shape (sizes computed here from the shape)."""
    root = shared_path("data", "ixi_t1_hh_2mm")
    res = load_benchmark("cache").main(["--quick", "--cold", "--workers", "1", "--root", str(root),
                                        "--cache", str(tmp_path / "cache"), "--json", str(tmp_path / "r.json")])
    ms = res["ms_per_volume"]
    assert list(ms) == ["cache", "decode + preprocess", "nibabel decode only", "cache (cold)",
                        "decode + preprocess (cold)"]
    assert all(math.isfinite(v) and 0 < v < 10_000 for v in ms.values())
    for k, ratio in res["speedup_vs_cache"].items():
        base = ms["cache (cold)" if "cold" in k else "cache"]
        assert ratio == pytest.approx(ms[k] / base, abs=0.051, rel=0.01)  # rounded to 0.1 from unrounded times
    assert set(res["speedup_vs_cache"]) == {k for k in ms if not k.startswith("cache")}
    assert res["volumes"] == 8 and res["reads"] == {"cache": 100, "decode": 12, "order": "uniform random, seed 0"}
    assert res["card"] == "shared_ixi" and res["cached_shape"] == [1, *res["preprocessing"]["shape"]]
    images = np.load(tmp_path / "cache" / "images.npy", mmap_mode="r")
    assert images.dtype == np.float16 and list(images.shape) == [8, *res["cached_shape"]]
    assert res["bytes_per_volume"]["cache_mib"] == pytest.approx(2 * math.prod(res["cached_shape"]) / 2**20, abs=1e-3)
    assert res["build"]["workers"] == 1 and res["build"]["seconds"] > 0
    assert json.loads((tmp_path / "r.json").read_text()) == res
