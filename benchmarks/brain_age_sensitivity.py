"""How much small resampling of the scans moves a brain-age embedding and its Ridge probe.

A diagnostic for ``benchmarks/brain_age_ixi.py``: fine-tuning there augments the scans with flips
and a small affine, and fine-tuning from the probe (LP-FT) made the validation error worse from
the first epoch on. This script measures why, on the main benchmark's data and fold 0 of each seed:

1. the encoders: the random-init ResNet-18 of the seed, and with ``--run`` the y-aware encoder of
   fold 0 of that run (``<run>/s<S>/seed<S>_yaware_fold0``; its checkpoint is loaded, never trained);
2. a Ridge probe (standardisation + RidgeCV, as the benchmark) fitted on the *unchanged* embeddings
   of the fold's training subjects;
3. each perturbation of :data:`PERTURBATIONS` applied to every scan, then, per encoder: the mean
   absolute change of the embedding over the mean between-subject SD of its dimensions, and the mean
   absolute change of the probe's predictions for the test subjects (years).

Only fold 0's training subjects fit a probe; the test subjects' predictions are compared with
themselves, so no result here depends on their ages except the MAE column shown for reference.

    python benchmarks/brain_age_sensitivity.py --run runs/ixi4 --seeds 0 1 2 --cache runs/ixires/cache4 \\
        --set spacing=4 crop=42 voxel_pool=3 ssl_epochs=150 methods=yaware preset=none
    python benchmarks/brain_age_sensitivity.py --quick          # CI smoke run: random-init encoder only (seconds)
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from brain_age_data import QUICK, Budget, age_folds, load_ixi  # noqa: E402 - data and folds of brain_age_ixi.py
from brain_age_encoders import cnn, ft_augment, pretrain  # noqa: E402 - its encoders and fine-tuning augmentation
from seed_runs import add_data_root, apply_set, command_line, machine, write_result  # noqa: E402

from medssl.eval.probes import regression_probe  # noqa: E402
from medssl.transforms.views import build_view_pipeline  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, D, H, W) with ``sigma`` voxels (5 taps, replicate padding)."""
    k = torch.exp(-torch.arange(-2, 3.0) ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    for axis in range(3):
        shape, pad = [1, 1, 1, 1, 1], [0] * 6
        shape[2 + axis], pad[2 * (2 - axis)], pad[2 * (2 - axis) + 1] = 5, 2, 2
        x = F.conv3d(F.pad(x, pad, mode="replicate"), k.view(shape))
    return x


def _affine(shape, **params):
    pipe = build_view_pipeline("none", 3, shape, {"affine_prob": 1.0, **params})
    return lambda x, g: pipe(x, g)


#: name → ``(x (N, 1, D, H, W), generator, shape) → perturbed x``; "interpolates" says whether it resamples
PERTURBATIONS = {
    "identity (copy)": (lambda x, g, s: x.clone(), False),
    "roll by 1 voxel": (lambda x, g, s: torch.roll(x, 1, dims=4), False),
    "left-right flip": (lambda x, g, s: torch.flip(x, dims=[2]), False),
    "half-voxel shift (mean of 2 neighbours)": (lambda x, g, s: 0.5 * (x + torch.roll(x, 1, dims=4)), True),
    "Gaussian blur, σ = 0.5 voxel": (lambda x, g, s: gaussian_blur(x, 0.5), True),
    "rotation ≤ 1°": (lambda x, g, s: _affine(s, rotate=1.0)(x, g), True),
    "rotation ≤ 5°": (lambda x, g, s: _affine(s, rotate=5.0)(x, g), True),
    "scale 0.95–1.05": (lambda x, g, s: _affine(s, scale=(0.95, 1.05))(x, g), True),
    "translation ≤ 3 %": (lambda x, g, s: _affine(s, translate=0.03)(x, g), True),
    "the fine-tuning augmentation (flip + affine)": (lambda x, g, s: ft_augment(s)(x, g), True),
}


def embed(encoder: torch.nn.Module, x: torch.Tensor, batch: int = 16) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([encoder(x[i:i + batch]) for i in range(0, len(x), batch)]).numpy()


def fold0_encoders(data: dict, b, seed: int, run: Path | None, tr: np.ndarray) -> dict:
    """``{"random-init": …, "y-aware (fold 0)": …}``: the seed's random ResNet-18 and, with ``run``, the
    finished y-aware run of fold 0, trained on rows ``tr`` of the labelled scans (refused if its checkpoint
    is missing or is not the finished run of budget ``b``, so nothing is trained here)."""
    encoders = {"random-init": cnn(b, 10_000 + seed).eval()}
    if run is not None:
        folder = run / f"s{seed}" / f"seed{seed}_yaware_fold0"
        if not list((folder / "checkpoints").glob("*.pt")):
            raise SystemExit(f"--run {run}: no checkpoint in {folder}/checkpoints; run benchmarks/brain_age_ixi.py "
                             f"with --out {run}/s{seed} first")
        enc = pretrain("yaware", data, data["labelled"][tr], b, seed, folder, "cpu", resume=True,
                       finished_only=True)["encoder"]
        encoders["y-aware (fold 0)"] = enc.eval()
    return encoders


def run_seed(data: dict, b, seed: int, run: Path | None) -> dict:
    """Per perturbation: image correlation and, per encoder, feature shift / SD, |Δ prediction| (y) and test MAE."""
    ages = data["ages"][data["labelled"]]
    te = age_folds(ages, b.folds, seed)[0]
    tr = np.setdiff1d(np.arange(len(ages)), te)
    x = torch.from_numpy(data["images"][data["labelled"]].astype(np.float32))
    encoders = fold0_encoders(data, b, seed, run, tr)
    base = {name: embed(enc, x) for name, enc in encoders.items()}
    probes = {name: regression_probe(f[tr], ages[tr], f[te], ages[te], n_boot=0) for name, f in base.items()}
    rows = {}
    for label, (perturb, interpolates) in PERTURBATIONS.items():
        xp = perturb(x, torch.Generator().manual_seed(seed), tuple(data["shape"]))
        row = {"interpolates": interpolates,
               "image_corr": float(np.corrcoef(xp.flatten().numpy(), x.flatten().numpy())[0, 1])}
        for name, enc in encoders.items():
            f, f0 = embed(enc, xp), base[name]
            pred = regression_probe(f0[tr], ages[tr], f[te], ages[te], n_boot=0)["pred"]
            row[name] = {"feature_shift_sd": float(np.abs(f - f0).mean() / f0.std(0).mean()),
                         "prediction_change_y": float(np.abs(pred - probes[name]["pred"]).mean()),
                         "test_mae_y": float(np.abs(pred - ages[te]).mean())}
        rows[label] = row
    return {"seed": seed, "n_train": len(tr), "n_test": len(te), "encoders": list(encoders), "rows": rows,
            "probe_test_mae_y": {k: float(v["mae"]) for k, v in probes.items()}}


def format_table(per_seed: list[dict]) -> str:
    encoders = per_seed[0]["encoders"]
    head = " | ".join(f"{e}: feature shift / SD | {e}: mean abs. Δ prediction (y)" for e in encoders)
    lines = [f"| perturbation of every scan | image corr. | {head} |", "|---|---|" + "---|---|" * len(encoders)]
    for label in PERTURBATIONS:
        rows = [s["rows"][label] for s in per_seed]
        cells = [f"{np.mean([r['image_corr'] for r in rows]):.3f}"]
        for e in encoders:
            cells += [f"{np.mean([r[e]['feature_shift_sd'] for r in rows]):.2f}",
                      f"{np.mean([r[e]['prediction_change_y'] for r in rows]):.2f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_root(p, "ixi_t1_hh_2mm/")
    p.add_argument("--quick", action="store_true", help="smoke run: the main benchmark's --quick data (24 scans, 8 mm)")
    p.add_argument("--run", default="", help="folder of brain_age_ixi.py runs, one per seed: <run>/s<S>/seed<S>_yaware_fold0")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="the run's Budget overrides")
    p.add_argument("--cache", default="", help="preprocessed-scan cache (default <out>/cache)")
    p.add_argument("--out", default="", help="default runs/brain_age_sensitivity[_quick]")
    p.add_argument("--json", default="")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    b = apply_set(replace(Budget(), **(QUICK if a.quick else {})), a.set)
    out = Path(a.out or REPO / "runs" / f"brain_age_sensitivity{'_quick' if a.quick else ''}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = load_ixi(Path(a.data_root), b, Path(a.cache) if a.cache else out / "cache")
    per_seed = [run_seed(data, b, s, Path(a.run) if a.run else None) for s in a.seeds]
    result = {"benchmark": "brain_age_sensitivity", "budget": asdict(b), "seeds": a.seeds, "run": a.run,
              "per_seed": per_seed, "machine": machine("cpu"), "wall_seconds": round(time.time() - t0, 1),
              "command": command_line("brain_age_sensitivity.py", argv)}
    write_result(result, out, a.json)
    print(f"{format_table(per_seed)}\n\nwall time {result['wall_seconds']:.0f} s; JSON {out / 'result.json'}")
    return result


if __name__ == "__main__":
    main()
