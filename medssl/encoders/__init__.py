"""Encoders: ``nn.Module`` with ``spatial_dims``, ``in_channels``, ``out_dim``,
``forward(x: (B, C, *S)) -> (B, out_dim)`` and ``forward_features``. Build by name with
:func:`build_encoder`."""

from medssl.encoders.resnet import ResNetEncoder
from medssl.registry import ENCODERS


def build_encoder(name: str, spatial_dims: int = 3, in_channels: int = 1, **options):
    """Instantiate the registered encoder ``name`` (did-you-mean error when unknown)."""
    return ENCODERS.get(name)(spatial_dims=spatial_dims, in_channels=in_channels, **options)


__all__ = ["ResNetEncoder", "build_encoder"]
