"""Mistakes a user makes at the command line: each is refused with a message naming what is wrong and what
to do, exit status 2, no traceback, and nothing in an existing run directory is changed or lost."""

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medssl.cli import _cache_overrides, main, parse_args
from medssl.data.card import load_card
from medssl.train.trainer import DeviceError, resolve_device

SMALL = ("data.shape=[24,24,24]", "augment.crop_size=[20,20,20]", "train.batch_size=8", "train.progress=false",
         "encoder.options.width=8", "method.name=simclr", "data.test_fraction=0.3")


def _digest(folder: Path) -> dict[str, str]:
    """md5 of every file under ``folder`` (what a refused command must leave as it was)."""
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    assert main(["synth", str(tmp / "c"), "--subjects", "20", "--sites", "2", "--shape", "24", "24", "24"]) == 0
    args = [f"data.root={tmp / 'c'}", f"output_dir={tmp / 'r'}", *SMALL]
    assert main(["pretrain", *args, "train.epochs=1"]) == 0
    return tmp / "r", args


def test_a_fresh_run_into_a_directory_with_checkpoints_is_refused_and_leaves_it_untouched(tiny_run, capsys):
    run, args = tiny_run
    before = _digest(run)
    assert main(["pretrain", *args, "train.epochs=2", "seed=7"]) == 2
    err = capsys.readouterr().err
    assert f"output_dir {run} already holds checkpoints" in err and "--resume auto" in err
    assert _digest(run) == before


def test_a_resume_with_another_encoder_is_refused_before_anything_is_written(tiny_run, capsys):
    run, args = tiny_run
    before = _digest(run)
    assert main(["pretrain", *args, "train.epochs=1", "encoder.name=resnet10", "--resume", "auto"]) == 2
    err = capsys.readouterr().err
    assert "was written with encoder.name='resnet18'; this run has encoder.name='resnet10'" in err
    assert "Traceback" not in err
    assert _digest(run) == before  # config.yaml still describes the checkpoints: export / evaluate keep working


def test_a_resume_that_changes_what_is_trained_is_refused_but_epochs_may_change(tiny_run, capsys):
    """A resumed run with another seed, batch size or lr would mix two runs in one directory (and the lr
    would not even apply: the optimiser state brings the old one back)."""
    run, args = tiny_run
    before = _digest(run)
    assert main(["pretrain", *args, "train.epochs=1", "seed=5", "train.batch_size=4", "train.lr=0.5",
                 "--resume", "auto"]) == 2
    err = capsys.readouterr().err
    assert "seed=0, train.batch_size=" in err and "this run has seed=5, train.batch_size=4, train.lr=0.5" in err
    assert "drop those overrides" in err and _digest(run) == before


def test_a_resume_from_an_older_checkpoint_of_the_run_is_refused_before_anything_is_written(tiny_run, tmp_path,
                                                                                              capsys):
    """`--resume RUN/checkpoints/step-1.pt` while the run already holds step 2: continuing there would overwrite
    step 2 and prune the resumed run's own checkpoints (tests/train/test_trainer_resume.py); refused with the newer
    checkpoint named, the run directory unchanged."""
    import shutil

    run, args = tiny_run
    copy = shutil.copytree(run, tmp_path / "r", ignore=shutil.ignore_patterns("eval-*"))
    args = [a for a in args if not a.startswith("output_dir=")] + [f"output_dir={copy}"]
    assert main(["pretrain", *args, "train.epochs=2", "--resume", "auto"]) == 0  # one step per epoch
    first, second = (p.name for p in sorted((copy / "checkpoints").glob("step-*.pt")))
    before = _digest(copy)
    assert main(["pretrain", *args, "train.epochs=3", "--resume", str(copy / "checkpoints" / first)]) == 2
    err = capsys.readouterr().err
    assert f"holds 1 checkpoint(s) newer than {copy / 'checkpoints' / first} (step 1): {second}" in err
    assert "Resume into another output_dir" in err and _digest(copy) == before


def test_a_missing_resume_checkpoint_is_named(tiny_run, tmp_path, capsys):
    _, args = tiny_run
    missing = tmp_path / "nope.pt"
    assert main(["pretrain", *args, f"output_dir={tmp_path / 'r2'}", "--resume", str(missing)]) == 2
    assert f"checkpoint {missing} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()


