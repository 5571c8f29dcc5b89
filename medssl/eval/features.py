"""Embeddings of a frozen encoder: deterministic, no augmentation, batched."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm


@torch.no_grad()
def extract_features(encoder: torch.nn.Module, dataset: Dataset, batch_size: int = 32, device: torch.device | str = "cpu",
                     progress: bool = False) -> dict[str, np.ndarray]:
    """Run ``encoder`` in eval mode over ``dataset``.

    Returns:
        ``{"features": (N, out_dim) float32, "age": (N,), "site"/"sex"/"label"/"index": (N,)}``
        in dataset order.
    """
    was_training = encoder.training
    encoder.eval().to(device)
    out: dict[str, list] = {}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in tqdm(loader, desc="features", disable=not progress, leave=False):
        out.setdefault("features", []).append(encoder(batch["image"].to(device)).float().cpu().numpy())
        for k, v in batch.items():
            if k != "image":
                out.setdefault(k, []).append(v.numpy())
    encoder.train(was_training)
    return {k: np.concatenate(v) for k, v in out.items()}
