"""Each number of the evaluation report and of ``medssl compare`` sits under its own name, interval and direction
(``medssl/eval/report.py``, ``compare.py``): hand-made results with distinct values for every field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medssl.eval.compare import _error_bar, collect, compare_table
from medssl.eval.report import (_finetune_tables, _legend, _names, _openbhb_table, _plain, _probe_settings_table, _site_tables,
                                format_table, summary_entries, summary_rows, write_report)


def _by_metric(results: dict, full: bool = True) -> dict:
    return {(e["encoder"], e["metric"]): e for e in summary_entries(results, full)}


def test_metrics_json_writes_infinities_as_null_too():
    """Strict JSON has no Infinity token either (an R² of a constant truth, a ratio over 0)."""
    plain = _plain({"a": float("inf"), "b": -np.inf, "c": np.float32(2.5), "d": [np.nan, 1.0], "pred": [1.0]})
    assert plain == {"a": None, "b": None, "c": 2.5, "d": [None, 1.0]}
    json.dumps(plain, allow_nan=False)


def test_probe_rows_pair_each_value_with_its_own_interval_and_direction():
    reg = {"mae": 5.0, "mae_ci": [4.0, 6.5], "r2": 0.5, "r2_ci": [0.3, 0.6], "rmse": 6.0, "rmse_ci": [5.0, 7.0],
           "pearson_r": 0.7, "pearson_r_ci": [0.6, 0.8]}
    cls = {"balanced_accuracy": 0.8, "balanced_accuracy_ci": [0.7, 0.9], "chance": 0.5, "auc": 0.85,
           "auc_ci": [0.75, 0.95], "f1_macro": 0.78, "f1_macro_ci": [0.68, 0.88]}
    rows = _by_metric({"probes": {"pretrained": {"age": reg, "sex": cls, "site": dict(cls, auc=float("nan"))}}})
    expect = {"age MAE (years) ↓": (5.0, [4.0, 6.5], "lower"), "age R² ↑": (0.5, [0.3, 0.6], "higher"),
              "age RMSE (years) ↓": (6.0, [5.0, 7.0], "lower"), "age Pearson r ↑": (0.7, [0.6, 0.8], "higher"),
              "sex balanced acc. (chance 0.50) ↑": (0.8, [0.7, 0.9], "higher"), "sex AUC ↑": (0.85, [0.75, 0.95], "higher"),
              "sex macro F1 ↑": (0.78, [0.68, 0.88], "higher"),
              # site: less scanner information in the embeddings is better
              "site balanced acc. (chance 0.50) ↓": (0.8, [0.7, 0.9], "lower"), "site macro F1 ↓": (0.78, [0.68, 0.88], "lower")}
    assert {m: (e["value"], e["ci"], e["better"]) for (_, m), e in rows.items()} == expect  # no NaN AUC row for site


def test_site_openbhb_fewshot_and_finetune_rows_carry_their_own_numbers():
    lso = {"age": {"pooled": {"mae": 9.0, "mean_predictor_mae": 12.0}}, "sex": {"pooled": {"balanced_accuracy": 0.6}}}
    combat = {"age": {"mae": 7.5, "r2": 0.2}}
    site = {enc: {"leave_site_out": lso, "harmonisation": {"combat": combat}} for enc in ("pretrained", "random init")}
    openbhb = {"challenge_metric": 6.1, "mae_age": 4.1, "rmse_age": 5.1, "bacc_site": 0.41, "ext_mae_age": 7.1,
               "site_chance": 0.25, "mean_predictor_mae_int": 11.0, "mean_predictor_mae_ext": 13.0}
    fewshot = {"age": {"metric": "mae", "summary": [{"fraction": 0.1, "n_subjects": 5, "mean": 8.0, "std": 0.4}]},
               "sex": {"metric": "balanced_accuracy", "chance": 0.5,
                       "summary": [{"fraction": 0.5, "n_subjects": 20, "mean": 0.7, "std": 0.05}]}}
    ft = {"age": {"mae": 3.0, "r2": 0.9, "rmse": 4.0, "pearson_r": 0.95}}
    results = {"site": site, "openbhb": {"pretrained": openbhb}, "fewshot": {"pretrained": fewshot},
               "finetune": {"pretrained": ft}}
    rows = _by_metric(results)
    value = {k: e["value"] for k, e in rows.items()}
    assert value[("pretrained", "age MAE, leave-site-out (years) ↓")] == 9.0
    assert [(e["encoder"], e["metric"]) for e in summary_entries(results) if "leave-site-out" in e["metric"]
            and e["encoder"] == "predict train mean"] == [("predict train mean", "age MAE, leave-site-out (years) ↓")]
    assert value[("predict train mean", "age MAE, leave-site-out (years) ↓")] == 12.0
    assert value[("pretrained", "sex balanced acc., leave-site-out ↑")] == 0.6
    assert value[("pretrained", "age MAE (years) ↓ after ComBat")] == 7.5
    assert not any("R²" in m and "ComBat" in m for _, m in rows)
    assert {m: value[("pretrained", m)] for m in ("OpenBHB L_c = MAE_ext·BAcc^0.3 ↓", "internal age MAE (years) ↓",
            "internal age RMSE (years) ↓", "internal site BAcc (chance 0.25) ↓", "external age MAE (years) ↓")} == {
        "OpenBHB L_c = MAE_ext·BAcc^0.3 ↓": 6.1, "internal age MAE (years) ↓": 4.1, "internal age RMSE (years) ↓": 5.1,
        "internal site BAcc (chance 0.25) ↓": 0.41, "external age MAE (years) ↓": 7.1}
    assert value[("predict train mean", "internal age MAE (years) ↓")] == 11.0
    assert value[("predict train mean", "external age MAE (years) ↓")] == 13.0
    few_mae = rows[("pretrained", "age MAE (years) ↓ @ 10% labels (5 subj.)")]
    few_bacc = rows[("pretrained", "sex balanced acc. (chance 0.50) ↑ @ 50% labels (20 subj.)")]
    assert (few_mae["value"], few_mae["std"], few_mae["better"]) == (8.0, 0.4, "lower")
    assert (few_bacc["value"], few_bacc["std"], few_bacc["better"]) == (0.7, 0.05, "higher")
    assert value[("pretrained", "age MAE (years) ↓ (fine-tuned)")] == 3.0
    assert value[("pretrained", "age Pearson r ↑ (fine-tuned)")] == 0.95
    text = dict(((a, b), c) for a, b, c in summary_rows({"fewshot": {"pretrained": fewshot}}))
    assert text[("pretrained", "age MAE (years) ↓ @ 10% labels (5 subj.)")] == "8.000 ± 0.400"
    assert _legend([("", "", v) for v in text.values()]) == "; ±: SD over subsampling seeds"


def test_values_and_intervals_print_lower_bound_first_with_digits_by_size():
    r = {"probes": {"pretrained": {"age": {"mae": 12.345, "mae_ci": [10.0, 15.5], "r2": 0.25, "r2_ci": [0.125, 0.5]}}}}
    text = {m: v for _, m, v in summary_rows(r)}
    assert text == {"age MAE (years) ↓": "12.35 [10.00, 15.50]", "age R² ↑": "0.250 [0.125, 0.500]"}
    r = {"probes": {"pretrained": {"age": {"mae": 5.0, "r2": 0.25}}}}
    assert format_table(r).splitlines()[1].split("|")[3].strip() == "value"  # no interval anywhere: no "[95% CI]"


def test_site_tables_put_raw_then_combat_and_openbhb_table_its_own_counts():
    h = {"covariates": {"age": ["sex"]}, "raw": {"age": {"mae": 7.25}, "sex": {"balanced_accuracy": 0.6}},
         "combat": {"age": {"mae": 5.5}, "sex": {"balanced_accuracy": 0.75}}}
    lines = _site_tables({"site": {"pretrained": {"harmonisation": h}}})
    assert "| age MAE (years) | 7.250 | 5.500 |" in lines and "| sex balanced acc. | 0.600 | 0.750 |" in lines
    assert lines[lines.index("| target | raw | ComBat |") + 1] == "|---|---|---|"
    o = {"n_train": 300, "n_internal": 80, "n_external": 45, "external_site_names": ["IOP"], "selected_age_alpha": 10.0,
         "selected_site_C": 0.1}
    assert "| pretrained | 300 | 80 | 45 | IOP | 10 | 0.1 |" in _openbhb_table({"openbhb": {"pretrained": o}})


def test_codes_are_named_from_the_vocabulary_and_unknown_codes_stay_codes():
    results = {"vocab": {"site": ["Guys", "HH", "IOP"]}}
    assert _names(results, "site", [0, 2, 1, 3, -1]) == ["Guys", "IOP", "HH", "3", "-1"]


def test_collapse_flag_starts_below_a_tenth_of_the_test_ages_sd():
    """docs/evaluation.md: an age model whose prediction SD is below 10 % of the test ages' SD is flagged; a
    classifier only when every test scan gets the same class."""
    age = np.array([20.0, 40.0, 60.0, 80.0])  # SD 22.36
    flagged = lambda pred, target="age", **m: "predicts" in "\n".join(_finetune_tables(
        {"test_age": age, "finetune": {"pretrained": {target: {"pred": np.asarray(pred), **m}}}}))
    assert flagged(50 + 0.09 * (age - 50)) and not flagged(50 + 0.11 * (age - 50))
    assert flagged([1, 1, 1, 1], "label", chance=0.5) and not flagged([1, 1, 0, 1], "label", chance=0.5)


def _age(mae: float) -> dict:
    return {"age": {"mae": mae, "r2": 0.5, "rmse": mae + 1, "pearson_r": 0.7}}


def _run(tmp_path, name: str, mae: float, protocols: tuple = ()) -> None:
    r = {"protocol": "default", "info": {}, "probes": {"pretrained": _age(mae), "random init": _age(mae + 10)},
         "baselines": {"mean_predictor_mae": 12.0}}
    write_report(tmp_path / name, r)
    for i, p in enumerate(protocols):
        write_report(tmp_path / name / f"eval-{p}", dict(r, probes={"pretrained": _age(mae + i + 1)}))


def test_compare_keeps_runs_of_the_same_folder_name_and_names_protocol_folders(tmp_path):
    """Two runs called ``simclr`` in different places are two columns (neither is dropped); a protocol folder
    ``eval-linear`` is the column ``<run>/linear``."""
    _run(tmp_path / "a", "simclr", 5.0, protocols=("linear",))
    _run(tmp_path / "b", "simclr", 7.0)
    columns, table = collect([tmp_path / "a" / "simclr", tmp_path / "b" / "simclr"])
    assert columns == ["simclr", "simclr/linear", f"{tmp_path / 'b' / 'simclr'}:simclr"]
    assert [table["age MAE (years) ↓"][c]["value"] for c in columns] == [5.0, 6.0, 7.0]


def test_compare_with_random_init_keeps_one_baseline_column_per_run(tmp_path):
    _run(tmp_path, "simclr", 5.0)
    _run(tmp_path, "yaware", 4.0)
    columns, table = collect([tmp_path / "simclr", tmp_path / "yaware"], ("pretrained", "random init"))
    assert table["age MAE (years) ↓"]["yaware [random init]"]["value"] == 14.0
    assert {c: e["value"] for c, e in table["age MAE (years) ↓, baseline: predict train mean"].items()} == {
        "simclr": 12.0, "yaware": 12.0}
    assert "age MAE (years) ↓" in table and not any("predict train mean" in c for c in columns)


def test_compare_table_marks_a_missing_metric_in_its_own_column(tmp_path):
    _run(tmp_path, "simclr", 5.0)
    write_report(tmp_path / "few", {"protocol": "fewshot", "info": {}, "fewshot": {"pretrained": {"age": {
        "metric": "mae", "summary": [{"fraction": 0.5, "n_subjects": 3, "mean": 6.0, "std": None}]}}}})
    text = compare_table([tmp_path / "simclr", tmp_path / "few"])
    row = next(line for line in text.splitlines() if line.startswith("| age MAE (years) ↓ @"))
    assert [c.strip() for c in row.split("|")[2:4]] == ["—", "6.000"]  # under 'few', not under 'simclr'


def test_error_bars_follow_an_asymmetric_interval():
    assert _error_bar({"ci": [4.0, 7.0]}, 5.0) == [1.0, 2.0]
    assert _error_bar({"ci": [None, None], "std": 0.3}, 5.0) == [0.3, 0.3]


def test_compare_plot_leaves_out_a_metric_only_one_run_has_a_value_for(tmp_path):
    from medssl.eval.compare import plot_compare

    for name, l_c in (("a", 6.0), ("b", float("nan"))):
        write_report(tmp_path / name, {"protocol": "openbhb", "info": {}, "openbhb": {"pretrained": {
            "challenge_metric": l_c, "mae_age": 4.0, "rmse_age": 5.0, "bacc_site": 0.4, "ext_mae_age": 7.0,
            "site_chance": 0.25}}})
    assert plot_compare([tmp_path / "a", tmp_path / "b"], tmp_path / "p.png") is not None  # other metrics shared
    write_report(tmp_path / "c", {"protocol": "openbhb", "info": {}, "openbhb": {"pretrained": {
        "challenge_metric": 5.0, "mae_age": float("nan"), "rmse_age": float("nan"), "bacc_site": float("nan"),
        "ext_mae_age": float("nan"), "site_chance": 0.25}}})
    assert plot_compare([tmp_path / "b", tmp_path / "c"], tmp_path / "q.png") is None  # each has values the other lacks


def test_leave_site_out_and_finetune_tables_put_each_count_in_its_column():
    lso = {"age": {"per_site": {"Guys": {"mae": 6.5, "n_test": 10, "n_train": 40, "mean_predictor_mae": 9.25,
                                         "n_unseen_features": 2},
                                "HH": {"balanced_accuracy": 0.625, "n_test": 12, "n_train": 38}}}}
    lines = _site_tables({"site": {"pretrained": {"leave_site_out": lso}}})
    assert "| Guys | 10 | 40 | MAE 6.50 y | MAE 9.25 y | 2 |" in lines and "| HH | 12 | 38 | BAcc 0.625 | — | — |" in lines
    settings = {"mode": "full", "lr_encoder": 1e-4, "lr_head": 1e-3, "batch_size": 16, "best_epoch": 3, "epochs_run": 5,
                "epochs": 30}
    rows = _finetune_tables({"finetune": {"pretrained": {"age": {"finetune": settings, "n_fit": 34, "n_val": 8}}}})
    assert "| pretrained | age | full | 0.0001 / 0.001 | 16 | 3 of 5 (max 30) | 34 / 8 |" in rows


def test_macro_auc_keeps_its_interval_and_an_infinite_value_reads_n_a():
    rows = _by_metric({"probes": {"pretrained": {"dx": {"auc_macro": 0.8, "auc_macro_ci": [0.7, 0.9]}}}})
    e = rows[("pretrained", "dx macro AUC ↑")]
    assert (e["value"], e["ci"], e["better"]) == (0.8, [0.7, 0.9], "higher")
    assert summary_rows({"probes": {"pretrained": {"age": {"mae": float("inf"), "r2": 0.5}}}})[0][2] == "n/a"


def test_compare_names_a_metrics_json_given_directly_after_its_run(tmp_path):
    _run(tmp_path, "simclr", 5.0)
    columns, table = collect([tmp_path / "simclr" / "metrics.json"])
    assert columns == ["simclr"] and table["age MAE (years) ↓"]["simclr"]["value"] == 5.0


def test_metrics_json_holds_no_per_subject_array_and_writes_a_tuple_or_array_nan_as_null(tmp_path):
    """docs/evaluation.md: metrics.json holds every number, no per-subject predictions. Seven test subjects: no list of
    seven values is left anywhere (probe and brain-age-gap arrays, OpenBHB's predictions and ages, maps, test ages);
    a (nan, nan) interval as bootstrap_ci returns it, an array holding NaN and numpy integer keys are strict JSON."""
    n, nan = 7, float("nan")
    ages = np.linspace(20.0, 80.0, n)
    gap = {"gap_std": 2.0, "corrected_gap_std": 1.5, "corrected_gap_age_r": 0.1, "gap": ages - 50,
           "corrected_gap": ages - 49}
    results = {"protocol": "openbhb", "info": {}, "test_age": ages,
               "probes": {"e": {"age": {"mae": 5.0, "mae_ci": (nan, nan), "r2": 0.5, "rmse": 6.0, "pearson_r": 0.7,
                                        "pred": ages + 1, "brain_age_gap": gap}}},
               "openbhb": {"e": {"challenge_metric": 6.0, "mae_age": 4.0, "rmse_age": 5.0, "bacc_site": 0.5,
                                 "ext_mae_age": 7.0, "site_chance": 0.5, "pred_int": ages, "pred_ext": ages + 2,
                                 "site_pred_int": np.zeros(n, int), "age_int": ages, "age_ext": ages - 1}},
               "shares": np.array([0.5, nan]), "per_code": {np.int64(3): 1.0}}
    write_report(tmp_path, results)
    metrics = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(c))

    def lists(obj):
        if isinstance(obj, dict):
            return [x for v in obj.values() for x in lists(v)]
        return [obj] + [x for v in obj for x in lists(v)] if isinstance(obj, list) else []

    assert not [x for x in lists(metrics) if len(x) == n]
    assert set(metrics["probes"]["e"]["age"]["brain_age_gap"]) == {"gap_std", "corrected_gap_std", "corrected_gap_age_r"}
    assert metrics["probes"]["e"]["age"]["mae_ci"] == [None, None] and metrics["shares"] == [0.5, None]
    assert metrics["per_code"] == {"3": 1.0}


def test_the_terminal_table_keeps_the_headline_rows_and_the_report_all_of_them():
    """summary_entries(full=False) (the terminal table) has MAE and R² of a regression and the balanced accuracy of a
    classification; RMSE, Pearson r, AUC and macro F1 only in the report's table (full=True)."""
    cls = {"balanced_accuracy": 0.8, "chance": 0.5, "auc": 0.85, "f1_macro": 0.78}
    reg = {"mae": 5.0, "r2": 0.5, "rmse": 6.0, "pearson_r": 0.7}
    results = {"probes": {"e": {"age": reg, "sex": cls}}}
    assert [e["metric"] for e in summary_entries(results)] == ["age MAE (years) ↓", "age R² ↑",
                                                              "sex balanced acc. (chance 0.50) ↑"]
    assert len(summary_entries(results, full=True)) == 7


def test_site_prediction_row_keeps_its_interval_and_less_site_information_ranks_better():
    site = {"prediction": {"balanced_accuracy": 0.9, "balanced_accuracy_ci": [0.8, 0.95], "chance": 0.25}}
    (e,) = summary_entries({"site": {"e": site}})
    assert (e["metric"], e["value"], e["ci"], e["better"]) == ("site balanced acc. (chance 0.25) ↓", 0.9, [0.8, 0.95],
                                                               "lower")


def test_two_decimals_from_ten_up_whatever_the_sign():
    """Values (and their intervals) print 3 decimals below 10 in magnitude, 2 from 10 up: 9.5, 10, −12.5, −3.25."""
    def text(value, ci=None):
        return summary_rows({"probes": {"e": {"age": {"mae": 1.0, "r2": value, "r2_ci": ci}}}})[1][2]

    assert text(9.5) == "9.500" and text(10.0) == "10.00" and text(-12.5, [-20.0, -5.0]) == "-12.50 [-20.00, -5.00]"
    assert text(-3.25, [-4.0, -2.5]) == "-3.250 [-4.000, -2.500]"


def test_terminal_table_is_aligned_and_states_intervals_and_targets_not_evaluated():
    """docs/evaluation.md: a target that cannot be evaluated is listed under the table as `not evaluated: TARGET
    (why)`; the value column is headed 'value [95% CI]' when some value has an interval."""
    results = {"probes": {"pretrained": {"age": {"mae": 5.0, "mae_ci": [4.0, 6.0], "r2": 0.5}}},
               "skipped_targets": {"sex": "the data have no such column"}}
    lines = format_table(results).splitlines()
    assert lines[-1] == "not evaluated: sex (the data have no such column)"
    table = lines[:-1]
    assert [i for i, line in enumerate(table) if line.startswith("+")] == [0, 2, len(table) - 1]
    assert len({len(line) for line in table}) == 1  # every line as wide as the borders
    bars = {tuple(i for i, c in enumerate(line) if c in "|+") for line in table}
    assert len(bars) == 1  # column separators under the borders' corners
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in table if line.startswith("|")]
    assert cells == [["encoder", "metric", "value [95% CI]"], ["pretrained", "age MAE (years) ↓", "5.000 [4.000, 6.000]"],
                     ["pretrained", "age R² ↑", "0.500"]]


