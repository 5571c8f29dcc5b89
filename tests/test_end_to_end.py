"""End-to-end smoke runs of the demo and the CLI on a tiny synthetic cohort."""

import json
import subprocess
import sys

import pytest
import yaml

from medssl.demo import demo
from medssl.cli import main

SMALL = ("data.shape=[24,24,24]", "augment.crop_size=[20,20,20]", "train.epochs=2", "train.batch_size=8",
         "train.progress=false", "encoder.options.width=8")


@pytest.mark.slow
def test_demo_pipeline_runs_and_writes_run_directory(tmp_path, capsys):
    results = demo(tmp_path, SMALL, subjects=40)
    run = tmp_path / "run"
    for name in ("config.yaml", "manifest.tsv", "metrics.json", "metrics.jsonl", "report.md", "age_pred_vs_true.png",
                 "train_summary.json"):
        assert (run / name).is_file(), name
    assert list((run / "checkpoints").glob("step-*.pt"))
    metrics = json.loads((run / "metrics.json").read_text())
    for enc in ("pretrained", "random init"):
        assert metrics["probes"][enc]["age"]["mae"] > 0
        assert 0 <= metrics["probes"][enc]["site"]["balanced_accuracy"] <= 1
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 2
    out = capsys.readouterr().out
    assert "age MAE (years)" in out and "random init" in out
    assert results["info"]["sites"] == 3


def _commands(parser, prefix=()):
    """Every (sub)command of the parser, e.g. ("data", "check"), read from the parser itself."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _commands(sub, (*prefix, name))


def test_cli_help_for_every_subcommand():
    from medssl.cli import build_parser

    commands = list(_commands(build_parser()))
    assert {("demo",), ("synth",), ("pretrain",), ("evaluate",), ("compare",), ("export",), ("list",),
            ("data", "check"), ("data", "prepare")} <= set(commands)
    for sub in [(), *commands]:
        r = subprocess.run([sys.executable, "-m", "medssl.cli", *sub, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.startswith(" ".join(("usage: medssl", *sub))), (sub, r.stderr[-300:])


def test_cli_synth_then_pretrain_then_evaluate(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "c"), "--subjects", "24", "--sites", "2", "--shape", "24", "24", "24"]) == 0
    assert (tmp_path / "c" / "participants.tsv").is_file()
    args = ["pretrain", f"data.root={tmp_path / 'c'}", f"output_dir={tmp_path / 'r'}", "method.name=simclr", *SMALL,
            "train.epochs=1", "data.test_fraction=0.3"]
    assert main(args) == 0
    assert main(["evaluate", str(tmp_path / "r")]) == 0
    assert "pretrained" in capsys.readouterr().out
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["info"]["data card"] == "synthetic"  # its name


def test_cli_reports_config_errors_cleanly(capsys):
    assert main(["pretrain", "train.epochz=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.epochz'" in err and "Did you mean 'epochs'" in err


def test_cli_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "yaware" in out and "synthetic" in out


def test_demo_writes_the_cohort_it_is_asked_for_and_reuses_only_the_same_one(tmp_path, capsys):
    """`medssl demo --subjects N` (or another seed / shape) after an earlier demo must not reuse the old cohort:
    the run would silently train and report on other subjects than asked for."""
    from medssl.demo import demo_cohort

    cohort = tmp_path / "cohort"
    demo_cohort(cohort, subjects=6, shape=(16, 16, 16), seed=0)
    demo_cohort(cohort, subjects=8, shape=(16, 16, 16), seed=1)
    rows = (cohort / "participants.tsv").read_text().splitlines()[1:]
    assert len(rows) == 8 and len(list(cohort.glob("sub-*/anat/*_T1w.nii.gz"))) == 8
    params = json.loads((cohort / "dataset_description.json").read_text())["GeneratedBy"][0]["Parameters"]
    assert params["n_subjects"] == 8 and params["seed"] == 1
    stamp = (cohort / "participants.tsv").stat().st_mtime_ns
    capsys.readouterr()
    demo_cohort(cohort, subjects=8, shape=(16, 16, 16), seed=1)  # the same cohort: kept as it is
    assert (cohort / "participants.tsv").stat().st_mtime_ns == stamp and "reusing" in capsys.readouterr().out
    assert main(["demo", "--out", str(tmp_path / "d"), "--subjects", "0"]) == 2  # a one-line error, no traceback
    assert "demo cohort: n_subjects must be >= 1, got 0" in capsys.readouterr().err


def test_demo_replaces_only_an_earlier_demo_run_never_another_run_in_out_run(tmp_path, capsys):
    """`medssl demo --out DIR` starts DIR/run afresh by deleting it; a run there that another command wrote (its
    data elsewhere) was deleted as well, checkpoints included."""
    from medssl.config import load_config, save_config

    mine = tmp_path / "run"
    (mine / "checkpoints").mkdir(parents=True)
    (mine / "checkpoints" / "step-00000100.pt").write_bytes(b"two days of training")
    save_config(load_config(None, [f"output_dir={mine}", "data.root=/data/ixi"]), mine / "config.yaml")
    assert main(["demo", "--out", str(tmp_path), "--subjects", "4", *SMALL]) == 2
    err = capsys.readouterr().err
    assert f"{mine} holds a run that is not an earlier demo's" in err and "another --out" in err
    assert (mine / "checkpoints" / "step-00000100.pt").read_bytes() == b"two days of training"
    assert not (tmp_path / "cohort").exists()  # refused before anything was written


def test_demo_replaces_an_earlier_demo_run_of_another_medssl_version(tmp_path, capsys):
    """`make demo` after an update: the earlier demo's config.yaml may hold a key this version does not know. The
    run is still recognised as a demo's by its data.root (OUT/cohort) and replaced, not refused as unreadable."""
    from medssl.config import load_config, save_config

    old = tmp_path / "run"
    (old / "checkpoints").mkdir(parents=True)
    save_config(load_config(None, [f"output_dir={old}", f"data.root={tmp_path / 'cohort'}"]), old / "config.yaml")
    saved = yaml.safe_load((old / "config.yaml").read_text())
    saved["train"]["a_key_of_another_version"] = 1
    (old / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["demo", "--out", str(tmp_path), "--subjects", "14", *SMALL]) == 0, capsys.readouterr().err
    assert "a_key_of_another_version" not in (old / "config.yaml").read_text()


