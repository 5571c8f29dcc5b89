"""Non-finite embeddings must give a non-finite loss (so training stops), never a silent 0."""

import pytest
import torch

from medssl.registry import LOSSES, list_losses


@pytest.mark.parametrize("name", [n for n in list_losses() if n != "fairkl"])
def test_nan_features_propagate(name):
    z = torch.randn(8, 2, 4, generator=torch.Generator().manual_seed(0))
    z[3, 0] = float("nan")
    labels = None if name in ("ntxent", "decoupled", "eps_supinfonce") else (
        torch.arange(8) % 3 if name in ("supcon", "eps_supcon") else torch.arange(8.0))
    assert torch.isnan(LOSSES.get(name)()(z, labels))


def test_fairkl_nan_propagates():
    z = torch.randn(8, 1, 4)
    z[0, 0] = float("nan")
    assert torch.isnan(LOSSES.get("fairkl")()(z, torch.arange(8) % 2, torch.arange(8) % 3))
