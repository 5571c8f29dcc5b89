"""Pretraining methods (registered in :data:`medssl.registry.METHODS`)."""

from medssl.methods.base import Method, StepOutput
from medssl.methods.contrastive import ContrastiveMethod, ContrastiveRegression, SimCLR, SupInfoNCE, YAware
from medssl.methods.genesis import ModelsGenesis
from medssl.methods.mae import MAE

__all__ = ["MAE", "ContrastiveMethod", "ContrastiveRegression", "Method", "ModelsGenesis", "SimCLR", "StepOutput",
           "SupInfoNCE", "YAware"]