def test_an_unknown_evaluation_target_is_refused_and_the_results_are_kept(tiny_run, capsys):
    run, _ = tiny_run
    before = (run / "metrics.json").read_bytes() if (run / "metrics.json").exists() else None
    assert main(["evaluate", str(run), "--targets", "agee"]) == 2
    err = capsys.readouterr().err
    assert "--targets: ['agee'] not valid" in err and "age, site, sex, label" in err
    assert ((run / "metrics.json").read_bytes() if (run / "metrics.json").exists() else None) == before


def test_a_refused_evaluation_leaves_no_empty_protocol_folder_in_the_run(tiny_run, tmp_path, capsys):
    """Each refused `evaluate` used to leave an empty RUN/eval-<protocol>[-<card>]/ behind."""
    run, _ = tiny_run
    before = sorted(p.name for p in run.iterdir())
    for extra in (["--data", "no_such_card"], ["--protocol", "site", "--root", str(tmp_path / "nowhere")],
                  ["--protocol", "knn", "--targets", "agee"], ["--out", str(tmp_path / "rep"), "--device", "tpu"]):
        assert main(["evaluate", str(run), *extra]) == 2, extra
        assert "Traceback" not in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == before and not (tmp_path / "rep").exists()


def test_an_output_folder_that_is_a_file_is_named_not_a_traceback(tiny_run, tmp_path, capsys):
    """pretrain output_dir=FILE, evaluate --out FILE and demo --out FILE were mkdir tracebacks."""
    run, args = tiny_run
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    for argv, path in ((["pretrain", *args, f"output_dir={taken}"], taken),
                       (["evaluate", str(run), "--out", str(taken), "--no-random-init"], taken),
                       (["evaluate", str(run), "--out", str(taken / "sub"), "--no-random-init"], taken / "sub"),
                       (["demo", "--out", str(taken)], taken / "cohort")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"error: cannot use the folder {path}" in err and "Traceback" not in err, err
    assert taken.read_text() == "keep me"


def test_malformed_yaml_names_the_file_or_the_override(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: 3\n   lr: 0.1\n")
    assert main(["pretrain", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: not valid YAML" in err and "line 3" in err
    assert main(["pretrain", "data.shape=[32,32,32"]) == 2
    assert "override 'data.shape=[32,32,32': the value is not valid YAML" in capsys.readouterr().err
    bad.write_text("train:\n  epochs: 3\ntrain:\n  lr: 0.1\n")  # PyYAML alone would keep only the second
    assert main(["pretrain", str(bad)]) == 2
    assert "key 'train' appears twice in one mapping at line 3" in capsys.readouterr().err


def test_an_override_ending_in_yaml_is_not_taken_for_the_config_file(tmp_path, capsys):
    card = tmp_path / "card.yaml"  # a card given by path ends in .yaml but is an override's value
    assert main(["pretrain", f"data.card={card}"]) == 2
    err = capsys.readouterr().err
    assert "config file" not in err and str(card) in err


def test_overrides_may_follow_an_option_flag(capsys):
    """`pretrain CFG --resume auto train.epochs=9` (how docs/training.md says a run is extended) means the same
    as with the flag last; argparse alone stops filling the overrides at the first flag and refused the rest."""
    flags_last = parse_args(["pretrain", "c.yaml", "train.epochs=9", "seed=1", "--resume", "auto", "--evaluate"])
    for argv in (["pretrain", "c.yaml", "--resume", "auto", "train.epochs=9", "--evaluate", "seed=1"],
                 ["pretrain", "c.yaml", "train.epochs=9", "--evaluate", "seed=1", "--resume", "auto"]):
        args = parse_args(argv)
        assert (args.config, args.overrides, args.resume, args.evaluate) == (
            flags_last.config, flags_last.overrides, flags_last.resume, flags_last.evaluate)
    assert parse_args(["demo", "--out", "d", "train.epochs=1"]).overrides == ["train.epochs=1"]
    for argv in (["export", "run", "--out", "x", "stray"], ["pretrain", "c.yaml", "--evaluate", "--bogus"]):
        with pytest.raises(SystemExit) as e:  # words a command does not take are still refused
            parse_args(argv)
        assert e.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_bad_synth_arguments_are_refused_without_a_traceback(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "x"), "--sites", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medssl synth: error:") and "Traceback" not in err


def test_synth_again_with_the_same_settings_says_nothing_was_written(tmp_path, capsys):
    """A second `medssl synth` with the same settings writes nothing (docs/synthetic.md) but printed
    "wrote 3 subjects …"; it now says the folder already holds that cohort."""
    out, args = tmp_path / "c", ["--subjects", "3", "--shape", "16", "16", "16"]
    assert main(["synth", str(out), *args]) == 0
    assert "wrote 3 subjects from 3 sites" in capsys.readouterr().out
    nii = out / "sub-0001" / "anat" / "sub-0001_T1w.nii.gz"
    mtime = nii.stat().st_mtime_ns
    assert main(["synth", str(out), *args]) == 0
    printed = capsys.readouterr().out
    assert nii.stat().st_mtime_ns == mtime and "wrote" not in printed
    assert "already holds this cohort" in printed and "nothing was written" in printed
    assert main(["synth", str(out), *args, "--overwrite"]) == 0  # --overwrite regenerates it
    assert nii.stat().st_mtime_ns != mtime and "wrote 3 subjects" in capsys.readouterr().out


def test_synth_into_a_used_folder_is_a_one_line_error_and_overwrite_replaces_a_cohort(tmp_path, capsys):
    """`medssl synth` again with other settings (or into a folder with other files) stopped with a
    FileExistsError traceback that said `overwrite=True`, a keyword of the Python API the command did not take."""
    out, small = tmp_path / "c", ["--shape", "16", "16", "16"]
    assert main(["synth", str(out), "--subjects", "3", *small]) == 0
    capsys.readouterr()
    assert main(["synth", str(out), "--subjects", "4", *small]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medssl synth: error:") and "holds a different synthetic cohort" in err
    assert "--overwrite" in err and "Traceback" not in err
    assert main(["synth", str(out), "--subjects", "4", *small, "--overwrite"]) == 0
    assert len((out / "participants.tsv").read_text().splitlines()) == 1 + 4
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    assert main(["synth", str(tmp_path / "notes"), "--subjects", "3", *small, "--overwrite"]) == 2
    assert "is not empty and is not a medssl synthetic cohort" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["mine.txt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_a_missing_gpu_names_the_setting_the_user_gave():
    with pytest.raises(DeviceError, match=r"--device=cuda but no CUDA GPU is visible; use --device=cpu or auto"):
        resolve_device("cuda", "--device")
    with pytest.raises(DeviceError, match=r"train.device='gpu' is not a device"):
        resolve_device("gpu")
    with pytest.raises(DeviceError, match=r"the run's train.device=cuda but .* use --device cpu \(or auto\)"):
        resolve_device("cuda", "the run's train.device", "--device cpu (or auto) for this evaluation")


def test_the_data_prepare_hint_names_every_setting_of_the_cache_fingerprint():
    card = load_card("synthetic")
    a = argparse.Namespace(card="synthetic", root="/data/cohort", out="/tmp/cache", spacing=None, normalise="minmax")
    hint = _cache_overrides(a, card, (10, 2, 32, 32, 32))
    assert hint == ["data.card=synthetic", "data.root=/data/cohort", "data.cache_dir=/tmp/cache",
                    "data.shape=[32,32,32]", f"data.spacing=[{','.join(map(str, card.preprocessing.get('spacing', [])))}]",
                    "data.normalise=minmax", "encoder.in_channels=2"]
    a.normalise, a.root = None, None  # the card's normalisation (as `data prepare` used it) is spelled out
    hint = _cache_overrides(a, card, (10, 1, 32, 32, 32))
    assert f"data.normalise={card.preprocessing.get('normalise', 'zscore')}" in hint
    assert not any(h.startswith(("data.root=", "encoder.in_channels=")) for h in hint)


def test_python_dash_m_medssl_is_the_command():
    r = subprocess.run([sys.executable, "-m", "medssl", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("usage: medssl")


def test_a_damaged_checkpoint_is_called_damaged_not_a_config_mismatch(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "r"
    shutil.copytree(tiny_run[0], run)
    latest = sorted((run / "checkpoints").glob("step-*.pt"))[-1]
    latest.write_bytes(latest.read_bytes()[:20000])
    for command in (["evaluate", str(run), "--no-random-init"], ["export", str(run), "--out", str(tmp_path / "x")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"{latest}: cannot load checkpoint safely" in err and "use the previous step-*.pt" in err, err
        assert "do not fit" not in err and "Traceback" not in err


def test_exporting_another_runs_checkpoint_is_refused(tiny_run, tmp_path, capsys):
    """The export's spec is built from the run's config.yaml, so the weights must come from that run."""
    import json

    run = tiny_run[0]
    state = torch.load(sorted((run / "checkpoints").glob("step-*.pt"))[-1], weights_only=True)
    other = json.loads(state["config"])
    other["seed"], other["train"]["lr"] = 11, 0.01
    state["config"] = json.dumps(other)
    torch.save(state, tmp_path / "other.pt")
    assert main(["export", str(run), "--out", str(tmp_path / "x"), "--checkpoint", str(tmp_path / "other.pt")]) == 2
    err = capsys.readouterr().err
    assert "was written with seed=11, train.lr=0.01" in err and f"It is not a checkpoint of {run}" in err
    assert not (tmp_path / "x").exists()


def test_data_that_cannot_feed_the_method_is_a_one_line_error(tiny_run, tmp_path, capsys):
    import csv
    import shutil

    args = [a for a in tiny_run[1] if not a.startswith(("output_dir=", "data.root="))]
    cohort = tmp_path / "c"
    shutil.copytree(Path(next(a for a in tiny_run[1] if a.startswith("data.root="))[10:]), cohort)
    rows = list(csv.DictReader((cohort / "participants.tsv").open(), delimiter="\t"))
    with (cohort / "participants.tsv").open("w", newline="") as fh:  # the same cohort without ages
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows({**r, "age": "n/a"} for r in rows)
    common = [*args, f"data.root={cohort}", "train.epochs=1"]
    assert main(["pretrain", *common, f"output_dir={tmp_path / 'a'}", "method.name=yaware"]) == 2
    err = capsys.readouterr().err
    assert "method.name=yaware learns from method.metadata=['age'], but none of the" in err and "Traceback" not in err
    assert main(["pretrain", *common, f"output_dir={tmp_path / 'b'}", "train.batch_size=64"]) == 2
    err = capsys.readouterr().err
    assert "fewer than train.batch_size × train.grad_accum_steps = 64" in err and "Traceback" not in err


def test_a_file_given_as_data_root_or_cache_folder_is_named(tmp_path, capsys):
    from medssl.cli import main

    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    assert main(["data", "prepare", "synthetic", "--root", str(afile), "--out", str(tmp_path / "c")]) == 2
    assert f"data root {afile} is a file, not a folder" in capsys.readouterr().err
    cohort = tmp_path / "cohort"
    assert main(["synth", str(cohort), "--subjects", "4", "--shape", "16", "16", "16"]) == 0
    assert main(["data", "prepare", "synthetic", "--root", str(cohort), "--out", str(afile)]) == 2
    assert f"cache folder {afile} is a file" in capsys.readouterr().err


def test_under_torchrun_only_rank_0_reports_and_evaluates(monkeypatch, tmp_path, capsys):
    import medssl.api as api
    from medssl.cli import main

    evaluated = []
    monkeypatch.setattr(api, "pretrain", lambda cfg: tmp_path)
    monkeypatch.setattr(api, "evaluate", lambda run_dir: evaluated.append(run_dir) or {})
    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        assert main(["pretrain", "train.epochs=1", "--evaluate"]) == 0
    assert evaluated == [tmp_path] and capsys.readouterr().out.count("pretraining done") == 1


def test_a_resumed_run_keeps_its_split_after_the_table_changed(tmp_path):
    """Subjects withdrawn and added between a kill and the resume: the remaining subjects stay on their side
    (a redrawn split could move a test subject into pretraining mid-run)."""
    from medssl.data.manifest import read_manifest

    assert main(["synth", str(tmp_path / "c"), "--subjects", "20", "--sites", "2", "--shape", "24", "24", "24"]) == 0
    args = [f"data.root={tmp_path / 'c'}", f"output_dir={tmp_path / 'r'}", *SMALL]
    assert main(["pretrain", *args, "train.epochs=1"]) == 0
    before = {r.subject: r.split for r in read_manifest(tmp_path / "r" / "manifest.tsv")}
    table = tmp_path / "c" / "participants.tsv"
    lines = table.read_text().splitlines()
    table.write_text("\n".join([lines[0], *lines[4:]]) + "\n")  # three subjects withdrawn
    assert main(["pretrain", *args, "train.epochs=2", "--resume", "auto"]) == 0
    after = {r.subject: r.split for r in read_manifest(tmp_path / "r" / "manifest.tsv")}
    assert len(after) == 17 and {s: before[s] for s in after} == after


def test_a_2d_shape_on_the_3d_default_names_encoder_spatial_dims(tmp_path, capsys):
    """A 2D card's shape given without encoder.spatial_dims=2 (the default is 3): say which key to set, and a
    mismatch with the card's dimensionality is refused before the run directory is written."""
    assert main(["pretrain", "data.shape=[28,28]", "augment.crop_size=[24,24]", f"output_dir={tmp_path / 'r'}"]) == 2
    assert "set encoder.spatial_dims=2" in capsys.readouterr().err
    card = tmp_path / "p.yaml"
    card.write_text("name: p\nmodality: DX\ndimensionality: 2\nfiles: '*.png'\npath_regex: '(?P<subject>\\w+)'\n")
    assert main(["pretrain", f"data.card={card}", f"data.root={tmp_path}", f"output_dir={tmp_path / 'r'}"]) == 2
    assert "data card 'p' is 2D" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_another_card_without_a_root_names_the_root_option_and_the_folder_read(tiny_run, tmp_path, capsys,
                                                                             monkeypatch):
    """`evaluate RUN --data synthetic` no longer reads the run's data.root, and the synthetic card has no `root:`:
    the table was looked for in the current folder and the error said 'check data.root', a key evaluate has no
    option for (it takes --root)."""
    run, _ = tiny_run
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(run), "--data", "synthetic", "--no-random-init"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'participants.tsv'} does not exist" in err, err
    assert "--root DIR" in err and "without `root:` reads the current folder" in err and "Traceback" not in err


def test_a_global_batch_that_does_not_divide_among_the_processes_is_refused_before_anything_is_written(
        tmp_path, monkeypatch, capsys):
    """Under torchrun with 3 processes, train.batch_size=8 failed at the first step with a ValueError traceback
    from the batch sharding (after the cache was built); it is a config error before anything is written."""
    import torch

    import medssl.train.distributed as distributed

    monkeypatch.setattr(distributed, "init_distributed", lambda device: (distributed.DistInfo(0, 3, 0), torch.device("cpu")))
    out = tmp_path / "r"
    assert main(["pretrain", "train.batch_size=8", f"output_dir={out}"]) == 2
    assert "train.batch_size=8 is the global batch and must divide evenly among the 3 processes" in capsys.readouterr().err
    assert not out.exists()
    # a resume cannot change its batch (check_compatible refuses train.batch_size=9): it says what can change
    assert main(["pretrain", "train.batch_size=8", f"output_dir={out}", "--resume", "auto"]) == 2
    err = capsys.readouterr().err
    assert "use a multiple of 3 (a resumed run keeps its batch: resume it with a number of processes that divides 8)" \
        in err, err
    assert not out.exists()


def test_data_command_errors_name_the_subcommand(tmp_path, capsys):
    """Errors of `medssl data check` / `medssl data prepare` said `medssl data: error:`, which does not say which
    of the two failed; they now name the subcommand, as argparse's own usage lines do."""
    assert main(["data", "check", "no_such_card_xyz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medssl data check: error: ") and "no_such_card_xyz" in err
    assert main(["data", "prepare", "synthetic", "--root", str(tmp_path), "--out", str(tmp_path / "c"),
                 "--channels", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medssl data prepare: error: --channels must be a positive integer")
