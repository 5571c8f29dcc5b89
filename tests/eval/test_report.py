"""Report and compare: JSON-safe metrics, table rows with intervals, runs side by side."""

import json

import numpy as np
import pytest

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
    with pytest.raises(FileNotFoundError, match=r"runs_typo does not exist; give a run directory"):
        collect([tmp_path / "simclr", tmp_path / "runs_typo"])
    with pytest.raises(FileNotFoundError, match=r"no metrics.json .* run `medssl evaluate"):
        collect([tmp_path])  # exists, but was never evaluated


def test_compare_refuses_a_file_that_is_not_an_evaluations_metrics_json(tmp_path, capsys):
    """`medssl compare RUN/config.yaml` (or a metrics.json cut short) was a JSONDecodeError traceback, and
    `compare RUN/train_summary.json` printed an empty table with exit status 0."""
    from medssl.cli import main

    (tmp_path / "ok").mkdir()
    write_report(tmp_path / "ok", _results(5.0))
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    (tmp_path / "train_summary.json").write_text(json.dumps({"steps": 10, "final_loss": 1.2}))
    torn = tmp_path / "torn" / "metrics.json"
    torn.parent.mkdir()
    torn.write_text((tmp_path / "ok" / "metrics.json").read_text()[:40])
    for bad, why in (("config.yaml", "not valid JSON"), ("train_summary.json", "holds no evaluation results"),
                     ("torn", "not valid JSON")):
        assert main(["compare", str(tmp_path / "ok"), str(tmp_path / bad), "--plot", str(tmp_path / "c.png")]) == 2
        err = capsys.readouterr().err
        assert why in err and str(tmp_path / bad) in err and "medssl evaluate" in err and "Traceback" not in err
    assert not (tmp_path / "c.png").exists()


def test_embedding_map_with_fewer_scans_than_pca_components():
    """t-SNE pre-reduction must not ask PCA for more components than there are scans."""
    import numpy as np

    from medssl.eval.embedding_map import embed_2d

    xy = embed_2d(np.random.default_rng(0).normal(size=(30, 64)), method="tsne")
    assert xy.shape == (30, 2) and np.isfinite(xy).all()


def test_openbhb_report_has_its_own_baselines_and_intervals_only_when_asked(tmp_path):
    from medssl.eval.driver import EvalOptions, run_protocol

    rng = np.random.default_rng(0)
    n = 90
    site, age = np.repeat([0, 1, 2], 30), rng.uniform(20, 80, n)
    feats = {"features": rng.normal(size=(n, 6)).astype(np.float32), "age": age, "site": site,
             "subject": np.array([f"s{i}" for i in range(n)])}
    train = np.arange(n) % 3 != 0
    res = run_protocol(EvalOptions(protocol="openbhb", n_boot=0, map_method="none"), {"pretrained": feats}, train,
                       {"site": ["A", "B", "C"]}, 0, ["age", "site"])
    o = res["openbhb"]["pretrained"]
    fit = train & (site != 2)  # naive: the internal sites' training ages, scored on each test set
    assert o["mean_predictor_mae_int"] == np.abs(age[~train & (site != 2)] - age[fit].mean()).mean()
    assert o["mean_predictor_mae_ext"] == np.abs(age[site == 2] - age[fit].mean()).mean()
    assert "baselines" not in res  # the default split's baseline scored other subjects
    res["info"] = {}
    write_report(tmp_path, res)
    report = (tmp_path / "report.md").read_text()
    assert "## Metrics (held-out subjects)\n" in report and "bootstrap" not in report
    assert f"| predict train mean | external age MAE (years) ↓ | {o['mean_predictor_mae_ext']:.2f} |" in report
    n_int, n_ext = int((~train & (site != 2)).sum()), int((site == 2).sum())
    assert (f"| pretrained | {int(fit.sum())} | {n_int} | {n_ext} | C | {o['selected_age_alpha']:g} | "
            f"{o['selected_site_C']:g} |") in report
    with_ci = run_protocol(EvalOptions(protocol="openbhb", n_boot=200, map_method="none"), {"pretrained": feats}, train,
                           {"site": ["A", "B", "C"]}, 0, ["age", "site"])
    o = with_ci["openbhb"]["pretrained"]
    with_ci["info"] = {}
    write_report(tmp_path, with_ci)
    report = (tmp_path / "report.md").read_text()
    assert "## Metrics (held-out subjects; […]: 95 % bootstrap CI over test subjects)" in report
    lo, hi = o["challenge_metric_ci"]
    assert f"| pretrained | OpenBHB L_c = MAE_ext·BAcc^0.3 ↓ | {o['challenge_metric']:.3f} [{lo:.3f}, {hi:.3f}] |" in report


