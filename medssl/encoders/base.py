"""Shared base of the CNN encoders: a stem followed by stages, with optional activation
checkpointing and channels-last memory format (the encoder contract of DESIGN.md §3)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class StagedConvEncoder(nn.Module):
    """Base of the CNN encoders: a stem and stages run in order, global average pooling.

    Subclasses set ``spatial_dims``, ``in_channels``, ``out_dim`` and ``pyramid_channels``
    and implement :meth:`stages`. The base gives the rest of the encoder contract plus
    ``forward_pyramid`` (the skip connections of U-Net-style decoders, Models Genesis) and
    two memory options for large 3D crops:

    * ``checkpointing``: activation checkpointing of every stage while training (stage
      inputs are kept, activations recomputed in the backward pass). BatchNorm running
      statistics then receive a second, identical momentum update during recomputation.
    * ``channels_last``: weights and inputs in ``channels_last`` (2D) /
      ``channels_last_3d`` (3D) memory format, which lets cuDNN pick faster NDHWC kernels
      (bf16 on recent GPUs); measure with ``benchmarks/encoders.py``.
    """

    spatial_dims: int
    in_channels: int
    out_dim: int
    pyramid_channels: tuple[int, ...]  #: channels of each :meth:`forward_pyramid` map, fine → coarse

    def __init__(self, checkpointing: bool = False, channels_last: bool = False) -> None:
        super().__init__()
        self.checkpointing, self.channels_last = bool(checkpointing), bool(channels_last)

    def _finish_init(self) -> None:
        """Call at the end of a subclass ``__init__`` (after the layers exist)."""
        if self.channels_last:
            self.to(memory_format=self._memory_format())

    def _memory_format(self) -> torch.memory_format:
        return torch.channels_last_3d if self.spatial_dims == 3 else torch.channels_last

    def stages(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """Callables applied in order; each output is one level of :meth:`forward_pyramid`."""
        raise NotImplementedError

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, *S) → feature maps of every stage, fine → coarse: [(B, c_i, *S_i)]."""
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects a (B, {self.in_channels}, *S) batch with "
                             f"{self.spatial_dims} spatial axes, got shape {tuple(x.shape)}")
        if self.channels_last:
            x = x.contiguous(memory_format=self._memory_format())
        use_ckpt = self.checkpointing and self.training and torch.is_grad_enabled()
        out = []
        for stage in self.stages():
            x = checkpoint(stage, x, use_reentrant=False) if use_ckpt else stage(x)
            out.append(x)
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) → last feature map (B, out_dim, *S')."""
        return self.forward_pyramid(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) → globally average-pooled embedding (B, out_dim)."""
        return self.forward_features(x).flatten(2).mean(-1)

    def plain_module(self) -> nn.Module:
        """The module whose state dict is exported (the MONAI network where one is wrapped)."""
        return self.net if hasattr(self, "net") else self

    def monai_network(self) -> dict | None:
        """How to build the plain MONAI network the exported weights load into, or None."""
        return None


def encoder_blocks(encoder: nn.Module) -> list[nn.Module]:
    """The encoder's blocks, input to output, for ``mode="last"``.

    ``encoder.blocks()`` when the encoder defines it; otherwise the children with parameters
    of ``encoder.net`` (or of the encoder), expanding ``nn.ModuleList`` children (transformer
    blocks). For :class:`~medssl.encoders.resnet.ResNetEncoder`: conv1, bn1, layer1 … layer4.
    """
    if callable(getattr(encoder, "blocks", None)):
        return list(encoder.blocks())
    root = getattr(encoder, "net", encoder)
    blocks: list[nn.Module] = []
    for child in root.children():
        if isinstance(child, nn.ModuleList):
            blocks.extend(c for c in child if any(True for _ in c.parameters()))
        elif any(True for _ in child.parameters()):
            blocks.append(child)
    return blocks
