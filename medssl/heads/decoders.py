"""Decoders for generative pretraining: the MAE transformer decoder and a U-Net decoder.

* :class:`MAEDecoder` — He et al., "Masked Autoencoders Are Scalable Vision Learners",
  CVPR 2022, §3: the encoded visible tokens are linearly projected, mask tokens are
  appended, the full set is put back in patch order, fixed sin-cos position embeddings are
  added, a few light transformer blocks follow and a linear layer predicts the voxels of
  every patch.
* :class:`UNetDecoder` — the expanding path of a U-Net (Ronneberger et al., MICCAI 2015) on
  the multi-scale maps of a CNN encoder (skip connections), as in Models Genesis (Zhou et
  al., Medical Image Analysis 2021), ending at the input resolution.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks.transformerblock import TransformerBlock
from torch import nn


def sincos_position_embedding(grid: Sequence[int], dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed sin-cos position embeddings of a 2D/3D patch grid, (1, prod(grid), dim).

    Patch order is row-major (last axis fastest). Each axis gets ``2·(dim // (2·nd))``
    channels (sin, cos at frequencies ``temperature^(-k/f)``), in the channel order of
    MONAI's ``build_sincos_position_embedding`` (axis 1, axis 0, axis 2); left-over channels
    when ``dim`` is not a multiple of ``2·nd`` are zero.
    """
    nd = len(grid)
    f = dim // (2 * nd)
    if f < 1:
        raise ValueError(f"position embedding dim {dim} is too small for a {nd}D grid (need >= {2 * nd})")
    omega = 1.0 / temperature ** (torch.arange(f, dtype=torch.float32) / f)
    coords = torch.meshgrid(*[torch.arange(g, dtype=torch.float32) for g in grid], indexing="ij")
    order = [1, 0, 2][:nd] if nd >= 2 else [0]
    parts = []
    for a in order:
        out = coords[a].flatten()[:, None] * omega[None]
        parts += [torch.sin(out), torch.cos(out)]
    emb = torch.cat(parts, 1)
    return F.pad(emb, (0, dim - emb.shape[1]))[None]


class MAEDecoder(nn.Module):
    """The MAE decoder: visible tokens + mask tokens → per-patch voxel predictions.

    Args:
        encoder_dim: token dimension of the encoder.
        patch_dim: voxels per patch × channels (prediction size per token).
        dim: decoder width (512 in the paper).
        depth: decoder transformer blocks (8 in the paper; 1–4 are enough for probing quality).
        num_heads: attention heads (16 in the paper).
        mlp_ratio: MLP hidden size / ``dim``.

    Shapes:
        ``forward(latent (B, L_keep, encoder_dim), ids_restore (B, L), grid)`` → (B, L, patch_dim),
        with ``ids_restore`` as returned by :func:`medssl.transforms.masking.random_patch_mask`.
    """

    def __init__(self, encoder_dim: int, patch_dim: int, dim: int = 512, depth: int = 8, num_heads: int = 16,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MAE decoder dim {dim} must be divisible by its num_heads {num_heads}")
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList([TransformerBlock(dim, int(dim * mlp_ratio), num_heads, qkv_bias=True)
                                     for _ in range(depth)])
        for blk in self.blocks:
            blk.norm_cross_attn.requires_grad_(False)  # unused (no cross-attention)
            blk.attn.use_flash_attention = True
        self.norm = nn.LayerNorm(dim)
        self.pred = nn.Linear(dim, patch_dim)
        nn.init.normal_(self.mask_token, std=0.02)
        self._pos: dict[tuple, torch.Tensor] = {}  # cache of fixed embeddings per grid (not in the state dict)

    def position_embedding(self, grid: Sequence[int], device, dtype) -> torch.Tensor:
        key = (tuple(grid), str(device), dtype)
        if key not in self._pos:
            self._pos[key] = sincos_position_embedding(grid, self.embed.out_features).to(device, dtype)
        return self._pos[key]

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        x = self.embed(latent)
        b, n_keep, d = x.shape
        n = ids_restore.shape[1]
        x = torch.cat([x, self.mask_token.to(x.dtype).expand(b, n - n_keep, d)], 1)
        x = x.gather(1, ids_restore[..., None].expand(-1, -1, d))  # back to patch-grid order
        x = x + self.position_embedding(grid, x.device, x.dtype)
        for blk in self.blocks:
            x = blk(x)
        return self.pred(self.norm(x))


def _conv_block(spatial_dims: int, c_in: int, c_out: int) -> nn.Sequential:
    conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    norm = nn.BatchNorm3d if spatial_dims == 3 else nn.BatchNorm2d
    return nn.Sequential(conv(c_in, c_out, 3, padding=1, bias=False), norm(c_out), nn.ReLU(inplace=True),
                         conv(c_out, c_out, 3, padding=1, bias=False), norm(c_out), nn.ReLU(inplace=True))


class UNetDecoder(nn.Module):
    """U-Net expanding path over an encoder's feature pyramid, back to the input size.

    Starting from the coarsest map, each level upsamples (linear interpolation to the skip's
    size, so any encoder strides work), concatenates the skip map and applies two 3×3 conv–BN–
    ReLU layers. A last block at the input resolution (half the finest level's channels) and a
    1×1 convolution give the output.

    Args:
        skip_channels: channels of the encoder maps, fine → coarse (``encoder.pyramid_channels``).
        out_channels: output channels (the input's channels for restoration).
        spatial_dims: 2 or 3.
        channels: decoder channels per level, fine → coarse, one fewer than ``skip_channels``
            (default: the skip's channels).

    Shapes:
        ``forward(maps [(B, c_i, *S_i)], size)`` → (B, out_channels, *size) (no activation).
    """

    def __init__(self, skip_channels: Sequence[int], out_channels: int, spatial_dims: int,
                 channels: Sequence[int] | None = None) -> None:
        super().__init__()
        skip_channels = list(skip_channels)
        if len(skip_channels) < 2:
            raise ValueError(f"UNetDecoder needs at least two feature maps, got channels {skip_channels}")
        channels = list(channels) if channels else skip_channels[:-1]
        if len(channels) != len(skip_channels) - 1:
            raise ValueError(f"UNetDecoder channels {channels} must have {len(skip_channels) - 1} entries "
                             f"(one per skip level of {skip_channels})")
        self.spatial_dims = spatial_dims
        self.levels = nn.ModuleList()
        prev = skip_channels[-1]
        for i in reversed(range(len(skip_channels) - 1)):  # coarse → fine
            self.levels.append(_conv_block(spatial_dims, prev + skip_channels[i], channels[i]))
            prev = channels[i]
        final = max(1, prev // 2)  # the full-resolution block is the costliest in 3D: half the channels
        self.final = _conv_block(spatial_dims, prev, final)
        self.out = (nn.Conv3d if spatial_dims == 3 else nn.Conv2d)(final, out_channels, 1)

    def _up(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if tuple(x.shape[2:]) == tuple(size):
            return x
        return F.interpolate(x, size=tuple(size), mode="trilinear" if self.spatial_dims == 3 else "bilinear",
                             align_corners=False)

    def forward(self, maps: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        x = maps[-1]
        for block, skip in zip(self.levels, reversed(maps[:-1])):
            x = block(torch.cat([self._up(x, skip.shape[2:]), skip], 1))
        return self.out(self.final(self._up(x, size)))


__all__ = ["MAEDecoder", "UNetDecoder", "sincos_position_embedding"]
