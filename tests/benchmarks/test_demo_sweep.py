"""``benchmarks/demo_sweep.py``: mean ± SD of the sweep's runs (the loss study of docs/benchmarks.md)."""

from __future__ import annotations

import math
import sys

import pytest
from benchmark_module import BENCHMARKS, load_benchmark


def _sweep():
    if str(BENCHMARKS) not in sys.path:  # demo_sweep imports seed_runs from its own folder
        sys.path.insert(0, str(BENCHMARKS))
    return load_benchmark("demo_sweep")


def _row(label: str, mae: float) -> dict:
    return {"label": label, "age_mae": mae, "site_bacc": 0.5, "random_age_mae": 9.0, "random_site_bacc": 0.9}


def test_summary_is_the_sample_sd_over_runs_and_none_for_one_run(tmp_path):
    """Three runs: mean and SD (ddof=1) written naively here; one run: no SD, never a fake ± 0."""
    sweep = _sweep()
    vals = [5.0, 6.0, 10.0]
    a, b = sweep.summarise([_row("a", v) for v in vals] + [_row("b", 7.0)])
    mean = sum(vals) / 3
    assert a["n"] == 3 and a["age_mae"][0] == pytest.approx(mean)
    assert a["age_mae"][1] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in vals) / 2))
    assert b["n"] == 1 and b["age_mae"] == (7.0, None) and b["site_bacc"] == (0.5, None)
    assert sweep._mean_sd(b["age_mae"], 8, 2) == "    7.00" and sweep._mean_sd(a["site_bacc"], 9, 3) == "    0.500 ± 0.000"
    sweep.plot([b], tmp_path / "one_run.png")  # a missing SD draws no error bar
    assert (tmp_path / "one_run.png").stat().st_size > 5_000


def test_quick_run_trains_each_variant_and_probes_it_next_to_the_same_random_encoder(tmp_path):
    """--quick: a 30-subject cohort, one run per variant with the quick budget; the probes' numbers are valid,
    the random-init baseline (same encoder, same seed) is the same for every variant; a kept cohort of another
    size is refused rather than reused."""
    import csv
    import json

    sweep = _sweep()
    variants = ["simclr=method.name=simclr;method.loss={temperature: 0.1}", "yaware=method.name=yaware"]
    res = sweep.main(["--quick", "--jobs", "1", "--out", str(tmp_path), *(f"--variant={v}" for v in variants)])
    with open(tmp_path / "cohort-seed1" / "participants.tsv", newline="") as f:
        subjects = list(csv.DictReader(f, delimiter="\t"))
    assert len(subjects) == 30 and {s["site"] for s in subjects} == {"site-A", "site-B", "site-C"}
    assert [(r["label"], r["seed"]) for r in res["rows"]] == [("simclr", 0), ("yaware", 0)]
    for r in res["rows"]:
        assert all(o in r["overrides"] for o in sweep.QUICK["overrides"]) and r["seconds"] > 0
        assert 0 < r["age_mae"] < 100 and 0 < r["random_age_mae"] < 100  # years
        assert 0 <= r["site_bacc"] <= 1 and 0 <= r["random_site_bacc"] <= 1
    first, second = res["rows"]
    assert second["random_age_mae"] == pytest.approx(first["random_age_mae"])
    assert second["random_site_bacc"] == pytest.approx(first["random_site_bacc"])
    assert [(s["label"], s["n"], s["age_mae"][1]) for s in res["summary"]] == [("simclr", 1, None), ("yaware", 1, None)]
    assert json.loads((tmp_path / "sweep.json").read_text()) == json.loads(json.dumps(res))
    assert res["seeds"] == [0] and res["wall_seconds"] > 0 and res["machine"]["medssl_commit"]
    assert res["command"].startswith("python benchmarks/demo_sweep.py --quick --jobs 1")
    assert (tmp_path / "sweep.png").stat().st_size > 5_000
    with pytest.raises(FileExistsError, match="different synthetic cohort"):
        sweep.main(["--out", str(tmp_path), "--subjects", "60", "--jobs", "1"])


def test_parse_variant_labels_only_a_plain_word_before_the_first_equals_sign():
    sweep = _sweep()
    assert sweep.parse_variant("simclr=method.name=simclr;train.epochs=2") == ("simclr", "method.name=simclr;train.epochs=2")
    assert sweep.parse_variant("method.name=simclr") == ("method.name=simclr", "method.name=simclr")
    assert sweep.parse_variant("seed=3") == ("seed=3", "seed=3")  # an override of the config's top-level seed
    assert sweep.parse_variant("output_dir=/x") == ("output_dir=/x", "output_dir=/x")
    assert sweep.parse_variant("") == ("demo.yaml", "")


def test_summary_keeps_first_seen_order_and_gives_an_sd_for_two_runs():
    sweep = _sweep()
    zb, za = sweep.summarise([_row("zb", 4.0), _row("za", 6.0), _row("zb", 6.0), _row("za", 6.0)])
    assert (zb["label"], za["label"]) == ("zb", "za") and zb["age_mae"] == pytest.approx((5.0, math.sqrt(2)))


