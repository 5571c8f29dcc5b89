"""Projection heads for contrastive learning (Chen et al., SimCLR, ICML 2020)."""

from __future__ import annotations

from torch import nn


class ProjectionHead(nn.Sequential):
    """MLP ``in_dim → hidden_dim → out_dim`` with BatchNorm and ReLU (SimCLR's g(·)).

    Shapes: (B, in_dim) → (B, out_dim). The loss normalises the output.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, out_dim))
