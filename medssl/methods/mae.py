"""Masked autoencoders for 2D and 3D ViTs (He et al., "Masked Autoencoders Are Scalable
Vision Learners", CVPR 2022).

Per step: (optional) random views of the batch → random patch mask (ratio 0.75 by default;
:mod:`medssl.transforms.masking`) → the ViT encoder runs on the visible patches only → the
light :class:`~medssl.heads.decoders.MAEDecoder` adds mask tokens and position embeddings and
predicts every patch → mean squared error on the masked patches only, optionally against
per-patch normalised targets (the paper's best setting).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from medssl.heads.decoders import MAEDecoder
from medssl.methods.base import Method, StepOutput
from medssl.registry import METHODS
from medssl.transforms.masking import PatchMask, patchify, random_patch_mask, unpatchify


def normalise_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-patch normalised targets: ``(p - mean(p)) / sqrt(var(p) + eps)`` over each patch's voxels
    (unbiased variance, as in the MAE code). (B, L, P) → (B, L, P)."""
    mean = patches.mean(-1, keepdim=True)
    var = patches.var(-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


def one_value_patch_message(patch_size, in_channels: int) -> str:
    """The refusal of per-patch normalised targets for patches of one value (``patch_size`` 1 on every
    axis, one channel): the unbiased variance of one value is 0/0, so every target and the loss would be NaN.
    Shared by :class:`MAE` and the config check, which says it before any data is prepared."""
    return (f"method.options.norm_pix_loss=true normalises each patch by its voxels' (unbiased) variance, but "
            f"encoder.options.patch_size {list(patch_size)} with encoder.in_channels {in_channels} gives patches of "
            "one value, whose variance is undefined: every target and the loss would be NaN. Use a patch_size "
            "larger than 1 on some axis, or method.options.norm_pix_loss=false (raw voxel targets)")


def masked_patch_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked patches only.

    Args:
        pred, target: (B, L, P) per-patch predictions and targets.
        mask: (B, L), 1 = masked (counted), 0 = visible (ignored).

    Returns:
        scalar: ``sum_b,l mask · mean_P (pred - target)^2 / sum mask`` (0 when no patch is masked).
    """
    per_patch = (pred.float() - target.float()).square().mean(-1)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1)


@METHODS.register("mae")
class MAE(Method):
    """Masked autoencoder pretraining of a ViT encoder.

    Args:
        encoder: a ViT encoder (``vit_tiny`` / ``vit_small`` / ``vit_base``).
        views: optional :class:`~medssl.transforms.views.ViewPipeline` applied to the batch
            first (random crops/flips; the API passes the ``augment`` section). Its crop size
            must be divisible by the patch size.
        mask_ratio: fraction of patches masked, in (0, 1) (0.75 in the paper).
        norm_pix_loss: targets are per-patch normalised voxels (paper's default for its best
            models); False = raw voxels. Refused for patches of one value (patch size 1, one
            channel), which have no variance.
        decoder_dim, decoder_depth, decoder_heads: decoder size (paper: 512, 8, 16).

    ``training_step`` logs ``mse_masked`` (the loss). ``reconstruct`` gives images for figures.
    """


    def __init__(self, encoder: nn.Module, views=None, mask_ratio: float = 0.75, norm_pix_loss: bool = True,
                 decoder_dim: int = 512, decoder_depth: int = 8, decoder_heads: int = 16) -> None:
        super().__init__()
        if not hasattr(encoder, "forward_tokens") or not hasattr(encoder, "patch_size"):
            raise ValueError(f"MAE needs a ViT encoder (encoder.name=vit_tiny, vit_small or vit_base), got "
                             f"{type(encoder).__name__}; CNN encoders can use method.name=genesis instead")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"MAE mask_ratio must be in (0, 1), got {mask_ratio}")
        if norm_pix_loss and encoder.patch_dim < 2:
            raise ValueError(one_value_patch_message(encoder.patch_size, encoder.in_channels))
        if views is not None:
            encoder.patch_grid(views.crop_size)  # fail now, not at the first step, if crops do not fit the patches
        self.encoder, self.views = encoder, views
        self.mask_ratio, self.norm_pix_loss = float(mask_ratio), bool(norm_pix_loss)
        self.decoder = MAEDecoder(encoder.out_dim, encoder.patch_dim, decoder_dim, decoder_depth, decoder_heads)

    def forward_masked(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, PatchMask, tuple]:
        """(B, C, *S) → predicted patches (B, L, P), the mask and the patch grid."""
        grid = self.encoder.patch_grid(x.shape[2:])
        pm = random_patch_mask(x.shape[0], math.prod(grid), self.mask_ratio, generator, x.device)
        latent = self.encoder.forward_tokens(x, pm.ids_keep)  # visible patches only
        return self.decoder(latent, pm.ids_restore, grid), pm, grid

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) → (B, L, P) per-patch targets (normalised if ``norm_pix_loss``)."""
        patches = patchify(x, self.encoder.patch_size)
        return normalise_patches(patches) if self.norm_pix_loss else patches

    def compile_modules(self) -> list[nn.Module]:
        """Training enters the encoder through ``forward_tokens``: compile its transformer blocks, and the decoder."""
        return [*self.encoder.net.blocks, self.decoder]

    def training_step(self, batch: dict, generator: torch.Generator) -> StepOutput:
        x = batch["image"]
        if self.views is not None:
            x = self.views(x, generator)
        pred, pm, _ = self.forward_masked(x, generator)
        loss = masked_patch_mse(pred, self.targets(x), pm.mask)
        return StepOutput(loss=loss, logs={"mse_masked": loss.detach()})

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Images for figures, each (B, C, *S): ``masked`` (input, masked patches zero),
        ``reconstruction`` (visible patches from the input, masked ones predicted; with
        ``norm_pix_loss`` predictions are mapped back with each true patch's mean/std, as in
        the paper's figures), ``mask`` (1 where masked)."""
        pred, pm, _ = self.forward_masked(x, generator)
        patches = patchify(x, self.encoder.patch_size)
        if self.norm_pix_loss:
            mean, std = patches.mean(-1, keepdim=True), (patches.var(-1, keepdim=True) + 1e-6).sqrt()
            pred = pred * std + mean
        m = pm.mask[..., None].to(pred.dtype)
        size, c = x.shape[2:], x.shape[1]
        ps = self.encoder.patch_size
        return {"masked": unpatchify(patches * (1 - m), ps, size, c),
                "reconstruction": unpatchify(patches * (1 - m) + pred.to(patches.dtype) * m, ps, size, c),
                "mask": unpatchify(m.expand_as(patches), ps, size, c)}