def test_codes_that_are_not_integers_are_printed_as_they_are():
    assert _names({"vocab": {"site": ["Guys", "HH"]}}, "site", ["GE", "1"]) == ["GE", "1"]


def test_combat_table_states_its_covariates_and_what_it_left_out():
    """docs/evaluation.md: the report says which covariates ComBat kept and which columns it left out, and why."""
    h = {"covariates": {"age": ["sex"], "sex": ["age"]}, "raw": {"age": {"mae": 7.0}}, "combat": {"age": {"mae": 5.0}},
         "left_out": {"diagnosis": "a single value among the training subjects"}}
    text = "\n".join(_site_tables({"site": {"pretrained": {"harmonisation": h}}}))
    assert "covariates kept: {'age': ['sex'], 'sex': ['age']})" in text
    assert "* diagnosis is not a ComBat target or covariate here: a single value among the training subjects" in text


def test_report_states_its_protocol_every_setting_its_notes_and_a_figures_section(tmp_path):
    results = {"protocol": "linear", "info": {"method": "simclr", "encoder": "resnet18", "test subjects": 12},
               "notes": ["Probes: ridge.", "Intervals: none."], "test_age": np.array([20.0, 40.0, 60.0]),
               "probes": {"e": {"age": {"mae": 5.0, "r2": 0.5, "rmse": 6.0, "pearson_r": 0.7,
                                        "pred": np.array([25.0, 35.0, 65.0])}}}}
    write_report(tmp_path, results)
    lines = (tmp_path / "report.md").read_text().splitlines()
    assert lines[0] == "# medssl evaluation report — protocol `linear`"
    assert {"| method | simclr |", "| encoder | resnet18 |", "| test subjects | 12 |"} <= set(lines)
    notes = lines.index("## How these numbers were obtained")
    assert lines[notes + 2: notes + 4] == ["- Probes: ridge.", "- Intervals: none."]
    assert lines.index("## Figures") < lines.index("![age](age_pred_vs_true.png)")


