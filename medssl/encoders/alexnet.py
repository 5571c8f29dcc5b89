"""The small AlexNet-style CNN of brain-age / brain-phenotype work, in 2D and 3D.

Written from the description in Abrol et al., "Deep learning encodes robust discriminative
neuroimaging representations to outperform standard machine learning", Nature
Communications 12:353 (2021), also a baseline in Dufumier et al., "OpenBHB: a large-scale
multi-site brain MRI data-set for age prediction and debiasing", NeuroImage 263 (2022):
five convolutional layers, each followed by batch normalisation and ReLU, with max-pooling
after the first, second and fifth. With ``width`` w (64 in the paper) the layers are

====  ===========================  =========  =======================
layer conv (kernel, stride, pad)   channels   then
====  ===========================  =========  =======================
1     5, 2, 0                      w          BN, ReLU, max-pool 3/3
2     3, 1, 0                      2w         BN, ReLU, max-pool 3/3
3     3, 1, 1                      3w         BN, ReLU
4     3, 1, 1                      3w         BN, ReLU
5     3, 1, 1                      2w         BN, ReLU, max-pool 3/3
====  ===========================  =========  =======================

The embedding is the global average of the last map (out_dim = 2w = 128 in the paper's
setting); the paper's dropout/fully-connected classifier is a task head, not part of the
encoder. The network's downsampling is aggressive: inputs need at least 69 voxels per side
(a 2 mm brain, 91×109×91, or a 1.5 mm crop, 121×145×121 as in the paper, are fine).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from medssl.encoders.base import StagedConvEncoder
from medssl.registry import ENCODERS

#: (kernel, stride, padding, channel multiple of width, max-pool after)
_LAYERS = ((5, 2, 0, 1, True), (3, 1, 0, 2, True), (3, 1, 1, 3, False), (3, 1, 1, 3, False), (3, 1, 1, 2, True))


class AlexNetEncoder(StagedConvEncoder):
    """AlexNet-style encoder (Abrol et al., 2021).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels C.
        width: channels of the first layer; layers use (w, 2w, 3w, 3w, 2w). 64 is the paper's.
        checkpointing, channels_last: memory options (see :class:`StagedConvEncoder`).

    Shapes:
        ``forward``: (B, C, *S) → (B, 2·width).
        ``forward_features``: (B, C, *S) → (B, 2·width, *S') after the last max-pool.
        ``forward_pyramid``: one map per convolutional layer (layers 1, 2 and 5 after their max-pools).

    The state dict keys are ``features.<i>.*`` of one ``nn.Sequential``; there is no MONAI
    equivalent, so exported weights load into this class (``medssl.load_encoder``).

    Initialisation: convolution weights He-normal over the fan-out, std = sqrt(2 / (C_out · k^d)) (He et al.,
    2015; torchvision's ResNet convention), their biases and BatchNorm PyTorch's defaults.
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, width: int = 64, checkpointing: bool = False,
                 channels_last: bool = False) -> None:
        super().__init__(checkpointing, channels_last)
        if spatial_dims not in (2, 3) or width < 1:
            raise ValueError(f"AlexNet needs spatial_dims 2 or 3 and width >= 1, got {spatial_dims}, {width}")
        self.spatial_dims, self.in_channels = spatial_dims, in_channels
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        norm = nn.BatchNorm3d if spatial_dims == 3 else nn.BatchNorm2d
        pool = nn.MaxPool3d if spatial_dims == 3 else nn.MaxPool2d
        layers: list[nn.Module] = []
        self._ends: list[int] = []  # index (exclusive) in `features` where each pyramid level ends
        c_in = in_channels
        for kernel, stride, pad, mult, pooled in _LAYERS:
            c_out = mult * width
            layers += [conv(c_in, c_out, kernel, stride, pad), norm(c_out), nn.ReLU(inplace=True)]
            if pooled:
                layers.append(pool(kernel_size=3, stride=3))
            self._ends.append(len(layers))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pyramid_channels = tuple(m * width for _, _, _, m, _ in _LAYERS)
        self.out_dim = 2 * width
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._finish_init()

    def blocks(self) -> list[nn.Module]:
        """The five conv + BN pairs, input to output, for partial fine-tuning."""
        starts = [0] + self._ends[:-1]
        return [self.features[a:a + 2] for a in starts]

    def stages(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        starts = [0] + self._ends[:-1]
        return [self.features[a:b] for a, b in zip(starts, self._ends)]

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        small = [s for s in x.shape[2:] if s < 69]
        if small:
            raise ValueError(f"AlexNetEncoder needs inputs of at least 69 voxels per side (three 3/3 max-pools), got "
                             f"{tuple(x.shape[2:])}; use larger crops or a ResNet for small inputs")
        return super().forward_pyramid(x)


@ENCODERS.register("alexnet")
def alexnet(spatial_dims: int = 3, in_channels: int = 1, width: int = 64, checkpointing: bool = False,
            channels_last: bool = False) -> AlexNetEncoder:
    """AlexNet-style brain-MRI encoder (see :class:`AlexNetEncoder`)."""
    return AlexNetEncoder(spatial_dims, in_channels, width, checkpointing, channels_last)
