"""Shared fixtures for the reader tests: real files from ../shared/data and package test data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


@pytest.fixture
def oblique_affine() -> np.ndarray:
    """(4, 4) voxel-to-RAS affine: 20° about z, voxels (0.9, 1.1, 2.5) mm, first axis flipped, an offset."""
    theta = np.deg2rad(20.0)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.9, 1.1, 2.5]) @ np.diag([-1, 1, 1])
    affine[:3, 3] = [12.5, -30.0, 7.25]
    return affine