def test_the_legend_names_intervals_and_seed_sd_only_where_they_occur(tmp_path):
    r = _results(5.0)
    r["fewshot"] = {"pretrained": {"age": {"metric": "mae", "summary": [{"fraction": 0.1, "n_subjects": 4, "mean": 9.0,
                                                                          "std": 0.0}]}}}
    write_report(tmp_path, r)
    report = (tmp_path / "report.md").read_text()
    assert ("## Metrics (held-out subjects; […]: 95 % bootstrap CI over test subjects; ±: SD over subsampling seeds)"
            in report)
    assert "| pretrained | age MAE (years) ↓ @ 10% labels (4 subj.) | 9.000 ± 0.000 |" in report  # SD 0 is shown


def test_each_note_is_stated_once():
    from medssl.eval.driver import NOTES, EvalOptions, run_protocol

    rng = np.random.default_rng(1)
    feats = {"features": rng.normal(size=(40, 4)).astype(np.float32), "age": rng.uniform(20, 80, 40),
             "subject": np.array([f"s{i}" for i in range(40)])}
    res = run_protocol(EvalOptions(protocol="knn", n_boot=0, map_method="none"), {"e": feats}, np.arange(40) % 4 != 0,
                       {}, 0, ["age"])
    assert res["notes"].count(NOTES["knn"]) == 1 and len(res["notes"]) == len(set(res["notes"]))


