"""Fixtures for the data-layer tests: copies of the synthetic cohort, MedMNIST-format files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest


from shared_data import SHARED, shared_path


@pytest.fixture(scope="session")
def shared_root() -> Path:
    """The ../shared folder (may be absent: tests that can fall back use this one)."""
    return SHARED


@pytest.fixture(scope="session")
def shared():
    """``shared("data", "ixi_t1_hh_2mm")`` → path under ../shared, or skip when it is absent."""

    return shared_path


@pytest.fixture
def cohort_copy(small_cohort, tmp_path) -> Path:
    """A private copy of the session's 40-subject synthetic cohort (safe to corrupt)."""
    return Path(shutil.copytree(small_cohort, tmp_path / "cohort"))


def write_medmnist(path: Path, sizes=(6, 3, 4), shape=(8, 8), seed=0, multilabel: int = 0) -> dict:
    """Write a MedMNIST-layout .npz (uint8 images, (N, 1) or (N, K) labels); returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        k = multilabel or 1
        arrays[f"{split}_labels"] = rng.integers(0, 2 if multilabel else 3, size=(n, k), dtype=np.uint8)
    np.savez_compressed(path, **arrays)
    return arrays


@pytest.fixture
def medmnist_file():
    return write_medmnist
