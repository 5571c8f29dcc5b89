"""Random patch masking for masked autoencoders (He et al., "Masked Autoencoders Are
Scalable Vision Learners", CVPR 2022), for 2D and 3D ViT inputs.

Per sample, patches are ranked by i.i.d. uniform noise; the first ``L * (1 - ratio)``
(rounded down, as in MAE) are kept. Conventions follow the MAE paper's implementation:
``mask`` (B, L) is 1 for masked (removed) patches and 0 for kept ones, ``ids_keep``
(B, L_keep) indexes the kept patches in the original order of the patch grid, and
``ids_restore`` (B, L) puts the ``[kept, masked]`` sequence back into patch-grid order:
``tokens_full = torch.gather(cat([kept, mask_tokens], 1), 1, ids_restore[..., None].expand(...))``.

Patch order is row-major over the patch grid (last spatial axis fastest), the same as
:func:`patchify`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from medssl.transforms.base import resolve_device


@dataclass
class PatchMask:
    """Result of :func:`random_patch_mask` (all tensors on the generator's device).

    Attributes:
        ids_keep: (B, L_keep) int64, indices of kept patches.
        mask: (B, L) float, 1 = masked, 0 = kept.
        ids_restore: (B, L) int64, inverse of the shuffle.
        ids_shuffle: (B, L) int64, kept patches first, then masked ones.
    """

    ids_keep: torch.Tensor
    mask: torch.Tensor
    ids_restore: torch.Tensor
    ids_shuffle: torch.Tensor


def random_patch_mask(batch_size: int, num_patches: int, mask_ratio: float = 0.75,
                      generator: torch.Generator | None = None, device=None) -> PatchMask:
    """Independent random patch masks for ``batch_size`` samples of ``num_patches`` patches.

    Args:
        mask_ratio: fraction of patches masked, in [0, 1); ``L_keep = int(L * (1 - ratio))``
            patches are kept per sample (at least one; float round-off such as
            10 * (1 - 0.9) = 0.9999 is not truncated to 0), the rest are masked.
        generator: explicit randomness (same seed -> same masks).
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1) so that at least one patch is kept, got {mask_ratio}")
    if generator is None:
        generator = torch.Generator(device=device or "cpu")
        generator.seed()
    device = resolve_device(generator, device)
    len_keep = max(1, int(num_patches * (1 - mask_ratio) + 1e-6))  # MAE's int(L(1-r)), robust to 0.9999
    noise = torch.rand((batch_size, num_patches), generator=generator, device=device)
    order = noise.argsort(1)
    ids_keep = order[:, :len_keep].sort(1).values  # kept patches in grid order
    mask = torch.ones((batch_size, num_patches), device=device).scatter_(1, ids_keep, 0.0)
    ids_shuffle = torch.cat([ids_keep, order[:, len_keep:]], 1)  # kept first, then masked
    ids_restore = ids_shuffle.argsort(1)
    return PatchMask(ids_keep=ids_keep, mask=mask, ids_restore=ids_restore, ids_shuffle=ids_shuffle)


def patch_grid(spatial_shape: Sequence[int], patch_size: Sequence[int] | int) -> tuple[int, ...]:
    """Number of patches per axis; the shape must be divisible by the patch size."""
    ps = _patch(patch_size, len(spatial_shape))
    if any(s % p for s, p in zip(spatial_shape, ps)):
        raise ValueError(f"image size {tuple(spatial_shape)} is not divisible by patch size {ps}; crop or pad to a multiple")
    return tuple(s // p for s, p in zip(spatial_shape, ps))


def _patch(patch_size, nd: int) -> tuple[int, ...]:
    ps = (int(patch_size),) * nd if isinstance(patch_size, int) else tuple(int(p) for p in patch_size)
    if len(ps) != nd:
        raise ValueError(f"patch_size {ps} must have {nd} entries for a {nd}D image")
    return ps


def patchify(x: torch.Tensor, patch_size: Sequence[int] | int) -> torch.Tensor:
    """(B, C, *S) -> (B, L, prod(patch) * C); each token is a patch flattened as (*patch, C)."""
    b, c, *shape = x.shape
    nd = len(shape)
    ps, grid = _patch(patch_size, nd), patch_grid(shape, patch_size)
    split = [b, c] + [v for a in range(nd) for v in (grid[a], ps[a])]
    order = [0] + [2 + 2 * a for a in range(nd)] + [3 + 2 * a for a in range(nd)] + [1]
    return x.reshape(split).permute(order).reshape(b, -1, int(torch.tensor(ps).prod()) * c)


def unpatchify(tokens: torch.Tensor, patch_size: Sequence[int] | int, spatial_shape: Sequence[int],
               channels: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, L, prod(patch) * C) -> (B, C, *S)."""
    nd = len(spatial_shape)
    ps, grid = _patch(patch_size, nd), patch_grid(spatial_shape, patch_size)
    b = tokens.shape[0]
    x = tokens.reshape([b] + list(grid) + list(ps) + [channels])
    order = [0, 2 * nd + 1] + [v for a in range(nd) for v in (1 + a, 1 + nd + a)]
    return x.permute(order).reshape([b, channels] + list(spatial_shape))


def keep_tokens(tokens: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
    """(B, L, D) tokens -> (B, L_keep, D) kept tokens."""
    return tokens.gather(1, ids_keep[..., None].expand(-1, -1, tokens.shape[-1]))


def mask_to_image(mask: torch.Tensor, grid: Sequence[int], patch_size: Sequence[int] | int) -> torch.Tensor:
    """(B, L) patch mask -> (B, 1, *S) voxel mask (for losses on masked voxels and for display)."""
    nd = len(grid)
    ps = _patch(patch_size, nd)
    m = mask.reshape([mask.shape[0], 1] + list(grid))
    for a in range(nd):
        m = m.repeat_interleave(ps[a], dim=2 + a)
    return m


class RandomPatchMasking:
    """MAE masking of image batches: ``patches, pm = masking(x, generator)``.

    Args:
        patch_size: ViT patch size (int or per axis).
        mask_ratio: fraction of patches masked (MAE default 0.75).

    Returns from ``__call__``: ``(kept, pm)`` with ``kept`` (B, L_keep, prod(patch) * C) the
    visible patches and ``pm`` a :class:`PatchMask`.
    """

    def __init__(self, patch_size: Sequence[int] | int = 16, mask_ratio: float = 0.75) -> None:
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        self.patch_size, self.mask_ratio = patch_size, float(mask_ratio)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, PatchMask]:
        grid = patch_grid(x.shape[2:], self.patch_size)
        pm = random_patch_mask(x.shape[0], int(torch.tensor(grid).prod()), self.mask_ratio, generator, x.device)
        return keep_tokens(patchify(x, self.patch_size), pm.ids_keep), pm


__all__ = ["PatchMask", "RandomPatchMasking", "keep_tokens", "mask_to_image", "patch_grid", "patchify",
           "random_patch_mask", "unpatchify"]