def test_compare_plot_draws_every_shared_metric_on_a_readable_grid(tmp_path):
    import matplotlib.image

    from medssl.eval.compare import _error_bar, plot_compare

    for name, mae in (("simclr", 5.0), ("yaware", 3.5)):
        r = _results(mae)
        r["fewshot"] = {"pretrained": {"age": {"metric": "mae", "summary": [
            {"fraction": f / 20, "n_subjects": f, "mean": mae + f, "std": 0.5} for f in range(1, 15)]}}}
        (tmp_path / name).mkdir()
        write_report(tmp_path / name, r)
    columns, table = collect([tmp_path / "simclr", tmp_path / "yaware"])
    n_shared = sum(1 for per in table.values() if len(per) >= 2)
    assert n_shared > 14  # more than the 12 panels the plot used to keep
    path = plot_compare([tmp_path / "simclr", tmp_path / "yaware"], tmp_path / "cmp.png")
    height, width = matplotlib.image.imread(path).shape[:2]
    rows = -(-n_shared // 4)
    assert width <= 4 * (1.2 + 0.32 * 2) * 100 + 1 and height == rows * 360 + 30  # 4 a row, 3.6 in a row, legend 0.3 in
    assert _error_bar({"ci": [4.0, 6.0]}, 5.0) == [1.0, 1.0] and _error_bar({"std": 0.5}, 9.0) == [0.5, 0.5]
    assert _error_bar({"ci": None}, 1.0) == [0.0, 0.0]
    # a --plot path without a suffix: matplotlib writes NAME.png, and the path returned (printed) is that file
    bare = plot_compare([tmp_path / "simclr", tmp_path / "yaware"], tmp_path / "figure")
    assert bare == tmp_path / "figure.png" and bare.is_file() and not (tmp_path / "figure").exists()


def test_finetune_report_states_its_settings_and_flags_a_collapsed_age_model(tmp_path):
    settings = {"mode": "full", "lr_encoder": 1e-4, "lr_head": 1e-3, "batch_size": 16, "best_epoch": 2, "epochs_run": 2,
                "epochs": 30}
    age = np.array([20.0, 40.0, 60.0, 80.0])
    r = {"protocol": "finetune", "info": {}, "test_age": age,
         "finetune": {"pretrained": {"age": {"mae": 20.0, "r2": -0.1, "rmse": 22.0, "pearson_r": 0.1, "pred": np.full(4, 53.0) + [0, 0.1, 0, 0.1],
                                              "finetune": settings, "n_fit": 34, "n_val": 8}},
                      "random init": {"age": {"mae": 9.0, "r2": 0.5, "rmse": 10.0, "pearson_r": 0.8, "pred": age + 5, "finetune": settings, "n_fit": 34, "n_val": 8}}}}
    write_report(tmp_path, r)
    report = (tmp_path / "report.md").read_text()
    assert "| pretrained | age | full | 0.0001 / 0.001 | 16 | 2 of 2 (max 30) | 34 / 8 |" in report
    assert "**pretrained, age: the fine-tuned model predicts nearly one value** (prediction SD 0.05 y" in report
    assert "random init, age: the fine-tuned" not in report


def test_finetune_report_flags_a_classifier_that_predicts_one_class():
    """Two epochs of fine-tuning on PNGs gave balanced accuracy exactly 0.500 (every scan in one class), with no
    word in the report; the age models had such a warning, the classifiers did not."""
    from medssl.eval.report import _finetune_tables

    settings = {"mode": "full", "best_epoch": 2, "epochs_run": 2, "epochs": 2}
    one = {"balanced_accuracy": 0.5, "chance": 0.5, "pred": np.zeros(6, int), "finetune": settings}
    two = {"balanced_accuracy": 0.7, "chance": 0.5, "pred": np.array([0, 1, 0, 0, 1, 1]), "finetune": settings}
    text = "\n".join(_finetune_tables({"finetune": {"pretrained": {"label": one}, "random init": {"label": two}}}))
    assert "**pretrained, label: the fine-tuned model predicts one class for every test scan** (class 0)" in text
    assert "random init, label: the fine-tuned" not in text
    named = {"vocab": {"label": ["normal", "pneumonia"]}, "finetune": {"pretrained": {"label": one}}}
    assert "every test scan** ('normal')" in "\n".join(_finetune_tables(named))  # the class's name when known


def test_few_label_balanced_accuracy_states_its_chance_level():
    from medssl.eval.driver import EvalOptions, run_protocol

    rng = np.random.default_rng(2)
    n = 60
    feats = {"features": rng.normal(size=(n, 4)).astype(np.float32), "label": np.arange(n) % 3,
             "subject": np.array([f"s{i}" for i in range(n)])}
    res = run_protocol(EvalOptions(protocol="fewshot", n_boot=0, map_method="none", seeds=(0,), fractions=(1.0,)),
                       {"e": feats}, np.arange(n) % 4 != 0, {}, 0, ["label"])
    assert res["fewshot"]["e"]["label"]["chance"] == 1 / 3
    assert any(e["metric"].startswith("label balanced acc. (chance 0.33) ↑ @ 100% labels")
               for e in summary_entries(res))


def test_report_lists_the_setting_each_probe_chose(tmp_path):
    r = _results(5.0)
    r["probes"]["pretrained"]["age"].update(alpha=10.0, selection="leave-one-subject-out CV on train")
    r["probes"]["pretrained"]["site"] = {"balanced_accuracy": 0.9, "chance": 0.5, "f1_macro": 0.9, "C": 0.01,
                                         "selection": "5-fold CV on train"}
    write_report(tmp_path, r)
    report = (tmp_path / "report.md").read_text()
    assert "| pretrained | age | α = 10 | leave-one-subject-out CV on train |" in report
    assert "| pretrained | site | C = 0.01 | 5-fold CV on train |" in report


def test_pca_map_axes_state_their_share_of_the_variance(tmp_path):
    """PC shares are the top eigenvalues of the correlation matrix over its trace (standardised
    embeddings); a rank-one embedding puts all of it on PC1. The report states them."""
    from medssl.eval.driver import EvalOptions, run_protocol
    from medssl.eval.embedding_map import axis_labels, pca_2d

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)) @ rng.normal(size=(5, 5))
    eig = np.sort(np.linalg.eigvalsh(np.corrcoef(x.T)))[::-1]
    xy, explained = pca_2d(x)
    assert xy.shape == (60, 2) and explained == pytest.approx(eig[:2] / eig.sum())
    assert pca_2d(np.outer(rng.normal(size=20), [1.0, -2.0, 3.0]))[1] == pytest.approx([1.0, 0.0], abs=1e-12)
    assert axis_labels("pca", [0.234, 0.1]) == ("PC1 (23 % of variance)", "PC2 (10 % of variance)")
    assert axis_labels("tsne") == ("t-SNE 1", "t-SNE 2")
    feats = {"features": x.astype(np.float32), "age": rng.uniform(20, 80, 60), "subject": np.arange(60).astype(str)}
    res = run_protocol(EvalOptions(protocol="default", n_boot=0, map_method="pca"), {"pretrained": feats},
                       np.arange(60) % 3 != 0, {}, 0, ["age"])
    res["info"] = {}
    write_report(tmp_path, res)
    share = res["maps"]["pretrained"]["explained"]
    assert (f"variance on PC1 / PC2: pretrained {100 * share[0]:.0f} % / {100 * share[1]:.0f} %."
            in (tmp_path / "report.md").read_text())


