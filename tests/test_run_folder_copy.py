"""A run folder that was copied (to branch an experiment) or moved (to archive it): its config.yaml still names
the original folder in output_dir. Training from it is refused until output_dir is given, naming both folders;
`evaluate` and `export` of the copy use the folder they are given and leave the original as it was."""

import hashlib
import shutil
from pathlib import Path

import pytest

from medssl.cli import main

SMALL = ("data.shape=[24,24,24]", "augment.crop_size=[20,20,20]", "train.batch_size=8", "train.progress=false",
         "encoder.options.width=8", "method.name=simclr", "data.test_fraction=0.3")


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _steps(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("step-*.pt"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("copyrun")
    assert main(["synth", str(tmp / "c"), "--subjects", "20", "--sites", "2", "--shape", "24", "24", "24"]) == 0
    assert main(["pretrain", f"data.root={tmp / 'c'}", f"output_dir={tmp / 'r'}", *SMALL, "train.epochs=1"]) == 0
    return tmp / "r"


def test_resuming_a_copied_run_is_refused_naming_both_folders_until_output_dir_is_given(run, tmp_path, capsys):
    copy = Path(shutil.copytree(run, tmp_path / "copy"))
    before, copy_before = _digest(run), _digest(copy)
    assert main(["pretrain", str(copy / "config.yaml"), "train.epochs=2", "--resume", "auto"]) == 2
    err = capsys.readouterr().err
    assert f"run folder {copy}, but its output_dir is {run}" in err
    assert f"output_dir={copy}" in err and f"output_dir={run}" in err and "Traceback" not in err
    assert _digest(run) == before and _digest(copy) == copy_before  # nothing written anywhere
    # told which folder, the copy continues from its own checkpoint and the original is left as it was
    assert main(["pretrain", str(copy / "config.yaml"), "train.epochs=2", f"output_dir={copy}", "--resume", "auto"]) == 0
    assert "resumed at step 1/2" in capsys.readouterr().out
    assert len(_steps(copy)) == 2 and _digest(run) == before
    assert f"output_dir: {copy}\n" in (copy / "config.yaml").read_text()  # its own folder from now on
    assert main(["pretrain", str(copy / "config.yaml"), "train.epochs=3", "--resume", "auto"]) == 0


def test_resuming_a_moved_run_does_not_start_afresh_in_the_old_folder(run, tmp_path, capsys):
    moved = Path(shutil.copytree(run, tmp_path / "moved"))
    old = tmp_path / "old"  # the folder its config names, gone after the move
    text = (moved / "config.yaml").read_text()
    (moved / "config.yaml").write_text(text.replace(f"output_dir: {run}\n", f"output_dir: {old}\n"))
    assert main(["pretrain", str(moved / "config.yaml"), "train.epochs=2", "--resume", "auto"]) == 2
    err = capsys.readouterr().err
    assert f"its output_dir is {old}, which does not exist" in err and f"output_dir={moved}" in err
    assert not old.exists()


def test_a_relative_output_dir_read_from_another_folder_is_refused(run, tmp_path, monkeypatch, capsys):
    """output_dir=rel trained from tmp_path, resumed from elsewhere: rel would be a new folder there."""
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    cohort = run.parent / "c"
    assert main(["pretrain", f"data.root={cohort}", "output_dir=rel", *SMALL, "train.epochs=1"]) == 0
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["pretrain", str(tmp_path / "rel" / "config.yaml"), "train.epochs=2", "--resume", "auto"]) == 2
    err = capsys.readouterr().err
    assert f"its output_dir is rel (= {tmp_path / 'elsewhere' / 'rel'}, from the current folder)" in err
    assert not (tmp_path / "elsewhere" / "rel").exists() and len(_steps(tmp_path / "rel")) == 1


def test_a_recipe_or_the_runs_own_config_is_not_refused(run, tmp_path, monkeypatch):
    """A config.yaml copied alone (a recipe for a new run) has no checkpoints/ beside it; the run's
    own config.yaml names its own folder, also when reached through a relative path."""
    recipe = tmp_path / "recipe"  # kept in a prepared data folder, whose manifest.tsv marks no run
    recipe.mkdir()
    text = (run / "config.yaml").read_text()
    (recipe / "config.yaml").write_text(text.replace(f"output_dir: {run}", f"output_dir: {tmp_path / 'new'}"))
    (recipe / "manifest.tsv").write_text("path\tsubject\n")
    assert main(["pretrain", str(recipe / "config.yaml"), "train.epochs=1"]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "new/config.yaml", "train.epochs=2", "--resume", "auto"]) == 0
    assert len(_steps(tmp_path / "new")) == 2


def test_evaluate_and_export_of_a_copy_use_the_copy_and_leave_the_original_as_it_was(run, tmp_path):
    copy = Path(shutil.copytree(run, tmp_path / "copy"))
    shutil.rmtree(copy / "cache")  # rebuilt in the copy, not read from the original's
    before = _digest(run)
    assert main(["evaluate", str(copy), "--n-boot", "0", "--no-random-init", "--map", "none"]) == 0
    assert main(["export", str(copy), "--out", str(tmp_path / "export")]) == 0
    assert (copy / "metrics.json").is_file() and (copy / "cache").is_dir() and (tmp_path / "export").is_dir()
    assert _digest(run) == before


@pytest.mark.parametrize("spelling, is_output_dir", [
    ("output_dir={f}", True), (" output_dir ={f}", True), ("output_dir = {f}", True), ("\toutput_dir\t= {f}", True),
    ("OUTPUT_DIR={f}", False), ("output-dir={f}", False), ("output_dir.x={f}", False), ("data.output_dir={f}", False),
])
def test_the_run_folder_check_and_the_loader_read_the_same_override_spellings_as_output_dir(tmp_path, spelling,
                                                                                           is_output_dir):
    """The check skips its refusal exactly when load_config's override parser sets output_dir (it strips the key,
    as the loader does; key=value split at the first '='): both accept spaces around the key and the value, and
    neither takes another key for it. Pinned so that they cannot drift apart."""
    from medssl.config import ConfigError, load_config, save_config
    from medssl.config_checks import refuse_other_run_folder

    copy, other = tmp_path / "copy", tmp_path / "original"
    (copy / "checkpoints").mkdir(parents=True)
    save_config(load_config(None, [f"output_dir={other}"]), copy / "config.yaml")
    override = spelling.format(f=copy)
    try:
        sets = load_config(copy / "config.yaml", [override]).output_dir == str(copy)
    except ConfigError:
        sets = False  # the loader refuses the key: it sets nothing
    cfg = load_config(copy / "config.yaml")  # the stored output_dir, for the check
    try:
        refuse_other_run_folder(copy / "config.yaml", cfg, [override])
        skipped = True
    except ConfigError as e:
        assert f"output_dir={copy}" in str(e)
        skipped = False
    assert sets == skipped == is_output_dir
