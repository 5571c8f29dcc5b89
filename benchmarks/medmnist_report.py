"""Summary of the MedMNIST benchmark (``benchmarks/medmnist.py``) over seeds: tables and figure.

* :data:`PAPER` / :data:`TARGETS` — the published MedMNIST v2 numbers and the issue's targets;
* :data:`ROWS`, :func:`table_rows` and :func:`peer_names` — the rows a run scored, in table order;
  :func:`peers_left_out` — peers a merge has in some seeds only (no row; the merge says so);
* :func:`summarise` — AUC and ACC of each row at one label fraction, mean ± SD over seeds;
* :func:`format_table` / :func:`format_curve` — the Markdown tables printed at the end of a run;
* :func:`plot` — test AUC at 100 % labels and the few-label curve.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_runs import pyplot, save_figure  # next to this file

#: Published MedMNIST v2 test numbers (Yang et al., Sci Data 10:41, 2023, Table 3): (AUC, ACC).
PAPER = {
    "pneumonia": {"MedMNIST v2 ResNet-18 (28)": (0.944, 0.854), "MedMNIST v2 ResNet-50 (224)": (0.962, 0.884)},
    "adrenal": {"MedMNIST v2 ResNet-18+3D": (0.827, 0.721), "MedMNIST v2 ResNet-50+3D": (0.828, 0.745)},
    "adrenal64": {"MedMNIST v2 ResNet-18+3D (28³)": (0.827, 0.721), "MedMNIST v2 ResNet-50+3D (28³)": (0.828, 0.745)},
}
TARGETS = {"pneumonia": {"probe": 0.96, "finetune": 0.97}, "adrenal": {"probe": 0.90, "finetune": 0.92},
           "adrenal64": {"probe": 0.90, "finetune": 0.92}}

ROWS = (("ssl_probe", "SimCLR + linear probe"), ("ssl_finetune", "SimCLR + fine-tuning"),
        ("random_probe", "random init + linear probe"), ("scratch", "supervised from scratch (same CNN)"),
        ("mae_probe", "MAE (ViT) + linear probe"), ("mae_finetune", "MAE (ViT) + fine-tuning"),
        ("random_vit_probe", "random-init ViT + linear probe"), ("vit_scratch", "supervised from scratch (same ViT)"))
#: bar / curve colour of each row (SSL blue/orange, baselines grey/red, peers from C4 on)
COLOURS = {"ssl_probe": "C0", "ssl_finetune": "C1", "random_probe": "C7", "scratch": "C3", "mae_probe": "C9",
           "mae_finetune": "C8", "random_vit_probe": "0.75", "vit_scratch": "C6"}


def peer_names(per_seed: list[dict]) -> list[str]:
    """Peers scored in every seed (``per_seed[i]["peer_pretrain"]``), in run order."""
    names = [set(s.get("peer_pretrain", {})) for s in per_seed]
    return [n for n in per_seed[0].get("peer_pretrain", {}) if all(n in x for x in names)]


def peers_left_out(per_seed: list[dict]) -> dict[str, dict]:
    """Peers scored in some seeds but not all (a ``--merge`` of runs with different ``--peers`` or packages):
    ``{peer: {"scored_in_seeds": [...], "missing_in_seeds": [...]}}``; they get no table row."""
    kept, out = set(peer_names(per_seed)), {}
    for s in per_seed:
        for n in s.get("peer_pretrain", {}):
            if n not in kept and n not in out:
                has = [t["seed"] for t in per_seed if n in t.get("peer_pretrain", {})]
                out[n] = {"scored_in_seeds": has, "missing_in_seeds": [t["seed"] for t in per_seed if t["seed"] not in has]}
    return out


def table_rows(per_seed: list[dict]) -> tuple:
    """The :data:`ROWS` this run scored (they follow its ``methods``) plus one ``("<peer>_probe",
    "<peer> + linear probe")`` row per peer."""
    scored = next(iter(per_seed[0]["few_label"].values()))
    return (tuple(r for r in ROWS if r[0] in scored)
            + tuple((f"{n}_probe", f"{n} + linear probe") for n in peer_names(per_seed)))


def summarise(per_seed: list[dict], fraction: str = "1.0") -> dict:
    """``{row: {"auc_mean", "auc_sd", "acc_mean", "acc_sd", "auc_per_seed", …}}`` at one label fraction."""
    out = {}
    for key, _ in table_rows(per_seed):
        for m in ("auc", "acc"):
            v = np.array([s["few_label"][fraction][key][m] for s in per_seed], float)
            out.setdefault(key, {})[f"{m}_per_seed"] = v.round(4).tolist()
            out[key][f"{m}_mean"] = float(v.mean())
            out[key][f"{m}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
    return out


def format_table(dataset: str, summary: dict, n_seeds: int, rows: tuple = ROWS) -> str:
    lines = [f"| method ({dataset}, test split, {n_seeds} seed(s)) | AUC | ACC |", "|---|---|---|"]
    lines += [f"| {label} | {_mean_sd(summary[key]['auc_per_seed'])} | {_mean_sd(summary[key]['acc_per_seed'])} |"
              for key, label in rows]
    lines += [f"| {name} (published) | {auc:.3f} | {acc:.3f} |" for name, (auc, acc) in PAPER[dataset].items()]
    return "\n".join(lines)


def _mean_sd(values: list[float]) -> str:
    """``mean ± SD`` (sample SD); the mean alone for a single value (no fake ± 0)."""
    v = np.asarray(values, float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def format_curve(per_seed: list[dict], fractions) -> str:
    rows = table_rows(per_seed)
    keys = [k for k, _ in rows]
    lines = ["| labels | n train | " + " | ".join(f"{label} AUC" for _, label in rows) + " |",
             "|---|---|" + "---|" * len(rows)]
    for f in fractions:
        pts = [s["few_label"][str(f)] for s in per_seed]
        lines.append(f"| {f:.0%} | {pts[0]['n_train']} | "
                     + " | ".join(_mean_sd([p[k]["auc"] for p in pts]) for k in keys) + " |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Left: test AUC at 100 % labels (mean ± SD over seeds) with the published numbers; right: few-label curve
    (or, with one label fraction, each seed's AUC)."""
    plt = pyplot()

    ds, summ, per_seed = result["dataset"], result["summary"], result["per_seed"]
    rows, peers = table_rows(per_seed), peer_names(per_seed)
    fig, (a, c) = plt.subplots(1, 2, figsize=(11, 4 + 0.35 * len(peers)))
    labels = [lab for _, lab in rows]
    means = [summ[k]["auc_mean"] for k, _ in rows]
    sds = [0 if math.isnan(summ[k]["auc_sd"]) else summ[k]["auc_sd"] for k, _ in rows]
    colours = [COLOURS.get(k, f"C{4 + i % 4}") for i, (k, _) in enumerate(rows)]
    a.barh(range(len(rows)), means, xerr=sds, color=colours, alpha=0.8)
    for (name, (auc, _)), style in zip(PAPER[ds].items(), ("--", ":")):
        a.axvline(auc, color="k", ls=style, label=name)
    for name, t in TARGETS[ds].items():
        a.axvline(t, color="C2", ls="-", lw=0.8, alpha=0.6)
    a.set_yticks(range(len(rows)), labels)
    a.invert_yaxis()  # table order, top to bottom
    a.set_xlim(min(means + [v[0] for v in PAPER[ds].values()]) - 0.05, 1.0)
    a.set_xlabel("test AUC (green: issue targets)")
    a.legend(fontsize=7, loc="lower right")
    a.set_title(f"{ds}MNIST: 100 % labels, {len(per_seed)} seed(s)")
    fr = result["budget"]["fractions"]
    if len(fr) == 1:  # no curve to draw: each seed's AUC per row instead
        for i, ((key, label), col) in enumerate(zip(rows, colours)):
            c.scatter([s["few_label"][str(fr[0])][key]["auc"] for s in per_seed], [i] * len(per_seed), color=col)
        c.set_yticks(range(len(rows)), [""] * len(rows))
        c.invert_yaxis()
        c.set_xlabel("test AUC")
        c.set_title(f"each seed ({fr[0]:.0%} labels)")
    else:
        for (key, label), col in zip(rows, colours):
            v = np.array([[s["few_label"][str(f)][key]["auc"] for f in fr] for s in per_seed])
            c.errorbar(fr, v.mean(0), yerr=v.std(0, ddof=1) if len(v) > 1 else None, marker="o", label=label, color=col,
                       capsize=3)
        c.set_xscale("log")
        c.set_xticks(fr, [f"{f:.0%}" for f in fr])
        c.set_xlabel("fraction of training labels")
        c.set_ylabel("test AUC")
        c.legend(fontsize=8)
        c.set_title("few-label curve (mean ± SD over seeds)")
    save_figure(fig, path)
