"""Heads on top of encoders: projection heads and decoders for generative pretraining."""
from medssl.heads.decoders import MAEDecoder, UNetDecoder, sincos_position_embedding
from medssl.heads.projection import ProjectionHead

__all__ = ["MAEDecoder", "ProjectionHead", "UNetDecoder", "sincos_position_embedding"]