def test_an_interval_that_could_not_be_drawn_is_left_out_of_the_report_as_compare_leaves_it_out(tmp_path):
    """OpenBHB with a single external scan: openbhb_intervals gives every score NaN bounds (a test set of < 2 rows).
    report.md printed '4.000 [nan, nan]' under a heading announcing bootstrap intervals, while `medssl compare` of the
    same folder (metrics.json: null bounds) printed 4.000. Both now print the value alone."""
    from medssl.eval.openbhb import openbhb_intervals

    ci = openbhb_intervals(np.array([30.0, 50.0, 70.0]), np.array([32.0, 47.0, 75.0]), np.array([0, 1, 0]),
                           np.array([0, 1, 1]), np.array([60.0]), np.array([55.0]), n_boot=20)
    assert all(np.isnan(b) for bounds in ci.values() for b in bounds)
    o = {"challenge_metric": 6.0, "mae_age": 4.0, "rmse_age": 5.0, "bacc_site": 0.5, "ext_mae_age": 5.0,
         "site_chance": 0.5, **ci}
    write_report(tmp_path, {"protocol": "openbhb", "info": {}, "openbhb": {"pretrained": o}})
    report = (tmp_path / "report.md").read_text()
    assert "| pretrained | internal age MAE (years) ↓ | 4.000 |" in report and "## Metrics (held-out subjects)\n" in report
    assert "nan" not in report and "nan" not in format_table({"openbhb": {"pretrained": o}})
    row = next(line for line in compare_table([tmp_path]).splitlines() if "internal age MAE" in line)
    assert row.split("|")[2].strip() == "4.000"


