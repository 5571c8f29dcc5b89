"""torchrun helpers that need no process group, found by mutating medssl/train/distributed.py:
sharding, rank info, per-step seeding, the world-size note, the no-DDP paths, SIGTERM in workers."""

from __future__ import annotations

import signal

import pytest
import torch

from medssl.train.distributed import (DistInfo, any_rank, init_distributed, mean_over_ranks, seed_step, shard,
                                      world_size_note, worker_ignores_sigterm)


def test_each_rank_takes_its_contiguous_slice_and_together_they_are_the_batch():
    batch = [11, 12, 13, 14, 15, 16, 17, 18]
    parts = [shard(batch, DistInfo(r, 4, r)) for r in range(4)]
    assert parts == [[11, 12], [13, 14], [15, 16], [17, 18]]
    assert shard(batch, DistInfo()) == batch
    with pytest.raises(ValueError, match=r"train.batch_size=8 is not divisible by the 3 processes; use a multiple of 3"):
        shard(batch, DistInfo(0, 3, 0))
    with pytest.raises(ValueError, match=r"train.batch_size=7 is not divisible by the 2 processes"):  # remainder 1
        shard(batch[:7], DistInfo(1, 2, 1))


def test_rank_info_main_is_global_rank_0_and_ddp_needs_two_processes():
    assert DistInfo().is_main and not DistInfo().enabled
    second_node = DistInfo(rank=2, world_size=4, local_rank=0)  # GPU 0 of the second node
    assert not second_node.is_main and second_node.enabled
    assert not DistInfo(0, 1, 0).enabled


def test_without_torchrun_nothing_is_joined(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert init_distributed(torch.device("cpu")) == (DistInfo(), torch.device("cpu"))
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert init_distributed(torch.device("cpu")) == (DistInfo(), torch.device("cpu"))


def test_without_ddp_collectives_are_the_identity():
    t = torch.tensor([1.0, float("nan"), 3.0])
    assert mean_over_ranks(t, DistInfo()) is t
    assert any_rank(True, DistInfo(), torch.device("cpu")) is True
    assert any_rank(False, DistInfo(), torch.device("cpu")) is False


def _draw(seed, step, rank):
    seed_step(seed, step, rank)
    return torch.rand(4)


def test_seed_step_draws_the_same_for_a_triple_and_otherwise_differs():
    """Resume exactness needs the same draw for the same (seed, step, rank); ranks and steps need their own."""
    assert torch.equal(_draw(0, 5, 1), _draw(0, 5, 1))
    draws = {(s, t, r): _draw(s, t, r) for s in (0, 1) for t in (0, 1, 2) for r in (0, 1, 2)}
    keys = list(draws)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert not torch.equal(draws[a], draws[b]), (a, b)


def test_the_world_size_note_is_printed_once_and_only_when_it_changed(capsys):
    world_size_note(2, DistInfo(0, 2, 0), "step-00000004.pt")
    assert capsys.readouterr().out == ""
    world_size_note(2, DistInfo(1, 4, 1), "step-00000004.pt")  # not rank 0: silent
    assert capsys.readouterr().out == ""
    world_size_note(2, DistInfo(0, 4, 0), "step-00000004.pt")
    out = capsys.readouterr().out
    assert out.startswith("note: step-00000004.pt was written by 2 process(es), this run has 4:")
    assert out.rstrip().endswith("(resume with 2 processes for that)")


def test_a_data_loader_worker_ignores_sigterm():
    before = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        worker_ignores_sigterm(0)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.slow
def test_two_gloo_ranks_agree_on_the_mean_and_on_any_flag():
    """init_distributed from torchrun's variables; mean_over_ranks divides the SUM by the world size and leaves
    the caller's tensor alone; any_rank is true on every rank when one rank's flag is (a MAX, not a MIN)."""
    import json
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    script = str(Path(__file__).with_name("ddp_collectives.py"))
    procs = [subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "RANK": str(r), "LOCAL_RANK": "0", "WORLD_SIZE": "2",
                                   "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
             for r in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    got = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    for r, g in enumerate(got):
        assert g["info"] == [r, 2, 0]  # two nodes of one process each: the rank is RANK, not LOCAL_RANK
        assert g["mean"] == [1.5, 15.0] and g["own"] == [r + 1.0, 10.0 * (r + 1)]
        assert (g["any"], g["none"], g["all"]) == (True, False, True)
        assert g["left"]  # shutdown_distributed left the process group
