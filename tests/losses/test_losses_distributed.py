"""2-process DDP (gloo, CPU) equals 1 process on the concatenated batch: loss and gradients."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from medssl.losses import FairKLLoss, gather_with_grad
from medssl.registry import LOSSES

WORLD, N_LOCAL, VIEWS, D_IN, D_OUT = 2, 5, 2, 6, 4
CASES = [  # (registry name, constructor kwargs, which labels)
    ("ntxent", {"temperature": 0.2}, None),
    ("yaware", {"temperature": 0.2, "sigma": 4.0}, "ages"),
    ("supcon", {"temperature": 0.2}, "classes"),
    ("threshold", {"temperature": 0.2, "sigma": 3.0}, "ages"),
    ("eps_supinfonce", {"temperature": 0.2, "epsilon": 0.25}, "classes"),
    ("fairkl", {"temperature": 1.0}, "fair"),
]


def global_batch():
    g = torch.Generator().manual_seed(123)
    x = torch.randn(WORLD * N_LOCAL, VIEWS, D_IN, generator=g, dtype=torch.float64)
    ages = 20 + 40 * torch.rand(WORLD * N_LOCAL, generator=g, dtype=torch.float64)
    classes = torch.randint(0, 3, (WORLD * N_LOCAL,), generator=g)
    sites = torch.randint(0, 2, (WORLD * N_LOCAL,), generator=g)
    return x, {"ages": ages, "classes": classes, "sites": sites}


def encoder():
    torch.manual_seed(0)  # same initial weights in every process
    return torch.nn.Linear(D_IN, D_OUT, dtype=torch.float64)


def loss_and_grads(model, x, labels, name, kwargs, gather=True):
    out = model(x)
    loss = LOSSES.get(name)(gather_distributed=gather, **kwargs)
    if name == "fairkl":
        value = loss(out, labels["classes"], labels["sites"])
    else:
        value = loss(out, None if labels is None else labels)
    value.backward()
    params = model.module if hasattr(model, "module") else model
    grads = [p.grad.detach().clone() for p in params.parameters()]
    for p in params.parameters():
        p.grad = None
    return value.detach(), grads


def pick(all_labels, which, rows):
    if which is None:
        return None
    if which == "fair":
        return {k: v[rows] for k, v in all_labels.items()}
    return all_labels[which][rows]


def worker(rank, port, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        x, labels = global_batch()
        rows = slice(rank * N_LOCAL, (rank + 1) * N_LOCAL)
        model = DistributedDataParallel(encoder())
        results = {}
        for name, kwargs, which in CASES:
            results[name] = loss_and_grads(model, x[rows], pick(labels, which, rows), name, kwargs)
            results[name + "/local"] = loss_and_grads(model, x[rows], pick(labels, which, rows), name, kwargs, gather=False)
        # Unequal local batches must fail loudly on every rank.
        try:
            gather_with_grad(torch.zeros(3 + rank, 2))
            results["unequal"] = "no error"
        except ValueError as err:
            results["unequal"] = str(err)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


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
            value, grads = rank[name]
            torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=1e-12, msg=f"{name} loss")
            for g, ref in zip(grads, ref_grads):
                torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-12, msg=f"{name} gradient")
        # Without gathering, each rank only sees its local batch: the gradients differ.
        local_grads = ranks[0][name + "/local"][1]
        assert not torch.allclose(local_grads[0], ref_grads[0], rtol=1e-3, atol=1e-6), name
    for rank in ranks:
        assert "same batch size on every rank, got [3, 4]" in rank["unequal"]


def test_gather_is_identity_without_process_group():
    t = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(t) is t
    assert isinstance(FairKLLoss().gather_distributed, bool)
