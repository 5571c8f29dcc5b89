"""Unit tests of the timing and baseline logic of benchmarks/{losses,encoders,cache,augment}.py with fake clocks
and stub workloads: warm-up kept out of the timing, the same work in the baseline and the variant, ratios the
right way round (no real timing is asserted)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from benchmark_module import load_benchmark


class Clock:
    """A fake clock: ``wall``/``cpu`` only move when a stub workload moves them."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def spend(self, wall: float, cpu: float | None = None) -> None:
        self.wall += wall
        self.cpu += wall if cpu is None else cpu

    def module(self):
        return SimpleNamespace(perf_counter=lambda: self.wall, process_time=lambda: self.cpu, time=lambda: self.wall)


# ----------------------------------------------------------------------------- losses
def test_loss_timing_excludes_the_warm_up_run_and_memory_is_the_rss_delta(monkeypatch):
    """A warm-up run of 100 s, then timed runs of 1, 5 and 2 s: the median, 2000 ms. Peak RSS (ru_maxrss, KiB on
    Linux) of 3 GiB over 1 GiB before the first call: 2048 MiB."""
    bench = load_benchmark("losses")
    clock, costs = Clock(), iter([100.0, 1.0, 5.0, 2.0, 0.0])  # warm-up, 3 timed runs, finiteness check

    def fake_case(name, m, dim, temperature, device):
        return (lambda f: (clock.spend(next(costs)), f.square().sum())[1]), torch.ones(m // 2, 2, dim)

    usage = SimpleNamespace(ru_maxrss=3 * 2**20)  # KiB
    monkeypatch.setattr(bench, "time", clock.module())
    monkeypatch.setattr(bench, "make_case", fake_case)
    monkeypatch.setattr(bench, "current_rss_bytes", lambda: 2**30)
    monkeypatch.setattr(bench, "resource", SimpleNamespace(RUSAGE_SELF=0, getrusage=lambda who: usage))
    r = bench.measure("ntxent", 8, 4, 0.1, "cpu", repeats=3)
    assert r["ms"] == pytest.approx(2000.0) and r["mib"] == pytest.approx(2048.0) and r["finite"]


def test_loss_timing_on_cuda_syncs_around_each_timed_run_and_reads_allocator_peak(monkeypatch):
    """With the CUDA path faked on CPU: every clock reading follows a sync; memory = max allocated - allocated."""
    bench = load_benchmark("losses")
    clock, synced, reads = Clock(), [], []
    costs = iter([100.0, 1.0, 3.0, 0.0])

    def fake_case(name, m, dim, temperature, device):
        return (lambda f: (clock.spend(next(costs)), f.square().sum())[1]), torch.ones(m // 2, 2, dim)

    def read():
        reads.append(clock.wall)
        return clock.wall

    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=read))
    monkeypatch.setattr(bench, "make_case", fake_case)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: synced.append(clock.wall))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d=None: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d=None: 2**20)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d=None: 5 * 2**20)
    r = bench.measure("ntxent", 8, 4, 0.1, "cuda", repeats=2)
    assert r["ms"] == pytest.approx(2000.0) and r["mib"] == pytest.approx(4.0)
    assert reads and all(t in synced for t in reads)


def test_threshold_check_really_compares_with_the_naive_form_on_tied_ages(monkeypatch):
    """The printed max |diff| is ours minus the naive O(M^3) L^thr, on 32 subjects whose ages are tied."""
    from medssl.losses import ThresholdLoss

    bench = load_benchmark("losses")
    seen = []

    def fake_naive(f, ages, temperature):
        seen.append((f, ages, temperature))
        return torch.tensor(1000.0, dtype=torch.float64)

    monkeypatch.setattr(bench, "naive_threshold", fake_naive)
    diff = bench.check_naive_threshold("cpu")
    (f, ages, temperature), = seen
    assert temperature == 0.1 and f.dtype == ages.dtype == torch.float64 and f.shape == (32, 2, 16)
    assert len(set(ages.tolist())) < 32 and torch.equal(ages, ages.round())  # integer ages, some tied
    assert diff == pytest.approx(1000.0 - ThresholdLoss(0.1, 2.0)(f, ages).item())


