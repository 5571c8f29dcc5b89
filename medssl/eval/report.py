"""Run report: metrics.json, a Markdown report with plots, and the terminal summary table.

``results`` (from :func:`medssl.api.evaluate`) may hold any of these sections, keyed by
encoder ("pretrained", "random init"): ``probes`` ({target: metrics}), ``site``,
``openbhb``, ``fewshot``, ``finetune``; plus ``info``, ``vocab`` (code → name tables),
``baselines`` and, for the figures only, ``maps`` and ``test_age`` (arrays are not written
to metrics.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medssl.atomic import atomic_write
from medssl.eval import plots
from medssl.eval.embedding_map import axis_labels, plot_embedding_maps
from medssl.eval.site import UNSEEN_SPREAD_RATIO

ARRAY_KEYS = {"pred", "pred_int", "pred_ext", "site_pred_int", "gap", "corrected_gap", "maps", "test_age", "age_int",
              "age_ext"}


def _plain(obj):
    """JSON-safe copy (numpy → lists/floats, NaN → null); prediction arrays are dropped."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items() if k not in ARRAY_KEYS}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _entry(enc: str, metric: str, value, ci=None, better: str = "") -> dict:
    value = None if value is None or not np.isfinite(float(value)) else float(value)  # NaN → n/a, null in JSON
    if ci is not None:  # a NaN bound (no interval could be drawn) is None, as metrics.json (and compare) has it
        ci = [None if b is None or not np.isfinite(float(b)) else float(b) for b in ci]
    return {"encoder": enc, "metric": metric, "value": value, "ci": ci, "better": better}


def _probe_entries(enc: str, target: str, m: dict, full: bool) -> list[dict]:
    if "mae" in m:
        rows = [_entry(enc, f"{target} MAE (years) ↓", m["mae"], m.get("mae_ci"), "lower"),
                _entry(enc, f"{target} R² ↑", m["r2"], m.get("r2_ci"), "higher")]
        if full:
            rows += [_entry(enc, f"{target} RMSE (years) ↓", m["rmse"], m.get("rmse_ci"), "lower"),
                     _entry(enc, f"{target} Pearson r ↑", m["pearson_r"], m.get("pearson_r_ci"), "higher")]
            gap = m.get("brain_age_gap", {})
            if "corrected_gap_std" in gap:
                rows.append(_entry(enc, f"{target} gap SD, bias-corrected (years; not an accuracy metric)",
                                   gap["corrected_gap_std"]))  # ~0 for a probe predicting a constant
                rows.append(_entry(enc, f"{target} gap–age correlation, bias-corrected (0 = unbiased)",
                                   gap["corrected_gap_age_r"]))
        return rows
    if "auc_macro" in m:
        return [_entry(enc, f"{target} macro AUC ↑", m["auc_macro"], m.get("auc_macro_ci"), "higher")]
    better, arrow = ("lower", "↓") if target == "site" else ("higher", "↑")  # site: less scanner leakage is better
    rows = [_entry(enc, f"{target} balanced acc. (chance {m['chance']:.2f}) {arrow}", m["balanced_accuracy"],
                   m.get("balanced_accuracy_ci"), better)]
    if full and m.get("auc") is not None and np.isfinite(m["auc"]):
        rows.append(_entry(enc, f"{target} AUC {arrow}", m["auc"], m.get("auc_ci"), better))
    if full:
        rows.append(_entry(enc, f"{target} macro F1 {arrow}", m["f1_macro"], m.get("f1_macro_ci"), better))
    return rows


#: few-label curve metrics as the tables name them (unit and direction)
FEWSHOT_METRICS = {"mae": "MAE (years) ↓", "balanced_accuracy": "balanced acc. ↑"}


