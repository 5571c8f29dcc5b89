"""torchrun integration: process-group setup, rank info and batch sharding.

Launch with ``torchrun --nproc_per_node=N -m medssl.cli pretrain CONFIG ...`` (see
docs/training.md, "Multi-GPU on one node (torchrun)"). ``train.batch_size`` is always the
GLOBAL batch: every step each of the W ranks takes a contiguous 1/W slice of the same global
batch, so the data seen per step does not depend on the number of GPUs. Contrastive losses
gather embeddings from all ranks with gradients (:mod:`medssl.losses.distributed`), so the loss
is the one of the whole global batch.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import signal
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group described by torchrun's environment (no-op without it).

    Uses NCCL on CUDA and gloo on CPU; on CUDA each process takes GPU ``LOCAL_RANK``.
    Returns the rank info and the device this process must use.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(minutes=30))
    return DistInfo(rank, world, local), device


def shard(batch_indices: list[int], info: DistInfo) -> list[int]:
    """This rank's contiguous slice of a global batch (its length must divide evenly)."""
    n = len(batch_indices)
    if n % info.world_size:
        raise ValueError(f"train.batch_size={n} is not divisible by the {info.world_size} processes; "
                         f"use a multiple of {info.world_size}")
    per = n // info.world_size
    return batch_indices[info.rank * per:(info.rank + 1) * per]


#: how long the other ranks wait at :func:`barrier` on a :func:`patient_group` for rank 0 (``medssl.api.pretrain``:
#: checking the run and building the data cache) instead of the process group's 30 minutes
PREPARE_TIMEOUT = datetime.timedelta(hours=24)


def patient_group(info: DistInfo, timeout: datetime.timedelta = PREPARE_TIMEOUT) -> dist.ProcessGroup | None:
    """A second group of every rank (the process group's backend) whose collectives wait up to ``timeout``, for the
    others to wait at :func:`barrier` while rank 0 does something long (a cohort's cache takes hours). Call it on
    every rank at the same point, before rank 0 starts: its first barrier, run here while all ranks are present,
    sets up the group's connections (NCCL makes them at the first collective, through the rendezvous store, whose
    own waits are bounded by the 30 minutes). None without DDP."""
    if not (info.enabled and dist.is_initialized()):
        return None
    group = dist.new_group(timeout=timeout)
    dist.barrier(group=group)
    return group


def barrier(info: DistInfo, group: dist.ProcessGroup | None = None) -> None:
    """Wait for every rank: on the process group (its 30-minute limit), or on ``group`` (a :func:`patient_group`,
    left afterwards)."""
    if info.enabled and dist.is_initialized():
        dist.barrier(group=group)
        if group is not None:
            dist.destroy_process_group(group)


def shutdown_distributed(info: DistInfo) -> None:
    """Wait for every rank, then leave the process group. A gloo group left to the interpreter's exit can abort
    the process ("terminate called without an active exception", exit -6) after a finished run, which torchrun
    then reports as a failure."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Whether ``flag`` holds on any rank, the same answer on every rank (one MAX all-reduce of a flag under DDP),
    so that all ranks stop together instead of one leaving the others waiting in the next collective."""
    if not info.enabled:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def seed_step(seed: int, step: int, rank: int) -> None:
    """Re-seed torch's global RNG (CPU and every GPU: dropout and any other draw made without a generator) from
    ``(seed, step, rank)`` before optimiser step ``step`` (0-based, as counted before it).

    Each rank then draws its own masks for its own samples (every rank seeded alike used to draw the same ones, a
    correlation that one process on the global batch does not have), and a run resumed at any step draws exactly
    what an uninterrupted one drew, without any RNG state in the checkpoint. The triple is hashed to 64 bits: a
    CPU generator keeps only the low 32 bits of its seed, which a linear formula would make repeat."""
    digest = hashlib.blake2b(f"medssl-step/{seed}/{step}/{rank}".encode(), digest_size=8).digest()
    torch.manual_seed(int.from_bytes(digest, "little"))


def world_size_note(saved: int, info: DistInfo, source: str) -> None:
    """On rank 0, say that the checkpoint ``source`` was written by ``saved`` processes when this run has another
    number. Allowed (``train.batch_size`` is global: the same batches per step), but views and dropout masks are
    drawn per rank (:func:`seed_step`), so the resumed run does not repeat an uninterrupted ``saved``-process one."""
    if saved != info.world_size and info.is_main:
        print(f"note: {source} was written by {saved} process(es), this run has {info.world_size}: the same global "
              f"batches, but views and dropout masks are drawn per process, so it will not repeat an uninterrupted "
              f"{saved}-process run exactly (resume with {saved} processes for that)")


def mean_over_ranks(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``t`` (any shape, on this rank's device) over the ranks: one SUM all-reduce under DDP (``t`` itself
    without), so NaN/Inf on any rank makes the result non-finite on every rank. Every rank passes the same shape."""
    if not info.enabled:
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / info.world_size


def worker_ignores_sigterm(worker_id: int) -> None:  # noqa: ARG001 - DataLoader's worker_init_fn signature
    """DataLoader ``worker_init_fn``: the worker leaves SIGTERM to the training process, which finishes its step,
    checkpoints and then ends its workers (torchrun stops a process with ``os.killpg``, and Slurm signals every
    process of a job step, so the workers get the signal too; dying of it failed the step)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
