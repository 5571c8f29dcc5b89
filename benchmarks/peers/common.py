"""Pieces shared by the peer recipes: input checks, the MONAI ResNet-18 backbone, two-view datasets.

Every peer trains the same backbone, a plain ``monai.networks.nets.resnet18`` without classifier
(``feed_forward=False``), so that a benchmark row differs from medssl's SimCLR row only in the
recipe (views, loss code, optimiser loop), not in the network. ``encoder_kwargs`` are passed to
MONAI's factory; ``None`` gives MONAI's stock network (7-wide stride-2 stem, max-pool, width 64).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset


def check_images(train_images: np.ndarray, spatial_dims: int) -> torch.Tensor:
    """``(N, 1, *S)`` float array in [0, 1] → float32 tensor (shared memory, no copy when possible)."""
    x = np.asarray(train_images)
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if x.ndim != spatial_dims + 2 or x.shape[1] != 1:
        raise ValueError(f"train_images must have shape (N, 1, *S) with {spatial_dims} spatial axes, got {x.shape}")
    if len(x) < 2:
        raise ValueError(f"a contrastive loss needs at least 2 images, got {len(x)}")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def unit_range(images: np.ndarray) -> np.ndarray:
    """(N, C, *S) images, each min-max rescaled to [0, 1] (float32): the peers' input convention, for a
    benchmark whose own scans are z-scored."""
    from medssl.methods.genesis import minmax_per_sample

    return minmax_per_sample(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))).numpy()


def as_shape(crop: int | tuple, spatial_dims: int) -> tuple[int, ...]:
    """``crop`` (int or per-axis tuple) → tuple of ``spatial_dims`` view sides (voxels)."""
    shape = (int(crop),) * spatial_dims if np.isscalar(crop) else tuple(int(c) for c in crop)
    if len(shape) != spatial_dims:
        raise ValueError(f"crop {crop} does not have {spatial_dims} entries")
    return shape


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (the generators that per-sample transform libraries use)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resnet_kwargs_of(encoder) -> dict:
    """``monai.networks.nets.resnet18`` arguments that rebuild medssl's ResNet-18 ``encoder`` (a
    ``ResNetEncoder``): its width, stem kernel, stem stride and max-pool. MONAI's factory defaults to a
    stride-1 stem, medssl's to stride 2, so both are always passed."""
    kw = encoder.monai_kwargs()
    if kw["block"] != "basic" or list(kw["layers"]) != [2, 2, 2, 2]:
        raise ValueError(f"the peers train a ResNet-18; the benchmark's encoder is {kw['block']} {kw['layers']}")
    return {"widen_factor": kw["block_inplanes"][0] / 64, "conv1_t_size": kw["conv1_t_size"],
            "conv1_t_stride": kw["conv1_t_stride"], "no_max_pool": kw["no_max_pool"]}


def monai_resnet18(spatial_dims: int, encoder_kwargs: dict | None = None) -> torch.nn.Module:
    """``monai.networks.nets.resnet18`` for 1-channel input without its classifier: (B, 1, *S) → (B, D)."""
    from monai.networks.nets import resnet18

    kwargs = dict(encoder_kwargs or {})
    for fixed in ("spatial_dims", "n_input_channels", "feed_forward"):
        if fixed in kwargs:
            raise ValueError(f"encoder_kwargs must not set {fixed!r} (fixed by the peer recipe)")
    return resnet18(spatial_dims=spatial_dims, n_input_channels=1, feed_forward=False, **kwargs)


def embedding_dim(encoder: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """Output width D of ``encoder`` on a (2, 1, *shape) input (train/eval mode restored)."""
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        d = encoder(torch.zeros(2, 1, *shape)).shape[-1]
    encoder.train(was_training)
    return int(d)


def frozen(encoder: torch.nn.Module) -> torch.nn.Module:
    """Eval mode, no gradients, on the CPU: ready for ``medssl.eval.features.extract_features``."""
    encoder = encoder.cpu().eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder


class TwoViews(Dataset):
    """Items ``(view(x), view(x))``: two independent draws of a per-sample augmentation ``view``."""

    def __init__(self, images: torch.Tensor, view: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.images, self.view = images, view

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i]
        return self.view(x), self.view(x)


def loader_generator(seed: int) -> torch.Generator:
    """Generator for the DataLoader's shuffling (one per run, seeded)."""
    return torch.Generator().manual_seed(seed)


def train_two_views(encoder: torch.nn.Module, head: torch.nn.Module, loss_fn, optimiser, loader, epochs: int,
                    device: str, history: list | None = None) -> None:
    """The plain loop of a two-view SimCLR recipe: ``loss_fn(head(encoder(v1)), head(encoder(v2)))`` per batch
    of ``(v1, v2)`` views; per-epoch mean loss, steps and seconds appended to ``history``."""
    for epoch in range(epochs):
        t0, total, steps = time.time(), 0.0, 0
        for v1, v2 in loader:
            v1, v2 = v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)
            loss = loss_fn(head(encoder(v1)), head(encoder(v2)))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total, steps = total + loss.item(), steps + 1
        if history is not None:
            history.append({"epoch": epoch, "loss": total / max(steps, 1), "steps": steps,
                            "seconds": round(time.time() - t0, 2)})
