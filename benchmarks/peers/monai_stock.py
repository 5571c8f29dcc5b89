"""The stock MONAI SimCLR recipe: what a user writes from MONAI's building blocks and tutorials.

Peer row of issue #9 ("stock MONAI SimCLR recipe"): SimCLR (Chen et al., ICML 2020) written with
MONAI only, the way MONAI's self-supervised tutorial composes it
(``Project-MONAI/tutorials/self_supervised_pretraining``: per-sample random transforms in a data
loader, two independently augmented copies per image, ``monai.losses.ContrastiveLoss``, Adam):

* **Backbone**: ``monai.networks.nets.resnet18(spatial_dims, n_input_channels=1,
  feed_forward=False, **encoder_kwargs)`` (no classifier; global-average-pooled embedding).
  ``encoder_kwargs=None`` is MONAI's stock network; a benchmark passes the stem/width of the
  medssl row it is compared with (e.g. ``conv1_t_size=3, conv1_t_stride=1, no_max_pool=True,
  widen_factor=0.25``), so that only the recipe differs.
* **Views**: MONAI *array* transforms applied per sample on the CPU inside the DataLoader,
  drawn twice per image: ``RandScaleCrop(roi_scale=0.5, max_roi_scale=1, random_size=True)``
  then ``Resize(crop)`` (= random resized crop), ``RandFlip(p=0.5)`` along every axis,
  ``RandAffine(p=0.5, rotation ±15°, scale ±10 %)``, ``RandAdjustContrast(p=0.5, γ ∈ [0.7, 1.5])``,
  ``RandGaussianNoise(p=0.5, std=0.05)`` (σ drawn from [0, 0.05] per image: MONAI's ``sample_std``). Intensities stay in [0, 1]-ish (no normalisation), as
  the probe later sees the raw images.
* **Head**: Linear(D, D) → ReLU → Linear(D, 128) (the SimCLR paper's MLP).
* **Loss**: ``monai.losses.ContrastiveLoss(temperature=0.1)`` on the two views' projections.
  Its ``batch_size`` argument is deprecated in MONAI ≥ 1.0 (inferred in ``forward``; passing it
  only warns), so it is not passed.
* **Optimiser**: ``torch.optim.Adam(lr)``, constant learning rate, no weight decay, no warm-up
  (what the tutorial does); the two views go through the encoder in two forward passes.
* Shuffled ``monai.data.DataLoader`` with ``drop_last=True`` (as many steps per epoch as
  medssl's trainer), seeded: same seed → same initial weights, order and views (``workers=0``).

Not done on purpose (a user following the tutorial would not): batch-level GPU augmentation,
warm-up/cosine schedule, LARS, mixed precision, gathering across GPUs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .common import (
    TwoViews,
    as_shape,
    check_images,
    embedding_dim,
    frozen,
    loader_generator,
    monai_resnet18,
    seed_everything,
    train_two_views,
)

SPATIAL_DIMS = (2, 3)
DESCRIPTION = ("MONAI resnet18 + per-sample MONAI transforms in a DataLoader + monai.losses.ContrastiveLoss(τ=0.1) "
               "+ Adam (stock tutorial recipe)")


def available() -> tuple[bool, str]:
    """MONAI is a medssl dependency: available whenever medssl is."""
    try:
        from monai.losses import ContrastiveLoss  # noqa: F401
        from monai.networks.nets import resnet18  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure is a reason to skip
        return False, f"monai not importable: {type(e).__name__}: {e}"
    return True, ""


def build_views(spatial_dims: int, crop: int | tuple, seed: int):
    """Per-sample MONAI view transform: (1, *S) tensor → (1, *crop) float tensor (random each call)."""
    from monai import transforms as T

    shape = as_shape(crop, spatial_dims)
    view = T.Compose([
        T.RandScaleCrop(roi_scale=0.5, max_roi_scale=1.0, random_size=True),
        T.Resize(spatial_size=shape, mode="bilinear" if spatial_dims == 2 else "trilinear"),
        *[T.RandFlip(prob=0.5, spatial_axis=a) for a in range(spatial_dims)],
        T.RandAffine(prob=0.5, rotate_range=(math.pi / 12,) * (1 if spatial_dims == 2 else 3),
                     scale_range=(0.1,) * spatial_dims, padding_mode="zeros"),
        T.RandAdjustContrast(prob=0.5, gamma=(0.7, 1.5)),
        T.RandGaussianNoise(prob=0.5, mean=0.0, std=0.05),
        T.EnsureType(data_type="tensor", dtype=torch.float32, track_meta=False),
    ])
    view.set_random_state(seed=seed)
    return view


def pretrain_monai_stock(train_images: np.ndarray, spatial_dims: int, epochs: int, batch: int, lr: float, seed: int,
                         device: str = "cpu", crop: int | tuple = 28, encoder_kwargs: dict | None = None,
                         workers: int = 0, history: list | None = None) -> torch.nn.Module:
    """SimCLR the stock MONAI way on ``train_images`` (no labels).

    Args:
        train_images: (N, 1, *S) float32 in [0, 1].
        spatial_dims: 2 or 3.
        epochs: passes over the data; steps per epoch = N // batch (last partial batch dropped).
        batch: images per step (2·batch views).
        lr: Adam learning rate (constant).
        seed: initial weights, data order and augmentation draws.
        device: where the network trains (views are made on the CPU).
        crop: side (or per-axis sides) of each view after the random resized crop.
        encoder_kwargs: extra arguments of ``monai.networks.nets.resnet18`` (None: stock network).
        workers: DataLoader worker processes (0: in the main process, fully reproducible).
        history: if a list, one ``{"epoch", "loss", "steps", "seconds"}`` per epoch is appended.

    Returns:
        The trained backbone without projection head, frozen (eval, no grad, CPU):
        (B, 1, *S) → (B, D).
    """
    from monai.data import DataLoader
    from monai.losses import ContrastiveLoss

    images = check_images(train_images, spatial_dims)
    seed_everything(seed)
    encoder = monai_resnet18(spatial_dims, encoder_kwargs)
    d = embedding_dim(encoder, as_shape(crop, spatial_dims))
    head = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU(inplace=True), torch.nn.Linear(d, 128))
    encoder.to(device).train()
    head.to(device).train()
    loss_fn = ContrastiveLoss(temperature=0.1)
    optimiser = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=lr)
    batch = min(batch, len(images))
    loader = DataLoader(TwoViews(images, build_views(spatial_dims, crop, seed)), batch_size=batch, shuffle=True,
                        drop_last=True, num_workers=workers, generator=loader_generator(seed))
    train_two_views(encoder, head, loss_fn, optimiser, loader, epochs, device, history)
    return frozen(encoder)