def test_a_run_with_relative_card_root_and_cache_paths_evaluates_and_resumes_from_another_folder(
        tmp_path, monkeypatch, capsys):
    """docs/data.md writes `data.card=my_cxr.yaml data.root=...`; relative paths were stored as given in
    config.yaml, so `evaluate RUN` from another folder failed ("data card file my.yaml does not exist")
    and `export` silently lost the card's modality and orientation."""
    import shutil
    from pathlib import Path

    from medssl.data.card import card_search_paths

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    shutil.copy(next(d / "synthetic.yaml" for d in card_search_paths() if (d / "synthetic.yaml").is_file()),
                work / "my.yaml")
    monkeypatch.chdir(work)
    assert main(["synth", "c", "--subjects", "20", "--sites", "2", "--shape", "24", "24", "24"]) == 0
    args = ["pretrain", "data.card=my.yaml", "data.root=c", "data.cache_dir=cache", "output_dir=r",
            "method.name=simclr", *SMALL, "train.epochs=1", "data.test_fraction=0.3"]
    assert main(args) == 0
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["evaluate", str(work / "r"), "--no-random-init"]) == 0, capsys.readouterr().err
    assert main(["export", str(work / "r"), "--out", "e"]) == 0
    assert json.loads(Path("e/encoder.json").read_text())["input"]["modality"] == "MR"
    saved = yaml.safe_load((work / "r" / "config.yaml").read_text())["data"]
    assert (saved["card"], saved["root"], saved["cache_dir"]) == (str(work / "my.yaml"), str(work / "c"),
                                                                   str(work / "cache"))
    monkeypatch.chdir(work)  # resumed with the same relative spellings: the same run
    assert main([*args, "train.epochs=2", "--resume", "auto"]) == 0
    assert "resumed at step" in capsys.readouterr().out
    with monkeypatch.context() as m:  # a run written before card paths were stored absolute ...
        m.setattr("medssl.api.absolute_data_paths", lambda cfg: None)
        assert main([*args, "output_dir=old"]) == 0
    assert yaml.safe_load(Path("old/config.yaml").read_text())["data"]["card"] == "my.yaml"
    capsys.readouterr()  # ... still resumes from its folder with the same command
    assert main([*args, "output_dir=old", "train.epochs=2", "--resume", "auto"]) == 0, capsys.readouterr().err
    assert "resumed at step" in capsys.readouterr().out


def test_demo_stopped_by_sigterm_does_not_evaluate_the_partial_run(tmp_path, capsys, monkeypatch):
    """SIGTERM during the demo's pretraining: the run checkpoints and returns, and the demo then evaluated the
    partial run and printed its table as the demo's result (`pretrain --evaluate` already stopped there)."""
    from pathlib import Path

    import medssl.demo as demo_module

    def stopped(cfg, progress=True):  # what pretrain leaves after a SIGTERM at step 3
        run = Path(cfg.output_dir)
        run.mkdir(parents=True)
        (run / "train_summary.json").write_text(json.dumps({"steps": 3, "stopped_early": True}))
        return run

    def evaluate(*args, **kwargs):
        raise AssertionError("a run stopped by SIGTERM was evaluated")

    monkeypatch.setattr(demo_module, "pretrain", stopped)
    monkeypatch.setattr(demo_module, "evaluate", evaluate)
    assert main(["demo", "--out", str(tmp_path), "--subjects", "4", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "stopped early at step 3 (SIGTERM); nothing evaluated" in out and "--resume auto" in out


def test_demo_writes_its_cohort_with_the_run_config_and_readme_settings(tmp_path, monkeypatch, capsys):
    """The demo's cohort: 3 sites (README), the run's seed and data.shape (so overrides reach the data), and
    300 subjects when none are asked for (README); pretraining is replaced by a stub stopped at step 1."""
    from pathlib import Path

    import medssl.demo as demo_module

    def stopped(cfg, progress=True):
        run = Path(cfg.output_dir)
        run.mkdir(parents=True)
        (run / "train_summary.json").write_text(json.dumps({"steps": 1, "stopped_early": True}))
        return run

    monkeypatch.setattr(demo_module, "pretrain", stopped)
    assert demo(tmp_path, ("seed=5", "data.shape=[16,20,16]", "augment.crop_size=[16,16,16]"), subjects=4) == {}
    params = json.loads((tmp_path / "cohort" / "dataset_description.json").read_text())["GeneratedBy"][0]["Parameters"]
    assert (params["n_subjects"], params["n_sites"], params["seed"], params["shape"]) == (4, 3, 5, [16, 20, 16])
    asked = []
    monkeypatch.setattr(demo_module, "demo_cohort", lambda cohort, subjects, shape, seed: asked.append(subjects))
    demo(tmp_path / "default")
    assert asked == [300]