def test_a_metrics_log_torn_by_a_kill_still_gives_the_report_its_training_curve(tmp_path):
    """A pretraining killed during an append leaves half a JSON row at the end of metrics.jsonl
    (the trainer drops it on resume); evaluating that run's last checkpoint must not crash on it."""
    rows = [json.dumps({"step": s, "loss": 5.0 - s}) for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(rows) + '\n{"step": 4, "lo')
    r = _results(5.0)
    r["info"]["run directory"] = str(tmp_path)
    write_report(tmp_path / "out", r)
    assert (tmp_path / "out" / "training_curve.png").is_file()
    assert "![curves](training_curve.png)" in (tmp_path / "out" / "report.md").read_text()


def test_skipped_files_are_counted_in_the_report_never_named(tmp_path):
    """File names of a data set carry subject identifiers (IXI002-Guys-0828, sub-0001): the shareable
    report and metrics.json give the count; the list stays in skipped_files.json beside the manifest."""
    r = _results(5.0)
    r["skipped_files"] = [{"path": "/data/ixi/IXI002-Guys-0828-T1.nii.gz", "reason": "truncated gzip stream",
                           "key": "IXI002-Guys-0828-T1"},
                          {"path": "/data/ixi/IXI012-HH-1211-T1.nii.gz", "reason": "file does not exist"}]
    write_report(tmp_path, r)
    report, metrics = (tmp_path / "report.md").read_text(), (tmp_path / "metrics.json").read_text()
    for text in (report, metrics):
        assert "IXI002" not in text and "IXI012" not in text
    assert "2 file(s) were skipped" in report and json.loads(metrics)["n_skipped_files"] == 2


