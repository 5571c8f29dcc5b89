"""The contrastive loss family on one kernelised core (see docs/losses.md).

Importing this package registers every loss in :data:`medssl.registry.LOSSES`:
``ntxent``, ``supcon``, ``decoupled``, ``eps_supinfonce``, ``eps_supcon``, ``yaware``,
``threshold``, ``exp`` and ``fairkl``.
"""

from medssl.losses.base import ContrastiveLoss
from medssl.losses.core import contrastive_core
from medssl.losses.distributed import gather_no_grad, gather_with_grad
from medssl.losses.fairkl import FairKLLoss
from medssl.losses.infonce import DecoupledLoss, EpsSupConLoss, EpsSupInfoNCELoss, NTXentLoss, SupConLoss
from medssl.losses.kernelised import ExpLoss, ThresholdLoss, YAwareLoss
from medssl.losses.kernels import kernel_weights

__all__ = [
    "ContrastiveLoss",
    "DecoupledLoss",
    "EpsSupConLoss",
    "EpsSupInfoNCELoss",
    "ExpLoss",
    "FairKLLoss",
    "NTXentLoss",
    "SupConLoss",
    "ThresholdLoss",
    "YAwareLoss",
    "contrastive_core",
    "gather_no_grad",
    "gather_with_grad",
    "kernel_weights",
]
