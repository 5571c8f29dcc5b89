"""Peak memory and throughput of the encoders: forward + backward, bf16 autocast.

For every (encoder × crop size × batch size × memory variant) this runs a few warm-up steps
and then times ``steps`` iterations of ``loss = encoder(x).float().square().mean();
loss.backward()`` on random inputs, and reports samples/s and the peak allocated GPU memory
(``torch.cuda.max_memory_allocated``). Variants: ``plain``, ``ckpt`` (activation
checkpointing), ``cl`` (channels-last-3d; CNNs only) and ``ckpt+cl``.

    python benchmarks/encoders.py --device cuda                      # default grid on a GPU
    python benchmarks/encoders.py --device cuda --encoders resnet50 vit_base --crops 128 160 --batches 8
    python benchmarks/encoders.py --quick                             # tiny CPU smoke run (seconds)

Results are printed as a Markdown table and, with ``--json PATH``, written as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medssl.encoders import build_encoder  # noqa: E402

VARIANTS = {"plain": {}, "ckpt": {"checkpointing": True}, "cl": {"channels_last": True},
            "ckpt+cl": {"checkpointing": True, "channels_last": True}}


def encoder_options(name: str, crop: int, dims: int, quick: bool) -> dict | None:
    """Options per encoder family for a cubic crop; None when the crop does not fit the encoder."""
    if name.startswith("vit"):
        patch = 8 if quick else 16
        if crop % patch:
            return None
        small = {"hidden_size": 48, "num_layers": 2, "num_heads": 2} if quick else {}
        return {"img_size": crop, "patch_size": patch, **small}
    if name == "alexnet" and crop < 69:
        return None
    if quick:
        return {"width": 4}
    return {}


def measure(name: str, options: dict, dims: int, crop: int, batch: int, device: torch.device, steps: int,
            warmup: int, bf16: bool) -> dict:
    """One configuration: samples/s and peak memory (MiB, GPU only) of fwd+bwd."""
    torch.manual_seed(0)
    enc = build_encoder(name, spatial_dims=dims, in_channels=1, **options).to(device).train()
    n_params = sum(p.numel() for p in enc.parameters())
    x = torch.randn(batch, 1, *[crop] * dims, device=device)
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else None

    def step() -> None:
        enc.zero_grad(set_to_none=True)
        if ctx:
            with ctx():
                out = enc(x)
        else:
            out = enc(x)
        out.float().square().mean().backward()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    try:
        for _ in range(warmup):
            step()
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        seconds = time.perf_counter() - t0
    except torch.OutOfMemoryError:
        enc = x = None  # free the GPU memory the step closure holds
        torch.cuda.empty_cache()
        return {"status": "OOM", "params_m": n_params / 1e6}
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    enc = x = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"status": "ok", "samples_per_s": batch * steps / seconds, "ms_per_step": 1000 * seconds / steps,
            "peak_mib": peak, "params_m": n_params / 1e6}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny CPU run: small encoders, 32³ crops (AlexNet 72³), 2 steps")
    p.add_argument("--encoders", nargs="+", default=["resnet18", "resnet50", "densenet121", "alexnet", "vit_base"])
    p.add_argument("--dims", type=int, default=3, choices=[2, 3])
    p.add_argument("--crops", type=int, nargs="+", default=[96, 128, 160], help="cubic crop sides (voxels)")
    p.add_argument("--batches", type=int, nargs="+", default=[4, 16])
    p.add_argument("--variants", nargs="+", default=["plain", "ckpt", "cl"], choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast (default: bf16 autocast)")
    p.add_argument("--json", default="", help="also write one JSON object per configuration to this file")
    a = p.parse_args(argv)
    if a.quick:
        a.device, a.crops, a.batches, a.steps, a.warmup = "cpu", [32], [2], 2, 1
        a.encoders = ["resnet10", "densenet121", "alexnet", "vit_tiny"] if a.encoders == p.get_default("encoders") \
            else a.encoders
        a.variants = ["plain", "ckpt"]
    device = torch.device(a.device)
    bf16 = not a.fp32 and not a.quick
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(f"# {torch.cuda.get_device_name(device)}, torch {torch.__version__}, bf16 autocast={bf16}")
    else:
        print(f"# CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
              f"torch {torch.__version__}, bf16 autocast={bf16}")
    print("| encoder | params (M) | crop | batch | variant | samples/s | ms/step | peak GPU MiB |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for name in a.encoders:
        for crop in [72] if a.quick and name == "alexnet" else a.crops:  # AlexNet needs >= 69 voxels
            options = encoder_options(name, crop, a.dims, a.quick)
            if options is None:
                continue
            for batch in a.batches:
                for variant in a.variants:
                    if variant.endswith("cl") and name.startswith("vit"):
                        continue  # channels-last concerns convolutions
                    r = measure(name, {**options, **VARIANTS[variant]}, a.dims, crop, batch, device, a.steps,
                                a.warmup, bf16)
                    r.update(encoder=name, crop=crop, batch=batch, variant=variant, dims=a.dims, device=str(device),
                             bf16=bf16)
                    rows.append(r)
                    if r["status"] == "OOM":
                        print(f"| {name} | {r['params_m']:.1f} | {crop} | {batch} | {variant} | OOM | | |")
                    else:
                        peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else "n/a"
                        print(f"| {name} | {r['params_m']:.1f} | {crop} | {batch} | {variant} | "
                              f"{r['samples_per_s']:.1f} | {r['ms_per_step']:.0f} | {peak} |", flush=True)
    if a.json:
        Path(a.json).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


if __name__ == "__main__":
    main()
