"""SimCLR / y-aware on volumes with nidl's estimators (3D): NeuroSpin's ``nidl`` 0.0.2 from PyPI.

What the wheel offers (``nidl-0.0.2-py3-none-any.whl``, read before wrapping it):
``nidl.estimators.ssl.SimCLR`` and ``nidl.estimators.ssl.YAwareContrastiveLearning`` are
PyTorch-Lightning modules with a scikit-learn-like ``fit(train_dataloader)``; they take any
``nn.Module`` encoder and batches ``[X1, X2]`` (SimCLR) or ``([X1, X2], y)`` (y-aware, ``y`` the
auxiliary variable such as age), so in-memory arrays work through a plain ``DataLoader``. Views
come from ``nidl.volume.transforms`` (3D, per sample, NumPy/SciPy/SimpleITK) chained by
``nidl.transforms.MultiViewsTransform``; nidl 0.0.2 ships no ready-made SimCLR view pipeline,
so this module composes one from those building blocks.

The recipe here:

* **Backbone**: the MONAI ResNet-18 of :func:`common.monai_resnet18` (nidl's own
  ``nidl.volume.backbones.resnet18`` is built for 128³ brains; the benchmark fixes the network).
* **Views** (nidl transforms, each per sample, drawn twice): ``RandomResizedCrop(crop,
  scale=(0.125, 1))`` (side ≥ ½, as the MONAI row), ``RandomFlip(axes=(0, 1, 2),
  flip_probability=0.5)``, ``RandomGaussianBlur(sigma=(0.1, 1), p=0.5)``,
  ``RandomGaussianNoise(std=(0, 0.05), p=0.5)`` (nidl's default σ ∈ [0.1, 1] is for
  z-scored MRI; these images are in [0, 1]), ``RandomErasing(p=0.5)`` (cutout, used by the
  y-aware paper, Dufumier et al., MICCAI 2021).
* **Estimator**: nidl's defaults (projection head Linear–BN–ReLU–Linear, InfoNCE / y-aware
  InfoNCE at τ = 0.1, AdamW with weight decay 5·10⁻⁴ off biases and norms, linear warm-up +
  cosine per step) except ``learning_rate=lr``, head width D → D → 128 and a warm-up of
  ``min(1, epochs / 4)`` epochs like medssl's trainer (nidl's default warm-up is 10 epochs,
  longer than a short benchmark run). Lightning runs one device, fp32, no checkpoints or logger.

Requirements (none are medssl dependencies): ``nidl==0.0.2`` installed with ``--no-deps``
(it pins ``scikit-learn<=1.7.0`` although its SimCLR/y-aware code runs on 1.9), plus
``pytorch_lightning``, ``torchmetrics`` and ``timm`` (``nidl.estimators.ssl`` imports its I-JEPA
module, which imports timm, which imports torchvision); see docs/benchmarks_medmnist.md, Peers.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .common import (
    as_shape,
    check_images,
    embedding_dim,
    frozen,
    loader_generator,
    monai_resnet18,
    seed_everything,
)

SPATIAL_DIMS = (3,)
DESCRIPTION = ("nidl 0.0.2 SimCLR estimator (PyTorch Lightning; y-aware when an auxiliary variable is given) with "
               "nidl.volume.transforms views on the MONAI resnet18")


def available() -> tuple[bool, str]:
    """``(True, "")`` when nidl's SSL estimators and volume transforms import; else ``(False, reason)``."""
    try:
        from nidl.estimators.ssl import SimCLR, YAwareContrastiveLearning  # noqa: F401
        from nidl.volume.transforms.augmentation import RandomResizedCrop  # noqa: F401
    except Exception as e:  # noqa: BLE001 - timm/torchvision can fail with RuntimeError as well
        return False, (f"nidl not importable ({type(e).__name__}: {e}); it needs nidl==0.0.2 (--no-deps), "
                       f"pytorch_lightning, torchmetrics, timm and a torchvision built for torch {torch.__version__}")
    return True, ""


def build_views(crop: int | tuple):
    """nidl per-sample 3D view transform: (1, *S) array → (1, *crop) float32 tensor."""
    from nidl.volume.transforms.augmentation import (
        RandomErasing,
        RandomFlip,
        RandomGaussianBlur,
        RandomGaussianNoise,
        RandomResizedCrop,
    )

    steps = [RandomResizedCrop(as_shape(crop, 3), scale=(0.125, 1.0)),
             RandomFlip(axes=(0, 1, 2), flip_probability=0.5),
             RandomGaussianBlur(sigma=(0.1, 1.0), p=0.5),
             RandomGaussianNoise(std=(0.0, 0.05), p=0.5),
             RandomErasing(p=0.5)]

    def view(x: np.ndarray) -> torch.Tensor:
        for step in steps:
            x = step(x)
        return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)

    return view


