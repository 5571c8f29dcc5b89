"""The numbers of the brain-age and multi-site tables and of ``--merge`` (``benchmarks/brain_age_report.py``,
``brain_age_rows.py``, ``multisite_rows.py``, ``multisite_report.py``, ``seed_runs.py``), against naive formulas."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from benchmark_module import load_benchmark

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _naive(values):
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def test_brain_age_summary_and_table_are_mean_and_sample_sd_in_years():
    report = load_benchmark("brain_age_report")
    maes = {"mean": [12.0, 12.5, 13.25], "simclr_probe": [6.0, 7.0, 9.0]}
    per_seed = [{"seed": s, "mae": {k: v[i] for k, v in maes.items()}} for i, s in enumerate((0, 1, 2))]
    summary = report.summarise(per_seed)
    for key, vals in maes.items():
        mean, sd = _naive(vals)
        assert summary[key]["mae_mean"] == pytest.approx(mean) and summary[key]["mae_sd"] == pytest.approx(sd)
    mean, sd = _naive(maes["simclr_probe"])
    table = report.format_table(summary, 3, folds=10).splitlines()
    assert table[0] == "| method (IXI T1, 3 seed(s), 10-fold CV MAE in years) | MAE | per seed |"
    assert f"| SimCLR + Ridge probe | {mean:.2f} ± {sd:.2f} | 6.00 / 7.00 / 9.00 |" in table
    assert report.summarise([{"seed": 0, "mae": {"mean": 7.12345}}])["mean"]["mae_per_seed"] == [7.123]
    one = report.summarise([{"seed": 0, "mae": {"simclr_probe": 6.5}}])
    assert math.isnan(one["simclr_probe"]["mae_sd"])  # one seed: no spread, never a fake 0
    assert "| SimCLR + Ridge probe | 6.50 | 6.50 |" in report.format_table(one, 1)  # no ± nan


def _row(*maes):
    return {"mae_mean": sum(maes) / len(maes), "mae_per_seed": list(maes)}


def test_verdict_reads_the_targets_off_the_right_rows():
    """Targets of issue #9 (docs/benchmarks_brain_age.md: probe ≤ 5.0 y, fine-tuned SSL ≤ 4.5 y); the best probe
    and fine-tuned model are the lowest MAEs of their kind (never a baseline such as the CNN from scratch); MAE's
    probe is compared with the random-init ViT; a tie on a seed is not a win."""
    verdict = load_benchmark("brain_age_report").verdict
    summary = {"random_cnn_probe": _row(8.0, 8.0), "random_vit_probe": _row(4.0, 4.0), "scratch_ft": _row(3.0, 3.0),
               "simclr_probe": _row(5.0, 5.0), "mae_probe": _row(6.0, 6.0), "yaware_probe": _row(7.0, 7.0),
               "simclr_ft": _row(4.5, 4.5), "genesis_ft": _row(4.4, 4.6), "mae_ft": _row(9.0, 9.0)}
    v = verdict(summary)
    assert v["best SSL probe <= 5.0 y"] == "simclr_probe 5.00: True"  # the target itself counts
    assert v["best fine-tuned SSL <= 4.5 y"] in ("genesis_ft 4.50: True", "simclr_ft 4.50: True")
    beats = v["every SSL probe beats its random-init encoder"]
    assert "mae_probe 6.00 vs 4.00 (lower on 0/2 seeds)" in beats and "yaware_probe 7.00 vs 8.00 (lower on 2/2" in beats
    assert beats.endswith(": False")
    summary["genesis_ft"] = _row(4.0, 4.2)
    assert verdict(summary)["best fine-tuned SSL <= 4.5 y"] == "genesis_ft 4.10: True"
    tie = {"random_cnn_probe": _row(8.0, 8.0), "simclr_probe": _row(8.0, 7.0)}
    assert verdict(tie)["every SSL probe beats its random-init encoder"].endswith("(lower on 1/2 seeds): False")


def test_rows_have_distinct_labels_and_the_kind_their_key_says():
    """Each row's label names its own evaluation (probe / fine-tuning) and no two rows share a label; the rows of
    the published brain-age JSONs start with the same label in docs/benchmarks_brain_age.md (which may add details,
    e.g. "(12 mm)", or bold the best row)."""
    rows = load_benchmark("brain_age_rows")
    labels = [label for _, label, _ in rows.ROWS]
    assert len(set(labels)) == len(labels)
    for key, label, kind in rows.ROWS:
        if key in ("mean", "voxels", "scratch_ft") or key.startswith("random_"):
            assert kind == "baseline", key
        elif key.endswith("_ft"):
            assert kind == "finetune" and label.endswith("+ fine-tuning"), key
        else:
            assert key.endswith("_probe") and label.endswith("+ Ridge probe"), key
            assert kind == ("probe" if key.rsplit("_", 1)[0] in rows.LABEL_FREE + ("yaware",) else "peer"), key
    doc = (DOCS / "benchmarks_brain_age.md").read_text()
    published = {k for p in DOCS.glob("results/brain_age_ixi*.json") for k in json.loads(p.read_text())["summary"]}
    named = lambda label: any(f"| {b}{name}" in doc for b in ("", "**") for name in (label, label.replace("ViT", "ViT-Tiny")))
    assert published and all(named(label) for key, label, _ in rows.ROWS if key in published)


def test_kit_scores_keep_internal_and_external_apart_and_state_the_signed_bias():
    rows = load_benchmark("multisite_rows")
    pred, age = np.array([30.0, 52.0, 41.0, 70.0]), np.array([25.0, 50.0, 45.0, 60.0])
    o = {"pred_ext": pred, "age_ext": age, "mae_age": 4.0, "ext_mae_age": 6.0, "bacc_site": 0.4, "challenge_metric": 4.6,
         "n_train": 30, "n_internal": 10, "n_external": 4, "selected_age_alpha": 100.0, "selected_site_C": 0.01}
    s = rows.kit_scores(o)
    err = [abs(p - a) for p, a in zip(pred, age)]
    assert s["mae_ext_se"] == pytest.approx(_naive(err)[1] / 2.0)  # sample SD of |error| / √n
    assert s["ext_bias"] == pytest.approx((5 + 2 - 4 + 10) / 4)  # prediction − age: positive = too old
    assert (s["mae_int"], s["mae_ext"], s["age_alpha"], s["site_C"]) == (4.0, 6.0, 100.0, 0.01)
    age_all = np.array([20.0, 40.0, 60.0, 30.0, 90.0])
    masks = {"train": np.array([1, 1, 1, 0, 0], bool), "internal": np.array([0, 0, 0, 1, 0], bool),
             "external": np.array([0, 0, 0, 0, 1], bool)}
    m = rows.mean_predictor_row(3, age_all, masks)  # the training mean, 40 years
    assert (m["mae_int"], m["mae_ext"], m["seed"]) == (10.0, 50.0, 3)
    assert load_benchmark("multisite_report")._is_baseline(m["label"])  # drawn in the baselines' grey


def test_multisite_summary_orders_seeds_and_labels_and_prints_mean_and_sd(capsys):
    report = load_benchmark("multisite_report")
    rows = [{"label": "simclr", "seed": s, "mae_int": v} for s, v in ((2, 9.0), (0, 5.0), (1, 7.5))]
    rows.insert(1, {"label": "random init (same encoder)", "seed": 0, "mae_int": 11.0})
    first, second = report.summarise(rows)
    assert first["label"] == "simclr" and second["label"] == "random init (same encoder)"  # first-seen order
    assert first["seeds"] == [0, 1, 2] and first["mae_int"]["per_seed"] == [5.0, 7.5, 9.0] and first["n"] == 3
    report.print_table("t", [first], chance=0.25)
    mean, sd = _naive([5.0, 7.5, 9.0])
    out = capsys.readouterr().out
    assert f"{mean:7.3f} ± {sd:5.3f}" in out and "(site BAcc chance = 0.25; n = 3 seeds)" in out


@dataclass(frozen=True)
class _Toy:
    crop: tuple = (64, 64)
    fractions: tuple = (0.1, 1.0)


def test_set_parses_a_tuple_with_its_element_type():
    b = load_benchmark("seed_runs").apply_set(_Toy(), ["crop=48,40", "fractions=0.5,1"])
    assert b.crop == (48, 40) and all(type(c) is int for c in b.crop) and b.fractions == (0.5, 1.0)


def test_merged_runs_key_wall_times_by_each_seeds_own_number():
    sr = load_benchmark("seed_runs")
    results = [{"wall_seconds": 10.26, "per_seed": [{"seed": 8, "seconds": 10.0}]},
               {"wall_seconds": 20.13, "per_seed": [{"seed": 3, "seconds": 19.5}]}]
    per_seed = sorted((s for r in results for s in r["per_seed"]), key=lambda s: s["seed"])
    walls = sr.merged_runs(["a.json", "b.json"], results, per_seed, "seconds")
    assert walls["wall_seconds_per_seed"] == {"3": 19.5, "8": 10.0}
    assert walls["wall_seconds"] == 20.13 and walls["wall_seconds_sum"] == 30.4  # to 0.1 s


def test_figure_scatters_the_best_fine_tuned_model_with_its_own_mae(monkeypatch):
    report = load_benchmark("brain_age_report")
    drawn = []
    monkeypatch.setattr(report, "save_figure", lambda fig, path: drawn.append(fig))
    age = [30.0, 40.0, 50.0, 60.0]
    pred = {"random_cnn_probe": [45.0] * 4, "simclr_probe": [35.0, 40.0, 45.0, 50.0], "scratch_ft": age,
            "simclr_ft": [33.0, 41.0, 50.0, 58.0], "genesis_ft": [40.0, 40.0, 40.0, 40.0]}
    per_seed = [{"seed": 5, "age": age, "pred": pred, "mae": {k: float(np.mean(np.abs(np.subtract(v, age))))
                                                              for k, v in pred.items()}}]
    report.plot({"summary": report.summarise(per_seed), "per_seed": per_seed, "budget": {"folds": 5}}, "unused.png")
    labels = [t.get_text() for t in drawn[0].axes[1].get_legend().get_texts()]
    assert labels[0] == "simclr_ft (seed 5), MAE 1.50"  # the lowest fine-tuned SSL MAE; never scratch_ft (0.00)


def test_study_variants_default_to_all_and_refuse_unknown_names():
    rows = load_benchmark("multisite_rows")
    study = load_benchmark("demo_sweep").STUDY
    assert rows.study_variants(None) == study and rows.study_variants([]) == study
    name = next(iter(study))
    assert rows.study_variants([name]) == {name: study[name]}
    with pytest.raises(SystemExit, match="unknown \\['nope'\\]"):
        rows.study_variants([name, "nope"])
    assert rows.split_overrides(" a=1 ; ;b=2;") == ["a=1", "b=2"]


def test_verdict_compares_genesis_with_the_random_cnn_and_leaves_peers_out():
    """Models Genesis trains the ResNet-18, so its probe is compared with the random-init CNN (not the ViT); peer
    recipes are not medssl's SSL probes, so they are neither "the best SSL probe" nor given a random-init rival."""
    verdict = load_benchmark("brain_age_report").verdict
    summary = {"random_cnn_probe": _row(8.0, 8.0), "random_vit_probe": _row(4.0, 4.0), "genesis_probe": _row(6.0, 6.0),
               "nidl_probe": _row(1.0, 1.0)}
    v = verdict(summary)
    assert v["every SSL probe beats its random-init encoder"] == "genesis_probe 6.00 vs 8.00 (lower on 2/2 seeds): True"
    assert v["best SSL probe <= 5.0 y"] == "genesis_probe 6.00: False"


