"""Checkpoint file handling and atomic writes, without a trainer: found by mutating
medssl/train/checkpoint.py and medssl/atomic.py."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from medssl.atomic import atomic_write
from medssl.train.checkpoint import (CheckpointError, list_checkpoints, load_checkpoint, refuse_newer, resume_path,
                                     save_checkpoint, stopped_early, write_atomic)


def test_resume_auto_is_the_latest_step_not_the_first(tmp_path):
    for step in (3, 12, 7):
        save_checkpoint({"step": step}, tmp_path, step, keep=10)
    assert resume_path("auto", tmp_path) == tmp_path / "step-00000012.pt"
    assert resume_path("auto", tmp_path / "none") is None and resume_path("", tmp_path) is None
    assert resume_path("x/step-00000003.pt", tmp_path) == tmp_path.__class__("x/step-00000003.pt")


def test_steps_beyond_eight_digits_sort_by_number(tmp_path):
    """Names are zero-padded to 8 digits; step 10**8 has 9 and must still be the latest (a sort
    by name puts 'step-100000000.pt' before 'step-99999999.pt')."""
    for step in (10**8, 10**8 - 1):
        save_checkpoint({"step": step}, tmp_path, step, keep=10)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-99999999.pt", "step-100000000.pt"]
    save_checkpoint({"step": 10**8 + 1}, tmp_path, 10**8 + 1, keep=2)  # pruning keeps the two highest steps
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-100000000.pt", "step-100000001.pt"]
    assert load_checkpoint(resume_path("auto", tmp_path))["step"] == 10**8 + 1


def test_refusal_names_the_first_three_newer_checkpoints(tmp_path):
    for step in range(1, 7):
        save_checkpoint({"step": step}, tmp_path, step, keep=10)
    with pytest.raises(CheckpointError, match=r"holds 4 checkpoint\(s\) newer than old\.pt \(step 2\): "
                                              r"step-00000003\.pt, step-00000004\.pt, step-00000005\.pt …\."):
        refuse_newer(tmp_path, 2, "old.pt")
    refuse_newer(tmp_path / "elsewhere", 2, "old.pt")  # an empty (or missing) output folder is fine
    with pytest.raises(CheckpointError, match=r"\(step 3\): step-00000004\.pt, step-00000005\.pt, step-00000006\.pt\. "):
        refuse_newer(tmp_path, 3, "old.pt")  # exactly three: all named, no ellipsis


def test_a_folder_given_as_checkpoint_is_named_as_missing_not_corrupt(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint .* does not exist; give a step-\*\.pt file"):
        load_checkpoint(tmp_path)
    (tmp_path / "step-00000001.pt").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match=r"step-00000001\.pt: cannot load checkpoint safely"):
        load_checkpoint(tmp_path / "step-00000001.pt")


@pytest.mark.parametrize(("summary", "expected"), [(None, None), ({"steps": 9, "stopped_early": False}, None),
                                                    ({"steps": 9}, None), ({"steps": 9, "stopped_early": True}, 9)])
def test_stopped_early_only_when_the_summary_says_so(tmp_path, summary, expected):
    if summary is not None:
        (tmp_path / "train_summary.json").write_text(json.dumps(summary))
    assert stopped_early(tmp_path) == expected


def test_checkpoint_is_synced_to_disk_before_it_is_renamed_into_place(tmp_path, monkeypatch):
    """write_atomic's contract (a power cut after the rename must leave neither an empty file nor the old
    name): the temporary file's bytes are fsync'ed before os.replace, and its folder after it (the rename
    is an entry of the folder; POSIX)."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.fstat(fd).st_ino)) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", os.stat(a).st_ino)) or real_replace(a, b))
    final = write_atomic({"w": torch.ones(3)}, tmp_path / "deep" / "ck.pt")  # its folder is created
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    assert events[0][1] == events[1][1] == final.stat().st_ino
    assert events[2][1] == final.parent.stat().st_ino
    assert torch.equal(load_checkpoint(final)["w"], torch.ones(3))


def test_atomic_write_keeps_the_old_file_readable_until_the_new_one_is_whole(tmp_path):
    """While ``write`` runs the final name holds the previous content; the temporary file is another,
    per-call file in the same folder (os.replace is atomic only within one file system) with the same
    suffix (np.save appends '.npy' to other names)."""
    path = tmp_path / "done.npy"
    np.save(path, np.zeros(3))
    seen = []

    def write(tmp):
        seen.append((tmp, np.load(path).tolist()))
        np.save(tmp, np.ones(3))

    atomic_write(path, write)
    atomic_write(path, write)
    (tmp1, old1), (tmp2, old2) = seen
    assert old1 == [0.0, 0.0, 0.0] and old2 == [1.0, 1.0, 1.0]
    assert tmp1.parent == tmp2.parent == tmp_path and tmp1.suffix == ".npy" and tmp1 != tmp2 != path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done.npy"]
    np.testing.assert_array_equal(np.load(path), np.ones(3))
