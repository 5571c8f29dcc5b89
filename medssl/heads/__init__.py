"""Heads on top of encoders."""
from medssl.heads.projection import ProjectionHead

__all__ = ["ProjectionHead"]
