"""Scans stored as bare ``.npy`` arrays (e.g. OpenBHB), with their geometry from the card.

A ``.npy`` file has voxels but no affine. A card with ``format: npy`` gives the geometry
once for the whole data set: ``geometry: {reference: <NIfTI on the same grid>}`` (its affine
and shape are used; OpenBHB ships its MNI templates in ``resource/``) or
``geometry: {spacing: [sx, sy(, sz)]}`` (a diagonal affine, axes taken as RAS).
"""

from __future__ import annotations

import functools
from pathlib import Path

import nibabel as nib
import numpy as np

from medssl.io.errors import BadFileError, check_array, numpy_load_reason
from medssl.io.volume import Volume


@functools.lru_cache(maxsize=8)
def _reference(path: str) -> tuple[np.ndarray, tuple[int, ...]]:
    try:
        img = nib.load(path)
    except FileNotFoundError:
        raise BadFileError(path, "geometry reference image does not exist; check the card's geometry.reference "
                                 "and data.root") from None
    except Exception as e:  # nibabel raises several types for bad headers
        raise BadFileError(path, f"geometry reference image cannot be read ({type(e).__name__})") from None
    return np.asarray(img.affine, dtype=np.float64), tuple(int(s) for s in img.shape[:3])


def npy_geometry(geometry: dict, root: str | Path, spatial_dims: int) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """Affine (and expected spatial shape, if a reference is given) from a card's ``geometry``.

    Raises:
        BadFileError: the reference image is missing or unreadable.
        ValueError: neither ``reference`` nor a ``spacing`` with ``spatial_dims`` values.
    """
    if geometry.get("reference"):
        return _reference(str(Path(root) / geometry["reference"]))
    spacing = list(geometry.get("spacing") or [])
    if len(spacing) != spatial_dims:
        raise ValueError(f"geometry.spacing must have {spatial_dims} values (mm), got {spacing!r}")
    return np.diag([*map(float, spacing), 1.0]), None


def read_npy(path: str | Path, affine: np.ndarray, expect_shape: tuple[int, ...] | None = None) -> Volume:
    """Read a ``.npy`` scan as a :class:`Volume` with the given geometry.

    Accepted layouts: ``(*S)``, ``(C, *S)`` and ``(1, …, 1, C, *S)`` (leading singleton axes
    are dropped), with ``len(S)`` = affine size − 1.

    Args:
        path: ``.npy`` file.
        affine: ``(D+1, D+1)`` voxel → world (mm) matrix shared by the data set.
        expect_shape: spatial shape the affine belongs to (checked when given).

    Raises:
        BadFileError: missing / corrupt file, wrong number of axes, shape off the reference
            grid, NaN/Inf voxels.
    """
    path = Path(path)
    nd = affine.shape[0] - 1
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise BadFileError(path, "file does not exist") from None
    except (ValueError, OSError, EOFError) as e:
        raise BadFileError(path, numpy_load_reason(e, ".npy array")) from None
    while arr.ndim > nd + 1 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == nd:
        arr = arr[None]
    if arr.ndim != nd + 1:
        raise BadFileError(path, f"array of shape {tuple(arr.shape)} is not (C, *S) with {nd} spatial axes")
    if expect_shape is not None and tuple(arr.shape[1:]) != tuple(expect_shape):
        raise BadFileError(path, f"spatial shape {tuple(arr.shape[1:])} differs from the geometry reference "
                                 f"{tuple(expect_shape)}; the card's geometry does not apply to this file")
    array = check_array(path, np.array(arr, dtype=np.float32))  # a copy: the memmap is read-only and keeps the file open
    vol = Volume(array, affine, {"source_format": "npy", "shape": tuple(array.shape[1:])})
    vol.meta["spacing"] = vol.spacing
    return vol
