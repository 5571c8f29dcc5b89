"""Claims of docs/*.md about what a command writes, checked against the code (hand-made inputs, seconds).

Each test names the sentence it pins, so that a change of behaviour fails here until the doc says it too.
"""

from __future__ import annotations

import re
from pathlib import Path

from medssl.eval.report import write_report

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _few_and_fine(folder: Path, targets: tuple[str, ...]) -> list[Path]:
    """A `fewshot` and a `finetune` evaluation of ``targets``, as `medssl evaluate` writes them; age has the
    train-mean baseline that every evaluation of age reports."""
    curve = {"summary": [{"fraction": 0.5, "n_subjects": 9, "mean": 0.6, "std": 0.1}], "metric": "balanced_accuracy",
             "chance": 0.5}
    few = {"label": curve}
    fine = {"label": {"balanced_accuracy": 0.7, "chance": 0.5, "auc": 0.8, "f1_macro": 0.6}}
    baselines = {}
    if "age" in targets:
        few["age"] = {"summary": [{"fraction": 0.5, "n_subjects": 9, "mean": 9.0, "std": 1.0}], "metric": "mae"}
        fine["age"] = {"mae": 8.0, "rmse": 9.0, "r2": 0.3, "pearson_r": 0.6}
        baselines = {"mean_predictor_mae": 15.0}
    write_report(folder / "few", {"protocol": "fewshot", "info": {}, "fewshot": {"pretrained": few},
                                  "baselines": baselines})
    write_report(folder / "fine", {"protocol": "finetune", "info": {}, "finetune": {"pretrained": fine},
                                   "baselines": baselines})
    return [folder / "few", folder / "fine"]


def test_compare_plots_nothing_for_a_fewshot_and_a_finetune_evaluation_of_a_label(tmp_path):
    """docs/evaluation.md, "Report and comparison": a `fewshot` and a `finetune` evaluation share no metric, so
    `medssl compare` draws no figure; with age, both report the train-mean baseline, and the figure is that
    panel alone (the doc said no figure was drawn for such a pair, whatever the targets)."""
    from medssl.eval.compare import collect, plot_compare

    assert plot_compare(_few_and_fine(tmp_path / "label", ("label",)), tmp_path / "a.png") is None
    runs = _few_and_fine(tmp_path / "age", ("label", "age"))
    _, table = collect(runs)
    shared = [m for m, per in table.items() if len(per) == 2]
    assert shared == ["age MAE (years) ↓, baseline: predict train mean"]
    assert plot_compare(runs, tmp_path / "b.png") == tmp_path / "b.png"
    doc = re.sub(r"\s+", " ", (DOCS / "evaluation.md").read_text())
    assert ("e.g. a `fewshot` and a `finetune` evaluation of `label` alone, it writes no figure and says so; "
            "with age both hold the train-mean baseline, and the figure shows that panel alone") in doc


def _table(doc: str, header: str) -> list[str]:
    """The rows of the Markdown table whose header line starts with ``header``."""
    lines = (DOCS / doc).read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(header))
    rows = []
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        rows.append(ln)
    return rows


def test_every_key_of_encoder_json_is_in_the_table_of_encoders_md(tmp_path):
    """docs/encoders.md, "Export": the table of ``encoder.json`` names each top-level key the export writes
    (it left out ``format``, which ``load_encoder`` checks first), and no other."""
    import json

    from medssl.encoders import build_encoder
    from medssl.export import save_encoder

    args = {"spatial_dims": 2, "in_channels": 1, "width": 4}
    save_encoder(build_encoder("resnet10", **args), tmp_path, "resnet10", args, input_spec={"spatial_dims": 2},
                 pretraining={"method": "simclr"}, evaluation={"targets": ["age"]})
    written = set(json.loads((tmp_path / "encoder.json").read_text()))
    documented = {k for row in _table("encoders.md", "| key | content |")
                  for k in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert documented == written
