"""Which augmentations keep SimCLR at chance on a coarse grid? (IXI T1 at 6 mm, 32×40×40.)

SimCLR (Chen et al., ICML 2020; NT-Xent, τ = 0.1) with the 3D ResNet-18 of
``benchmarks/brain_age_ixi.py`` (width 16, 28³ random resized crops, batch 32, AdamW 1e-3,
warm-up + cosine) is trained for a fixed number of steps on all 143 IXI T1 scans with one
view pipeline per row:

* ``brain_mri`` as is (strengths in voxels, tuned for ~1 mm), and ``none`` (random crop only);
* ``brain_mri`` with one group of transforms switched off: spatial (affine + elastic),
  degradation (blur, low resolution, motion, ghosting), intensity (bias field, gamma,
  scale/shift, Gaussian and Rician noise), cutout;
* ``brain_mri`` with its voxel strengths rescaled to the data's 6 mm spacing
  (``build_view_pipeline(..., spacing=(6, 6, 6))``, i.e. ``augment.physical_units=true``);
* ``brain_mri`` without one intensity transform at a time, and brain_mri's resized crops +
  flips alone (``crop_flip``).

Within a seed every row starts from the same initial weights and sees the same batches. The
table gives the mean NT-Xent of the first and last 10 steps against the chance level
ln(2B − 1) (all similarities equal), and two training-free view-agreement measures: two
views of every scan are embedded — by the random-init encoder (eval mode), or as their
voxels average-pooled 4× — the embeddings are centred over all 2N views and
L2-normalised, and we report how often a view's nearest neighbour among the 2N − 1
others is its own partner (retrieval@1; chance 1 / (2N − 1)).

    python benchmarks/view_strength.py --cache runs/ixi/cache --seeds 0 1 --json /tmp/vs.json   # 120 steps per row
    python benchmarks/view_strength.py --quick                                        # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import medssl.losses  # noqa: F401 - registers the losses
from medssl.data.dataset import CachedScans
from medssl.methods.contrastive import SimCLR
from medssl.registry import LOSSES
from medssl.train.trainer import Trainer, TrainerOptions
from medssl.transforms.views import build_view_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_runs import add_data_root, command_line, machine, pyplot, save_figure, write_result  # noqa: E402 - next to this script
from brain_age_data import Budget, load_ixi  # noqa: E402 - the data loading and Budget of brain_age_ixi.py
from brain_age_encoders import cnn  # noqa: E402 - and its encoder

REPO = Path(__file__).resolve().parents[1]

#: row key -> (description, preset, overrides, strengths rescaled to the data spacing)
VARIANTS: dict[str, tuple[str, str, dict, bool]] = {
    "brain_mri": ("brain_mri as is (voxel units)", "brain_mri", {}, False),
    "none": ("crop only (preset none)", "none", {}, False),
    "no_spatial": ("brain_mri without affine + elastic", "brain_mri", {"affine_prob": 0.0, "elastic_prob": 0.0}, False),
    "no_degrade": ("brain_mri without blur, low-res, motion, ghosting", "brain_mri",
                   {"blur_prob": 0.0, "lowres_prob": 0.0, "motion_prob": 0.0, "ghosting_prob": 0.0}, False),
    "no_intensity": ("brain_mri without bias, gamma, scale/shift, noise, Rician", "brain_mri",
                     {"bias_prob": 0.0, "gamma_prob": 0.0, "scale_shift_prob": 0.0, "noise_prob": 0.0,
                      "rician_prob": 0.0}, False),
    "no_cutout": ("brain_mri without cutout", "brain_mri", {"dropout_prob": 0.0}, False),
    "physical": ("brain_mri rescaled to the data spacing (physical_units)", "brain_mri", {}, True),
    # inside the intensity group, one transform at a time
    "no_bias": ("brain_mri without bias field", "brain_mri", {"bias_prob": 0.0}, False),
    "no_gamma": ("brain_mri without gamma", "brain_mri", {"gamma_prob": 0.0}, False),
    "no_scale_shift": ("brain_mri without scale/shift", "brain_mri", {"scale_shift_prob": 0.0}, False),
    "no_noise": ("brain_mri without Gaussian + Rician noise", "brain_mri", {"noise_prob": 0.0, "rician_prob": 0.0},
                 False),
    # brain_mri's resized crops and flips alone (vs none's plain crops)
    "crop_flip": ("brain_mri's resized crops + flips only", "brain_mri",
                  {k: 0.0 for k in ("affine_prob", "elastic_prob", "bias_prob", "gamma_prob", "scale_shift_prob",
                                    "blur_prob", "lowres_prob", "motion_prob", "ghosting_prob", "noise_prob",
                                    "rician_prob", "dropout_prob")}, False),
}


def make_pipeline(key: str, crop: int, spacing: float):
    _, preset, overrides, physical = VARIANTS[key]
    return build_view_pipeline(preset, 3, (crop,) * 3, overrides, spacing=(spacing,) * 3 if physical else None)


def pair_retrieval(f: torch.Tensor) -> dict:
    """Agreement of two embeddings per scan, ``f`` (N, 2, D).

    Returns:
        ``retrieval``: fraction of the 2N views whose nearest neighbour (cosine, embeddings
        centred over all views) among the other 2N − 1 is the other view of the same scan;
        ``pos_cos`` / ``neg_cos``: mean cosine of partner pairs / of all other pairs.
    """
    n = f.shape[0]
    z = f.flatten(0, 1).double()
    z = F.normalize(z - z.mean(0, keepdim=True), dim=1)
    sim = z @ z.T
    partner = torch.arange(2 * n) ^ 1  # rows 2i and 2i+1 are the two views of scan i
    eye = torch.eye(2 * n, dtype=torch.bool)
    nearest = sim.masked_fill(eye, -math.inf).argmax(1)
    pos = sim[torch.arange(2 * n), partner]
    neg_mask = ~eye
    neg_mask[torch.arange(2 * n), partner] = False
    return {"retrieval": float((nearest == partner).float().mean()), "pos_cos": float(pos.mean()),
            "neg_cos": float(sim[neg_mask].mean()), "chance_retrieval": 1.0 / (2 * n - 1)}


@torch.no_grad()
def view_agreement(encoder: torch.nn.Module, images: np.ndarray, pipe, seed: int, batch: int = 32,
                   pool: int = 4) -> dict:
    """Training-free agreement of two views per scan (:func:`pair_retrieval`), measured on the
    random-init ``encoder`` (eval mode) and on the views' voxels average-pooled by ``pool``."""
    encoder.eval()
    g = torch.Generator().manual_seed(seed)
    feats, voxels = [], []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.asarray(images[i:i + batch], dtype=np.float32))
        v = pipe.views(x, 2, g).flatten(0, 1)  # (2b, C, *crop), views of a scan adjacent
        feats.append(encoder(v).view(len(x), 2, -1))
        voxels.append(F.avg_pool3d(v, pool, ceil_mode=True).reshape(len(x), 2, -1))
    return {"encoder": pair_retrieval(torch.cat(feats)), "voxels": pair_retrieval(torch.cat(voxels))}