def summary_entries(results: dict, full: bool = False) -> list[dict]:
    """Every headline number as ``{"encoder", "metric", "value", "ci", "better"}``, stable order."""
    rows: list[dict] = []
    for enc, per in results.get("probes", {}).items():
        for target, m in per.items():
            rows += _probe_entries(enc, target, m, full)
    for enc, s in results.get("site", {}).items():
        if "prediction" in s:
            p = s["prediction"]
            rows.append(_entry(enc, f"site balanced acc. (chance {p['chance']:.2f}) ↓", p["balanced_accuracy"],
                               p.get("balanced_accuracy_ci"), "lower"))
        for target, lso in s.get("leave_site_out", {}).items():
            if "pooled" in lso and "mae" in lso["pooled"]:
                rows.append(_entry(enc, f"{target} MAE, leave-site-out (years) ↓", lso["pooled"]["mae"], None, "lower"))
                if "mean_predictor_mae" in lso["pooled"] and enc == next(iter(results["site"])):
                    rows.append(_entry("predict train mean", f"{target} MAE, leave-site-out (years) ↓",
                                       lso["pooled"]["mean_predictor_mae"], None, "lower"))
            elif "pooled" in lso:
                rows.append(_entry(enc, f"{target} balanced acc., leave-site-out ↑", lso["pooled"]["balanced_accuracy"], None,
                                   "higher"))
        for target, m in s.get("harmonisation", {}).get("combat", {}).items():
            rows += [dict(r, metric=r["metric"] + " after ComBat") for r in _probe_entries(enc, target, m, False)[:1]]
    for enc, o in results.get("openbhb", {}).items():
        rows += [_entry(enc, name, o[key], o.get(f"{key}_ci"), "lower") for key, name in (
            ("challenge_metric", "OpenBHB L_c = MAE_ext·BAcc^0.3 ↓"), ("mae_age", "internal age MAE (years) ↓"),
            ("rmse_age", "internal age RMSE (years) ↓"),
            ("bacc_site", f"internal site BAcc (chance {o['site_chance']:.2f}) ↓"),
            ("ext_mae_age", "external age MAE (years) ↓"))]
    if results.get("openbhb"):
        o = next(iter(results["openbhb"].values()))
        rows += [_entry("predict train mean", f"{part} age MAE (years) ↓", o[f"mean_predictor_mae_{key}"], None, "lower")
                 for part, key in (("internal", "int"), ("external", "ext")) if f"mean_predictor_mae_{key}" in o]
    for enc, per in results.get("fewshot", {}).items():
        for target, curve in per.items():
            for s in curve["summary"]:
                name = FEWSHOT_METRICS.get(curve["metric"], curve["metric"])
                if "chance" in curve:
                    name = name.replace(" ↑", f" (chance {curve['chance']:.2f}) ↑")
                rows.append(_entry(enc, f"{target} {name} @ {s['fraction']:.0%} labels ({s['n_subjects']} subj.)",
                                   s["mean"], None, "lower" if curve["metric"] == "mae" else "higher") | {"std": s["std"]})
    for enc, per in results.get("finetune", {}).items():
        for target, m in per.items():
            rows += [dict(r, metric=r["metric"] + " (fine-tuned)") for r in _probe_entries(enc, target, m, full)]
    if "mean_predictor_mae" in results.get("baselines", {}):
        rows.append(_entry("predict train mean", "age MAE (years) ↓", results["baselines"]["mean_predictor_mae"], None, "lower"))
    return rows


def _fmt(e: dict) -> str:
    if e["value"] is None:
        return "n/a"
    text = f"{e['value']:.3f}" if abs(e["value"]) < 10 else f"{e['value']:.2f}"
    if e.get("ci") and e["ci"][0] is not None:
        text += f" [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]" if abs(e["value"]) < 10 else f" [{e['ci'][0]:.2f}, {e['ci'][1]:.2f}]"
    if e.get("std") is not None:
        text += f" ± {e['std']:.3f}"
    return text


def summary_rows(results: dict, full: bool = False) -> list[tuple[str, str, str]]:
    """(encoder, metric, value [95 % CI]) rows in a stable order."""
    return [(e["encoder"], e["metric"], _fmt(e)) for e in summary_entries(results, full)]


def ascii_table(rows: list[tuple[str, ...]]) -> str:
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = "+" + "+".join("-" * (x + 2) for x in w) + "+"
    out = [line]
    for i, r in enumerate(rows):
        out.append("| " + " | ".join(c.ljust(w[j]) for j, c in enumerate(r)) + " |")
        if i == 0:
            out.append(line)
    return "\n".join(out + [line])


def format_table(results: dict) -> str:
    """The terminal summary: encoder | metric | value [95 % CI]."""
    rows = summary_rows(results)
    header = "value [95% CI]" if any("[" in r[2] for r in rows) else "value"  # as write_report's legend
    skipped = [f"not evaluated: {t} ({why})" for t, why in results.get("skipped_targets", {}).items()]
    return "\n".join([ascii_table([("encoder", "metric", header)] + rows), *skipped])