def test_table_rows_keep_the_documented_order_and_the_figure_shows_the_first_seed(monkeypatch):
    """brain_age_rows.py: baselines, then probes, then fine-tuned rows, whatever order the summary has; the scatter
    is the first seed's, of the best probe when nothing was fine-tuned (brain_age_report.plot's docstring)."""
    report = load_benchmark("brain_age_report")
    age = [30.0, 40.0, 50.0, 60.0]
    preds = {"simclr_probe": [32.0, 41.0, 50.0, 60.0], "random_cnn_probe": [45.0] * 4, "mean": [45.0] * 4,
             "voxels": [44.0] * 4}
    per_seed = [{"seed": s, "age": age, "pred": {k: list(np.add(v, s)) for k, v in preds.items()},
                 "mae": {k: float(np.mean(np.abs(np.add(v, s) - np.array(age)))) for k, v in preds.items()}}
                for s in (7, 2)]
    summary = report.summarise(per_seed)
    labels = [line.split(" | ")[0][2:] for line in report.format_table(summary, 2).splitlines()[2:]]
    assert labels == ["training-fold mean age", "Ridge on downsampled raw voxels", "random-init ResNet-18 + Ridge probe", "SimCLR + Ridge probe"]
    drawn = []
    monkeypatch.setattr(report, "save_figure", lambda fig, path: drawn.append(fig))
    report.plot({"summary": summary, "per_seed": per_seed, "budget": {"folds": 5}}, "unused.png")
    assert drawn[0].axes[1].get_legend().get_texts()[0].get_text() == "simclr_probe (seed 7), MAE 7.75"
