"""Helpers for the augmentation tests (imported as a module): small phantoms and the shared real data."""

from __future__ import annotations


import torch

from shared_data import SHARED  # noqa: F401  (re-exported for the augmentation tests)
from shared_data import shared_path as real_path  # noqa: F401


def blob_phantom(shape, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """(B, 1, *shape) smooth phantom: Gaussian blobs inside a sphere, background 0."""
    g = torch.Generator().manual_seed(seed)
    axes = torch.meshgrid(*[torch.linspace(-1, 1, s) for s in shape], indexing="ij")
    r2 = sum(a**2 for a in axes)
    out = torch.zeros((batch, 1) + tuple(shape))
    for b in range(batch):
        img = torch.zeros(shape)
        for _ in range(4):
            c = (torch.rand(len(shape), generator=g) - 0.5) * 0.8
            w = 0.15 + 0.2 * torch.rand(1, generator=g)
            img += torch.exp(-sum((a - ci) ** 2 for a, ci in zip(axes, c)) / (2 * w**2))
        out[b, 0] = img * (r2 < 0.8).float()
    return out


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def forced_params(tr, x, seed=0, **values):
    """``tr``'s random parameters for batch ``x`` with every sample applied and ``values`` fixed."""
    p = tr.sample_params(x.shape, gen(seed))
    p["apply"][:] = True
    for k, v in values.items():
        p[k] = torch.as_tensor(v, dtype=p[k].dtype).expand_as(p[k]).clone()
    return p
