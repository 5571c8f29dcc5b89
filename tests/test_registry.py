"""Registries: listing, lookup and did-you-mean errors."""

import pytest

from medssl import registry
from medssl.registry import Registry, UnknownNameError


def test_lists_are_filled():
    assert {"resnet10", "resnet18", "resnet34", "resnet50"} <= set(registry.list_encoders())
    assert {"simclr", "yaware", "supinfonce", "contrastive_regression"} <= set(registry.list_methods())
    assert {"ntxent", "yaware", "supcon", "eps_supinfonce", "threshold", "exp", "decoupled", "fairkl"} <= set(registry.list_losses())


def test_did_you_mean_and_choices():
    registry.list_encoders()
    with pytest.raises(UnknownNameError) as e:
        registry.ENCODERS.get("resnet81")
    msg = str(e.value)
    assert "Did you mean 'resnet18'" in msg and "Valid choices" in msg and "resnet50" in msg


def test_no_suggestion_for_far_names():
    r = Registry("thing")
    r.register("alpha")(object)
    with pytest.raises(UnknownNameError) as e:
        r.get("zzzzzz")
    assert "Did you mean" not in str(e.value) and "alpha" in str(e.value)


def test_duplicate_registration_is_an_error():
    r = Registry("thing")
    r.register("a")(object)
    with pytest.raises(ValueError, match="already registered"):
        r.register("a")(object)


def test_lookup_works_without_importing_the_packages_first():
    """A fresh interpreter: get() fills the registries instead of listing no valid choices."""
    import subprocess
    import sys

    code = "from medssl.registry import LOSSES; print(LOSSES.get('ntxent').__name__, 'yaware' in LOSSES)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["NTXentLoss", "True"]
