"""torchrun's environment and the world-size note, without a process group: found by mutating
medssl/train/distributed.py."""

from __future__ import annotations

import pytest
import torch

from medssl.train.distributed import (DistInfo, any_rank, barrier, init_distributed, mean_over_ranks, patient_group,
                                      seed_step, shutdown_distributed, world_size_note)


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


def test_on_cuda_each_process_takes_gpu_local_rank_and_joins_with_nccl(monkeypatch):
    """docs (init_distributed): on CUDA each process takes GPU LOCAL_RANK (not its global RANK), made current."""
    import torch.distributed as dist

    backends, current = [], []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: backends.append(backend))
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert init_distributed(torch.device("cuda")) == (DistInfo(3, 4, 1), torch.device("cuda", 1))
    assert current == [torch.device("cuda", 1)] and backends == ["nccl"]


def test_seed_step_seeds_every_gpu_with_the_cpu_s_64_bit_seed(monkeypatch):
    """docs (seed_step): CPU and every GPU, from a 64-bit hash (a CUDA generator uses all 64 bits)."""
    gpus, cpu = [], []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", gpus.append)
    for step in range(16):
        seed_step(7, step, 0)
        cpu.append(torch.initial_seed())
    assert gpus == cpu
    assert max(cpu) >= 2**32  # 16 seeds all below 2**32 has probability 2**-512 for 64-bit ones


def test_the_mean_over_four_ranks_divides_their_sum_by_four(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "all_reduce", lambda t, *a, **k: t.mul_(4))  # four ranks holding the same tensor
    assert mean_over_ranks(torch.tensor([2.0, -6.0]), DistInfo(1, 4, 1)).tolist() == [2.0, -6.0]


def test_any_rank_reduces_a_flag_on_this_rank_s_device(monkeypatch):
    """NCCL reduces GPU tensors only: the flag is made on the device given, not on the CPU."""
    import torch.distributed as dist

    class Reduced(Exception):
        pass

    def all_reduce(t, *a, **k):
        raise Reduced(t.device)

    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    with pytest.raises(Reduced) as seen:
        any_rank(True, DistInfo(0, 2, 0), torch.device("meta"))
    assert seen.value.args == (torch.device("meta"),)


def test_without_a_process_group_the_waits_do_nothing():
    info = DistInfo(0, 2, 0)  # two processes said, none joined
    assert patient_group(info) is None
    barrier(info)
    shutdown_distributed(info)


def test_the_patient_group_waits_24_hours_meets_once_and_is_left_after_its_barrier(monkeypatch):
    """docs/training.md: the others wait for rank 0 on a group of their own with a 24-hour limit. patient_group meets
    on it once while every rank is there (NCCL connects at the first collective); barrier on it then leaves it;
    shutdown waits for every rank before leaving the process group."""
    import datetime

    import torch.distributed as dist

    calls, group = [], object()
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "new_group", lambda **kw: calls.append(("new_group", kw)) or group)
    monkeypatch.setattr(dist, "barrier", lambda group=None: calls.append(("barrier", group)))
    monkeypatch.setattr(dist, "destroy_process_group", lambda group=None: calls.append(("destroy", group)))
    info = DistInfo(1, 2, 1)
    assert patient_group(info) is group
    barrier(info, group)
    barrier(info)
    shutdown_distributed(info)
    assert calls == [("new_group", {"timeout": datetime.timedelta(hours=24)}), ("barrier", group), ("barrier", group),
                     ("destroy", group), ("barrier", None), ("barrier", None), ("destroy", None)]
