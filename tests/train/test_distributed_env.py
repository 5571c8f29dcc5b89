"""torchrun's environment and the world-size note, without a process group: found by mutating
medssl/train/distributed.py."""

from __future__ import annotations

import pytest
import torch

from medssl.train.distributed import DistInfo, init_distributed, world_size_note


def test_torchrun_variables_give_the_global_rank_and_a_missing_local_rank_is_0(monkeypatch):
    """torchrun's RANK is the global rank, LOCAL_RANK this node's (0 when unset); a process group that is already
    initialised (here: said to be) is joined, not initialised a second time."""
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: pytest.fail("initialised a second time"))
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert init_distributed(torch.device("cpu")) == (DistInfo(3, 4, 1), torch.device("cpu"))
    monkeypatch.delenv("LOCAL_RANK")
    assert init_distributed(torch.device("cpu")) == (DistInfo(3, 4, 0), torch.device("cpu"))


def test_the_world_size_note_is_printed_for_fewer_processes_too(capsys):
    world_size_note(4, DistInfo(0, 2, 0), "step-00000008.pt")
    assert capsys.readouterr().out.startswith("note: step-00000008.pt was written by 4 process(es), this run has 2:")


def test_a_cpu_run_joins_with_gloo_and_the_30_minute_timeout(monkeypatch):
    """docs (medssl/train/distributed.py): NCCL on CUDA, gloo on CPU, with a 30-minute collective timeout."""
    import datetime

    import torch.distributed as dist

    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.append((backend, kw)))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert init_distributed(torch.device("cpu")) == (DistInfo(1, 2, 1), torch.device("cpu"))  # CPU stays CPU
    assert calls == [("gloo", {"timeout": datetime.timedelta(minutes=30)})]
