"""Checkpoints under failure and attack: keep=1, a crash in the middle of a write, a checkpoint that would run
code when unpickled. Found by mutating medssl/train/checkpoint.py."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from medssl.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint


def test_keep_one_keeps_only_the_newest_checkpoint(tmp_path):
    for step in (5, 20, 10):  # written out of order: the newest is the highest step, not the last written
        save_checkpoint({"step": torch.tensor(step)}, tmp_path, step, keep=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000020.pt"]
    save_checkpoint({"step": torch.tensor(30)}, tmp_path, 30, keep=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000030.pt"]


def test_a_crash_in_the_middle_of_a_write_leaves_the_previous_checkpoints_intact(tmp_path, monkeypatch):
    """torch.save killed half-way (a full disk, SIGKILL): the earlier checkpoint, also one of the same step, stays
    whole and loadable, none is pruned for the one that failed, and no temporary file is left behind."""
    state = {"w": torch.arange(1000.0), "step": 3}
    save_checkpoint(state, tmp_path, 3, keep=1)
    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as fh:
            fh.truncate(len(fh.read()) // 2)
        raise OSError(28, "No space left on device (test)")

    monkeypatch.setattr(torch, "save", dies_half_way)
    for step in (3, 6):
        with pytest.raises(OSError, match="No space left"):
            save_checkpoint({"w": torch.zeros(1000), "step": step}, tmp_path, step, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000003.pt"]
    loaded = load_checkpoint(tmp_path / "step-00000003.pt")
    assert torch.equal(loaded["w"], state["w"]) and loaded["step"] == 3


class _Payload:
    """Unpickling this creates the folder ``marker`` (os.mkdir, importable by any unpickler): a loader that
    unpickles arbitrary objects would run it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch.load on a plain pickle.dumps file
@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_a_checkpoint_that_would_run_code_when_unpickled_is_refused_without_running_it(tmp_path, how):
    """Checkpoints are loaded with weights_only=True (torch's safe unpickler): a file from elsewhere holding
    any other object is refused as unsafe, and the object's code never runs."""
    marker, path = tmp_path / "unpickled", tmp_path / "step-00000001.pt"
    payload = {"step": 1, "model": _Payload(str(marker))}
    if how == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"step-00000001\.pt: cannot load checkpoint safely"):
        load_checkpoint(path)
    assert not marker.exists()
