"""Summary of the multi-site study (``benchmarks/multisite_study.py``) over seeds: table and figure.

:func:`summarise` gives, per row label, the per-seed values and mean ± sd of each metric of
:data:`METRICS`; :func:`print_table` prints them and :func:`plot` draws them as bars (dots = seeds).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_runs import pyplot, save_figure  # noqa: E402

METRICS = ("mae_int", "mae_ext", "bacc_site", "score")
TITLES = {"mae_int": "internal age MAE (y) ↓", "mae_ext": "external age MAE (y) ↓",
          "bacc_site": "site balanced accuracy ↓", "score": "OpenBHB L_c = MAE_ext·BAcc^0.3 ↓"}


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample SD (ddof=1); SD is NaN for a single value (never a fake 0)."""
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def summarise(rows: list[dict]) -> list[dict]:
    """Per label (first-seen order): n, per-seed values and mean ± sd of each metric present."""
    out = []
    for label in dict.fromkeys(r["label"] for r in rows):
        sel = sorted((r for r in rows if r["label"] == label), key=lambda r: r["seed"])
        agg = {"label": label, "n": len(sel), "seeds": [r["seed"] for r in sel]}
        for key in METRICS:
            if all(key in r for r in sel):
                agg[key] = {"mean": (ms := mean_sd([r[key] for r in sel]))[0], "sd": ms[1],
                            "per_seed": [r[key] for r in sel]}
        out.append(agg)
    return out


def print_table(title: str, summary: list[dict], chance: float) -> None:
    print(f"\n{title}")
    print(f"{'method':42s} " + " ".join(f"{k:>15s}" for k in ("MAE int (y)", "MAE ext (y)", "site BAcc", "L_c")))
    for s in summary:
        cells = [f"{s[k]['mean']:7.3f} ± {s[k]['sd']:5.3f}" if k in s else f"{'—':>15s}" for k in METRICS]
        print(f"{s['label'][:42]:42s} " + " ".join(cells))
    print(f"(site BAcc chance = {chance:.2f}; n = {summary[0]['n']} seeds)")


def plot(summary: list[dict], path: Path, title: str, chance: float) -> None:
    """Horizontal bars (mean ± sd, dots = seeds) of the four metrics, one row per method."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 4, figsize=(17, 0.45 * len(summary) + 1.6), sharey=True)
    labels = [s["label"] for s in summary]
    for ax, key in zip(axes, METRICS):
        rows = [(i, s[key]) for i, s in enumerate(summary) if key in s]
        color = ["C7" if _is_baseline(summary[i]["label"]) else "C4" if "(peer)" in summary[i]["label"] else "C0"
                 for i, _ in rows]
        ax.barh([i for i, _ in rows], [m["mean"] for _, m in rows], xerr=[np.nan_to_num(m["sd"]) for _, m in rows],
                color=color, alpha=0.8)
        for i, m in rows:
            ax.plot(m["per_seed"], [i] * len(m["per_seed"]), "k.", ms=4)
        if key == "bacc_site":
            ax.axvline(chance, color="k", ls=":", lw=1)
        ax.set_title(TITLES[key], fontsize=10)
        ax.set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=100)


def _is_baseline(label: str) -> bool:
    return any(w in label for w in ("random init", "Ridge", "mean predictor"))
