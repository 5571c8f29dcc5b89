"""Summary of the brain-age benchmark (``benchmarks/brain_age_ixi.py``) over seeds: verdict, table and figure.

* :func:`summarise` — MAE of each row, mean ± SD over seeds (and per seed);
* :func:`verdict` — the issue's :data:`TARGETS` read off the means;
* :func:`format_table` — the Markdown table printed at the end of a run;
* :func:`plot` — MAE per row with the targets, and predicted vs true age of the best model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from brain_age_rows import rows_of  # next to this file
from seed_runs import pyplot, save_figure

TARGETS = {"probe": 5.0, "finetune": 4.5}  #: issue #9: best SSL probe / fine-tuned SSL model, MAE in years


def summarise(per_seed: list[dict]) -> dict:
    out = {}
    for key, _, _ in rows_of(per_seed[0]["mae"]):
        v = np.array([s["mae"][key] for s in per_seed])
        out[key] = {"mae_mean": float(v.mean()), "mae_sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                    "mae_per_seed": v.round(3).tolist()}
    return out


def verdict(summary: dict) -> dict:
    """The issue's targets, read off the means over seeds. A probe "beats" its random-init encoder only
    with a lower MAE on every seed (a lower mean alone can be one lucky seed)."""
    probes = {k: summary[k]["mae_mean"] for k, _, kind in rows_of(summary) if kind == "probe"}
    fts = {k: summary[k]["mae_mean"] for k, _, kind in rows_of(summary) if kind == "finetune"}
    rand = {"simclr_probe": "random_cnn_probe", "genesis_probe": "random_cnn_probe", "yaware_probe": "random_cnn_probe",
            "mae_probe": "random_vit_probe"}
    if not probes:  # baselines only
        return {}
    wins = {k: sum(a < b for a, b in zip(summary[k]["mae_per_seed"], summary[rand[k]]["mae_per_seed"])) for k in probes}
    n = len(summary[next(iter(probes))]["mae_per_seed"])
    beats = ", ".join(f"{k} {v:.2f} vs {summary[rand[k]]['mae_mean']:.2f} (lower on {wins[k]}/{n} seeds)"
                      for k, v in probes.items())
    best_p = min(probes, key=probes.get)
    out = {"every SSL probe beats its random-init encoder":
           f"{beats}: {all(wins[k] == n and v < summary[rand[k]]['mae_mean'] for k, v in probes.items())}",
           f"best SSL probe <= {TARGETS['probe']} y": f"{best_p} {probes[best_p]:.2f}: {probes[best_p] <= TARGETS['probe']}"}
    if fts:  # not with finetune=false
        best_f = min(fts, key=fts.get)
        out[f"best fine-tuned SSL <= {TARGETS['finetune']} y"] = f"{best_f} {fts[best_f]:.2f}: {fts[best_f] <= TARGETS['finetune']}"
    return out


def format_table(summary: dict, n_seeds: int, folds: int = 5) -> str:
    lines = [f"| method (IXI T1, {n_seeds} seed(s), {folds}-fold CV MAE in years) | MAE | per seed |", "|---|---|---|"]
    for key, label, _ in rows_of(summary):
        s = summary[key]
        sd = f" ± {s['mae_sd']:.2f}" if n_seeds > 1 else ""
        lines.append(f"| {label} | {s['mae_mean']:.2f}{sd} | {' / '.join(f'{v:.2f}' for v in s['mae_per_seed'])} |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Left: CV MAE per method (mean ± SD over seeds) with the targets; right: predicted vs true age of
    the best fine-tuned SSL model, or with ``finetune=false`` the best probe (pooled out-of-fold predictions,
    first seed)."""
    plt = pyplot()

    summ, per_seed = result["summary"], result["per_seed"]
    rows = rows_of(summ)
    fig, (a, c) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.6, 1]})
    colours = {"baseline": "C7", "probe": "C0", "peer": "C4", "finetune": "C1"}
    means = [summ[k]["mae_mean"] for k, _, _ in rows]
    sds = [0 if np.isnan(summ[k]["mae_sd"]) else summ[k]["mae_sd"] for k, _, _ in rows]
    a.barh(range(len(rows)), means, xerr=sds, color=[colours[kind] for _, _, kind in rows], alpha=0.85, capsize=3)
    for t, style in ((TARGETS["probe"], "--"), (TARGETS["finetune"], ":")):
        a.axvline(t, color="C2", ls=style, lw=1)
    a.set_yticks(range(len(rows)), [label for _, label, _ in rows], fontsize=8)
    a.invert_yaxis()
    a.set_xlabel(f"age MAE (years), {result['budget']['folds']}-fold CV (green: targets 5.0 probe / 4.5 fine-tuned)")
    a.set_title(f"IXI brain age, {len(per_seed)} seed(s): grey baselines, blue probes, purple peers, "
                f"orange fine-tuned", fontsize=9)
    # the fine-tuned rows; with finetune=false the probes; baselines only: the CNN from scratch, or the random probe
    fts = ([k for k, _, kind in rows if kind == "finetune"] or [k for k, _, kind in rows if kind in ("probe", "peer")]
           or [k for k in ("scratch_ft", "random_cnn_probe") if k in summ][:1])
    best = min(fts, key=lambda k: summ[k]["mae_mean"])
    s0 = per_seed[0]
    age, p = np.array(s0["age"]), np.array(s0["pred"][best])
    c.scatter(age, p, s=12, alpha=0.7, label=f"{best} (seed {s0['seed']}), MAE {np.abs(p - age).mean():.2f}")
    c.scatter(age, np.array(s0["pred"]["random_cnn_probe"]), s=8, alpha=0.4, color="C7", label="random-init + probe")
    lim = [age.min() - 3, age.max() + 3]
    c.plot(lim, lim, "k--", lw=0.8)
    c.set_xlabel("age (years)")
    c.set_ylabel("predicted age (out of fold)")
    c.legend(fontsize=7)
    save_figure(fig, path)
