"""MedMNIST data of ``benchmarks/medmnist.py``: the data cards, the compute :class:`Budget`, the official splits.

* :data:`CARDS` / :data:`NPZ` — the shared data card (and file) of each ``--dataset``;
* :class:`Budget`, :data:`DEFAULTS` and :data:`QUICK` — the budget of a run per dataset, and the
  smoke-run overrides of ``--quick``;
* :class:`Images` — a dataset of ``{"image", "label"}`` items over an array of images;
* :func:`load_splits` — the card's official train / val / test splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from medssl.data.card import load_card
from medssl.io import load_medmnist_split

CARDS = {"pneumonia": "shared_pneumoniamnist", "adrenal": "shared_adrenalmnist3d", "adrenal64": "shared_adrenalmnist3d"}
NPZ = {"adrenal64": "adrenalmnist3d_64.npz"}  #: the 64³ file of the same card (same subjects, splits and labels)
FRACTIONS = (0.01, 0.1, 1.0)


@dataclass
class Budget:
    """Compute budget of one benchmark run (all of it is printed and stored in the JSON)."""

    width: int = 16  #: ResNet-18 base width (channels of layer1)
    conv1_stride: int = 1  #: stem stride (1 keeps 28² / 28³ resolution in layer1)
    ssl_epochs: int = 4
    ssl_batch: int = 256
    ssl_lr: float = 2e-3
    crop: int = 28  #: side of each SimCLR view (random resized crop, resized to this)
    preset: str = "chest_xray"
    ft_epochs: int = 4  #: fine-tuning epochs at 100 % labels (more at fewer labels, see few_label_epochs)
    ft_batch: int = 128
    ft_lr: float = 1e-3
    ft_encoder_lrs: tuple = ()  #: CNN fine-tuning encoder lrs; the best official-val AUC is kept (empty: ft_lr)
    ft_head_init: str = "random"  #: fine-tuning head: "random" or "probe" (LP-FT, medssl.eval.finetune)
    scratch: bool = True  #: also train the same CNN / ViT from scratch (false: only the SSL fine-tuning rows)
    ssl_finetune: bool = True  #: fine-tune the SSL encoders (false: only the from-scratch rows, e.g. with --resume)
    patience: int = 2
    ft_augment: bool = True  #: flips (3D only) + small affine on fine-tuning batches (see ft_augment)
    limit: int = 0  #: use only N images of each split: a seed-0 random subset kept in file order (0 = all; --quick)
    fractions: tuple = FRACTIONS
    methods: str = "simclr"  #: SSL methods (comma-separated): simclr (ResNet-18), mae (ViT); baselines follow them
    vit: str = "vit_tiny"  #: MAE encoder (192-dim tokens, 3 heads)
    vit_layers: int = 6  #: transformer blocks of the ViT (vit_tiny has 12; 6 halves the CPU cost on 28² inputs)
    patch: int = 4  #: ViT patch side (28 → a 7×7 grid of 49 tokens)
    mae_epochs: int = 24
    mae_lr: float = 1e-3
    vit_ft_lr: float = 5e-4  #: fine-tuning lr of the ViT rows (MAE and from scratch; MAE paper: 5e-4 per 256 images)


DEFAULTS = {
    "pneumonia": Budget(),
    "adrenal": Budget(width=8, conv1_stride=2, ssl_epochs=8, ssl_batch=64, preset="ct", ft_epochs=10, ft_batch=32),
    "adrenal64": Budget(width=8, conv1_stride=2, ssl_epochs=8, ssl_batch=64, crop=64, preset="ct", ft_epochs=10,
                        ft_batch=32),
}
QUICK = {"pneumonia": {"width": 8, "ssl_epochs": 1, "ssl_batch": 64, "ft_epochs": 1, "limit": 256, "fractions": (0.1, 1.0),
                       "vit_layers": 1, "mae_epochs": 1},
         "adrenal": {"width": 4, "ssl_epochs": 1, "ssl_batch": 16, "ft_epochs": 1, "limit": 48, "fractions": (0.25, 1.0)},
         "adrenal64": {"width": 4, "ssl_epochs": 1, "ssl_batch": 8, "ft_epochs": 1, "limit": 24, "fractions": (1.0,)}}


class Images(Dataset):
    """Items ``{"image": (C, *S) float32 in [0, 1]}`` (+ ``"label"`` when labels are given)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None) -> None:
        self.images, self.labels = torch.from_numpy(images), labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        item = {"image": self.images[i]}
        if self.labels is not None:
            item["label"] = torch.tensor(int(self.labels[i]))
        return item


def load_splits(dataset: str, data_root: Path, limit: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Official train / val / test splits of the shared card: ``{split: (images (N, 1, *S), labels (N,))}``."""
    card = load_card(CARDS[dataset])
    path = Path(data_root) / Path(card.root).name / NPZ.get(dataset, card.npz)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (data card {card.name}); pass --data-root to the folder that holds "
                                f"{Path(card.root).name}/ (default ../shared/data)")
    out = {}
    for split in ("train", "val", "test"):
        x, y = load_medmnist_split(path, split)
        y = y.reshape(-1)
        if limit:  # roughly class-balanced for a smoke run: the first limit of a seed-0 permutation, in file order
            keep = np.sort(np.random.default_rng(0).permutation(len(y))[:limit])
            x, y = x[keep], y[keep]
        out[split] = (np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int64))
    return out