def test_naive_case_is_skipped_only_when_it_needs_more_than_the_limit(monkeypatch):
    """naive L^thr at 2N = 512 needs 5 · 512³ B = 0.625 GiB: run under a 0.625 GiB limit, skipped under 0.62."""
    bench = load_benchmark("losses")
    monkeypatch.setattr(bench, "measure", lambda *a: {"ran": True})
    args = SimpleNamespace(device="cuda", dim=4, temperature=0.1, repeats=1, threads=1, naive_max_gib=0.625)
    assert bench.run_case(args, "naive_threshold", 512) == {"ran": True}
    args.naive_max_gib = 0.62
    assert "skip" in bench.run_case(args, "naive_threshold", 512)
    assert bench.run_case(args, "ntxent", 4096) == {"ran": True}


def test_naive_ntxent_is_nt_xent_written_out():
    """The naive reference equals NT-Xent from its definition (partner = the other view, self excluded)."""
    bench = load_benchmark("losses")
    f = torch.randn(6, 2, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    z = torch.nn.functional.normalize(torch.cat([f[:, 0], f[:, 1]]), dim=-1)
    s = (z @ z.T / 0.5).fill_diagonal_(float("-inf"))
    partner = [i + 6 if i < 6 else i - 6 for i in range(12)]
    expected = -torch.stack([s[i, partner[i]] - torch.logsumexp(s[i], 0) for i in range(12)]).mean()
    assert bench.naive_ntxent(f, 0.5).item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("name", ["yaware", "threshold", "exp", "supcon", "fairkl"])
def test_each_loss_gets_its_kind_of_labels(name):
    """Kernel losses get the continuous ages, class losses the integer classes, FairKL classes and sites (the draws
    written out here)."""
    import medssl.losses  # noqa: F401
    from medssl.registry import LOSSES

    bench = load_benchmark("losses")
    fn, features = bench.make_case(name, 16, 4, 0.1, "cpu")
    g = torch.Generator().manual_seed(0)
    expected_features = torch.randn(8, 2, 4, generator=g)
    ages = 20 + 60 * torch.rand(8, generator=g)
    classes = torch.randint(0, 10, (8,), generator=g)
    sites = torch.randint(0, 4, (8,), generator=g)
    assert torch.equal(features, expected_features)
    labels = (classes, sites) if name == "fairkl" else (classes,) if name == "supcon" else (ages,)
    assert fn(features).item() == pytest.approx(LOSSES.get(name)(temperature=0.1)(features, *labels).item(), rel=1e-6)


# ----------------------------------------------------------------------------- encoders
def test_encoder_timing_counts_the_timed_steps_only(monkeypatch):
    """Each forward costs 1 s on the fake clock: 2 warm-up + 5 timed steps of batch 3 give 3 samples/s, 1000 ms."""
    bench = load_benchmark("encoders")
    clock, calls = Clock(), []

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(2))

        def forward(self, x):
            clock.spend(1.0)
            calls.append((tuple(x.shape), self.w.grad is None))  # gradients of the last step cleared
            return x.flatten(1).mean(1, keepdim=True) * self.w

    monkeypatch.setattr(bench, "time", clock.module())
    monkeypatch.setattr(bench, "build_encoder", lambda *a, **k: Tiny())
    r = bench.measure("tiny", {}, 3, 4, 3, torch.device("cpu"), steps=5, warmup=2, bf16=False)
    assert calls == [((3, 1, 4, 4, 4), True)] * 7
    assert r["samples_per_s"] == pytest.approx(3.0) and r["ms_per_step"] == pytest.approx(1000.0)
    assert r["params_m"] == pytest.approx(2e-6)