def train_variant(key: str, data: dict, b, steps: int, batch: int, seed: int, run_dir: Path) -> dict:
    """SimCLR for ``steps`` optimiser steps with the views of ``key``: per-step NT-Xent and timing."""
    encoder = cnn(b, seed)  # same initial weights for every row
    method = SimCLR(encoder, LOSSES.get("ntxent")(temperature=0.1), make_pipeline(key, b.crop, b.spacing),
                    proj_hidden_dim=encoder.out_dim, proj_dim=128)
    rows = np.arange(len(data["records"]))
    per_epoch = len(rows) // batch
    epochs = max(1, math.ceil(steps / per_epoch))
    opts = TrainerOptions(epochs=epochs, batch_size=batch, lr=b.ssl_lr, weight_decay=1e-4,
                          warmup_epochs=max(1.0, epochs / 20), keep_checkpoints=1, checkpoint_epochs=epochs,
                          seed=seed, progress=False, log_every=1)
    t = time.time()
    summary = Trainer(method, CachedScans(data["images"], data["records"], rows, data["coder"]), run_dir, opts,
                      torch.device("cpu")).fit()
    if summary["stopped_early"]:
        raise SystemExit(f"stopped by SIGTERM during row {key} (checkpoint in {run_dir})")
    losses = [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    k = min(10, len(losses))
    return {"losses": [round(v, 4) for v in losses], "first10": float(np.mean(losses[:k])),
            "last10": float(np.mean(losses[-k:])), "steps": len(losses), "seconds": round(time.time() - t, 1)}


def summarise_row(per_seed: list[dict]) -> dict:
    """Means over seeds of one row's NT-Xent and agreement measures."""
    mean = lambda f: float(np.mean([f(r) for r in per_seed]))
    return {"first10": mean(lambda r: r["first10"]), "last10": mean(lambda r: r["last10"]),
            "last10_per_seed": [round(r["last10"], 3) for r in per_seed], "steps": per_seed[0]["steps"],
            "retrieval_encoder": mean(lambda r: r["agreement"]["encoder"]["retrieval"]),
            "retrieval_voxels": mean(lambda r: r["agreement"]["voxels"]["retrieval"])}


def format_table(result: dict) -> str:
    chance = result["chance_ntxent"]
    rows = result["summary"]
    steps = max(r["steps"] for r in rows.values())
    lines = [f"| views (IXI T1 {result['spacing_mm']:g} mm, SimCLR, {steps} steps, B={result['batch']}, "
             f"{len(result['seeds'])} seed(s)) | NT-Xent first 10 | NT-Xent last 10 (per seed) | last / chance "
             f"({chance:.2f}) | retrieval@1 random-init encoder | retrieval@1 pooled voxels |",
             "|---|---|---|---|---|---|"]
    for key, r in rows.items():
        per_seed = " / ".join(f"{v:.2f}" for v in r["last10_per_seed"])
        lines.append(f"| `{key}`: {VARIANTS[key][0]} | {r['first10']:.2f} | {r['last10']:.2f} ({per_seed}) | "
                     f"{r['last10'] / chance:.2f} | {r['retrieval_encoder']:.3f} | {r['retrieval_voxels']:.3f} |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """NT-Xent per step of every row (mean over seeds), with the chance level."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (key, per_seed) in enumerate(result["rows"].items()):
        losses = np.mean([r["losses"] for r in per_seed], axis=0)  # same steps in every seed
        ax.plot(np.arange(1, len(losses) + 1), losses, lw=1.2, label=key, color=f"C{i % 10}",
                ls="-" if i < 10 else "--")
    ax.axhline(result["chance_ntxent"], color="k", ls="--", lw=0.8, label="chance ln(2B-1)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("NT-Xent (τ = 0.1)")
    ax.set_title("SimCLR on IXI T1 at 6 mm: which views let it learn")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_root(p, "ixi_t1_hh_2mm/")
    p.add_argument("--cache", default="", help="preprocessed-scan cache folder (default <out>/cache); the brain-age "
                   "benchmark's cache at the same spacing can be reused")
    p.add_argument("--out", default="", help="run folder (default runs/view_strength[_quick])")
    p.add_argument("--json", default="", help="also write the result JSON here")
    p.add_argument("--figure", default="", help="loss curves (default <out>/view_strength.png)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=120, help="optimiser steps per row (rounded up to whole epochs)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one training run per row and seed")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="smoke run: 24 scans at 8 mm, width 4, 2 steps, batch 8")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    b = Budget()
    if a.quick:
        b = replace(b, spacing=8.0, crop=20, width=4, limit=24)
        a.steps, a.batch = 2, 8
    out = Path(a.out or REPO / "runs" / f"view_strength{'_quick' if a.quick else ''}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = load_ixi(Path(a.data_root), b, Path(a.cache) if a.cache else out / "cache")
    n = len(data["records"])
    print(f"IXI: {n} scans, grid {data['shape']} at {b.spacing} mm, crops {b.crop}³, {a.steps} steps, "
          f"batch {a.batch}, seeds {a.seeds}", flush=True)
    result = {"benchmark": "view_strength", "steps": a.steps, "batch": a.batch, "seeds": a.seeds,
              "spacing_mm": b.spacing, "grid": data["shape"], "crop": b.crop, "width": b.width, "scans": n,
              "chance_ntxent": math.log(2 * a.batch - 1), "rows": {},
              "variants": {k: {"description": VARIANTS[k][0], "preset": VARIANTS[k][1], "overrides": VARIANTS[k][2],
                               "physical_units": VARIANTS[k][3]} for k in a.variants},
              "machine": machine("cpu"),
              "command": command_line("view_strength.py", argv)}
    for seed in a.seeds:
        for key in a.variants:
            pipe = make_pipeline(key, b.crop, b.spacing)
            agreement = view_agreement(cnn(b, seed), data["images"], pipe, seed)
            row = train_variant(key, data, b, a.steps, a.batch, seed, out / f"seed{seed}_{key}")
            result["rows"].setdefault(key, []).append({"seed": seed, **row, "agreement": agreement})
            print(f"  seed {seed} {key:15s} NT-Xent {row['first10']:.3f} -> {row['last10']:.3f} (chance "
                  f"{result['chance_ntxent']:.3f}); retrieval@1 random-init {agreement['encoder']['retrieval']:.3f}, "
                  f"pooled voxels {agreement['voxels']['retrieval']:.3f}; {row['seconds']:.0f} s", flush=True)
    result["summary"] = {key: summarise_row(per_seed) for key, per_seed in result["rows"].items()}
    result["wall_seconds"] = round(time.time() - t0, 1)
    fig = Path(a.figure) if a.figure else out / "view_strength.png"
    plot(result, fig)
    result["figure"] = str(fig)
    write_result(result, out, a.json)
    print(f"\n{format_table(result)}\n\nwall time {result['wall_seconds']:.0f} s; JSON {out / 'result.json'}; "
          f"figure {fig}")
    return result


if __name__ == "__main__":
    main()
