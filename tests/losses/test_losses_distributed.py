"""2-process DDP (gloo, CPU) equals 1 process on the concatenated batch: loss and gradients."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from losses_ddp_worker import CASES, N_LOCAL, WORLD, encoder, global_batch, loss_and_grads, pick, worker

from medssl.losses import gather_with_grad
from medssl.losses.distributed import gather_no_grad


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_equals_single_process_on_full_batch(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    x, labels = global_batch()
    everything = slice(0, WORLD * N_LOCAL)
    for name, kwargs, which in CASES:
        ref_value, ref_grads = loss_and_grads(encoder(), x, pick(labels, which, everything), name, kwargs)
        for rank in ranks:
            value, grads = rank[f"{name}/{which}"]
            torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=1e-12, msg=f"{name} loss")
            for g, ref in zip(grads, ref_grads):
                torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-12, msg=f"{name} gradient")
        # Without gathering, each rank only sees its local batch: the gradients differ.
        local_grads = ranks[0][f"{name}/{which}/local"][1]
        assert not torch.allclose(local_grads[0], ref_grads[0], rtol=1e-3, atol=1e-6), name
    for own, rank in enumerate(ranks):
        assert "same batch size on every rank, got [3, 4]" in rank["unequal"]
        assert "same batch size on every rank, got [3, 4]" in rank["unequal/no_grad"]
        assert "class codes are missing" in rank["missing/supcon"] and f"rows [{N_LOCAL}]" in rank["missing/supcon"]
        assert rank["missing/fairkl"].startswith("FairKLLoss (bias_labels): class codes are missing")
        assert "same batch size on every rank, got [3, 259]" in rank["unequal/259"]
        # rows of rank r follow those of rank r - 1; the gradient of a rank's rows sums what every rank's loss sends
        z, grad = rank["noncontig"]
        torch.testing.assert_close(z, torch.cat([(torch.arange(12.0).reshape(4, 3) + 100 * r).T for r in range(WORLD)]
                                                ).double(), rtol=0, atol=0)
        total = sum(r + 1 for r in range(WORLD)) * torch.arange(24.0, dtype=torch.float64).reshape(4, 6)
        torch.testing.assert_close(grad, total[:, 3 * own:3 * own + 3], rtol=0, atol=0)
        assert rank["noncontig/no_grad"].tolist() == [1, 3, 5, 7, 9, 101, 103, 105, 107, 109]


def test_gather_is_identity_without_process_group():
    t = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(t) is t


def test_gather_no_grad_is_identity_without_process_group():
    t = torch.arange(4)
    assert gather_no_grad(t) is t


def test_gather_is_identity_in_a_one_process_group(tmp_path):
    """docs (gather_with_grad): the identity when the world size is 1, even with a process group."""
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        t, labels = torch.randn(3, 2, requires_grad=True), torch.arange(3)
        assert gather_with_grad(t) is t and gather_no_grad(labels) is labels
    finally:
        dist.destroy_process_group()
