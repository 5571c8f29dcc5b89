"""ResNet encoders in 2D and 3D, wrapping MONAI's :class:`monai.networks.nets.ResNet`.

The MONAI network is kept as ``self.net`` with ``feed_forward=False`` (no classifier), so
its state dict loads with ``strict=True`` into a plain MONAI ResNet built with the same
arguments (see :meth:`ResNetEncoder.monai_kwargs`). Reference: He et al., "Deep Residual
Learning for Image Recognition", CVPR 2016; 3D variants after Hara et al., CVPR 2018.
"""

from __future__ import annotations

from typing import Callable

import torch
from monai.networks.nets import ResNet

from medssl.encoders.base import StagedConvEncoder
from medssl.registry import ENCODERS

_DEPTHS = {10: ("basic", [1, 1, 1, 1]), 18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]),
           50: ("bottleneck", [3, 4, 6, 3])}


class ResNetEncoder(StagedConvEncoder):
    """ResNet-{10,18,34,50} returning a global-average-pooled embedding.

    Args:
        depth: 10, 18, 34 or 50.
        spatial_dims: 2 or 3.
        in_channels: input channels C.
        width: channels of the first stage; stages use (w, 2w, 4w, 8w). 64 is the paper's.
        conv1_kernel: stem kernel size (7 in the paper; 3 suits small inputs such as 28³).
        conv1_stride: stem stride (2 in the paper; 1 for small inputs).
        no_max_pool: skip the stem max-pool (useful for inputs ≤ 64 voxels per side).
        checkpointing, channels_last: memory options (see :class:`StagedConvEncoder`).

    Shapes:
        ``forward``: (B, C, *S) → (B, out_dim) with out_dim = 8·width·expansion.
        ``forward_features``: (B, C, *S) → (B, out_dim, *S/32) last feature map.
        ``forward_pyramid``: stem (/2), layer1 (/4), layer2 (/8), layer3 (/16), layer4 (/32)
        with the paper's strides.
    """

    def __init__(self, depth: int = 18, spatial_dims: int = 3, in_channels: int = 1, width: int = 64,
                 conv1_kernel: int = 7, conv1_stride: int = 2, no_max_pool: bool = False,
                 checkpointing: bool = False, channels_last: bool = False) -> None:
        super().__init__(checkpointing, channels_last)
        if depth not in _DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(_DEPTHS)}, got {depth}")
        if spatial_dims not in (2, 3):
            raise ValueError(f"ResNet spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims, self.in_channels, self.depth = spatial_dims, in_channels, depth
        self._monai_kwargs = self._build_kwargs(depth, spatial_dims, in_channels, width, conv1_kernel,
                                                conv1_stride, no_max_pool)
        self.net = ResNet(**self._monai_kwargs)
        expansion = 4 if _DEPTHS[depth][0] == "bottleneck" else 1
        self.out_dim = 8 * width * expansion
        self.pyramid_channels = (width, width * expansion, 2 * width * expansion, 4 * width * expansion, self.out_dim)
        self._finish_init()

    @staticmethod
    def _build_kwargs(depth, spatial_dims, in_channels, width, conv1_kernel, conv1_stride, no_max_pool) -> dict:
        block, layers = _DEPTHS[depth]
        return dict(block=block, layers=layers, block_inplanes=[width, 2 * width, 4 * width, 8 * width],
                    spatial_dims=spatial_dims, n_input_channels=in_channels, conv1_t_size=conv1_kernel,
                    conv1_t_stride=conv1_stride, no_max_pool=no_max_pool, shortcut_type="B", feed_forward=False)

    def monai_kwargs(self) -> dict:
        """Arguments that rebuild the same plain ``monai.networks.nets.ResNet`` (for export)."""
        return dict(self._monai_kwargs)

    def monai_network(self) -> dict:
        return {"class": "monai.networks.nets.ResNet", "kwargs": self.monai_kwargs(), "identity": []}

    def stages(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        n = self.net

        def stem(x):
            return n.act(n.bn1(n.conv1(x)))

        def stage1(x):
            return n.layer1(x if n.no_max_pool else n.maxpool(x))

        return [stem, stage1, n.layer2, n.layer3, n.layer4]


def _register(depth: int) -> None:
    def factory(spatial_dims: int = 3, in_channels: int = 1, width: int = 64, conv1_kernel: int = 7,
                conv1_stride: int = 2, no_max_pool: bool = False, checkpointing: bool = False,
                channels_last: bool = False) -> ResNetEncoder:
        return ResNetEncoder(depth, spatial_dims, in_channels, width, conv1_kernel, conv1_stride, no_max_pool,
                             checkpointing, channels_last)

    factory.__name__ = f"resnet{depth}"
    factory.__doc__ = f"ResNet-{depth} encoder (see :class:`ResNetEncoder`)."
    ENCODERS.register(f"resnet{depth}")(factory)


for _d in _DEPTHS:
    _register(_d)
