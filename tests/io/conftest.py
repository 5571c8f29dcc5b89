"""Shared fixtures for the reader tests: real files from ../shared/data and package test data."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from shared_data import SHARED


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``<shared>/data``; skips the test when the shared data folder is not mounted."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"shared real data not found at {data} (set MEDSSL_SHARED to the folder holding data/)")
    return data


def _package_file(base: Path, name: str) -> Path:
    path = base / name
    if not path.exists():
        pytest.skip(f"package test file {path} is not installed")
    return path


@pytest.fixture(scope="session")
def pydicom_file():
    """``pydicom_file("CT_small.dcm")``: a file shipped in pydicom's test data (no download)."""
    base = Path(get_testdata_file("CT_small.dcm")).parent
    return lambda name: _package_file(base, name)


@pytest.fixture(scope="session")
def nibabel_file():
    """``nibabel_file("anatomical.nii")``: a file shipped in nibabel's test data."""
    import nibabel

    base = Path(nibabel.__file__).parent / "tests" / "data"
    return lambda name: _package_file(base, name)
