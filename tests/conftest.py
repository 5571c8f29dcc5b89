"""Shared test helpers: where ../shared lives, small synthetic cohorts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSSL_SHARED", REPO.parent / "shared"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def shared_path(*parts: str) -> Path:
    """Path under ../shared, or skip the test with the reason when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not found: the shared real-data folder is absent (set MEDSSL_SHARED to use it)")
    return p


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory) -> Path:
    """A 40-subject, 3-site synthetic cohort at 24³ written once per test session."""
    from medssl.data.synthetic import write_synthetic_cohort

    out = tmp_path_factory.mktemp("cohort")
    return write_synthetic_cohort(out, n_subjects=40, n_sites=3, shape=(24, 24, 24), seed=3, progress=False)
