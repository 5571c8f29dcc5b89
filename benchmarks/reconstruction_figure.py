"""Reconstruction figure: short MAE and Models Genesis runs on real IXI T1w scans (CPU).

Both runs go through the ordinary pipeline (``medssl.api.pretrain`` with the ``shared_ixi``
card): the first ``--subjects`` scans of ../shared/data/ixi_t1_hh_2mm, resampled to 4 mm and
padded to 48×64×64 (the whole head; random left-right flips as the only augmentation).

* MAE: a 6-block, 192-d ViT with 8³-voxel patches (384 patches, 96 visible), 2-block
  128-d decoder, raw-voxel targets (so the reconstruction can be shown directly).
* Models Genesis: ResNet-10 (width 16) + U-Net decoder on random 32×48×48 sub-volumes (as in
  the paper, which restores sub-volumes), min-max normalised scans; shown on the whole scan.

The figure shows an axial slice of a held-out scan: input / masked or corrupted /
reconstruction, plus the training losses. Printed numbers compare each model with a trivial
baseline on all held-out scans (masked-patch MSE vs. filling masked patches with the mean of
the visible voxels; restoration MSE vs. returning the corrupted input).

    python benchmarks/reconstruction_figure.py                 # writes docs/img/recon_ixi.png
    python benchmarks/reconstruction_figure.py --mae-steps 100 --genesis-steps 100   # quicker, rougher
    python benchmarks/reconstruction_figure.py --quick --work /tmp/q --out /tmp/q.png # CI smoke run (8 scans, 2 steps)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medssl.api import build_method, prepare_data, pretrain  # noqa: E402
from medssl.config import load_config  # noqa: E402
from medssl.train.checkpoint import list_checkpoints, load_checkpoint  # noqa: E402

COMMON = ["data.card=shared_ixi", "data.spacing=[4.0,4.0,4.0]", "data.shape=[48,64,64]", "data.test_fraction=0.25",
          "augment.preset=none", "augment.crop_size=[48,64,64]", "augment.overrides={flip_prob: 0.5, flip_axes: [0]}",
          "train.batch_size=4", "train.warmup_epochs=2", "train.progress=false", "train.device=cpu"]
MAE = ["method.name=mae", "encoder.name=vit_tiny", "data.normalise=zscore", "train.lr=0.001", "train.weight_decay=0.05",
       "encoder.options={img_size: [48, 64, 64], patch_size: 8, num_layers: 6}",
       "method.options={mask_ratio: 0.75, norm_pix_loss: false, decoder_dim: 128, decoder_depth: 2, decoder_heads: 4}"]
GENESIS = ["method.name=genesis", "encoder.name=resnet10", "data.normalise=minmax", "train.lr=0.001",
           "encoder.options={width: 16}", "method.options={rescale: false}", "augment.crop_size=[32,48,48]"]


def run(name: str, extra: list[str], steps: int, args) -> tuple:
    """Pretrain (or reuse a finished run) and return (cfg, method in eval mode, held-out images, losses)."""
    out = Path(args.work) / name
    epochs = max(1, round(steps / ((args.subjects - round(args.subjects * 0.25)) // 4)))
    cfg = load_config(None, [*COMMON, *extra, f"data.root={args.data}", f"data.limit={args.subjects}",
                             f"output_dir={out}", f"train.epochs={epochs}"])
    if list_checkpoints(out / "checkpoints") and load_config(out / "config.yaml") != cfg:
        raise SystemExit(f"{out} holds a run of another budget or recipe (its config.yaml differs): delete it or "
                         "pass another --work")
    if not list_checkpoints(out / "checkpoints"):
        t0 = time.time()
        pretrain(cfg, progress=False)
        print(f"{name}: {time.time() - t0:.0f} s")
    method = build_method(cfg)
    state = load_checkpoint(list_checkpoints(out / "checkpoints")[-1])
    method.load_state_dict(state["model"])
    data = prepare_data(cfg, out, progress=False)
    images = torch.from_numpy(data.images[data.test]).float()
    losses = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["step"], r["loss"]) for r in losses if "loss" in r]
    return cfg, method.eval(), images, losses, int(state["step"])


def main(argv: list[str] | None = None) -> dict:
    shared = Path(os.environ.get("MEDSSL_SHARED", REPO.parent / "shared"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(shared / "data" / "ixi_t1_hh_2mm"))
    p.add_argument("--subjects", type=int, default=24)
    p.add_argument("--mae-steps", type=int, default=300, help="MAE optimiser steps (about)")
    p.add_argument("--genesis-steps", type=int, default=1000, help="Models Genesis optimiser steps (about)")
    p.add_argument("--work", default=None, help="run directories, reused when present with the same config "
                   "(default /tmp/medssl_recon_figure, with --quick /tmp/medssl_recon_figure_quick)")
    p.add_argument("--out", default=str(REPO / "docs" / "img" / "recon_ixi.png"))
    p.add_argument("--quick", action="store_true", help="smoke run for CI: 8 scans, about 2 steps of each method")
    args = p.parse_args(argv)
    if args.quick:
        args.subjects, args.mae_steps, args.genesis_steps = 8, 2, 2
    args.work = args.work or f"/tmp/medssl_recon_figure{'_quick' if args.quick else ''}"
    if not Path(args.data).is_dir():
        sys.exit(f"{args.data} not found: set MEDSSL_SHARED or --data to the IXI 2 mm folder")
    torch.manual_seed(0)
    _, mae, x_mae, loss_mae, step_mae = run("mae", MAE, args.mae_steps, args)
    _, gen, x_gen, loss_gen, step_gen = run("genesis", GENESIS, args.genesis_steps, args)

    with torch.no_grad():
        rec = mae.reconstruct(x_mae, torch.Generator().manual_seed(0))
        m = rec["mask"].bool()
        mse_mae = ((rec["reconstruction"] - x_mae)[m] ** 2).mean().item()
        vis_mean = torch.stack([x_mae[i][~m[i]].mean() for i in range(len(x_mae))]).view(-1, 1, 1, 1, 1)
        mse_fill = ((vis_mean.expand_as(x_mae) - x_mae)[m] ** 2).mean().item()
        corrupted, target = gen.corruption(x_gen, torch.Generator().manual_seed(0))  # minmax cache: in [0, 1]
        restored = gen.restore(corrupted)
        mse_gen, mse_id = ((restored - target) ** 2).mean().item(), ((corrupted - target) ** 2).mean().item()
    n = len(x_mae)
    print(f"MAE ({step_mae} steps): masked-voxel MSE on {n} held-out scans {mse_mae:.3f} (z-scored units); "
          f"visible-mean fill {mse_fill:.3f}")
    print(f"Genesis ({step_gen} steps): restoration MSE {mse_gen:.4f}; corrupted input {mse_id:.4f} ([0, 1] units)")

    k, z = 0, x_mae.shape[-1] // 2  # first held-out scan, axial slice through the middle of the head
    def sl(v):  # noqa: E306 - (C, R, A, S) → (A, R) image with anterior up
        return v[0, :, :, z].T.flip(0).numpy()

    cmap = plt.get_cmap("gray").with_extremes(bad="#28457a")
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.4), gridspec_kw={"width_ratios": [1, 1, 1, 1.4]})
    rows = [("MAE", [x_mae[k], rec["masked"][k], rec["reconstruction"][k]], ["input", "75 % of patches masked",
                                                                           "reconstruction"], loss_mae, (-1.5, 3)),
            ("Models Genesis", [target[k], corrupted[k], restored[k]], ["input", "corrupted", "restored"], loss_gen,
             (0, 1))]
    for r, (title, images, names, losses, lim) in enumerate(rows):
        for c, (img, label) in enumerate(zip(images, names)):
            shown = sl(img)
            if r == 0 and c == 1:  # masked patches in a flat colour
                shown = np.ma.masked_where(sl(rec["mask"][k]) > 0, shown)
            axes[r, c].imshow(shown, cmap=cmap, vmin=lim[0], vmax=lim[1])
            axes[r, c].set_title(f"{title}: {label}", fontsize=9)
            axes[r, c].axis("off")
        steps, values = zip(*losses)
        axes[r, 3].plot(steps, values)
        axes[r, 3].set_xlabel("step")
        axes[r, 3].set_ylabel("masked-patch MSE" if r == 0 else "restoration MSE")
        axes[r, 3].set_title("training loss", fontsize=9)
    fig.suptitle(f"Held-out IXI T1w scan (4 mm, axial slice); {args.subjects} scans, CPU, "
                 f"{step_mae} MAE / {step_gen} Genesis steps", fontsize=10)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return {"held_out": n, "mae": {"steps": step_mae, "masked_mse": mse_mae, "visible_mean_fill_mse": mse_fill},
            "genesis": {"steps": step_gen, "restored_mse": mse_gen, "corrupted_input_mse": mse_id},
            "figure": str(args.out)}


if __name__ == "__main__":
    main()
