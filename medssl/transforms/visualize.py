"""A PNG grid of original images and random views, to check augmentations by eye."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def _mid_slices(img: torch.Tensor) -> list[tuple[str, np.ndarray]]:
    """(C, *S) -> [(plane name, 2D array)] of the first channel: the image itself in 2D,
    the three central orthogonal slices in 3D."""
    a = img[0].detach().float().cpu().numpy()
    if a.ndim == 2:  # medssl Volume convention (X, Y): X to the right, Y (DICOM rows) down
        return [("", a.T)]
    # central slice across axis k, rotated so that the last remaining axis points up
    return [(f"axis {k}", np.rot90(np.take(a, a.shape[k] // 2, axis=k))) for k in range(3)]


def save_view_grid(images: Sequence[tuple[str, torch.Tensor]], pipelines, path: str | Path, n_views: int = 4,
                   seed: int = 0, title: str | None = None) -> Path:
    """Write a PNG: one row per image (per central slice plane in 3D), original then views.

    Args:
        images: ``[(label, tensor (C, *S))]`` intensity-normalised images (any device).
        pipelines: one :class:`~medssl.transforms.views.ViewPipeline` for all images, or a
            sequence with one per image.
        path: output PNG path (parent folders are created).
        n_views: views per image.
        seed: seed of the generator (same seed, same picture).
        title: optional figure title.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pipes = list(pipelines) if isinstance(pipelines, (list, tuple)) else [pipelines] * len(images)
    if len(pipes) != len(images):
        raise ValueError(f"got {len(pipes)} pipelines for {len(images)} images; give one, or one per image")
    rows = []
    for (label, img), pipe in zip(images, pipes):
        g = torch.Generator(device=img.device).manual_seed(seed)
        views = pipe.views(img[None], n_views, g)[0]  # (V, C, *crop)
        lo, hi = np.percentile(img[0].float().cpu().numpy(), [0.5, 99.5])
        originals = _mid_slices(img)
        per_view = [_mid_slices(v) for v in views]
        for k, (plane, orig) in enumerate(originals):
            rows.append((f"{label} {plane}".strip(), orig, [pv[k][1] for pv in per_view], (lo, hi)))
    fig, axes = plt.subplots(len(rows), n_views + 1, figsize=(2.2 * (n_views + 1), 2.2 * len(rows)), squeeze=False)
    for r, (label, orig, views, (lo, hi)) in enumerate(rows):
        for c, panel in enumerate([orig] + views):
            ax = axes[r, c]
            ax.imshow(panel, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if c == 0 else f"view {c}", fontsize=9)
        axes[r, 0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


__all__ = ["save_view_grid"]