def test_report_gives_the_corrected_brain_age_gap_sd_and_its_correlation_with_age(tmp_path):
    """docs/evaluation.md: 'the report gives the SD of the corrected gap and its correlation with age'."""
    from medssl.eval.metrics import brain_age_gap, pearson_r

    rng = np.random.default_rng(0)
    age = rng.uniform(20, 80, 50)
    pred = 50 + 0.6 * (age - 50) + rng.normal(0, 3, 50)  # regression to the mean: gap falls with age
    gap = brain_age_gap(age, pred, (0.6, 20.0))
    r = _results(5.0)
    r["probes"]["pretrained"]["age"]["brain_age_gap"] = gap
    write_report(tmp_path, r)
    report = (tmp_path / "report.md").read_text()
    corrected = pred - (0.6 * age + 20.0)
    assert f"| pretrained | age gap SD, bias-corrected (years; not an accuracy metric) | {corrected.std():.3f} |" in report
    assert f"| pretrained | age gap–age correlation, bias-corrected (0 = unbiased) | {pearson_r(age, corrected):.3f} |" in report


def test_compare_says_when_no_plot_is_drawn(tmp_path, capsys):
    """`medssl compare MAE_RUN GEN_RUN --plot cmp.png` of a fewshot and a finetune evaluation (no metric in
    common) exited 0 without writing cmp.png or saying so: an earlier cmp.png was left to be read as this one."""
    from medssl.cli import main

    (tmp_path / "probe").mkdir()
    write_report(tmp_path / "probe", _results(5.0))
    few = {"protocol": "fewshot", "info": {}, "vocab": {}, "fewshot": {"pretrained": {"age": {"metric": "mae", "summary": [
        {"fraction": 0.1, "n_subjects": 3, "mean": 6.0, "std": 0.5}]}}}}
    (tmp_path / "few").mkdir()
    write_report(tmp_path / "few", few)
    plot = tmp_path / "cmp.png"
    assert main(["compare", str(tmp_path / "probe"), str(tmp_path / "few"), "--plot", str(plot)]) == 0
    out, err = capsys.readouterr()
    assert "age MAE" in out and not plot.exists()
    assert f"no plot written to {plot}" in err and "same protocol" in err


def test_corrected_gap_sd_is_not_ranked_as_lower_is_better():
    """docs/evaluation.md: the corrected gap uses the true age, 'so it is not an accuracy metric'. The report
    marked its SD '↓' (better: lower), and on a 2-epoch IXI run the random encoder, whose ridge probe predicts
    about the mean for everyone (MAE 13.2 y, R² < 0), had the 'best' value (1.37 y against 3.31 y): a probe
    that predicts a constant has a corrected gap of SD 0."""
    from medssl.eval.metrics import brain_age_gap

    rng = np.random.default_rng(0)
    age = rng.uniform(20, 80, 50)
    collapsed = np.full(50, 50.0) + rng.normal(0, 0.1, 50)  # the training mean for everyone
    gap = brain_age_gap(age, collapsed, (0.0, 50.0))  # the fit of pred ≈ α·age + β on such predictions
    assert gap["corrected_gap_std"] < 0.2  # 'best' by far, from a probe that learned nothing
    r = _results(13.0)
    r["probes"]["pretrained"]["age"]["brain_age_gap"] = gap
    row = next(e for e in summary_entries(r, full=True) if "gap SD" in e["metric"])
    assert row["better"] == "" and "↓" not in row["metric"] and "not an accuracy metric" in row["metric"]


@pytest.mark.parametrize("word", ["metrics", "report"])
def test_a_write_that_fails_midway_keeps_the_earlier_metrics_and_report_whole(tmp_path, disk_full_on, word):
    """metrics.json and report.md were written in place: a full disk or a kill mid-write left half a file, which
    `medssl compare` then read (or failed on). Each now replaces the earlier file whole or not at all."""
    write_report(tmp_path, _results(5.0))
    before = {n: (tmp_path / n).read_text() for n in ("metrics.json", "report.md")}
    disk_full_on(word)
    with pytest.raises(OSError, match="No space left"):
        write_report(tmp_path, _results(7.0))
    name = "metrics.json" if word == "metrics" else "report.md"
    assert (tmp_path / name).read_text() == before[name]
    assert collect([tmp_path])  # compare still reads the folder
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temporary left behind


