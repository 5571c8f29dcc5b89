"""Errors raised for bad input files; they always name the file and the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class BadFileError(ValueError):
    """A file that cannot be used, with the path and a reason the user can act on."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MissingDecoderError(BadFileError):
    """A compressed file whose transfer syntax no installed decoder can read.

    The file itself may be fine: installing ``medssl[dicom-codecs]`` usually fixes it.
    It subclasses :class:`BadFileError` so one ``except`` catches every unusable input;
    catch this class first if you want to stop rather than skip such files.
    """


def check_array(path: str | Path, array: np.ndarray) -> np.ndarray:
    """Reject arrays that would silently poison training: empty or non-finite.

    Args:
        path: file the array came from (named in the error).
        array: decoded voxel data, any shape.

    Returns:
        ``array`` unchanged.

    Raises:
        BadFileError: zero voxels, or NaN / Inf voxels (with their count).
    """
    if array.size == 0:
        raise BadFileError(path, f"image has zero voxels (shape {tuple(array.shape)})")
    finite = np.isfinite(array)
    if not finite.all():
        n_bad = int(array.size - np.count_nonzero(finite))
        raise BadFileError(path, f"{n_bad} voxels are NaN or Inf; fix the file or mask them before use")
    return array
