"""Smoke test of ``benchmarks/throughput.py --quick`` (CPU), and of its side-stream augmentation on a CUDA GPU."""

from __future__ import annotations

import contextlib
import json
import math
import types

import pytest
import torch
from benchmark_module import load_benchmark

PIPELINES = ("a_model_only", "b_end_to_end", "b2_gpu_resident", "c_monai_cpu_workers")


@pytest.mark.parametrize("extra", [[], ["--aug-stream"]])
def test_quick_run_measures_every_pipeline_and_its_ratios(tmp_path, extra):
    res = load_benchmark("throughput").main(["--quick", "--cache", str(tmp_path / "cache.npy"),
                                             "--json", str(tmp_path / "r.json"), *extra])
    assert all(math.isfinite(res[k]) and res[k] > 0 for k in PIPELINES)
    assert res["ratio_b_over_a"] == pytest.approx(res["b_end_to_end"] / res["a_model_only"])
    assert res["ratio_b2_over_c"] == pytest.approx(res["b2_gpu_resident"] / res["c_monai_cpu_workers"])
    assert res["gflop_per_view_fwd_bwd"] > 0 and math.isnan(res["matmul_ceiling_tflops"])  # no ceiling on CPU
    on_disk = json.loads((tmp_path / "r.json").read_text())
    assert all(on_disk[k] == res[k] for k in (*PIPELINES, "ratio_b_over_a", "crop", "batch"))
    assert on_disk["steps"] == 2 and on_disk["shape"] == [32] * 3 and on_disk["wall_seconds"] > 0  # budget, wall time
    assert on_disk["machine"]["cpu"] and on_disk["machine"]["medssl_commit"] and "--quick" in on_disk["command"]


def test_views_ahead_schedules_batch_k_plus_1_before_step_k_and_yields_every_batch(monkeypatch):
    """The CUDA branch's bookkeeping, run on CPU with stand-in streams: every batch once, in order, and
    the views of batch k+1 are enqueued before the caller's step on batch k (that is the overlap)."""
    bench = load_benchmark("throughput")

    class Stream:
        def wait_stream(self, other):
            pass

    class Views(int):
        is_cuda = False

        def record_stream(self, stream):
            pass

    monkeypatch.setattr(bench.torch.cuda, "current_stream", lambda device: Stream())
    monkeypatch.setattr(bench.torch.cuda, "Stream", lambda device: Stream())
    monkeypatch.setattr(bench.torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    cuda = types.SimpleNamespace(type="cuda")
    expected = {0: [], 1: ["views 0", "step 0"],
                4: ["views 0", "views 1", "step 0", "views 2", "step 1", "views 3", "step 2", "step 3"]}
    for n, want in expected.items():
        events = []

        def make(batch):
            events.append(f"views {batch['image']}")
            return Views(batch["image"])

        for views in bench.views_ahead(iter([{"image": Views(i)} for i in range(n)]), make, cuda):
            events.append(f"step {views}")
        assert events == want


def test_views_ahead_side_stream_never_waits_for_the_steps(monkeypatch):
    """With stand-in streams: batches are produced and augmented on the side stream, which waits for the
    default stream once, before the first step. A wait per batch would make the host syncs inside the
    augmentation (``.item()``) wait for step k-1 too, so batch k+1's views never overlapped step k."""
    bench = load_benchmark("throughput")
    events, current = [], ["main"]

    class Stream:
        def __init__(self, name):
            self.name = name

        def wait_stream(self, other):
            events.append(f"{self.name} waits {other.name}")

    @contextlib.contextmanager
    def stream(s):
        before, current[0] = current[0], s.name
        try:
            yield
        finally:
            current[0] = before

    class Views(int):
        is_cuda = True

        def record_stream(self, stream):
            pass

    monkeypatch.setattr(bench.torch.cuda, "current_stream", lambda device: Stream("main"))
    monkeypatch.setattr(bench.torch.cuda, "Stream", lambda device: Stream("side"))
    monkeypatch.setattr(bench.torch.cuda, "stream", stream)

    def batches():
        for i in range(3):
            events.append(f"batch {i} on {current[0]}")
            yield {"image": Views(i)}

    def make(batch):
        events.append(f"views {batch['image']} on {current[0]}")
        return Views(batch["image"])

    for views in bench.views_ahead(batches(), make, types.SimpleNamespace(type="cuda")):
        events.append(f"step {views} on {current[0]}")
    assert events == ["side waits main", "batch 0 on side", "views 0 on side",
                      "main waits side", "batch 1 on side", "views 1 on side", "step 0 on main",
                      "main waits side", "batch 2 on side", "views 2 on side", "step 1 on main",
                      "main waits side", "step 2 on main"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="side CUDA streams need a GPU (none here)")
def test_views_ahead_on_a_side_stream_gives_the_sequential_views():
    """Views made one batch ahead on a side stream equal those made in order, even while the default
    stream is busy with a long step on each batch (a race would show up as different values)."""
    views_ahead = load_benchmark("throughput").views_ahead
    dev = torch.device("cuda")
    data = [{"image": torch.rand(8, 1, 48, 48, 48, device=dev)} for _ in range(6)]
    busy = torch.randn(4096, 4096, device=dev)

    def run(ahead: bool) -> list[torch.Tensor]:
        g = torch.Generator(device=dev).manual_seed(0)

        def make(batch):
            x = batch["image"].float()
            return torch.nn.functional.avg_pool3d(x, 3, 1, 1) + torch.rand(x.shape, device=dev, generator=g)

        out = []
        for views in (views_ahead(iter(data), make, dev) if ahead else map(make, data)):
            for _ in range(20):
                busy @ busy  # a long "step" on the default stream
            out.append((views * 2).cpu())
        return out

    for seq, ahead in zip(run(False), run(True), strict=True):
        assert torch.equal(seq, ahead)