def test_figures_of_an_earlier_evaluation_that_this_one_does_not_draw_are_removed(tmp_path):
    """An evaluation into a folder that held another evaluation's figures (here: a site confusion matrix and a
    few-label curve) left them lying beside a report.md and metrics.json that no longer mention them. medssl's
    own figure names it does not draw now are removed; other files of the folder are left alone."""
    figures = {"embedding_map.png", "age_pred_vs_true.png", "site_confusion.png", "fewshot_curves.png",
               "training_curve.png"}
    r = _results(5.0)
    r["probes"]["pretrained"]["site"] = {"balanced_accuracy": 0.5, "chance": 0.5, "f1_macro": 0.5,
                                         "confusion": np.array([[2, 1], [1, 2]]), "classes": [0, 1]}
    write_report(tmp_path, r)
    assert (tmp_path / "site_confusion.png").is_file()
    (tmp_path / "fewshot_curves.png").write_bytes(b"an earlier evaluation's figure")
    (tmp_path / "my_notes.png").write_bytes(b"the user's own")
    write_report(tmp_path, _results(5.0))  # age only: no confusion matrix, no few-label curves
    report = (tmp_path / "report.md").read_text()
    drawn = {p.name for p in tmp_path.glob("*.png")} - {"my_notes.png"}
    assert drawn == {"age_pred_vs_true.png"} and "![age](age_pred_vs_true.png)" in report
    assert all(f"({name})" in report for name in drawn) and not any(f"({n})" in report for n in figures - drawn)
    assert (tmp_path / "my_notes.png").read_bytes() == b"the user's own"


def test_compare_keeps_openbhb_scores_of_different_external_sites_apart(tmp_path):
    """`evaluate A --protocol openbhb --external-sites site-C site-D` and `evaluate B --protocol openbhb` (external
    site-D): compare put both L_c and external MAEs in one row and one bar panel, as if scored on the same sites."""
    for name, external in (("a", ["C", "D"]), ("b", ["D"]), ("c", ["D"])):
        r = _results(5.0, with_openbhb=True)
        del r["probes"], r["baselines"]
        r["openbhb"]["pretrained"] |= {"ext_mae_age": 9.0, "challenge_metric": 8.0, "external_site_names": external}
        (tmp_path / name).mkdir()
        write_report(tmp_path / name, r)
    _, table = collect([tmp_path / n for n in ("a", "b", "c")])
    rows = {m: sorted(per) for m, per in table.items() if m.startswith("external age MAE")}
    assert rows == {"external age MAE (years) ↓ [external: C, D]": ["a"], "external age MAE (years) ↓ [external: D]": ["b", "c"]}


def test_probe_note_does_not_claim_leave_one_subject_out_when_subjects_have_several_scans():
    """Two radiographs per patient: the report's note said "α by leave-one-subject-out CV" while its settings
    table said "cross-validation on train (5 folds)" (and 4 folds for a label with 4 subjects in a class)."""
    from medssl.eval.driver import EvalOptions, run_protocol

    rng = np.random.default_rng(2)
    feats = {"features": rng.normal(size=(40, 4)).astype(np.float32), "age": rng.uniform(20, 80, 40),
             "subject": np.array([f"p{i // 2}" for i in range(40)])}
    res = run_protocol(EvalOptions(protocol="linear", n_boot=0, map_method="none"), {"e": feats},
                       np.arange(40) % 8 >= 2, {}, 0, ["age"])
    assert res["probes"]["e"]["age"]["selection"] == "cross-validation on train (5 folds)"
    note = next(n for n in res["notes"] if n.startswith("Probes:"))
    assert "subject-grouped 5-fold CV when subjects have several scans" in note
    assert "fewer when a class has fewer training subjects" in note