def test_encoder_grid_skips_what_does_not_fit(monkeypatch):
    """ViTs only at crops divisible by the patch (16) and without channels-last; AlexNet only from 69 voxels;
    steps, warm-up and bf16 passed through unchanged."""
    bench = load_benchmark("encoders")
    seen = []

    def fake_measure(name, options, dims, crop, batch, device, steps, warmup, bf16):
        seen.append((name, crop, batch, options.get("checkpointing", False), options.get("channels_last", False)))
        assert options.get("patch_size", 16) == 16
        assert (dims, steps, warmup, bf16) == (3, 4, 3, True)
        return {"status": "ok", "samples_per_s": 1.0, "ms_per_step": 1.0, "peak_mib": None, "params_m": 0.0}

    monkeypatch.setattr(bench, "measure", fake_measure)
    bench.main(["--device", "cpu", "--encoders", "vit_tiny", "alexnet", "--crops", "68", "69", "72", "80",
                "--batches", "2", "--variants", "plain", "cl", "ckpt+cl", "--steps", "4"])
    assert seen == [("vit_tiny", 80, 2, False, False),
                    ("alexnet", 69, 2, False, False), ("alexnet", 69, 2, False, True), ("alexnet", 69, 2, True, True),
                    ("alexnet", 72, 2, False, False), ("alexnet", 72, 2, False, True), ("alexnet", 72, 2, True, True),
                    ("alexnet", 80, 2, False, False), ("alexnet", 80, 2, False, True), ("alexnet", 80, 2, True, True)]


def test_encoder_quick_grid_is_two_steps_after_one_warm_up_in_fp32(monkeypatch):
    """--quick as docs/benchmarks.md runs it: 2 timed steps after 1 warm-up, no autocast, batch 2, ViT patch 8."""
    bench = load_benchmark("encoders")
    seen = []

    def fake_measure(name, options, dims, crop, batch, device, steps, warmup, bf16):
        seen.append((name, crop, batch, steps, warmup, bf16, options.get("patch_size")))
        return {"status": "ok", "samples_per_s": 1.0, "ms_per_step": 1.0, "peak_mib": None, "params_m": 0.0}

    monkeypatch.setattr(bench, "measure", fake_measure)
    bench.main(["--quick"])
    assert {s[3:6] for s in seen} == {(2, 1, False)} and {s[2] for s in seen} == {2}
    assert [s[6] for s in seen if s[0] == "vit_tiny"] == [8, 8]


# ----------------------------------------------------------------------------- cache
def test_cache_read_timing_excludes_dropping_pages(monkeypatch):
    """Reads of 1 s each after page drops of 100 s each: 1 s per read; every file of the read is dropped first."""
    bench = load_benchmark("cache")
    clock, dropped = Clock(), []
    monkeypatch.setattr(bench, "time", clock.module())
    monkeypatch.setattr(bench, "_drop", lambda f: (dropped.append(f), clock.spend(100.0)))
    order = [2, 0, 2, 1]
    assert bench._time_reads(lambda i: clock.spend(1.0 + i), order) == pytest.approx(1 + 5 / 4)
    assert bench._time_reads(lambda i: clock.spend(1.0), order, lambda i: [f"a{i}", f"b{i}"]) == pytest.approx(1.0)
    assert dropped == [f"{p}{i}" for i in order for p in "ab"]