def test_every_ranked_row_is_ranked_as_its_arrow_says():
    """A row's ``better`` is "lower" when its name ends in ↓, "higher" with ↑, "" (unranked) without an arrow. The
    leave-site-out balanced accuracy ('sex balanced acc., leave-site-out ↑') had better "" (unranked)."""
    lso = {"age": {"pooled": {"mae": 9.0, "mean_predictor_mae": 12.0}}, "sex": {"pooled": {"balanced_accuracy": 0.6}}}
    reg = {"mae": 5.0, "r2": 0.5, "rmse": 6.0, "pearson_r": 0.7,
           "brain_age_gap": {"corrected_gap_std": 1.0, "corrected_gap_age_r": 0.1}}
    cls = {"balanced_accuracy": 0.8, "chance": 0.5, "auc": 0.85, "f1_macro": 0.78}
    results = {"probes": {"e": {"age": reg, "sex": cls, "site": cls, "dx": {"auc_macro": 0.7}}},
               "site": {"e": {"prediction": cls, "leave_site_out": lso,
                              "harmonisation": {"combat": {"age": reg, "sex": cls}}}},
               "openbhb": {"e": {"challenge_metric": 6.0, "mae_age": 4.0, "rmse_age": 5.0, "bacc_site": 0.5,
                                 "ext_mae_age": 7.0, "site_chance": 0.5, "mean_predictor_mae_int": 9.0}},
               "fewshot": {"e": {"age": {"metric": "mae", "summary": [{"fraction": 0.5, "n_subjects": 4, "mean": 6.0,
                                                                        "std": 0.5}]}}},
               "finetune": {"e": {"age": reg, "sex": cls}}, "baselines": {"mean_predictor_mae": 12.0}}
    entries = summary_entries(results, full=True)
    assert len(entries) == 36
    for e in entries:
        arrow = "↓" if "↓" in e["metric"] else "↑" if "↑" in e["metric"] else ""
        assert e["better"] == {"↓": "lower", "↑": "higher", "": ""}[arrow], e["metric"]


def test_legend_knn_setting_and_unseen_feature_footnote():
    """The heading names the intervals when any row has one (here the second); a kNN probe's k is in the settings
    table like α and C; the leave-site-out footnote gives docs/evaluation.md's ≥ 10× spread for unseen features."""
    rows = summary_rows({"probes": {"e": {"age": {"mae": 5.0, "r2": 0.5, "r2_ci": [0.4, 0.6]}}}})
    assert _legend(rows) == "; […]: 95 % bootstrap CI over test subjects"
    table = _probe_settings_table({"probes": {"e": {"age": {"mae": 5.0, "k": 5, "selection": "5-fold CV on train"}}}})
    assert "| e | age | k = 5 | 5-fold CV on train |" in table
    lso = {"age": {"per_site": {"Guys": {"mae": 6.5, "n_test": 10, "n_train": 40}}}}
    text = "\n".join(_site_tables({"site": {"e": {"leave_site_out": lso}}}))
    assert "features whose spread on the held-out site is ≥ 10× their spread on the training sites" in text
