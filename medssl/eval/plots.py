"""Report figures (matplotlib, Agg backend): predicted vs true age, confusion matrices,
few-label curves, training curves. Each function writes one PNG and returns its path, or
None when there is nothing to draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medssl.atomic import atomic_write


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Save ``fig`` as ``path``, replacing an earlier file whole (:func:`~medssl.atomic.atomic_write`)."""
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
    _plt().close(fig)
    return Path(path)


def plot_pred_vs_true(panels: list[tuple[str, np.ndarray, np.ndarray]], path: str | Path,
                      unit: str = "years") -> Path | None:
    """One scatter per ``(title, true, predicted)`` with the identity line and the MAE."""
    panels = [p for p in panels if len(p[1])]
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.8), squeeze=False)
    values = np.concatenate([np.r_[np.asarray(y, float), np.asarray(p, float)] for _, y, p in panels])
    lo, hi = float(values.min()) - 3, float(values.max()) + 3  # one scale for every panel: they compare by eye
    for ax, (title, y, pred) in zip(axes[0], panels):
        y, pred = np.asarray(y, float), np.asarray(pred, float)
        ax.scatter(y, pred, s=12, alpha=0.7)
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel=f"true ({unit})", ylabel=f"predicted ({unit})",
               title=f"{title}: MAE {np.mean(np.abs(y - pred)):.2f}")
    return _save(fig, Path(path))


def plot_confusion(matrices: list[tuple[str, list[list[int]], list[str]]], path: str | Path) -> Path | None:
    """Row-normalised confusion matrices (rows: true class, columns: predicted), counts printed."""
    if not matrices:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.6 * len(matrices) + 0.5, 3.4), squeeze=False)
    for ax, (title, cm, names) in zip(axes[0], matrices):
        cm = np.asarray(cm, float)
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.6 else "black")
        ax.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted", ylabel="true", title=title)
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        ax.set_yticklabels(names, fontsize=7)
    return _save(fig, Path(path))


def plot_fewshot(curves: dict[str, dict[str, dict]], path: str | Path) -> Path | None:
    """Few-label curves: one panel per target, one line per encoder (mean ± std over seeds)."""
    targets = sorted({t for per in curves.values() for t in per})
    if not targets:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.5), squeeze=False)
    for ax, target in zip(axes[0], targets):
        ticks: set[float] = set()  # every encoder's fractions (they may have been run at different ones)
        for enc, per in curves.items():
            if target not in per:
                continue
            s = per[target]["summary"]
            f = np.array([p["fraction"] for p in s]) * 100
            m, sd = np.array([p["mean"] for p in s]), np.array([np.nan if p["std"] is None else p["std"] for p in s])
            ax.errorbar(f, m, yerr=sd, marker="o", capsize=3, label=enc)
            ticks.update(f.tolist())
            metric, chance = per[target]["metric"], per[target].get("chance")
        if chance is not None:
            ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
        ax.set(xscale="log", xlabel="labelled training subjects (%)", title=target,
               ylabel={"mae": "MAE (years) ↓", "balanced_accuracy": "balanced accuracy ↑"}.get(metric, metric))
        ax.set_xticks(sorted(ticks), [f"{x:g}%" for x in sorted(ticks)])  # the fractions run, not powers of ten
        ax.minorticks_off()
        ax.legend(fontsize=8)
    return _save(fig, Path(path))


def plot_training_curves(run_dir: str | Path, histories: dict[str, list[dict]], path: str | Path) -> Path | None:
    """Pretraining loss from ``run_dir/metrics.jsonl`` and fine-tuning train/validation losses."""
    from medssl.train.trainer import log_row  # torn rows of a killed run are skipped, as on resume

    panels = []
    log = Path(run_dir) / "metrics.jsonl"
    if log.is_file():
        rows = [r for r in map(log_row, log.read_text().splitlines()) if "loss" in r and "step" in r]
        if rows:
            panels.append(("pretraining", {"loss": ([r["step"] for r in rows], [r["loss"] for r in rows])}, "step"))
    for name, hist in histories.items():
        if hist:
            ep = [h["epoch"] for h in hist]
            panels.append((f"fine-tuning {name}", {"train loss": (ep, [h["train_loss"] for h in hist]),
                                                   "validation loss": (ep, [h["val_loss"] for h in hist])}, "epoch"))
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (title, lines, xlabel) in zip(axes[0], panels):
        for label, (x, y) in lines.items():
            ax.plot(x, y, label=label, marker="o" if len(x) < 20 else None, ms=3)  # a lone point stays visible
        ax.set(xlabel=xlabel, ylabel="loss", title=title)
        if len(lines) > 1:
            ax.legend(fontsize=8)
    return _save(fig, Path(path))