def test_cache_run_times_the_same_random_records_on_every_path(monkeypatch, tmp_path):
    """Decode reads are the first --slow-reads of the cache reads' random order (which covers every volume), the
    cold cache the first 4×; cold reads drop the file they read: the cache file, the record's .nii.gz."""
    from shared_data import shared_path

    bench = load_benchmark("cache")
    seen = {}

    def fake_time_reads(fn, order, cold_files=None):
        name = fn.__name__ + ("+drop" if cold_files else "")
        seen[name] = (list(order), cold_files and [cold_files(i) for i in order])
        return {"cached": 1.0, "decode_pre": 30.0, "decode_only": 10.0, "cached_cold+drop": 2.0, "decode_pre+drop": 30.0}[name]

    monkeypatch.setattr(bench, "_time_reads", fake_time_reads)
    root = shared_path("data", "ixi_t1_hh_2mm")
    res = bench.main(["--quick", "--cold", "--workers", "1", "--root", str(root), "--cache", str(tmp_path / "c")])
    order = seen["cached"][0]
    assert len(order) == 100 and sorted(set(order)) == list(range(8)) and seen["cached"][1] is None
    assert seen["decode_pre"][0] == seen["decode_only"][0] == order[:12]
    assert seen["cached_cold+drop"] == (order[:48], [[str(tmp_path / "c" / "images.npy")]] * 48)
    assert set(seen) == {"cached", "decode_pre", "decode_only", "cached_cold+drop", "decode_pre+drop"}
    from medssl.data.card import load_card
    from medssl.data.manifest import build_manifest

    paths = [r.path for r in build_manifest(load_card("shared_ixi"), root)]
    assert seen["decode_pre+drop"] == (order[:12], [[paths[i]] for i in order[:12]])
    assert res["speedup_vs_cache"] == {"decode + preprocess": 30.0, "nibabel decode only": 10.0,
                                       "decode + preprocess (cold)": 15.0}
    assert res["build"]["scans_per_s"] == pytest.approx(8 / res["build"]["seconds"], rel=0.02)


# ----------------------------------------------------------------------------- augment
def test_timed_keeps_the_best_wall_and_the_best_cpu_time(monkeypatch):
    bench = load_benchmark("augment")
    clock, costs = Clock(), iter([(5.0, 2.0), (3.0, 3.0), (4.0, 1.0)])
    monkeypatch.setattr(bench, "time", clock.module())
    assert bench.timed(lambda: clock.spend(*next(costs)), 3) == (3.0, 1.0)


def test_cpu_comparison_baseline_makes_one_view_per_sample(monkeypatch):
    """MONAI (per sample, 2 s wall / 1 s CPU each) against the batch pipeline (0.5 s wall / 0.25 s CPU per view):
    both per view, ratios MONAI over medssl."""
    bench = load_benchmark("augment")
    clock, monai_calls, ours_calls = Clock(), [], []

    class Pipe:
        def __call__(self, x, g):
            ours_calls.append(x.shape[0])
            clock.spend(0.5 * x.shape[0], 0.25 * x.shape[0])

    def compose(sample):
        monai_calls.append(tuple(sample.shape))
        clock.spend(2.0, 1.0)

    monkeypatch.setattr(bench, "time", clock.module())
    monkeypatch.setattr(bench, "load_ixi", lambda n: [torch.zeros(1, 6, 6, 6)] * n)
    monkeypatch.setattr(bench, "build_view_pipeline", lambda *a, **k: Pipe())
    monkeypatch.setattr(bench, "monai_compose", lambda crop, seed: compose)
    monkeypatch.setattr(bench, "stage_times", lambda *a: {"spatial (0 moved/3)": 0.6})  # seconds per batch
    monkeypatch.setattr(bench, "resampler_times", lambda *a: (1.0, 1.0))
    args = SimpleNamespace(shape=(4, 4, 4), crop=(2, 2, 2), batch=3, repeats=2)
    res = bench.cpu_comparison(args)
    assert monai_calls == [(1, 4, 4, 4)] * (1 + 2 * 3)  # one warm-up sample, then the batch in each round
    assert ours_calls == [2, 3, 3, 3, 3]  # warm-up on two samples; medssl pipeline and full preset in each round
    assert res["medssl_stage_cpu_ms_per_view"] == {"spatial (0 moved/3)": pytest.approx(200.0)}
    assert (res["medssl_wall_s_per_view"], res["medssl_cpu_s_per_view"]) == (0.5, 0.25)
    assert (res["monai_wall_s_per_view"], res["monai_cpu_s_per_view"]) == (2.0, 1.0)
    assert res["speedup_cpu_time"] == res["speedup_wall"] == 4.0 and res["speedup_cpu_time_per_round"] == [4.0, 4.0]


