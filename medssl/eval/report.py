"""Run report: metrics.json, a Markdown report with plots, and the terminal summary table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _plain(obj):
    """JSON-safe copy (numpy → lists/floats); prediction arrays are dropped from metrics.json."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if k != "pred"}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def summary_rows(results: dict) -> list[tuple[str, str, str]]:
    """(encoder, metric, value) rows in a stable order."""
    rows = []
    for enc, probes in results["probes"].items():
        if "age" in probes:
            rows.append((enc, "age MAE (years) ↓", f"{probes['age']['mae']:.2f}"))
            rows.append((enc, "age R² ↑", f"{probes['age']['r2']:.3f}"))
        for target in ("site", "sex", "label"):
            if target in probes:
                p = probes[target]
                rows.append((enc, f"{target} balanced acc. (chance {p['chance']:.2f})", f"{p['balanced_accuracy']:.3f}"))
    if "mean_predictor_mae" in results.get("baselines", {}):
        rows.append(("predict train mean", "age MAE (years) ↓", f"{results['baselines']['mean_predictor_mae']:.2f}"))
    return rows


def format_table(results: dict) -> str:
    rows = [("encoder", "metric", "value")] + summary_rows(results)
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    line = "+" + "+".join("-" * (x + 2) for x in w) + "+"
    out = [line]
    for i, r in enumerate(rows):
        out.append("| " + " | ".join(c.ljust(w[j]) for j, c in enumerate(r)) + " |")
        if i == 0:
            out.append(line)
    out.append(line)
    return "\n".join(out)


def _plot_age(results: dict, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    encs = [e for e, p in results["probes"].items() if "age" in p]
    if not encs:
        return False
    y = np.asarray(results["test_age"])
    fig, axes = plt.subplots(1, len(encs), figsize=(4.2 * len(encs), 4), squeeze=False)
    lo, hi = float(y.min()) - 5, float(y.max()) + 5
    for ax, enc in zip(axes[0], encs):
        p = results["probes"][enc]["age"]
        ax.scatter(y, p["pred"], s=14, alpha=0.7)
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="true age (years)", ylabel="predicted age (years)",
               title=f"{enc}: MAE {p['mae']:.2f} y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_curve(run_dir: Path, path: Path) -> bool:
    log = run_dir / "metrics.jsonl"
    if not log.exists():
        return False
    rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    ax.set(xlabel="step", ylabel="training loss", title="pretraining loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(run_dir: str | Path, results: dict) -> Path:
    """Write ``metrics.json``, ``report.md`` and plots into ``run_dir``; return the report path."""
    run_dir = Path(run_dir)
    (run_dir / "metrics.json").write_text(json.dumps(_plain({k: v for k, v in results.items() if k != "test_age"}), indent=2))
    lines = ["# medssl run report", "", f"Run directory: `{run_dir}`", ""]
    info = results.get("info", {})
    if info:
        lines += ["| setting | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in info.items()] + [""]
    lines += ["## Linear probes on frozen embeddings (held-out subjects)", "", "| encoder | metric | value |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in summary_rows(results)] + [""]
    lines += ["Probes: standardisation + Ridge (α by leave-one-out CV) for age; standardisation + logistic "
              "regression (C by 5-fold CV, balanced accuracy) for site/sex/label; fitted on the training "
              "subjects only and scored once on the held-out subjects.", ""]
    if _plot_age(results, run_dir / "age_pred_vs_true.png"):
        lines += ["## Predicted vs true age", "", "![age](age_pred_vs_true.png)", ""]
    if _plot_curve(run_dir, run_dir / "training_curve.png"):
        lines += ["## Training curve", "", "![loss](training_curve.png)", ""]
    skipped = results.get("skipped_files", [])
    if skipped:
        lines += ["## Skipped files", ""] + [f"- `{s['path']}`: {s['reason']}" for s in skipped] + [""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