class _Views(Dataset):
    """``[v1, v2]`` or ``([v1, v2], y)`` from ``nidl.transforms.MultiViewsTransform(view, n_views=2)``."""

    def __init__(self, images: np.ndarray, views, aux: np.ndarray | None) -> None:
        self.images, self.views, self.aux = images, views, aux

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        pair = self.views(self.images[i])
        return pair if self.aux is None else (pair, torch.as_tensor(self.aux[i], dtype=torch.float32))


def _history_callback(history: list | None):
    import time

    from pytorch_lightning.callbacks import Callback

    class History(Callback):
        """Mean training loss per epoch (nidl logs only per step)."""

        def on_train_epoch_start(self, trainer, pl_module):
            self.t0, self.total, self.steps = time.time(), 0.0, 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.total, self.steps = self.total + float(outputs["loss"]), self.steps + 1

        def on_train_epoch_end(self, trainer, pl_module):
            if history is not None:
                history.append({"epoch": trainer.current_epoch, "loss": self.total / max(self.steps, 1),
                                "steps": self.steps, "seconds": round(time.time() - self.t0, 2)})

    return History()


def pretrain_nidl(train_images: np.ndarray, spatial_dims: int, epochs: int, batch: int, lr: float, seed: int,
                  device: str = "cpu", crop: int | tuple = 28, encoder_kwargs: dict | None = None, workers: int = 0,
                  history: list | None = None, aux: np.ndarray | None = None, bandwidth: float | None = None
                  ) -> torch.nn.Module:
    """nidl SimCLR (or y-aware with ``aux``) on 3D ``train_images``.

    Args:
        train_images: (N, 1, *S) float32 in [0, 1].
        spatial_dims: must be 3.
        epochs, batch, lr, seed, device, crop, encoder_kwargs, workers, history: as in
            :func:`.monai_stock.pretrain_monai_stock`.
        aux: optional (N,) or (N, k) auxiliary variable (e.g. age in years): y-aware
            contrastive learning (Dufumier et al., MICCAI 2021) instead of SimCLR.
        bandwidth: σ² of y-aware's Gaussian kernel in ``aux`` units squared (required with ``aux``).

    Returns:
        The trained backbone without projection head, frozen: (B, 1, *S) → (B, D).
    """
    if spatial_dims != 3:
        raise ValueError(f"the nidl peer is 3D only (nidl.volume.transforms), got spatial_dims={spatial_dims}")
    if aux is not None and bandwidth is None:
        raise ValueError("y-aware (aux given) needs bandwidth = σ² of the kernel on aux, e.g. 25.0 for σ = 5 years")
    ok, why = available()
    if not ok:
        raise ImportError(why)
    from nidl.estimators.ssl import SimCLR, YAwareContrastiveLearning
    from nidl.transforms import MultiViewsTransform

    images = check_images(train_images, 3).numpy()
    if aux is not None and len(aux) != len(images):
        raise ValueError(f"aux has {len(aux)} rows for {len(images)} images")
    seed_everything(seed)
    encoder = monai_resnet18(3, encoder_kwargs)
    d = embedding_dim(encoder, as_shape(crop, 3))
    common = {"encoder": encoder, "proj_input_dim": d, "proj_hidden_dim": d, "proj_output_dim": 128,
              "temperature": 0.1, "learning_rate": lr, "lr_scheduler_kwargs": {"warmup_epochs": min(1.0, epochs / 4)},
              "max_epochs": epochs, "random_state": seed, "accelerator": "cpu" if str(device) == "cpu" else "gpu",
              "devices": 1, "enable_checkpointing": False, "logger": False, "enable_progress_bar": False,
              "enable_model_summary": False, "num_sanity_val_steps": 0, "callbacks": [_history_callback(history)]}
    if aux is None:
        model = SimCLR(**common)
    else:
        model = YAwareContrastiveLearning(kernel="gaussian", bandwidth=float(bandwidth), **common)
    views = MultiViewsTransform(build_views(crop), n_views=2)
    loader = DataLoader(_Views(images, views, None if aux is None else np.asarray(aux, np.float32)),
                        batch_size=min(batch, len(images)), shuffle=True, drop_last=True, num_workers=workers,
                        generator=loader_generator(seed))
    quiet = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [q.level for q in quiet]
    for q in quiet:  # Lightning's banners (GPU available, seed set, …) on every fit
        q.setLevel(logging.WARNING)
    try:
        model.fit(loader)
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    return frozen(model.encoder)
