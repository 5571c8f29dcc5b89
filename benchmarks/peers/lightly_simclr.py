"""SimCLR with lightly's building blocks (2D only): the recipe of lightly's own SimCLR example.

Peer row of issue #9 for 2D SimCLR: ``lightly`` (https://github.com/lightly-ai/lightly, tested
with lightly 1.6.0) is not a medssl dependency. Install it next to a torchvision that matches
the installed torch (see ``docs/benchmarks_medmnist.md``, section "Peers"); without it every
call here reports the import error instead of running.

* **Views**: ``lightly.transforms.SimCLRTransform`` (random resized crop with scale ≥ 0.08,
  horizontal flip, colour jitter, random grey scale) with lightly's documented setting for
  small images (its CIFAR-10 example: ``cj_strength=0.5, gaussian_blur=0.0``),
  ``input_size=crop`` and ``normalize=None`` (ImageNet statistics do not apply to 1-channel
  scans, and the probe sees the raw [0, 1] images). The images are given to it as 8-bit
  grey-scale PIL images, as MedMNIST's own loader delivers them; its ``ToTensor`` returns
  (1, crop, crop) in [0, 1].
* **Backbone**: the MONAI ResNet-18 of :func:`common.monai_resnet18` (lightly is
  backbone-agnostic; its example uses torchvision's ResNet-18 with ``fc = Identity``).
* **Head**: ``lightly.models.modules.SimCLRProjectionHead(D, D, 128)`` (2 layers, BatchNorm).
* **Loss**: ``lightly.loss.NTXentLoss(temperature=0.1)`` (lightly's default is 0.5; 0.1 is the
  value every other row of the benchmark uses).
* **Optimiser**: ``torch.optim.Adam(lr)``, constant, as in :mod:`.monai_stock` (lightly's
  example uses SGD lr 0.06; the benchmark fixes the learning rate across rows). The two views
  are encoded in two forward passes, as in lightly's example. ``drop_last=True``, seeded.
"""

from __future__ import annotations

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

SPATIAL_DIMS = (2,)
DESCRIPTION = ("lightly 1.6 SimCLR: SimCLRTransform (small-image setting) + SimCLRProjectionHead + NTXentLoss(τ=0.1) "
               "on the MONAI resnet18, Adam")


def available() -> tuple[bool, str]:
    """``(True, "")`` when lightly's loss, heads and transforms import; else ``(False, reason)``."""
    try:
        from lightly.loss import NTXentLoss  # noqa: F401
        from lightly.models.modules import SimCLRProjectionHead  # noqa: F401
        from lightly.transforms import SimCLRTransform  # noqa: F401
    except Exception as e:  # noqa: BLE001 - lightly imports torchvision, which can also fail with RuntimeError
        return False, (f"lightly not importable ({type(e).__name__}: {e}); it needs lightly==1.6.0 and a torchvision "
                       f"built for this torch {torch.__version__} (see docs/benchmarks_medmnist.md, Peers)")
    return True, ""


class _PILViews(TwoViews):
    """``(view(pil), view(pil))`` with the image turned into an 8-bit grey-scale PIL image first."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        pil = Image.fromarray(np.round(self.images[i, 0].clamp(0, 1).numpy() * 255).astype(np.uint8))  # mode "L"
        return self.view(pil).as_subclass(torch.Tensor), self.view(pil).as_subclass(torch.Tensor)


def pretrain_lightly(train_images: np.ndarray, spatial_dims: int, epochs: int, batch: int, lr: float, seed: int,
                     device: str = "cpu", crop: int | tuple = 28, encoder_kwargs: dict | None = None,
                     workers: int = 0, history: list | None = None) -> torch.nn.Module:
    """SimCLR with lightly on 2D ``train_images`` (no labels).

    Args:
        train_images: (N, 1, H, W) float32 in [0, 1].
        spatial_dims: must be 2.
        epochs, batch, lr, seed, device, workers, history: as in
            :func:`.monai_stock.pretrain_monai_stock`.
        crop: side of each (square) view; a tuple must have equal sides.
        encoder_kwargs: extra arguments of ``monai.networks.nets.resnet18`` (None: stock network).

    Returns:
        The trained backbone without projection head, frozen: (B, 1, H, W) → (B, D).

    Raises:
        ValueError: ``spatial_dims != 2`` or non-square ``crop``.
        ImportError: lightly is not usable (the reason from :func:`available`).
    """
    if spatial_dims != 2:
        raise ValueError(f"the lightly peer is 2D only (its transforms work on PIL images), got spatial_dims={spatial_dims}")
    shape = as_shape(crop, 2)
    if shape[0] != shape[1]:
        raise ValueError(f"lightly's SimCLRTransform makes square views; got crop {crop}")
    ok, why = available()
    if not ok:
        raise ImportError(why)
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    images = check_images(train_images, 2)
    seed_everything(seed)
    encoder = monai_resnet18(2, encoder_kwargs)
    d = embedding_dim(encoder, shape)
    head = SimCLRProjectionHead(input_dim=d, hidden_dim=d, output_dim=128)
    encoder.to(device).train()
    head.to(device).train()
    # SimCLRTransform returns both views; one of its two (identical) view transforms is drawn twice per image
    view = SimCLRTransform(input_size=shape[0], cj_strength=0.5, gaussian_blur=0.0, normalize=None).transforms[0]
    loss_fn = NTXentLoss(temperature=0.1)
    optimiser = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=lr)
    batch = min(batch, len(images))
    loader = torch.utils.data.DataLoader(_PILViews(images, view), batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=workers, generator=loader_generator(seed))
    train_two_views(encoder, head, loss_fn, optimiser, loader, epochs, device, history)
    return frozen(encoder)
