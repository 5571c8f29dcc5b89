"""Encoders: ``nn.Module`` with ``spatial_dims``, ``in_channels``, ``out_dim``,
``forward(x: (B, C, *S)) -> (B, out_dim)`` and ``forward_features`` (feature maps for CNNs,
tokens for ViTs). CNN encoders also give ``forward_pyramid`` (multi-scale maps for
U-Net-style decoders). Build by name with :func:`build_encoder`; see docs/encoders.md."""

from medssl.encoders.alexnet import AlexNetEncoder
from medssl.encoders.densenet import DenseNetEncoder
from medssl.encoders.base import StagedConvEncoder
from medssl.encoders.resnet import ResNetEncoder
from medssl.encoders.vit import ViTEncoder
from medssl.registry import ENCODERS


def build_encoder(name: str, spatial_dims: int = 3, in_channels: int = 1, **options):
    """Instantiate the registered encoder ``name`` (did-you-mean error when unknown)."""
    return ENCODERS.get(name)(spatial_dims=spatial_dims, in_channels=in_channels, **options)


__all__ = ["AlexNetEncoder", "DenseNetEncoder", "ResNetEncoder", "StagedConvEncoder", "ViTEncoder", "build_encoder"]
