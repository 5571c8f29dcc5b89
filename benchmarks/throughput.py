"""Is pretraining bound by the model or by the data? Three pipelines, one process, one GPU.

(a) model-only: the encoder + SimCLR step on views already on the GPU;
(b) end-to-end: cached preprocessed volumes (float16 memmap) → DataLoader workers (float16
    stays float16) → GPU → medssl batch augmentation on the GPU → the same step;
(b2) end-to-end with the cache resident in GPU memory (``data.preload=gpu``): index the
    float16 cache on the GPU → augmentation → the same step (no loader, no host copies);
(c) the baseline a user would write: MONAI per-sample CPU transforms (the Compose of
    benchmarks/augment.py, same transform set) in DataLoader workers → GPU → the same step.

Prints views/s, the ratios (b)/(a) and (b)/(c), and MFU (achieved FLOP/s of the encoder's
forward+backward, counted with torch.utils.flop_counter, over the measured bf16 matmul
ceiling, also measured in the same run).

    python benchmarks/throughput.py --device cuda --encoder resnet18 --crop 128 --batch 32
    python benchmarks/throughput.py --device cuda --encoder vit --encoder-options '{"patch_size": 16}' --crop 96 --batch 64
    python benchmarks/throughput.py --quick          # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from augment import COMPARED, monai_compose  # noqa: E402  (same transform set as the augmentation benchmark)
from seed_runs import command_line, machine  # noqa: E402

from medssl.encoders import build_encoder  # noqa: E402
from medssl.losses import NTXentLoss  # noqa: E402
from medssl.methods import SimCLR  # noqa: E402
from medssl.transforms.views import build_view_pipeline  # noqa: E402


class CachedVolumes(Dataset):
    """Items from a float16 memmap: {"image": (1, *shape) float16} (converted on the GPU)."""

    def __init__(self, path: Path) -> None:
        self.path, self.arr = path, None

    def __len__(self) -> int:
        return int(np.load(self.path, mmap_mode="r").shape[0])

    def __getitem__(self, i: int) -> dict:
        if self.arr is None:
            self.arr = np.load(self.path, mmap_mode="r")
        return {"image": torch.from_numpy(np.array(self.arr[i]))}


class MonaiViews(CachedVolumes):
    """Per-sample CPU pipeline: two MONAI views of each volume, as users write it today."""

    def __init__(self, path: Path, crop) -> None:
        super().__init__(path)
        self.crop, self.compose = crop, None

    def __getitem__(self, i: int) -> dict:
        if self.compose is None:
            info = torch.utils.data.get_worker_info()
            self.compose = monai_compose(self.crop, seed=info.id if info else 0)
        x = super().__getitem__(i)["image"].float()
        return {"views": torch.stack([torch.as_tensor(self.compose(x)) for _ in range(2)])}


def one_thread_per_worker(_: int) -> None:
    """DataLoader workers each use one intra-op thread (16 workers × 16 threads would oversubscribe)."""
    torch.set_num_threads(1)


def make_cache(path: Path, n: int, shape) -> Path:
    """n smooth random head-like volumes (content does not change the cost of these ops)."""
    if path.exists():
        return path
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, 1, *shape))
    g = torch.Generator().manual_seed(0)
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, s) for s in shape], indexing="ij"))
    for i in range(n):
        r = (grid**2).sum(0).sqrt()
        head = (r < 0.8 + 0.05 * torch.rand(1, generator=g)).float()
        arr[i, 0] = (head * (1 + 0.2 * torch.randn(shape, generator=g))).numpy().astype(np.float16)
    arr.flush()
    return path


def matmul_ceiling(device) -> float:
    """Measured bf16 matmul FLOP/s (8192³, mean of 10 after warm-up)."""
    if device.type != "cuda":
        return float("nan")
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        a @ a
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (time.perf_counter() - t)


def flops_per_view(encoder, crop, device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, 1, *crop, device=device)
    with FlopCounterMode(display=False) as fc:
        encoder(x).float().sum().backward()
    encoder.zero_grad(set_to_none=True)
    return fc.get_total_flops() / 2


def build(args, device):
    torch.manual_seed(0)
    enc = build_encoder(args.encoder, 3, 1, **json.loads(args.encoder_options))
    views = build_view_pipeline("none", 3, tuple(args.crop), overrides=COMPARED)
    method = SimCLR(enc, NTXentLoss(temperature=0.1), views).to(device)
    if args.channels_last:
        method = method.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.AdamW(method.parameters(), lr=1e-4, fused=device.type == "cuda")
    return method, opt


def run_steps(step_fn, batches, warmup: int, steps: int, device) -> float:
    """views/s over ``steps`` after ``warmup`` steps; batches is an iterator."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step_fn(next(batches))
    sync()
    t0 = time.perf_counter()
    views = sum(step_fn(next(batches)) for _ in range(steps))
    sync()
    return views / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--encoder-options", default="{}")
    ap.add_argument("--crop", type=int, nargs=3, default=[128, 128, 128])
    ap.add_argument("--shape", type=int, nargs=3, default=[160, 192, 160])
    ap.add_argument("--batch", type=int, default=32, help="samples per step (2 views each)")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--cache", default="/tmp/medssl_throughput_cache.npy")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--aug-stream", action="store_true",
                    help="(b)/(b2): augment the next batch on a side CUDA stream while the current step runs")
    ap.add_argument("--pipelines", nargs="+", default=["a", "b", "b2", "c"], choices=["a", "b", "b2", "c"],
                    help="which pipelines to measure (ratios need a, b/b2 and c)")
    ap.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    if a.quick:
        a.device, a.crop, a.shape, a.batch, a.workers, a.steps = "cpu", [24] * 3, [32] * 3, 4, 0, 2
        a.encoder_options = '{"width": 8}'
        if a.cache == ap.get_default("cache"):
            a.cache = "/tmp/medssl_throughput_quick.npy"
    t0 = time.time()
    dev = torch.device(a.device)
    torch.backends.cudnn.benchmark = True
    cache = make_cache(Path(a.cache), max(2 * a.batch, 8), a.shape)
    method, opt = build(a, dev)
    encoder = torch.compile(method.encoder) if a.compile else method.encoder
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")

    def model_step(views: torch.Tensor) -> int:  # views: (B, 2, C, *crop) on the device
        with autocast:
            b = views.shape[0]
            z = method.projector(encoder(views.flatten(0, 1))).view(b, 2, -1)
            loss = method.loss(z)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return views.shape[0] * 2

    g = torch.Generator(device=dev).manual_seed(0)
    fixed = torch.randn(a.batch, 2, 1, *a.crop, device=dev)
    res = {"encoder": a.encoder, "options": a.encoder_options, "crop": a.crop, "batch": a.batch, "device": str(dev),
           "shape": a.shape, "steps": a.steps, "workers": a.workers}
    res["a_model_only"] = run_steps(model_step, iter(lambda: fixed, None), 3, a.steps, dev)
    if a.pipelines == ["a"]:
        fpv = flops_per_view(method.encoder, a.crop, dev)
        ceiling = matmul_ceiling(dev)
        print(f"{a.encoder} {a.encoder_options} crop {tuple(a.crop)} batch {a.batch}{' channels_last_3d' if a.channels_last else ''}"
              f"{' compiled' if a.compile else ''}: (a) model only {res['a_model_only']:.1f} views/s, "
              f"MFU {100 * res['a_model_only'] * fpv / ceiling:.1f}%")
        return res

    def make(batch: dict) -> torch.Tensor:
        return method.make_views(batch["image"].to(dev, non_blocking=True).float(), g)

    def e2e(batches):
        """(b)/(b2) batches → views: one after the other, or (``--aug-stream``) one batch ahead on a side stream."""
        return views_ahead(batches, make, dev) if a.aug_stream else map(make, batches)

    loader = DataLoader(CachedVolumes(cache), batch_size=a.batch, shuffle=True, num_workers=min(a.workers, 8),
                        pin_memory=dev.type == "cuda", persistent_workers=a.workers > 0, drop_last=True,
                        worker_init_fn=one_thread_per_worker)
    res["b_end_to_end"] = run_steps(model_step, e2e(_cycle(loader)), 3, a.steps, dev)
    resident = torch.from_numpy(np.load(cache)).to(dev)  # float16, whole cache on the device
    order = torch.Generator(device=dev).manual_seed(1)
    batches = iter(lambda: {"image": resident[torch.randint(len(resident), (a.batch,), device=dev, generator=order)]}, None)
    res["b2_gpu_resident"] = run_steps(model_step, e2e(batches), 3, a.steps, dev)
    batches = resident = None  # free the device copy before the MONAI baseline
    monai_loader = DataLoader(MonaiViews(cache, a.crop), batch_size=a.batch, shuffle=True, num_workers=a.workers,
                              pin_memory=dev.type == "cuda", persistent_workers=a.workers > 0, drop_last=True,
                              worker_init_fn=one_thread_per_worker)
    res["c_monai_cpu_workers"] = run_steps(lambda b: model_step(b["views"].to(dev, non_blocking=True)),
                                           _cycle(monai_loader), 2, max(2, a.steps // 2), dev)
    ceiling = matmul_ceiling(dev)
    fpv = flops_per_view(method.encoder, a.crop, dev)
    res.update({"ratio_b_over_a": res["b_end_to_end"] / res["a_model_only"],
                "ratio_b2_over_a": res["b2_gpu_resident"] / res["a_model_only"],
                "ratio_b2_over_c": res["b2_gpu_resident"] / res["c_monai_cpu_workers"],
                "ratio_b_over_c": res["b_end_to_end"] / res["c_monai_cpu_workers"],
                "gflop_per_view_fwd_bwd": fpv / 1e9, "matmul_ceiling_tflops": ceiling / 1e12,
                "mfu_model_only": res["a_model_only"] * fpv / ceiling, "mfu_end_to_end": res["b_end_to_end"] * fpv / ceiling})
    print(f"\n{a.encoder} {a.encoder_options} crop {tuple(a.crop)} from {tuple(a.shape)}, batch {a.batch} × 2 views, "
          f"{dev}{' channels_last_3d' if a.channels_last else ''}{' compiled' if a.compile else ''}"
          f"{' aug-stream' if a.aug_stream else ''}")
    print(f"{'pipeline':44s} {'views/s':>10s}")
    for key, label in (("a_model_only", "(a) model only"), ("b_end_to_end", "(b) cache → loader → GPU aug → step"),
                       ("b2_gpu_resident", "(b2) GPU-resident cache → GPU aug → step"),
                       ("c_monai_cpu_workers", f"(c) MONAI per-sample, {a.workers} CPU workers")):
        print(f"{label:44s} {res[key]:10.1f}")
    print(f"(b)/(a) = {res['ratio_b_over_a']:.2f}   (b2)/(a) = {res['ratio_b2_over_a']:.2f}   "
          f"(b)/(c) = {res['ratio_b_over_c']:.1f}x   (b2)/(c) = {res['ratio_b2_over_c']:.1f}x   "
          f"{res['gflop_per_view_fwd_bwd']:.1f} GFLOP/view   ceiling {res['matmul_ceiling_tflops']:.0f} TFLOP/s   "
          f"MFU (a) {100 * res['mfu_model_only']:.1f}%  (b) {100 * res['mfu_end_to_end']:.1f}%")
    res.update(machine=machine(str(dev)), wall_seconds=round(time.time() - t0, 1), command=command_line("throughput.py", argv))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return res


def views_ahead(batches, make, device):
    """Yield ``make(batch)`` per batch; on CUDA the views of batch k+1 are computed on a side stream.

    The augmentation kernels of batch k+1 are enqueued on the side stream before the caller
    enqueues its step on batch k (on the default stream), so the two may overlap on the GPU.
    ``batches`` is advanced on the side stream too (a batch indexed from a GPU-resident cache is
    made there), so the side stream never waits for the default stream's steps: the host syncs
    inside the augmentation (``.item()`` of a selection count, a seed) then wait only for the
    augmentation, not for the step before (a wait on the default stream per batch would block the
    host until step k-1 ended and leave the GPU idle while batch k+1's views are enqueued, i.e.
    no overlap at all). CUDA tensors made before the loop are waited for once, at the start.
    ``record_stream`` keeps each tensor alive until the stream that reads it is done. On CPU
    this is ``map(make, batches)``: the same views in the same order.
    """
    if device.type != "cuda":
        yield from map(make, batches)
        return
    main, side = torch.cuda.current_stream(device), torch.cuda.Stream(device)

    def enqueue(batch: dict | None) -> torch.Tensor | None:
        if batch is None:
            return None
        if batch["image"].is_cuda:
            batch["image"].record_stream(side)
        with torch.cuda.stream(side):
            return make(batch)

    def produce() -> dict | None:
        with torch.cuda.stream(side):
            return next(batches, None)

    def hand_over(views: torch.Tensor) -> torch.Tensor:
        main.wait_stream(side)
        views.record_stream(main)
        return views

    batches = iter(batches)
    side.wait_stream(main)  # only here: batches already on the GPU were made on the default stream
    ahead = enqueue(produce())
    while ahead is not None:
        ready = hand_over(ahead)
        ahead = enqueue(produce())  # batch k+1 goes onto the side stream before the caller's step on batch k
        yield ready


def _cycle(loader):
    while True:
        yield from loader


if __name__ == "__main__":
    main()
