"""One entry point: pick the reader from the path (folder or file extension)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import pydicom

from medssl.io.dicom import read_dicom
from medssl.io.dicom_series import read_dicom_series
from medssl.io.errors import BadFileError
from medssl.io.itk import ITK_SUFFIXES, read_itk
from medssl.io.medmnist import read_medmnist
from medssl.io.nifti import read_nifti
from medssl.io.png import RASTER_SUFFIXES, read_png
from medssl.io.volume import Volume

#: Lower-case suffix (``.nii.gz`` counts as one) → reader.
READERS: dict[str, Callable[..., Volume]] = {
    ".nii": read_nifti, ".nii.gz": read_nifti, ".dcm": read_dicom, ".dicom": read_dicom,
    ".npz": read_medmnist, **dict.fromkeys(ITK_SUFFIXES, read_itk), **dict.fromkeys(RASTER_SUFFIXES, read_png),
}


#: A card's ``format`` → the reader it forces (``auto`` picks one of :data:`READERS` per path).
FORMAT_READERS: dict[str, Callable[..., Volume]] = {
    "nifti": read_nifti, "dicom": read_dicom, "dicom_series": read_dicom_series, "itk": read_itk, "png": read_png,
}


class ReaderOptionError(TypeError):
    """Options that the reader chosen for a path does not take (a settings error, not a bad file)."""


def reader_options(reader: Callable[..., Volume]) -> dict[str, inspect.Parameter]:
    """The keyword options of a reader: its parameters after the path."""
    return dict(list(inspect.signature(reader).parameters.items())[1:])


def reader_for(path: str | Path) -> Callable[..., Volume]:
    """The reader :func:`read_image` would use for ``path``.

    Rules: a folder → :func:`read_dicom_series`; a known suffix (see :data:`READERS`);
    any other file carrying the DICOM ``DICM`` marker (no suffix, or a name such as
    ``IM_0001.1`` or the file's SOPInstanceUID) → :func:`read_dicom`.

    Raises:
        BadFileError: the path does not exist or its type is not supported.
    """
    path = Path(path)
    if path.is_dir():
        return read_dicom_series
    if not path.exists():
        raise BadFileError(path, "file does not exist")
    name = path.name.lower()
    suffix = ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()
    if suffix in READERS:
        return READERS[suffix]
    if pydicom.misc.is_dicom(path):  # DICOM files are often named by number or UID: "IM_0001.1", "1.2.840…"
        return read_dicom
    supported = ", ".join(sorted(READERS))
    raise BadFileError(path, f"unsupported file type {suffix or '(no extension)'!r}; supported: {supported}, "
                             "DICOM files of any name (with the DICM marker), or a folder holding one DICOM series")


def read_image(path: str | Path, **kw) -> Volume:
    """Read any supported medical image into a :class:`Volume`.

    Args:
        path: file or folder (see :func:`reader_for` for the dispatch rules).
        **kw: options of the chosen reader, e.g. ``voi=`` for DICOM, ``series_uid=`` for a
            series folder, ``split=`` and ``index=`` (required) for a MedMNIST ``.npz``.

    Returns:
        The reader's :class:`Volume`: array ``(C, *spatial)`` float32, affine, safe metadata.

    Raises:
        BadFileError: missing path, unsupported type, or the reader's own errors.
        ReaderOptionError: (a TypeError) an option the chosen reader does not take, or a
            missing required one.
    """
    reader = reader_for(path)
    params = reader_options(reader)
    unknown = sorted(set(kw) - set(params))
    if unknown:
        raise ReaderOptionError(f"{reader.__name__} (chosen for {path}) does not take {unknown}; "
                                f"its options: {', '.join(params)}")
    missing = [n for n, p in params.items() if p.default is p.empty and n not in kw]
    if missing:
        raise ReaderOptionError(f"{reader.__name__} (chosen for {path}) needs {missing}, e.g. "
                        "read_image(path, split='train', index=0) for a MedMNIST .npz")
    return reader(path, **kw)
