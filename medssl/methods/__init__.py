"""Pretraining methods (registered in :data:`medssl.registry.METHODS`)."""

from medssl.methods.base import Method, StepOutput
from medssl.methods.contrastive import ContrastiveMethod, ContrastiveRegression, SimCLR, SupInfoNCE, YAware

__all__ = ["ContrastiveMethod", "ContrastiveRegression", "Method", "SimCLR", "StepOutput", "SupInfoNCE", "YAware"]
