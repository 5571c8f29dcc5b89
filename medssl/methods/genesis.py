"""Models Genesis: self-supervised restoration of corrupted images (Zhou et al., "Models
Genesis", Medical Image Analysis 67:101840, 2021; MICCAI 2019).

An encoder–decoder learns to restore the original sub-volume from a corrupted one
(non-linear Bézier intensity transform, local pixel shuffling, in-/out-painting; see
:class:`medssl.transforms.genesis.GenesisCorruption`). The decoder is a U-Net expanding path
(:class:`~medssl.heads.decoders.UNetDecoder`) on the registered CNN encoder's feature
pyramid, with a sigmoid output and the mean squared error to the uncorrupted image, as in
the paper. Only the encoder is kept for downstream use (``medssl export``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medssl.encoders.base import encoder_blocks
from medssl.heads.decoders import UNetDecoder
from medssl.methods.base import Method, StepOutput
from medssl.registry import METHODS
from medssl.transforms.genesis import GenesisCorruption


def minmax_per_sample(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Rescale each sample of (B, C, *S) to [0, 1] (its own min and max; constant samples → 0)."""
    flat = x.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    shape = (-1,) + (1,) * (x.ndim - 1)
    return (x - lo.view(shape)) / (hi - lo).clamp(min=eps).view(shape)


class MinMaxInput(nn.Module):
    """An encoder fed the input Models Genesis pretrained it on: each scan min-max rescaled to [0, 1].

    ``(B, C, *S)`` whole scans in any range → ``encoder(minmax_per_sample(x))`` ``(B, D)`` (pretraining
    rescales the whole scan too, before cropping). Evaluation wraps a Genesis
    encoder (and its random-init baseline) in it; an export records the rescaling as
    ``input.method_rescaling`` for code that loads the plain weights. The encoder is held as ``net``,
    and :meth:`blocks` are its blocks, so fine-tuning freezes and trains the same layers as unwrapped.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.net = encoder
        for name in ("out_dim", "spatial_dims", "in_channels"):
            if hasattr(encoder, name):
                setattr(self, name, getattr(encoder, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(minmax_per_sample(x))

    def blocks(self) -> list[nn.Module]:
        return encoder_blocks(self.net)


@METHODS.register("genesis")
class ModelsGenesis(Method):
    """Models Genesis restoration pretraining of a CNN encoder.

    Args:
        encoder: a CNN encoder with ``forward_pyramid`` (resnet*, densenet*, alexnet).
        views: optional :class:`~medssl.transforms.views.ViewPipeline` (random sub-volume crops,
            flips; the API passes the ``augment`` section) applied before corrupting.
        rescale: min-max rescale every scan to [0, 1] before the views crop it (the corruptions and
            the sigmoid output assume [0, 1]; keep True unless the data are already in [0, 1]: with False
            a batch outside [0, 1] is a ValueError).
        nonlinear_prob, shuffle_prob, paint_prob, outpaint_prob: corruption probabilities
            (paper defaults 0.9, 0.5, 0.9, 0.8; see :class:`GenesisCorruption`).
        decoder_channels: decoder channels per level, fine → coarse (default: the encoder's).

    ``training_step`` logs ``mse_restore`` (the loss). ``restore`` maps corrupted → restored.
    """


    def __init__(self, encoder: nn.Module, views=None, rescale: bool = True, nonlinear_prob: float = 0.9,
                 shuffle_prob: float = 0.5, paint_prob: float = 0.9, outpaint_prob: float = 0.8,
                 decoder_channels: Sequence[int] | None = None) -> None:
        super().__init__()
        if not hasattr(encoder, "forward_pyramid"):
            raise ValueError(f"Models Genesis needs a CNN encoder with feature maps at several scales (resnet*, "
                             f"densenet*, alexnet), got {type(encoder).__name__}; ViT encoders can use method.name=mae")
        self.encoder, self.views, self.rescale = encoder, views, bool(rescale)
        self.corruption = GenesisCorruption(nonlinear_prob=nonlinear_prob, shuffle_prob=shuffle_prob,
                                            paint_prob=paint_prob, outpaint_prob=outpaint_prob)
        self.decoder = UNetDecoder(encoder.pyramid_channels, encoder.in_channels, encoder.spatial_dims,
                                   decoder_channels)

    def compile_modules(self) -> list[nn.Module]:
        """Training enters the encoder through ``forward_pyramid``: compile its blocks, and the decoder."""
        return [*encoder_blocks(self.encoder), self.decoder]

    @property
    def input_rescaling(self) -> str:
        """How the encoder's inputs were rescaled during pretraining (recorded by ``medssl export``)."""
        return "per-scan min-max to [0, 1]" if self.rescale else ""

    def restore(self, corrupted: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) corrupted in [0, 1] → restored (B, C, *S) in (0, 1)."""
        return torch.sigmoid(self.decoder(self.encoder.forward_pyramid(corrupted), corrupted.shape[2:]))

    def corrupt(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Rescaling of each whole scan, views (if any) and corruption: (B, C, *S) → (corrupted, target).

        With ``rescale`` each scan is min-max rescaled before the views crop it, as in the paper's pipeline
        (CT clipped to [-1000, 1000] HU and scaled to [0, 1], then sub-volumes cropped) and as evaluation's
        :class:`MinMaxInput` rescales the whole scan, so a crop without the scan's brightest tissue is not
        stretched to [0, 1]; views that leave [0, 1] (noise, bias field) are clamped back to it.
        """
        if self.rescale:
            x = minmax_per_sample(x.float())
        if self.views is not None:
            x = self.views(x, generator)
        if self.rescale:
            x = x.clamp(0, 1)
        else:
            lo, hi = (float(v) for v in torch.aminmax(x.detach()))  # one sync per step
            if lo < -1e-3 or hi > 1 + 1e-3:
                raise ValueError(f"Models Genesis with rescale: false needs inputs in [0, 1] (the corruptions and the "
                                 f"sigmoid output assume it), got a batch in [{lo:.4g}, {hi:.4g}]; set "
                                 "method.options.rescale: true, or data.normalise=minmax without intensity augmentations")
        return self.corruption(x, generator)

    def training_step(self, batch: dict, generator: torch.Generator) -> StepOutput:
        corrupted, target = self.corrupt(batch["image"], generator)
        loss = F.mse_loss(self.restore(corrupted).float(), target.float())
        return StepOutput(loss=loss, logs={"mse_restore": loss.detach()})
