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


def test_every_lookup_fills_the_registries_first(monkeypatch):
    """``in``, ``list()`` and ``get()`` each import the registering packages before answering (a fresh
    interpreter has empty registries); here the import is a stand-in that registers one late name."""
    for ask in (lambda r: "late" in r, lambda r: r.list() == ["early", "late"], lambda r: r.get("late") is int):
        r = Registry("thing")
        r.register("early")(str)
        monkeypatch.setattr(registry, "_load_all", lambda r=r: "late" in r._items or r.register("late")(int))
        assert ask(r)


def test_unknown_name_message_is_readable_sorted_and_names_the_kind():
    """The message is the plain text (a KeyError would print it in quotes), says which kind of thing was asked
    for, and lists the choices in sorted order, as ``list()`` returns them."""
    r = Registry("thing")
    for name in ("zeta", "alpha", "mid"):
        r.register(name)(object)
    assert r.list() == ["alpha", "mid", "zeta"]
    with pytest.raises(UnknownNameError) as e:
        r.get("alpah")
    assert str(e.value) == "unknown thing 'alpah'. Did you mean 'alpha'? Valid choices: alpha, mid, zeta"
    with pytest.raises(UnknownNameError) as e:
        registry.ENCODERS.get("resnet81")
    assert str(e.value).startswith("unknown encoder 'resnet81'. Did you mean 'resnet18'?")


def test_the_encoder_table_of_the_docs_names_exactly_the_registered_encoders():
    """docs/encoders.md's table (``resnet10/18/34/50`` = resnet10, resnet18, ...) and ``list_encoders()`` (which
    also parametrises the contract tests, so a name missing there would go untested) agree."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "encoders.md").read_text()
    table = text.split("| name | what |", 1)[1].split("\n\n", 1)[0]
    documented = set()
    for cell in re.findall(r"^\| `([a-z_0-9/]+)` \|", table, flags=re.M):
        first, *rest = cell.split("/")
        prefix = first.rsplit("_", 1)[0] + "_" if "_" in first else re.match(r"\D+", first).group()
        documented |= {first, *(prefix + r for r in rest)}
    assert len(documented) == 11
    assert registry.list_encoders() == registry.ENCODERS.list() == sorted(documented)
