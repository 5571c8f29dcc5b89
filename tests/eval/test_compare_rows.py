"""``medssl compare`` (``medssl/eval/compare.py``) shows every metric the runs' reports show, each with its own interval."""

from __future__ import annotations

import numpy as np

from medssl.eval.compare import collect
from medssl.eval.report import write_report


def _run(run_dir, mae: float) -> None:
    age = {"mae": mae, "mae_ci": [mae - 1, mae + 1], "r2": 0.5, "r2_ci": [0.4, 0.6], "rmse": mae + 2,
           "rmse_ci": [mae + 1.5, mae + 2.5], "pearson_r": 0.7, "pearson_r_ci": [0.6, 0.8], "pred": np.arange(3.0)}
    sex = {"balanced_accuracy": 0.8, "balanced_accuracy_ci": [0.7, 0.9], "chance": 0.5, "auc": 0.85,
           "auc_ci": [0.75, 0.95], "f1_macro": 0.78, "f1_macro_ci": [0.68, 0.88]}
    run_dir.mkdir()
    write_report(run_dir, {"protocol": "default", "info": {}, "probes": {"pretrained": {"age": age, "sex": sex}},
                           "test_age": np.arange(3.0)})


def _report_metrics(run_dir) -> dict[str, str]:
    """``{metric: value [CI]}`` of the pretrained encoder in report.md's metrics table."""
    rows = [line.split(" | ") for line in (run_dir / "report.md").read_text().splitlines()
            if line.startswith("| pretrained | ")]
    return {r[1]: r[2].rstrip(" |") for r in rows}


def test_compare_has_a_row_for_every_metric_of_the_report(tmp_path):
    """RMSE, Pearson r, AUC and macro F1 are in report.md's table: compare lines them up too, with their intervals."""
    _run(tmp_path / "a", 5.0)
    _run(tmp_path / "b", 3.0)
    columns, table = collect([tmp_path / "a", tmp_path / "b"])
    report = _report_metrics(tmp_path / "a")
    assert {"age RMSE (years) ↓", "age Pearson r ↑", "sex AUC ↑", "sex macro F1 ↑"} <= set(report)
    assert set(table) == set(report) and columns == ["a", "b"]
    assert table["age RMSE (years) ↓"]["a"]["ci"] == [6.5, 7.5] and table["age RMSE (years) ↓"]["b"]["value"] == 5.0
    assert table["sex AUC ↑"]["b"]["ci"] == [0.75, 0.95]