def test_cuda_throughput_counts_two_views_per_sample(monkeypatch):
    """views/s: batch views per pipeline call, 2 × batch per ``views(x, 2)``; warm-up calls not timed."""
    bench = load_benchmark("augment")
    clock, synced, counts = Clock(), [], []

    class Pipe:
        def __call__(self, x, g):
            counts.append(1)
            clock.spend(1.0)

        def views(self, x, n, g):
            counts.append(n)
            clock.spend(1.5 * n)

    monkeypatch.setattr(bench, "time", clock.module())
    monkeypatch.setattr(bench, "load_ixi", lambda n: [torch.zeros(1, 6, 6, 6)] * n)
    monkeypatch.setattr(bench, "build_view_pipeline", lambda *a, **k: Pipe())
    monkeypatch.setattr(bench, "stage_times", lambda *a: {})
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: synced.append(clock.wall))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "fake")
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d=None: 0)
    res = bench.cuda_throughput(SimpleNamespace(device="cpu", shape=(4, 4, 4), crop=(2, 2, 2), batch=8, repeats=2))
    for name in ("compared_subset", "brain_mri_full"):
        assert res[name]["views_per_s_1view"] == pytest.approx(8.0)
        assert res[name]["views_per_s_2views"] == pytest.approx(16 / 3)
    assert len(synced) == 2 * 2 * 2 * 2  # before and after each timed call
    assert counts == ([1, 2] * 3 + [1] * 2 + [2] * 2) * 2  # 3 warm-up rounds, then 2 timed calls of each


def test_monai_baseline_uses_the_compared_probabilities_and_axes():
    """The MONAI Compose draws the same transforms as COMPARED (the values written out in the module docs)."""
    from monai import transforms as T

    bench = load_benchmark("augment")
    comp = {type(t): t for t in bench.monai_compose((16, 16, 16), 0).transforms}
    assert comp[T.RandFlip].prob == 0.5 and comp[T.RandFlip].flipper.spatial_axis == 0
    assert comp[T.RandGaussianNoise].prob == 0.3 and comp[T.RandGaussianNoise].std == 0.1
    assert comp[T.RandAffine].prob == 0.5 and comp[T.RandAdjustContrast].prob == 0.3
    assert comp[T.RandGaussianSmooth].prob == 0.2 and comp[T.RandBiasField].prob == 0.3
    assert comp[T.RandCoarseDropout].prob == 0.3 and comp[T.RandSpatialCrop].roi_size == (16, 16, 16)


def test_resize_batch_fills_the_batch_with_the_distinct_volumes_in_turn():
    bench = load_benchmark("augment")
    vols = [torch.full((1, 2, 2, 2), float(v)) for v in (1, 2, 3)]
    out = bench.resize_batch(vols, (3, 3, 3), 5)
    assert out.shape == (5, 1, 3, 3, 3)
    assert [float(o.mean()) for o in out] == [1.0, 2.0, 3.0, 1.0, 2.0]


def test_stage_times_synchronises_before_reading_the_clock_after_every_stage(monkeypatch):
    """On CUDA the clock is read only after a sync: spatial step and each later transform."""
    import medssl.transforms.spatial as spatial

    bench = load_benchmark("augment")
    clock, reads, synced = Clock(), [], []

    class T:
        def __init__(self, name):
            self.name = name

        def apply(self, y, p, inplace):
            clock.spend(1.0)
            return y

    pipe = SimpleNamespace(spatial=[], others=[T("gamma"), T("cutout")], crop=None, mode=None, padding_mode=None,
                           sample_params=lambda shape, g, d: {"crop": None, "0:gamma": {"apply": torch.ones(2)},
                                                             "1:cutout": {"apply": torch.zeros(2)}})
    monkeypatch.setattr(spatial, "fused_spatial", lambda x, *a: (clock.spend(2.0), x)[1])

    def read():
        reads.append(clock.wall)
        return clock.wall

    out = bench.stage_times(pipe, torch.zeros(2, 1, 2, 2, 2), None, lambda: synced.append(clock.wall), read)
    assert out == {"spatial (0 moved/2)": 2.0, "gamma (2/2)": 1.0, "cutout (0/2)": 1.0}
    assert all(t in synced for t in reads)  # every clock reading follows a sync at that time
