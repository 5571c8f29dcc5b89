"""Training policy on_bad_file end to end: a corrupt .nii.gz and a missing file in a synthetic cohort."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from medssl.api import pretrain
from medssl.config import load_config
from medssl.data.manifest import ManifestError, read_manifest
from medssl.io.errors import BadFileError

SMALL = ("data.shape=[24,24,24]", "augment.crop_size=[20,20,20]", "train.epochs=1", "train.batch_size=8",
         "train.progress=false", "encoder.options.width=8", "method.name=simclr")


def _ids(cohort: Path) -> list[str]:
    with open(cohort / "participants.tsv", newline="") as fh:
        return [r["participant_id"] for r in csv.DictReader(fh, delimiter="\t")]


def _nii(cohort: Path, sid: str) -> Path:
    return cohort / sid / "anat" / f"{sid}_T1w.nii.gz"


@pytest.mark.slow
def test_skip_policy_lists_every_skipped_file_in_the_run_directory(small_cohort, cohort_copy, tmp_path, capsys):
    ids = _ids(cohort_copy)
    corrupt, missing = _nii(cohort_copy, ids[5]), _nii(cohort_copy, ids[7])
    corrupt.write_bytes(corrupt.read_bytes()[:600])  # truncated .nii.gz
    missing.unlink()
    cfg = load_config(None, [f"data.root={cohort_copy}", f"output_dir={tmp_path / 'run'}", "data.on_bad_file=skip", *SMALL])
    run = pretrain(cfg, progress=False)
    skipped = {Path(s["path"]).name: s["reason"] for s in json.loads((run / "skipped_files.json").read_text())}
    assert set(skipped) == {corrupt.name, missing.name}
    assert "does not exist" in skipped[missing.name] and skipped[corrupt.name]
    assert "skipped 2 bad file(s)" in capsys.readouterr().out
    manifest = read_manifest(run / "manifest.tsv")  # every record, with the split the run used
    assert len(manifest) == 40 and {r.split for r in manifest} == {"train", "test"}
    assert (run / "train_summary.json").is_file() and list((run / "checkpoints").glob("*.pt"))

    # the default policy stops, naming the file: first the manifest (missing file), then the reader
    strict = [f"data.root={cohort_copy}", "data.on_bad_file=error", *SMALL]
    with pytest.raises(ManifestError, match=rf"row \d+: file .*{missing.name} does not exist"):
        pretrain(load_config(None, [*strict, f"output_dir={tmp_path / 'strict1'}"]), progress=False)
    shutil.copy(_nii(small_cohort, ids[7]), missing)  # restore the missing file; the corrupt one remains
    with pytest.raises(BadFileError, match=corrupt.name):
        pretrain(load_config(None, [*strict, f"output_dir={tmp_path / 'strict2'}"]), progress=False)
