"""Brain age on IXI without any training: how far a random-init 3D ResNet-18 + Ridge probe gets.

Issue #9 quotes about 6 y MAE for a randomly initialised 3D ResNet-18 + Ridge probe on IXI; on
this benchmark's data (138 labelled subjects of one site, 5-fold CV) the embedding of
``benchmarks/brain_age_ixi.py`` gives 12.5 y at 6 mm. This script measures, with the same data,
folds and Ridge probe (standardisation + RidgeCV, α by leave-one-out on the training fold), which
choices move that baseline:

* grid spacing (``--spacings``, mm) and network width (``--widths``: layer1 channels; 64 = stock);
* which layer is pooled: layer4 (the encoder's embedding), layer2, or layers 1–4 concatenated
  (global average pooling of each);
* input scaling: per-scan z-score (the benchmark's) or min-max to [0, 1];
* and, without a network, a 64-bin intensity histogram of the head voxels.

Nothing here is trained, so nothing can leak; the CV MAE of every row is a diagnostic of the
baseline, not a choice for the SSL runs.

    python benchmarks/brain_age_baselines.py --spacings 6 3 --widths 16 64 --seeds 0 1 2
    python benchmarks/brain_age_baselines.py --quick --json /tmp/b.json       # CI smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from brain_age_data import QUICK, Budget, age_folds, load_ixi  # noqa: E402 - data and folds of brain_age_ixi.py
from brain_age_encoders import cnn  # noqa: E402 - and its encoder
from seed_runs import add_data_root, command_line, machine, pyplot, save_figure, write_result  # noqa: E402 - the machine record every benchmark stores

from medssl.eval.probes import regression_probe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("layer4", "layer2", "layers1-4", "layer4_minmax")  #: network rows, in table order
LABELS = {"layer4": "random ResNet-18, layer4 pooled (the benchmark's embedding)",
          "layer2": "random ResNet-18, layer2 pooled",
          "layers1-4": "random ResNet-18, layers 1–4 pooled and concatenated",
          "layer4_minmax": "random ResNet-18, layer4 pooled, min-max input",
          "histogram": "Ridge on a 64-bin intensity histogram of the head",
          "mean": "training-fold mean age"}


def pooled_layers(encoder: torch.nn.Module, x: torch.Tensor, batch: int = 8) -> list[np.ndarray]:
    """Global-average-pooled layer1–layer4 maps (the encoder's :meth:`forward_pyramid` after the stem): four
    (N, C_k) arrays; the last is the encoder's embedding."""
    out = [[] for _ in range(4)]
    with torch.no_grad():
        for i in range(0, len(x), batch):
            for k, level in enumerate(encoder.forward_pyramid(x[i:i + batch])[1:]):
                out[k].append(level.flatten(2).mean(-1))
    return [torch.cat(o).numpy() for o in out]


def histogram_features(x: torch.Tensor, bins: int = 64) -> np.ndarray:
    """(N, bins) density of the z-scored intensities of head voxels (> background + 0.5 SD) in [-1.5, 4]."""
    bg = x.flatten(1).min(1).values
    edges = np.linspace(-1.5, 4.0, bins + 1)
    return np.stack([np.histogram(v[v > b + 0.5].numpy(), bins=edges, density=True)[0] for v, b in zip(x, bg)])


def network_features(x: torch.Tensor, budget, seed: int) -> dict[str, np.ndarray]:
    """The rows of :data:`VARIANTS` for one random initialisation (the main benchmark's seed offset)."""
    encoder = cnn(budget, 10_000 + seed).eval()
    z = pooled_layers(encoder, x)
    flat = x.flatten(1)
    lo, hi = flat.min(1).values.view(-1, 1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1, 1)
    minmax = pooled_layers(encoder, (x - lo) / (hi - lo).clamp_min(1e-6))
    return {"layer4": z[3], "layer2": z[1], "layers1-4": np.concatenate(z, 1), "layer4_minmax": minmax[3]}


def cv_predictions(features: np.ndarray | None, ages: np.ndarray, folds: list[np.ndarray]) -> np.ndarray:
    """Pooled out-of-fold Ridge predictions (``features`` None: the training-fold mean)."""
    pred = np.empty(len(ages))
    for te in folds:
        tr = np.setdiff1d(np.arange(len(ages)), te)
        pred[te] = ages[tr].mean() if features is None else \
            regression_probe(features[tr], ages[tr], features[te], ages[te], n_boot=0)["pred"]
    return pred


def run(data_root: Path, cache_root: Path, spacings, widths, seeds, quick: bool) -> list[dict]:
    """One row per (spacing, width, variant) plus the histogram and mean rows per spacing."""
    rows = []
    for spacing in spacings:
        budget = replace(Budget(), **{**(QUICK if quick else {}), "spacing": spacing})
        data = load_ixi(data_root, budget, cache_root / f"{spacing:g}mm")
        ages = data["ages"][data["labelled"]]
        x = torch.from_numpy(data["images"][data["labelled"]].astype(np.float32))
        folds = {s: age_folds(ages, budget.folds, s) for s in seeds}
        found = {}
        for key, feats in (("mean", None), ("histogram", histogram_features(x))):
            found[(key, None)] = [cv_predictions(feats, ages, folds[s]) for s in seeds]
        for width in widths:
            t = time.time()
            per_seed = [network_features(x, replace(budget, width=width), s) for s in seeds]
            for key in VARIANTS:
                found[(key, width)] = [cv_predictions(f[key], ages, folds[s]) for f, s in zip(per_seed, seeds)]
            print(f"  {spacing:g} mm, width {width}: {time.time() - t:.0f} s", flush=True)
        for (key, width), preds in found.items():
            mae = [float(np.abs(p - ages).mean()) for p in preds]
            rows.append({"spacing": spacing, "grid": data["shape"], "width": width, "variant": key, "folds": budget.folds,
                         "mae_mean": float(np.mean(mae)), "mae_sd": float(np.std(mae, ddof=1)) if len(mae) > 1 else
                         float("nan"), "mae_per_seed": [round(m, 3) for m in mae],
                         "pred": [p.round(3).tolist() for p in preds], "age": ages.tolist()})
    return rows


def format_table(rows: list[dict]) -> str:
    folds = rows[0].get("folds", 5)  # (JSONs from before folds were stored: the default 5)
    lines = [f"| spacing | width | features + Ridge ({folds}-fold CV) | MAE (y) | per seed |", "|---|---|---|---|---|"]
    order = {k: i for i, k in enumerate(("mean", "histogram") + VARIANTS)}
    for r in sorted(rows, key=lambda r: (-r["spacing"], r["width"] or 0, order[r["variant"]])):
        sd = "" if np.isnan(r["mae_sd"]) else f" ± {r['mae_sd']:.2f}"
        lines.append(f"| {r['spacing']:g} mm | {r['width'] or '–'} | {LABELS[r['variant']]} | {r['mae_mean']:.2f}{sd} | "
                     f"{' / '.join(f'{m:.2f}' for m in r['mae_per_seed'])} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """MAE (mean ± SD over seeds) against grid spacing: one line per network variant and width, plus the
    histogram and the mean-age rows."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colour = {"histogram": "C7", "mean": "k", **{v: f"C{i}" for i, v in enumerate(VARIANTS)}}
    lines = sorted({(r["variant"], r["width"]) for r in rows}, key=lambda k: (k[1] or 0, k[0]))
    for variant, width in lines:
        pts = sorted((r["spacing"], r["mae_mean"], 0 if np.isnan(r["mae_sd"]) else r["mae_sd"]) for r in rows
                     if (r["variant"], r["width"]) == (variant, width))
        s, m, e = map(np.array, zip(*pts))
        style = ":" if width is None else "-" if width == max(r["width"] or 0 for r in rows) else "--"
        ax.errorbar(s, m, yerr=e, marker="o", capsize=3, color=colour[variant], ls=style,
                    label=f"{variant}" + (f", width {width}" if width else ""))
    ax.axhline(6.0, color="C3", lw=0.8, ls="-.", label="~6 y quoted in issue #9")
    ax.set_xlabel("grid spacing (mm)")
    ax.set_ylabel(f"age MAE (years), {rows[0].get('folds', 5)}-fold CV")
    ax.set_title("IXI brain age without training: random-init ResNet-18 + Ridge")
    ax.invert_xaxis()
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_root(p, "ixi_t1_hh_2mm/")
    p.add_argument("--quick", action="store_true", help="smoke run: the main benchmark's --quick data (24 scans, 8 mm)")
    p.add_argument("--spacings", type=float, nargs="+", default=[6.0, 3.0])
    p.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cache", default="", help="folder of the per-spacing scan caches (default <out>/cache)")
    p.add_argument("--out", default="", help="run folder (default runs/brain_age_baselines[_quick])")
    p.add_argument("--json", default="")
    p.add_argument("--figure", default="", help="default <out>/brain_age_baselines.png")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--from-json", default="", metavar="JSON", help="no computation: table and figure of an earlier run")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.quick:
        a.spacings, a.widths = [QUICK["spacing"]], [QUICK["width"]]
    out = Path(a.out or REPO / "runs" / f"brain_age_baselines{'_quick' if a.quick else ''}")
    out.mkdir(parents=True, exist_ok=True)
    fig = Path(a.figure) if a.figure else out / "brain_age_baselines.png"
    if a.from_json:
        result = json.loads(Path(a.from_json).read_text())
        plot(result["rows"], fig)
        print(format_table(result["rows"]))
        return result
    t0 = time.time()
    rows = run(Path(a.data_root), Path(a.cache) if a.cache else out / "cache", a.spacings, a.widths, a.seeds, a.quick)
    plot(rows, fig)
    result = {"benchmark": "brain_age_baselines", "rows": rows, "seeds": a.seeds, "quick": a.quick, "figure": str(fig),
              "machine": machine("cpu"),
              "wall_seconds": round(time.time() - t0, 1),
              "command": command_line("brain_age_baselines.py", argv)}
    write_result(result, out, a.json)
    print(f"\n{format_table(rows)}\n\nwall time {result['wall_seconds']:.0f} s; JSON {out / 'result.json'}; figure {fig}")
    return result


if __name__ == "__main__":
    main()