def _names(results: dict, field: str, codes) -> list[str]:
    vocab = results.get("vocab", {}).get(field, [])
    return [vocab[c] if isinstance(c, int) and 0 <= c < len(vocab) else str(c) for c in codes]


#: the figures an evaluation draws into its folder (each only when it has something to draw)
FIGURES = ("embedding_map.png", "age_pred_vs_true.png", "site_confusion.png", "fewshot_curves.png", "training_curve.png")


def _figures(run_dir: Path, results: dict) -> list[str]:
    """Draw this evaluation's figures into ``run_dir`` and return their report lines. Figures of :data:`FIGURES`
    that it does not draw are removed: an earlier evaluation's (other targets or protocol) would lie beside a
    report.md and metrics.json that do not mention them. No other file of the folder is touched."""
    lines: list[str] = []
    map_rows = []
    for enc, m in results.get("maps", {}).items():
        colours = {"age": (m["age"], None)} if "age" in m and np.isfinite(m["age"]).any() else {}
        for field, title in (("site", "site"), ("label", "diagnosis")):
            if field in m and (m[field] >= 0).any():
                colours[title] = (m[field], _names(results, field, range(int(m[field].max()) + 1)))
        map_rows.append((enc, m["xy"], colours))
    if map_rows:
        maps = results["maps"]
        method = next(iter(maps.values()))["method"]
        plot_embedding_maps(map_rows, run_dir / "embedding_map.png",
                            [axis_labels(m["method"], m.get("explained")) for m in maps.values()])
        lines += [f"### Embedding maps ({method.upper()}; a row per encoder)", "", "![maps](embedding_map.png)", ""]
        shares = [f"{enc} {100 * m['explained'][0]:.0f} % / {100 * m['explained'][1]:.0f} %"
                  for enc, m in maps.items() if m.get("explained") is not None]
        if shares:
            lines += ["Share of the standardised embeddings' variance on PC1 / PC2: " + "; ".join(shares) + ".", ""]
    panels = [(enc, results["test_age"], per["age"]["pred"]) for enc, per in results.get("probes", {}).items()
              if "age" in per and "pred" in per["age"] and "test_age" in results]
    panels += [(f"{enc} fine-tuned", results["test_age"], per["age"]["pred"]) for enc, per in results.get("finetune", {}).items()
               if "age" in per and "pred" in per["age"] and "test_age" in results]
    for enc, o in results.get("openbhb", {}).items():
        if "pred_int" in o:
            panels += [(f"{enc} internal", o["age_int"], o["pred_int"]), (f"{enc} external", o["age_ext"], o["pred_ext"])]
    if plots.plot_pred_vs_true(panels, run_dir / "age_pred_vs_true.png"):
        lines += ["### Predicted vs true age (held-out subjects)", "", "![age](age_pred_vs_true.png)", ""]
    cms = [(enc, per["site"]["confusion"], _names(results, "site", per["site"]["classes"]))
           for enc, per in results.get("probes", {}).items() if "site" in per and "confusion" in per["site"]]
    cms += [(enc, s["prediction"]["confusion"], _names(results, "site", s["prediction"]["classes"]))
            for enc, s in results.get("site", {}).items() if "prediction" in s]
    if plots.plot_confusion(cms, run_dir / "site_confusion.png"):
        lines += ["### Site confusion matrix (site probe, held-out subjects)", "", "![site](site_confusion.png)", ""]
    if plots.plot_fewshot(results.get("fewshot", {}), run_dir / "fewshot_curves.png"):
        lines += ["### Few-label curves (mean ± SD over seeds)", "", "![fewshot](fewshot_curves.png)", ""]
    hist = {f"{enc} {t}": m.get("history", []) for enc, per in results.get("finetune", {}).items() for t, m in per.items()}
    if plots.plot_training_curves(results.get("info", {}).get("run directory", run_dir), hist, run_dir / "training_curve.png"):
        lines += ["### Training curves", "", "![curves](training_curve.png)", ""]
    for name in FIGURES:
        if f"]({name})" not in "\n".join(lines):
            (run_dir / name).unlink(missing_ok=True)
    return lines


