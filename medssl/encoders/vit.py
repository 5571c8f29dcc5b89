"""Vision Transformer encoders in 2D and 3D, wrapping MONAI's :class:`monai.networks.nets.ViT`.

Reference: Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021; used as the MAE
encoder (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022).

The MONAI ViT (``classification=False``: patch embedding with position embeddings,
transformer blocks, final LayerNorm) is kept as ``self.net``, so its state dict loads with
``strict=True`` into a plain MONAI ViT built from :meth:`monai_kwargs`. The forward pass is
written here (with MONAI's modules) so that it can

* run only a subset of the patch tokens (MAE: :meth:`forward_tokens` with ``ids_keep``),
* accept images of another size than ``img_size``: the position embeddings are then
  interpolated to the new patch grid (as when fine-tuning ViTs at another resolution),
* checkpoint activations of each block (``checkpointing=True``).
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import ViT
from torch import nn
from torch.utils.checkpoint import checkpoint

from medssl.registry import ENCODERS

#: name → (hidden_size, num_layers, num_heads); ViT-Ti/S/B of DeiT and the ViT paper
_SIZES = {"vit_tiny": (192, 12, 3), "vit_small": (384, 12, 6), "vit_base": (768, 12, 12)}


def _tuple(v: int | Sequence[int], nd: int, name: str) -> tuple[int, ...]:
    t = (int(v),) * nd if isinstance(v, int) else tuple(int(x) for x in v)
    if len(t) != nd:
        raise ValueError(f"ViT {name} {t} must have {nd} entries for spatial_dims={nd}")
    return t


class ViTEncoder(nn.Module):
    """ViT with mean-pooled token embedding.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels C.
        img_size: input size the position embeddings are built for (int or per axis).
        patch_size: patch side in voxels (int or per axis); must divide ``img_size``.
        hidden_size: token dimension D (= out_dim). 3D sin-cos embeddings need D % 6 == 0, 2D D % 4 == 0.
        num_layers: transformer blocks.
        num_heads: attention heads (must divide D).
        mlp_dim: MLP hidden size; 0 = 4·D (paper).
        pos_embed: "sincos" (fixed, as in MAE) or "learnable".
        qkv_bias: bias in the attention projections (True in ViT/MAE).
        dropout: dropout rate in the blocks.
        checkpointing: activation checkpointing of each block while training.

    Shapes:
        ``forward``: (B, C, *S) → (B, D), the mean of the final tokens.
        ``forward_features`` / ``forward_tokens``: (B, C, *S) → tokens (B, L, D), L = number of
        patches in row-major order of the patch grid (last axis fastest), the order of
        :func:`medssl.transforms.masking.patchify`.
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, img_size: int | Sequence[int] = 96,
                 patch_size: int | Sequence[int] = 16, hidden_size: int = 768, num_layers: int = 12,
                 num_heads: int = 12, mlp_dim: int = 0, pos_embed: str = "sincos", qkv_bias: bool = True,
                 dropout: float = 0.0, checkpointing: bool = False) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"ViT spatial_dims must be 2 or 3, got {spatial_dims}")
        img, patch = _tuple(img_size, spatial_dims, "img_size"), _tuple(patch_size, spatial_dims, "patch_size")
        if any(i % p for i, p in zip(img, patch)):
            raise ValueError(f"ViT img_size {img} must be divisible by patch_size {patch}")
        if pos_embed not in ("sincos", "learnable"):
            raise ValueError(f"ViT pos_embed must be 'sincos' or 'learnable', got {pos_embed!r}")
        if pos_embed == "sincos" and hidden_size % (2 * spatial_dims):
            raise ValueError(f"ViT hidden_size {hidden_size} must be divisible by {2 * spatial_dims} for {spatial_dims}D "
                             "sin-cos position embeddings (or use pos_embed=learnable)")
        if hidden_size % num_heads:
            raise ValueError(f"ViT hidden_size {hidden_size} must be divisible by num_heads {num_heads}")
        self.spatial_dims, self.in_channels, self.out_dim = spatial_dims, in_channels, hidden_size
        self.img_size, self.patch_size = img, patch
        self.grid = tuple(i // p for i, p in zip(img, patch))
        self.patch_dim = math.prod(patch) * in_channels
        self.checkpointing = bool(checkpointing)
        self._monai_kwargs = dict(in_channels=in_channels, img_size=list(img), patch_size=list(patch),
                                  hidden_size=hidden_size, mlp_dim=mlp_dim or 4 * hidden_size, num_layers=num_layers,
                                  num_heads=num_heads, proj_type="conv", pos_embed_type=pos_embed,
                                  classification=False, dropout_rate=dropout, spatial_dims=spatial_dims,
                                  qkv_bias=qkv_bias)
        try:
            with warnings.catch_warnings():  # MONAI's sin-cos builder calls torch.meshgrid without indexing=
                warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
                self.net = ViT(**self._monai_kwargs)
        except ImportError as e:  # MONAI's attention block needs einops
            raise ImportError(f"ViT encoders need the 'einops' package (pip install einops): {e}") from None
        for blk in self.net.blocks:
            blk.norm_cross_attn.requires_grad_(False)  # MONAI builds it always; unused without cross-attention
            # PyTorch's fused scaled-dot-product attention (flash / memory-efficient kernels on GPU). MONAI applies
            # dropout_p also in eval mode on that path, so it is used only without attention dropout.
            blk.attn.use_flash_attention = dropout == 0.0

    def monai_kwargs(self) -> dict:
        """Arguments that rebuild the same plain ``monai.networks.nets.ViT`` (for export)."""
        return dict(self._monai_kwargs)

    def monai_network(self) -> dict:
        return {"class": "monai.networks.nets.ViT", "kwargs": self.monai_kwargs(), "identity": []}

    def plain_module(self) -> nn.Module:
        return self.net

    def patch_grid(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        """Patches per axis for an input of ``spatial_shape`` (must be divisible by the patch size)."""
        if len(spatial_shape) != self.spatial_dims or any(s % p for s, p in zip(spatial_shape, self.patch_size)):
            raise ValueError(f"ViT input size {tuple(spatial_shape)} must have {self.spatial_dims} axes divisible by "
                             f"patch_size {self.patch_size}; crop or pad to a multiple")
        return tuple(s // p for s, p in zip(spatial_shape, self.patch_size))

    def position_embeddings(self, grid: Sequence[int]) -> torch.Tensor:
        """(1, L, D) position embeddings for a patch grid (interpolated if it is not the built one)."""
        pos = self.net.patch_embedding.position_embeddings
        if tuple(grid) == self.grid:
            return pos
        d = pos.shape[-1]
        maps = pos.reshape(1, *self.grid, d).movedim(-1, 1)
        mode = "trilinear" if self.spatial_dims == 3 else "bilinear"
        maps = F.interpolate(maps, size=tuple(grid), mode=mode, align_corners=False)
        return maps.movedim(1, -1).reshape(1, -1, d)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) → patch tokens with position embeddings (B, L, D)."""
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"ViTEncoder expects a (B, {self.in_channels}, *S) batch with {self.spatial_dims} spatial "
                             f"axes, got shape {tuple(x.shape)}")
        grid = self.patch_grid(x.shape[2:])
        pe = self.net.patch_embedding
        tokens = pe.patch_embeddings(x).flatten(2).transpose(1, 2)
        return pe.dropout(tokens + self.position_embeddings(grid).to(tokens.dtype))

    def forward_tokens(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, *S) → final tokens (B, L, D); with ``ids_keep`` (B, L_keep) only those patches
        enter the transformer (MAE), giving (B, L_keep, D)."""
        tokens = self.embed(x)
        if ids_keep is not None:
            tokens = tokens.gather(1, ids_keep[..., None].expand(-1, -1, tokens.shape[-1]))
        use_ckpt = self.checkpointing and self.training and torch.is_grad_enabled()
        for blk in self.net.blocks:
            tokens = checkpoint(blk, tokens, use_reentrant=False) if use_ckpt else blk(tokens)
        return self.net.norm(tokens)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) → tokens (B, L, D)."""
        return self.forward_tokens(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) → (B, D)."""
        return self.forward_tokens(x).mean(1)


def _register(name: str) -> None:
    hidden, layers, heads = _SIZES[name]

    def factory(spatial_dims: int = 3, in_channels: int = 1, img_size: int | Sequence[int] = 96,
                patch_size: int | Sequence[int] = 16, hidden_size: int = hidden, num_layers: int = layers,
                num_heads: int = heads, mlp_dim: int = 0, pos_embed: str = "sincos", qkv_bias: bool = True,
                dropout: float = 0.0, checkpointing: bool = False) -> ViTEncoder:
        return ViTEncoder(spatial_dims, in_channels, img_size, patch_size, hidden_size, num_layers, num_heads,
                          mlp_dim, pos_embed, qkv_bias, dropout, checkpointing)

    factory.__name__ = name
    factory.__doc__ = f"ViT ({hidden} dims, {layers} blocks, {heads} heads by default; see :class:`ViTEncoder`)."
    ENCODERS.register(name)(factory)


for _n in _SIZES:
    _register(_n)
