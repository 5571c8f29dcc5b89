"""DDP worker and shared inputs for test_losses_distributed.py.

A separate, importable module: ``torch.multiprocessing.spawn`` pickles the worker by module
name, and test modules are not importable under pytest's ``--import-mode=importlib``.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from medssl.losses import gather_with_grad
from medssl.losses.distributed import gather_no_grad
from medssl.registry import LOSSES

WORLD, N_LOCAL, VIEWS, D_IN, D_OUT = 2, 5, 2, 6, 4
CASES = [  # (registry name, constructor kwargs, which labels)
    ("ntxent", {"temperature": 0.2}, None),
    ("yaware", {"temperature": 0.2, "sigma": 4.0}, "ages"),
    ("supcon", {"temperature": 0.2}, "classes"),
    ("threshold", {"temperature": 0.2, "sigma": 3.0}, "ages"),
    ("eps_supinfonce", {"temperature": 0.2, "epsilon": 0.25}, "classes"),
    ("fairkl", {"temperature": 1.0}, "fair"),
    ("fairkl", {"temperature": 0.5}, "fair_identity"),  # labels=None: global sample identity
]


def global_batch():
    g = torch.Generator().manual_seed(123)
    x = torch.randn(WORLD * N_LOCAL, VIEWS, D_IN, generator=g, dtype=torch.float64)
    ages = 20 + 40 * torch.rand(WORLD * N_LOCAL, generator=g, dtype=torch.float64)
    classes = torch.randint(0, 3, (WORLD * N_LOCAL,), generator=g)
    sites = torch.randint(0, 2, (WORLD * N_LOCAL,), generator=g)
    return x, {"ages": ages, "classes": classes, "sites": sites}


def encoder():
    """A linear "encoder" with the same seeded weights in every process (global RNG untouched)."""
    layer = torch.nn.utils.skip_init(torch.nn.Linear, D_IN, D_OUT, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        layer.weight.copy_(0.4 * torch.randn(D_OUT, D_IN, generator=g, dtype=torch.float64))
        layer.bias.copy_(0.1 * torch.randn(D_OUT, generator=g, dtype=torch.float64))
    return layer


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
    if which == "fair_identity":
        return {"classes": None, "sites": all_labels["sites"][rows]}
    return all_labels[which][rows]


def worker(rank, port, out_dir):
    torch.set_num_threads(1)
    # A collective one rank never joins (a regression that desynchronises the ranks) fails after a minute instead of
    # hanging for gloo's default 30 minutes.
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        x, labels = global_batch()
        rows = slice(rank * N_LOCAL, (rank + 1) * N_LOCAL)
        model = DistributedDataParallel(encoder())
        results = {}
        for name, kwargs, which in CASES:
            key = f"{name}/{which}"
            results[key] = loss_and_grads(model, x[rows], pick(labels, which, rows), name, kwargs)
            results[key + "/local"] = loss_and_grads(model, x[rows], pick(labels, which, rows), name, kwargs, gather=False)
        # Unequal local batches must fail loudly on every rank (embeddings and labels alike).
        for key, gather in (("unequal", gather_with_grad), ("unequal/no_grad", gather_no_grad)):
            try:
                gather(torch.zeros(3 + rank, 2))
                results[key] = "no error"
            except ValueError as err:
                results[key] = str(err)
        # A size past 255 on one rank (the sizes must not wrap around in a small dtype).
        try:
            gather_no_grad(torch.zeros(3 + 256 * rank))
            results["unequal/259"] = "no error"
        except ValueError as err:
            results["unequal/259"] = str(err)
        # Non-contiguous tensors in, and a non-contiguous gradient back (gloo needs contiguous buffers).
        leaf = (torch.arange(12.0, dtype=torch.float64).reshape(4, 3) + 100 * rank).requires_grad_()
        z = gather_with_grad(leaf.T)  # (3, 4) rows of a transpose
        weights = (rank + 1) * torch.arange(24.0, dtype=torch.float64).reshape(4, 6)
        (z.T * weights).sum().backward()  # dL/dz = weights.T, a transpose
        results["noncontig"] = (z.detach(), leaf.grad)
        codes = torch.arange(10).reshape(5, 2) + 100 * rank
        results["noncontig/no_grad"] = gather_no_grad(codes[:, 1])
        # A missing class code (-1) on one rank only must stop every rank (checked after the gather).
        for name, kwargs in (("supcon", {"temperature": 0.2}), ("fairkl", {"temperature": 1.0})):
            codes = labels["classes"][rows].clone()
            codes[0] = -1 if rank == 1 else codes[0]
            fair = {"classes": labels["classes"][rows], "sites": codes}
            try:
                loss_and_grads(model, x[rows], fair if name == "fairkl" else codes, name, kwargs)
                results[f"missing/{name}"] = "no error"
            except ValueError as err:
                results[f"missing/{name}"] = str(err)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