def _site_tables(results: dict) -> list[str]:
    lines = []
    for enc, s in results.get("site", {}).items():
        for target, lso in s.get("leave_site_out", {}).items():
            lines += [f"Leave-site-out {target} ({enc}): probe fitted on the other sites, scored on the held-out one; "
                      "the folds use every subject, the run's test split included.", "",
                      "| held-out site | n test | n train | metric | predict train mean | unseen features* |",
                      "|---|---|---|---|---|---|"]
            for site, m in lso["per_site"].items():
                val = f"MAE {m['mae']:.2f} y" if "mae" in m else f"BAcc {m['balanced_accuracy']:.3f}"
                naive = f"MAE {m['mean_predictor_mae']:.2f} y" if "mean_predictor_mae" in m else "—"
                lines.append(f"| {site} | {m['n_test']} | {m['n_train']} | {val} | {naive} | "
                             f"{m.get('n_unseen_features', '—')} |")
            lines += ["", f"\\* features whose spread on the held-out site is ≥ {UNSEEN_SPREAD_RATIO:g}× their spread on the "
                      "training sites (e.g. channels silent on the training sites); the probe standardises with the "
                      "training spread, so they can inflate that site's error far beyond the other sites'.", ""]
        h = s.get("harmonisation")
        if h:
            lines += [f"ComBat baseline ({enc}; fitted on training subjects; covariates kept: "
                      f"{ {t: c for t, c in h['covariates'].items()} }).", "", "| target | raw | ComBat |", "|---|---|---|"]
            for target in h["raw"]:
                r, c = h["raw"][target], h["combat"][target]
                key, name = ("mae", "MAE (years)") if "mae" in r else ("balanced_accuracy", "balanced acc.")
                lines.append(f"| {target} {name} | {r[key]:.3f} | {c[key]:.3f} |")
            lines += [f"* {c} is not a ComBat target or covariate here: {why}" for c, why in h.get("left_out", {}).items()]
            lines.append("")
    return lines


#: the hyper-parameter each probe chose, as the report names it
PROBE_SETTINGS = {"alpha": "α", "C": "C", "k": "k"}


def _probe_settings_table(results: dict) -> list[str]:
    """The hyper-parameter each probe chose and how (the selection rule), per encoder and target."""
    rows = [f"| {enc} | {target} | {', '.join(f'{PROBE_SETTINGS[k]} = {m[k]:g}' for k in PROBE_SETTINGS if k in m)} | "
            f"{m.get('selection', '—')} |"
            for enc, per in results.get("probes", {}).items() for target, m in per.items()
            if any(k in m for k in PROBE_SETTINGS)]
    if not rows:
        return []
    return ["## Probe settings chosen", "", "| encoder | target | chosen | how |", "|---|---|---|---|"] + rows + [""]


def _openbhb_table(results: dict) -> list[str]:
    """The OpenBHB protocol's own rows (not the run's train/test split) and the probes' chosen settings."""
    rows = [f"| {enc} | {o['n_train']} | {o['n_internal']} | {o['n_external']} | "
            f"{', '.join(map(str, o.get('external_site_names') or o.get('external_sites', [])))} | "
            f"{o['selected_age_alpha']:g} | {o['selected_site_C']:g} |"
            for enc, o in results.get("openbhb", {}).items() if "n_train" in o]
    if not rows:
        return []
    return ["## OpenBHB split and probe settings", "", "Training: training-split scans of the internal sites; internal "
            "test: test-split scans of the internal sites; external test: every scan of the external site(s). Ridge α "
            "and logistic C chosen by cross-validation on the training scans.", "",
            "| encoder | n train | n internal test | n external test | external site(s) | ridge α | site C |",
            "|---|---|---|---|---|---|---|"] + rows + [""]


