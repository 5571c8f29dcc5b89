"""Records for a MedMNIST ``.npz`` card (Yang et al., Sci Data 10:41, 2023).

A MedMNIST file has no table: it holds ``{train,val,test}_images`` and ``_labels``. Each
image becomes one :class:`~medssl.data.manifest.Record` with ``path`` = the ``.npz``,
``npz_split`` = the array it lives in and ``index`` = its row, so the whole data layer
(check, cache, training) treats it like any other scan; the pixels are read with
:func:`medssl.io.read_medmnist` (one decompression per split and process).

MedMNIST publishes no patient ids, so each image is its own subject (``"train-000042"``);
the official splits are kept (``split`` = train / val / test, or the card's mapping).
Multi-label sets (ChestMNIST) get an empty ``label``: read the label vectors with
:func:`medssl.io.load_medmnist_split`.
"""

from __future__ import annotations

import zipfile
import zlib

import numpy as np

from medssl.data.card import DataCard
from medssl.data.manifest import ManifestError, Problem, Record, _inside
from medssl.data.tables import ROOT_HINT
from medssl.io.errors import numpy_load_reason
from medssl.io.medmnist import label_rows

NPZ_SPLITS = ("train", "val", "test")


def medmnist_labels(path, split: str) -> np.ndarray:
    """``(N,)`` or ``(N, K)`` int64 labels of one split, without decompressing the images.

    Raises:
        ManifestError: unreadable file or missing ``{split}_labels`` array.
    """
    if not zipfile.is_zipfile(path):  # np.load would call any other file "pickled" (or return a .npy's array)
        raise ManifestError(f"{path}: not a .npz (zip) archive; the file is corrupt, truncated or another format, "
                            "re-download it")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if f"{split}_labels" not in npz.files:
                raise ManifestError(f"{path}: no '{split}_labels' array (keys: {sorted(npz.files)}); is this a MedMNIST .npz?")
            labels = npz[f"{split}_labels"]
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:
        raise ManifestError(f"{path}: {numpy_load_reason(e, 'MedMNIST file', ', re-download it')}") from None
    try:
        return label_rows(labels, f"{split}_labels")
    except ValueError as e:
        raise ManifestError(f"{path}: {e}") from None


def medmnist_records(card: DataCard, root, problems: list[Problem]) -> tuple[list[Record], str]:
    """One record per image of every split of ``card.npz`` (see module docstring).

    Raises:
        ManifestError: the ``.npz`` is missing, escapes the root or cannot be read.
    """
    path = _inside(root, card.npz)
    if path is None:
        raise ManifestError(f"card {card.name}: npz {card.npz!r} escapes the data root {root}")
    if not path.is_file():
        raise ManifestError(f"card {card.name}: MedMNIST file {path} does not exist; {ROOT_HINT} "
                            f"(how to obtain it: {card.obtain or 'see the card'})")
    records = []
    for split in NPZ_SPLITS:
        labels = medmnist_labels(path, split)
        role = card.split_role(split)
        if role is None:
            problems.append(Problem(f"{path} [{split}]", f"split {split!r} is not in the card's `splits:` mapping; "
                                                         f"its {len(labels)} images are left out"))
            continue
        for i, y in enumerate(labels):
            label = str(int(y)) if np.ndim(y) == 0 else ""
            records.append(Record(path=str(path), subject=f"{split}-{i:06d}", label=label, split=role,
                                  index=i, npz_split=split))
    return records, str(path)
