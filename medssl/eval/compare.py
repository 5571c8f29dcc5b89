"""``medssl compare RUN1 RUN2 …``: the same metrics side by side across runs and methods.

Reads ``metrics.json`` of each run directory (``medssl evaluate RUN``) and of its protocol
sub-directories (``RUN/eval-<protocol>[-<card>]/metrics.json``), lines up the metrics that
the report shows, prints one table (metric rows × run columns) and draws one bar chart per
metric (with 95 % intervals where the metric has them).
"""

from __future__ import annotations

import json
from pathlib import Path

from medssl.atomic import atomic_write
from medssl.eval.report import ascii_table, summary_entries


def find_metrics(run: str | Path) -> dict[str, Path]:
    """``{label: metrics.json}`` for a run directory (its own file, then each ``eval-*`` folder)
    or for a ``metrics.json`` path given directly."""
    run = Path(run)
    if not run.exists():
        raise FileNotFoundError(f"{run} does not exist; give a run directory (or its metrics.json)")
    if run.is_file():
        return {run.parent.name: run}
    found = {}
    if (run / "metrics.json").is_file():
        found[run.name] = run / "metrics.json"
    for sub in sorted(run.glob("eval-*/metrics.json")):
        found[f"{run.name}/{sub.parent.name[5:]}"] = sub
    if not found:
        raise FileNotFoundError(f"{run}: no metrics.json (nor eval-*/metrics.json); run `medssl evaluate {run}` first")
    return found


SECTIONS = ("probes", "site", "openbhb", "fewshot", "finetune")  #: results of the protocols (medssl.eval.driver)


def read_metrics(path: Path) -> dict:
    """The results in a ``metrics.json`` written by ``medssl evaluate``; a clear ValueError naming the file
    when it is not JSON (e.g. a config.yaml, or a file cut short) or holds no protocol's results."""
    try:
        results = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); give a run directory or the metrics.json written by "
                         "`medssl evaluate` (rerun it if the file was cut short)") from None
    if not isinstance(results, dict) or not any(k in results for k in SECTIONS):
        raise ValueError(f"{path} holds no evaluation results (none of {', '.join(SECTIONS)}); give a run "
                         "directory or the metrics.json written by `medssl evaluate`")
    return results


def collect(runs: list[str | Path], encoders: tuple[str, ...] = ("pretrained",)) -> tuple[list[str], dict]:
    """Columns (one per run/protocol [× encoder]) and ``{metric: {column: entry}}``.

    Args:
        runs: run directories or metrics.json files.
        encoders: which encoders of each run to show (e.g. add ``"random init"``);
            baselines ("predict train mean") are shown as their own metric rows.
    """
    columns, table = [], {}
    labels: dict[str, Path] = {}
    for run in runs:
        for label, path in find_metrics(run).items():
            if label in labels:  # two runs with the same folder name: disambiguate
                label = f"{Path(run)}:{label}"
            labels[label] = path
    for label, path in labels.items():
        results = read_metrics(path)
        # OpenBHB scores depend on which sites were held out (--external-sites): name them, so that scores of
        # other external sites get their own rows instead of sharing a row and a bar panel
        external = next(iter(results.get("openbhb", {}).values()), {}).get("external_site_names")
        where = f" [external: {', '.join(map(str, external))}]" if external else ""
        for e in summary_entries(results, full=True):
            baseline = e["encoder"].startswith("predict")
            if e["encoder"] not in encoders and not baseline:
                continue
            col = label if len(encoders) == 1 or baseline else f"{label} [{e['encoder']}]"
            metric = (f"{e['metric']}, baseline: {e['encoder']}" if baseline else e["metric"]) + where
            if col not in columns:
                columns.append(col)
            table.setdefault(metric, {})[col] = e
    return columns, table


def compare_table(runs: list[str | Path], encoders: tuple[str, ...] = ("pretrained",)) -> str:
    """One text table: a row per metric, a column per run (value [95 % CI] where available)."""
    from medssl.eval.report import _fmt

    columns, table = collect(runs, encoders)
    rows = [("metric", *columns)]
    for metric, per in table.items():
        rows.append((metric, *(_fmt(per[c]) if c in per else "—" for c in columns)))
    return ascii_table(rows)