def _finetune_tables(results: dict) -> list[str]:
    """Fine-tuning settings per encoder and target (the learning rates are set, only the epoch is chosen), and a
    warning where a regression model predicts nearly the same value, or a classifier one class, for every test scan."""
    rows, warnings = [], []
    for enc, per in results.get("finetune", {}).items():
        for target, m in per.items():
            f = m.get("finetune", {})
            rows.append(f"| {enc} | {target} | {f.get('mode', '—')} | {f.get('lr_encoder', '—')} / {f.get('lr_head', '—')} "
                        f"| {f.get('batch_size', '—')} | {f.get('best_epoch', '—')} of {f.get('epochs_run', '—')} "
                        f"(max {f.get('epochs', '—')}) | {m.get('n_fit', '—')} / {m.get('n_val', '—')} |")
            pred, truth = np.asarray(m.get("pred", []), float), np.asarray(results.get("test_age", []), float)
            if target == "age" and pred.ndim == 1 and pred.size > 1 and truth.size > 1 \
                    and pred.std() < COLLAPSE_SD_RATIO * truth.std():
                warnings.append(f"- **{enc}, {target}: the fine-tuned model predicts nearly one value** (prediction SD "
                                f"{pred.std():.2f} y against {truth.std():.2f} y among the test subjects); its error is "
                                "that of a constant, not of a model (more epochs, another lr, or the probe).")
            elif "chance" in m and pred.ndim == 1 and pred.size > 1 and np.unique(pred).size == 1:
                names, code = (results.get("vocab") or {}).get(target) or [], int(pred[0])
                label = f"{names[code]!r}" if 0 <= code < len(names) else f"class {code}"
                warnings.append(f"- **{enc}, {target}: the fine-tuned model predicts one class for every test scan** "
                                f"({label}); its balanced accuracy is chance by construction, not a measure "
                                "of the encoder (more epochs, another lr, or the probe).")
    if not rows:
        return []
    return (["## Fine-tuning settings", "", "Learning rates, batch and maximum epochs are set; the epoch is chosen on "
             "the validation rows (early stopping).", "",
             "| encoder | target | mode | lr encoder / head | batch | best epoch of run (max) | n fit / n val |",
             "|---|---|---|---|---|---|---|"] + rows + [""] + warnings + ([""] if warnings else []))


#: a fine-tuned age model whose prediction SD is below this fraction of the test ages' SD is flagged as collapsed
COLLAPSE_SD_RATIO = 0.1


def _legend(rows: list[tuple[str, str, str]]) -> str:
    """What the brackets and ± in the value column mean, for the ones that occur (``""`` if neither)."""
    parts = (["[…]: 95 % bootstrap CI over test subjects"] * any("[" in r[2] for r in rows)
             + ["±: SD over subsampling seeds"] * any("±" in r[2] for r in rows))
    return "".join(f"; {p}" for p in parts)


def write_report(run_dir: str | Path, results: dict) -> Path:
    """Write the figures, then ``metrics.json`` and ``report.md`` into ``run_dir``; return the report path.
    metrics.json and report.md each replace an earlier one whole (:func:`~medssl.atomic.atomic_write`), after the
    figures: a figure that fails to draw leaves the earlier evaluation's pair, not a new metrics.json beside it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    skipped = results.get("skipped_files", [])  # their names can identify subjects: counted here, never listed
    shareable = {k: v for k, v in results.items() if k != "skipped_files"} | {"n_skipped_files": len(skipped)}
    metrics = json.dumps(_plain(shareable), indent=2)
    protocol = results.get("protocol", "default")
    lines = [f"# medssl evaluation report — protocol `{protocol}`", "", f"Output directory: `{run_dir}`", ""]
    info = results.get("info", {})
    if info:
        lines += ["| setting | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in info.items()] + [""]
    rows = summary_rows(results, full=True)
    lines += [f"## Metrics (held-out subjects{_legend(rows)})", "", "| encoder | metric | value |",
              "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows] + [""]
    if results.get("notes"):
        lines += ["## How these numbers were obtained", ""] + [f"- {n}" for n in results["notes"]] + [""]
    lines += (_probe_settings_table(results) + _site_tables(results) + _openbhb_table(results)
              + _finetune_tables(results))
    figures = _figures(run_dir, results)
    if figures:
        lines += ["## Figures", ""] + figures
    if skipped:
        lines += ["## Skipped files", "", f"{len(skipped)} file(s) were skipped as unreadable (`data.on_bad_file=skip`). "
                  "Their names and reasons are in `skipped_files.json` beside the `manifest.tsv` of this evaluation, "
                  "not here: file names can identify subjects.", ""]
    atomic_write(run_dir / "metrics.json", lambda tmp: tmp.write_text(metrics))  # `medssl compare` never reads half
    return atomic_write(run_dir / "report.md", lambda tmp: tmp.write_text("\n".join(lines)))
