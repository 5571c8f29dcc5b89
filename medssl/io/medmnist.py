"""MedMNIST ``.npz`` files (Yang et al., Sci Data 10:41, 2023): 2D, 2D RGB and 3D sets.

A file holds ``{train,val,test}_images`` (uint8; ``(N, H, W)``, ``(N, H, W, 3)`` or
``(N, D, H, W)``) and ``{split}_labels`` (``(N, 1)`` or ``(N, K)`` multi-label). Images are
returned channel-first in medssl's index order: the stored axes are reversed, as for
PNG / DICOM / ITK images (``(H, W)`` → ``(W, H)``, ``(D, H, W)`` → ``(W, H, D)``).
MedMNIST images carry no physical spacing: the affine is the identity (1 "mm" per pixel).
"""

from __future__ import annotations

import functools
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from medssl.io.errors import BadFileError, numpy_load_reason
from medssl.io.volume import Volume

SPLITS = ("train", "val", "test")
#: uint8 → float32 in [0, 1], correctly rounded (same values as ``v / 255`` in any reader).
_TO_UNIT = (np.arange(256) / 255.0).astype(np.float32)


def label_rows(labels, key: str) -> np.ndarray:
    """``(N,)`` or ``(N, K)`` int64 class indices from the ``key`` (``{split}_labels``) member of a file.

    Raises:
        ValueError: not an array with one row per image, or values that are not whole numbers
            (the int64 cast would turn 0.7 into 0 and NaN into -2**63 without a word).
    """
    if not isinstance(labels, np.ndarray) or labels.ndim == 0:
        raise ValueError(f"'{key}' is not an array with one row per image")
    if labels.dtype.kind not in "biu" and not (labels.dtype.kind == "f" and np.isfinite(labels).all()
                                                and (labels == np.round(labels)).all()):
        raise ValueError(f"'{key}' holds non-integer values ({labels.dtype}); MedMNIST labels are class indices")
    labels = labels.astype(np.int64).reshape(len(labels), math.prod(labels.shape[1:]))  # -1: no shape for 0 rows
    return labels[:, 0] if labels.shape[1] == 1 else labels


def _load_raw(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not path.is_file():
        raise BadFileError(path, "file does not exist" if not path.exists() else "is not a regular file")
    if not zipfile.is_zipfile(path):
        raise BadFileError(path, "not a .npz (zip) archive; the file is corrupt, truncated or another format")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = sorted(npz.files)
            if f"{split}_images" not in keys or f"{split}_labels" not in keys:
                raise BadFileError(path, f"no '{split}_images' / '{split}_labels' arrays (keys: {keys}); "
                                         "is this a MedMNIST .npz?")
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError,
            NotImplementedError, RuntimeError) as e:  # zipfile: damaged flags (encrypted) or compression method
        raise BadFileError(path, numpy_load_reason(e, ".npz", ", re-download it")) from None
    if not isinstance(images, np.ndarray):  # np.load gives a member that is no .npy as bytes
        raise BadFileError(path, f"'{split}_images' is not a .npy array; is this a MedMNIST .npz?")
    try:
        labels = label_rows(labels, f"{split}_labels")
    except ValueError as e:
        raise BadFileError(path, str(e)) from None
    if images.dtype != np.uint8:
        raise BadFileError(path, f"'{split}_images' has dtype {images.dtype}; MedMNIST images are uint8")
    if images.ndim not in (3, 4) or images.shape[0] == 0:
        raise BadFileError(path, f"'{split}_images' has shape {images.shape}; expected (N, H, W), "
                                 "(N, H, W, 3) or (N, D, H, W) with N > 0")
    if labels.shape[0] != images.shape[0]:
        raise BadFileError(path, f"{images.shape[0]} images but {labels.shape[0]} labels in split '{split}'")
    return images, labels


@functools.lru_cache(maxsize=2)
def _cached_raw(path: str, mtime_ns: int, size: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _load_raw(Path(path), split)
    images.flags.writeable = False
    return images, labels


def _channel_first(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, *stored)`` → view ``(N, C, *reversed spatial)``."""
    if images.ndim == 4 and images.shape[-1] == 3:  # 2D RGB (N, H, W, 3) → (N, 3, W, H)
        return images.transpose(0, 3, 2, 1)
    spatial = tuple(range(images.ndim - 1, 0, -1))
    return images.transpose(0, *spatial)[:, None]


def load_medmnist_split(path: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a whole split at once (fast path for training and probes).

    Args:
        path: MedMNIST ``.npz`` file.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        ``(images, labels)``: images ``(N, C, *S)`` float32 in [0, 1] (uint8 / 255), C = 1
        or 3, S reversed stored axes; labels int64 ``(N,)`` or ``(N, K)`` (multi-label).

    Raises:
        BadFileError: missing / corrupt file, missing keys, unexpected dtype or shape.
    """
    images, labels = _load_raw(Path(path), split)
    return np.ascontiguousarray(_TO_UNIT[_channel_first(images)]), labels


def read_medmnist(path: str | Path, split: str, index: int) -> Volume:
    """Read one image of a MedMNIST split as a :class:`Volume`.

    The decompressed split is cached (2 most recent ``(file, split)`` pairs, as uint8), so
    per-index reads are cheap after the first; use :func:`load_medmnist_split` for bulk.

    Args:
        path: MedMNIST ``.npz`` file.
        split: ``"train"``, ``"val"`` or ``"test"``.
        index: 0-based position in the split.

    Returns:
        Volume with array ``(C, *S)`` float32 in [0, 1] (same values as row ``index`` of
        :func:`load_medmnist_split`), identity affine, meta ``split``, ``index``, ``label``
        (int, or tuple of ints for multi-label sets).

    Raises:
        BadFileError: as :func:`load_medmnist_split`. IndexError: index out of range.
    """
    path = Path(path)
    if not path.is_file():
        raise BadFileError(path, "file does not exist" if not path.exists() else "is not a regular file")
    stat = path.stat()
    images, labels = _cached_raw(str(path.resolve()), stat.st_mtime_ns, stat.st_size, split)
    if not 0 <= int(index) < len(images):
        raise IndexError(f"{path}: index {index} is out of range for split '{split}' with {len(images)} images")
    array = np.ascontiguousarray(_TO_UNIT[_channel_first(images[int(index) : int(index) + 1])[0]])
    label = labels[int(index)]
    meta = {"source_format": "medmnist", "split": split, "index": int(index), "shape": tuple(array.shape[1:]),
            "label": int(label) if np.ndim(label) == 0 else tuple(int(v) for v in label)}
    vol = Volume(array, np.eye(array.ndim), meta)
    vol.meta["spacing"] = vol.spacing
    return vol
