"""Report and compare: JSON-safe metrics, table rows with intervals, runs side by side."""

import json

import numpy as np

from medssl.eval.compare import collect, compare_table
from medssl.eval.report import format_table, summary_entries, write_report


def _results(mae: float, with_openbhb: bool = False) -> dict:
    r = {"protocol": "default", "info": {"method": "simclr"}, "vocab": {"site": ["A", "B"]},
         "probes": {"pretrained": {"age": {"mae": mae, "mae_ci": [mae - 1, mae + 1], "r2": 0.5, "rmse": mae + 1,
                                           "pearson_r": 0.7, "pred": np.arange(3.0)}}},
         "baselines": {"mean_predictor_mae": 12.0}, "test_age": np.arange(3.0)}
    if with_openbhb:
        r["openbhb"] = {"pretrained": {"challenge_metric": float("nan"), "mae_age": 4.0, "rmse_age": 5.0,
                                       "bacc_site": 0.5, "ext_mae_age": float("nan"), "site_chance": 0.5}}
    return r


def test_metrics_json_drops_arrays_and_writes_nan_as_null(tmp_path):
    write_report(tmp_path, _results(5.0, with_openbhb=True))
    m = json.loads((tmp_path / "metrics.json").read_text())  # strict JSON: no NaN tokens
    assert "pred" not in m["probes"]["pretrained"]["age"] and "test_age" not in m
    assert m["openbhb"]["pretrained"]["challenge_metric"] is None
    report = (tmp_path / "report.md").read_text()
    assert "| pretrained | age MAE (years) ↓ | 5.000 [4.000, 6.000] |" in report and "n/a" in report
    assert (tmp_path / "age_pred_vs_true.png").is_file()


def test_summary_entries_and_terminal_table():
    entries = summary_entries(_results(5.0), full=True)
    assert [e["metric"] for e in entries][:2] == ["age MAE (years) ↓", "age R² ↑"]
    assert entries[-1]["encoder"] == "predict train mean" and entries[-1]["value"] == 12.0
    table = format_table(_results(5.0))
    assert "5.000 [4.000, 6.000]" in table and "predict train mean" in table


def test_compare_lines_up_the_same_metric_across_runs(tmp_path):
    for name, mae in (("simclr", 5.0), ("yaware", 3.5)):
        (tmp_path / name).mkdir()
        write_report(tmp_path / name, _results(mae))
    columns, table = collect([tmp_path / "simclr", tmp_path / "yaware"])
    assert columns[:2] == ["simclr", "yaware"]
    assert table["age MAE (years) ↓"]["simclr"]["value"] == 5.0 and table["age MAE (years) ↓"]["yaware"]["value"] == 3.5
    text = compare_table([tmp_path / "simclr", tmp_path / "yaware"])
    row = next(line for line in text.splitlines() if "age MAE" in line and "predict" not in line)
    assert "5.000 [4.000, 6.000]" in row and "3.500 [2.500, 4.500]" in row


def test_embedding_map_with_fewer_scans_than_pca_components():
    """t-SNE pre-reduction must not ask PCA for more components than there are scans."""
    import numpy as np

    from medssl.eval.embedding_map import embed_2d

    xy = embed_2d(np.random.default_rng(0).normal(size=(30, 64)), method="tsne")
    assert xy.shape == (30, 2) and np.isfinite(xy).all()
