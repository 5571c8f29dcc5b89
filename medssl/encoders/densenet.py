"""DenseNet encoders in 2D and 3D, wrapping MONAI's :class:`monai.networks.nets.DenseNet`.

Reference: Huang et al., "Densely Connected Convolutional Networks", CVPR 2017. DenseNet-121
is a common 3D brain-MRI baseline (e.g. Dufumier et al., OpenBHB, NeuroImage 2022).

The MONAI network is kept whole as ``self.net`` with its classifier ``class_layers.out``
replaced by ``nn.Identity`` (it has no parameters then). The exported state dict therefore
loads with ``strict=True`` into a plain MONAI DenseNet built with :meth:`monai_kwargs`
after the same one-line replacement (``net.class_layers.out = nn.Identity()``), exactly as
one drops torchvision's ``fc`` — see ``monai_network()["identity"]``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import DenseNet
from torch import nn

from medssl.encoders.base import StagedConvEncoder
from medssl.registry import ENCODERS

_BLOCKS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32)}


class DenseNetEncoder(StagedConvEncoder):
    """DenseNet-{121,169,201} returning a global-average-pooled embedding.

    Args:
        block_config: dense layers per block, e.g. (6, 12, 24, 16) for DenseNet-121.
        spatial_dims: 2 or 3.
        in_channels: input channels C.
        width: growth rate k (32 in the paper); the stem has 2k channels as in the paper.
        bn_size: bottleneck factor (4 in the paper; bottleneck layers have bn_size·k channels).
        dropout: dropout after each dense layer.
        checkpointing, channels_last: memory options (see :class:`StagedConvEncoder`).

    Shapes:
        ``forward``: (B, C, *S) → (B, out_dim); out_dim = 1024 for DenseNet-121 with k=32
        (it scales with k). Inputs need ≥ 29 voxels per side with four blocks (stride 32 in total;
        ``2**(n+1) - 3`` for n blocks), so 28³ MedMNIST volumes are too small.
        ``forward_pyramid``: stem (/2), blocks 1–4 (/4, /8, /16, /32).
    """

    def __init__(self, block_config: Sequence[int] = _BLOCKS[121], spatial_dims: int = 3, in_channels: int = 1,
                 width: int = 32, bn_size: int = 4, dropout: float = 0.0, checkpointing: bool = False,
                 channels_last: bool = False) -> None:
        super().__init__(checkpointing, channels_last)
        if width < 1 or not block_config or min(block_config) < 1:
            raise ValueError(f"DenseNet needs width >= 1 and positive block sizes, got width={width}, "
                             f"block_config={tuple(block_config)}")
        if spatial_dims not in (2, 3):
            raise ValueError(f"DenseNet spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims, self.in_channels = spatial_dims, in_channels
        self._monai_kwargs = dict(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1,
                                  init_features=2 * width, growth_rate=width, block_config=tuple(block_config),
                                  bn_size=bn_size, dropout_prob=dropout)
        self.net = DenseNet(**self._monai_kwargs)
        self.net.class_layers.out = nn.Identity()
        channels, c = [2 * width], 2 * width
        for i, n_layers in enumerate(block_config):
            c += n_layers * width
            channels.append(c)
            if i < len(block_config) - 1:
                c //= 2
        self.pyramid_channels = tuple(channels)
        self.out_dim = channels[-1]
        self._finish_init()

    def monai_kwargs(self) -> dict:
        """Arguments of the plain ``monai.networks.nets.DenseNet`` (then drop ``class_layers.out``)."""
        return dict(self._monai_kwargs, block_config=list(self._monai_kwargs["block_config"]))

    def monai_network(self) -> dict:
        return {"class": "monai.networks.nets.DenseNet", "kwargs": self.monai_kwargs(), "identity": ["class_layers.out"]}

    def min_side(self) -> int:
        """Smallest input side in voxels: the stem conv (/2) and max-pool (/2) round up, each of
        the n - 1 transitions' 2/2 average pools rounds down and needs ≥ 2, so ceil(s/4) ≥ 2**(n-1)."""
        return 2 ** (len(self._monai_kwargs["block_config"]) + 1) - 3

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim == self.spatial_dims + 2 and min(x.shape[2:]) < self.min_side():
            raise ValueError(f"DenseNetEncoder needs inputs of at least {self.min_side()} voxels per side (total stride "
                             f"{2 ** (len(self._monai_kwargs['block_config']) + 1)}), got {tuple(x.shape[2:])}; use "
                             "larger crops (or resample), or a ResNet for small inputs")
        return super().forward_pyramid(x)

    def blocks(self) -> list[nn.Module]:
        """Modules with parameters, input to output (conv0, norm0, denseblock1, transition1, …, norm5),
        for partial fine-tuning (:func:`medssl.encoders.base.encoder_blocks`)."""
        return [m for m in self.net.features.children() if any(True for _ in m.parameters())]

    def stages(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        f = self.net.features
        n_blocks = len(self._monai_kwargs["block_config"])

        def stem(x):
            return f.relu0(f.norm0(f.conv0(x)))

        def block(i: int) -> Callable[[torch.Tensor], torch.Tensor]:
            def run(x):
                x = f.pool0(x) if i == 1 else getattr(f, f"transition{i - 1}")(x)
                x = getattr(f, f"denseblock{i}")(x)
                return F.relu(f.norm5(x)) if i == n_blocks else x  # MONAI: norm5, then class_layers.relu

            return run

        return [stem] + [block(i) for i in range(1, n_blocks + 1)]


def _register(depth: int) -> None:
    def factory(spatial_dims: int = 3, in_channels: int = 1, width: int = 32, bn_size: int = 4,
                dropout: float = 0.0, checkpointing: bool = False, channels_last: bool = False) -> DenseNetEncoder:
        return DenseNetEncoder(_BLOCKS[depth], spatial_dims, in_channels, width, bn_size, dropout, checkpointing,
                               channels_last)

    factory.__name__ = f"densenet{depth}"
    factory.__doc__ = f"DenseNet-{depth} encoder (see :class:`DenseNetEncoder`)."
    ENCODERS.register(f"densenet{depth}")(factory)


for _depth in _BLOCKS:  # registered, so exports of each rebuild with medssl.load_encoder
    _register(_depth)