def test_main_runs_every_variant_for_every_seed_on_a_three_site_cohort(tmp_path, monkeypatch):
    """The runs are faked: --study gives the five losses (plus --variant), each once per seed with that seed;
    no --variant runs demo.yaml as is; the cohort is 48³ with 3 sites; the plot's random-init bar is the first row's."""
    import medssl.data.synthetic as synthetic

    sweep, jobs, cohorts = _sweep(), [], []
    monkeypatch.setattr(synthetic, "write_synthetic_cohort", lambda *a, **k: cohorts.append((a, k)) or a[0].mkdir(parents=True))
    monkeypatch.setattr(sweep, "_run", lambda job: jobs.append(job) or {**_row(job[0], 5.0), "overrides": job[3]})
    res = sweep.main(["--study", "--seeds", "0", "2", "--jobs", "1", "--out", str(tmp_path), "--variant", "x=a.b=1",
                      "--common", "train.device=cpu; train.epochs=3"])
    assert cohorts[0][1]["n_sites"] == 3 and cohorts[0][1]["shape"] == (48,) * 3 and cohorts[0][1]["n_subjects"] == 300
    assert [(j[0], j[3][-1]) for j in jobs] == [(k, f"seed={s}") for k in [*sweep.STUDY, "x"] for s in (0, 2)]
    assert jobs[-1][3] == ["train.device=cpu", "train.epochs=3", "a.b=1", "seed=2"]
    assert [s["n"] for s in res["summary"]] == [2] * 6
    jobs.clear()
    sweep.main(["--jobs", "1", "--out", str(tmp_path / "plain")])
    assert [(j[0], j[3]) for j in jobs] == [("demo.yaml", ["seed=0"])]


def test_published_loss_study_was_run_with_the_study_variants_and_its_table_is_the_mean_and_sample_sd():
    """docs/results/loss_study.json: each row's overrides are its STUDY spec; the docs table (written naively)."""
    import json

    sweep = _sweep()
    docs = BENCHMARKS.parent / "docs"
    rows = json.loads((docs / "results" / "loss_study.json").read_text())["rows"]
    for r in rows:
        spec = [o.strip() for o in sweep.STUDY[r["label"]].split(";")]
        assert r["overrides"][-len(spec) - 1:] == [*spec, f"seed={r['seed']}"]
    table = (docs / "benchmarks.md").read_text()
    for label, name in (("SimCLR", "SimCLR"), ("L^thr", "L^thr"), ("y-aware", "y-aware (RBF on age)")):
        v = [r["age_mae"] for r in rows if r["label"] == label]
        b = [r["site_bacc"] for r in rows if r["label"] == label]
        sd = lambda x: math.sqrt(sum((t - sum(x) / len(x)) ** 2 for t in x) / (len(x) - 1))  # noqa: E731
        assert (f"| {name} | {sum(v) / 3:.2f} ± {sd(v):.2f} | {sum(b) / 3:.3f} ± {sd(b):.3f} |") in table


def test_run_reads_each_probe_from_its_own_row_and_starts_a_kept_run_again(tmp_path, monkeypatch):
    """pretrain/evaluate faked: the four numbers come from pretrained/random-init × age/site; an old run is removed."""
    import medssl.api as api

    sweep, seen = _sweep(), []
    probes = {"pretrained": {"age": {"mae": 1.0}, "site": {"balanced_accuracy": 0.2}},
              "random init": {"age": {"mae": 3.0}, "site": {"balanced_accuracy": 0.4}}}
    monkeypatch.setattr(api, "pretrain", lambda cfg, progress: seen.append(sorted(p.name for p in tmp_path.iterdir())))
    monkeypatch.setattr(api, "evaluate", lambda run, progress: {"probes": probes})
    out = tmp_path / "run0"
    out.mkdir()
    (out / "config.yaml").write_text("old run\n")
    r = sweep._run(("lbl", str(tmp_path / "cohort"), str(out), ["seed=4"]))
    assert seen == [[]] and (r["label"], r["seed"], r["overrides"]) == ("lbl", 4, ["seed=4"])
    assert (r["age_mae"], r["site_bacc"], r["random_age_mae"], r["random_site_bacc"]) == (1.0, 0.2, 3.0, 0.4)


def test_plot_draws_the_first_rows_random_init_bar(tmp_path, monkeypatch):
    """The random-init bar is the first variant's (the printed table's row), with its sd as the error bar."""
    sweep, bars = _sweep(), []

    class Ax:
        def barh(self, labels, means, xerr, color):
            bars.append((list(labels), list(means), list(xerr)))

        def __getattr__(self, name):
            return lambda *a, **k: None

    monkeypatch.setattr(sweep, "pyplot", lambda: type("P", (), {"subplots": staticmethod(lambda *a, **k: (None, [Ax(), Ax()]))}))
    monkeypatch.setattr(sweep, "save_figure", lambda fig, path: None)
    rows = [_row("a", 5.0), {**_row("a", 7.0), "random_age_mae": 11.0}, {**_row("b", 6.0), "random_age_mae": 20.0}]
    sweep.plot(sweep.summarise(rows), tmp_path / "x.png")
    assert bars[0] == (["a", "b", "random init"], [6.0, 6.0, 10.0], [pytest.approx(math.sqrt(2)), 0.0, pytest.approx(math.sqrt(2))])