def plot_compare(runs: list[str | Path], path: str | Path, encoders: tuple[str, ...] = ("pretrained",),
                 per_row: int = 4) -> Path | None:
    """One bar chart per metric shared by at least two columns, ``per_row`` panels a row (every such metric;
    error bars: the 95 % CI, or ± SD over seeds for few-label points). Each column (run) has one colour in
    every panel, named in a legend above the panels (with random-init twins: one hue per run/protocol, the twin
    in its light shade). Returns the file written (``path``,
    ``.png`` added when it has no suffix), or None when no metric is shared."""
    import math
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches
    import matplotlib.pyplot as plt
    import numpy as np

    columns, table = collect(runs, encoders)
    shared = [(m, per) for m, per in table.items() if sum(per[c]["value"] is not None for c in per) >= 2]
    if not shared:
        return None
    ncols = min(per_row, len(shared))
    nrows = math.ceil(len(shared) / ncols)
    width = 1.2 + 0.32 * max(len(per) for _, per in shared)  # inches per panel
    chars = max(12, int(width / 0.075))  # characters a title line holds at 8 pt (~0.07 in each)
    # one colour per column over the whole figure (a run keeps its colour in panels where another lacks the metric)
    drawn = [c for c in columns if any(c in per and per[c]["value"] is not None for _, per in shared)]
    if len(encoders) == 1:
        cmap = plt.get_cmap("tab10" if len(drawn) <= 10 else "tab20")  # colours repeat beyond 20 columns
        colour = {c: cmap(i % cmap.N) for i, c in enumerate(drawn)}
    else:  # a hue per run/protocol (its baseline too: never in the same panel), the random-init twin its light shade
        split = {c: c[:-1].rsplit(" [", 1) if c.endswith("]") and " [" in c else (c, encoders[0]) for c in drawn}
        groups = list(dict.fromkeys(g for g, _ in split.values()))  # hues repeat beyond 10 runs/protocols
        colour = {c: plt.get_cmap("tab20")(2 * (groups.index(g) % 10) + min(1, encoders.index(e) if e in encoders else 0))
                  for c, (g, e) in split.items()}
    per_line = max(1, min(len(drawn), int(width * ncols / (0.5 + 0.065 * max(map(len, drawn))))))
    legend_h = 0.1 + 0.2 * math.ceil(len(drawn) / per_line)  # inches above the panels (7 pt entries)
    fig_h = 3.6 * nrows + legend_h
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, fig_h), squeeze=False)
    for ax, (metric, per) in zip(axes.flat, shared):
        cols = [c for c in columns if c in per and per[c]["value"] is not None]
        vals = np.array([per[c]["value"] for c in cols])
        err = np.array([_error_bar(per[c], v) for c, v in zip(cols, vals)]).T
        ax.bar(range(len(cols)), vals, yerr=err, capsize=3, color=[colour[c] for c in cols])
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels(cols, rotation=60, ha="right", fontsize=7)
        ax.set_title(textwrap.fill(metric, chars), fontsize=8)  # wrap=True wraps at the figure's edge, not the panel's
    for ax in list(axes.flat)[len(shared):]:
        ax.axis("off")
    handles = [matplotlib.patches.Patch(color=colour[c]) for c in drawn]
    fig.legend(handles, drawn, loc="upper center", ncol=per_line, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - legend_h / fig_h))
    path = Path(path)
    if not path.suffix:  # matplotlib adds its default format's suffix: return the file it writes
        path = path.with_name(f"{path.name}.{matplotlib.rcParams['savefig.format']}")
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))  # an earlier plot is replaced whole
    plt.close(fig)
    return path


def _error_bar(entry: dict, value: float) -> list[float]:
    """``[below, above]``: the 95 % CI where the entry has one, else its SD over seeds, else none."""
    ci = entry.get("ci")
    if ci and ci[0] is not None:
        return [value - ci[0], ci[1] - value]
    sd = entry.get("std")
    return [sd, sd] if sd is not None else [0.0, 0.0]
