"""Errors raised for bad input files; they always name the file and the reason."""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


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


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace quoted substrings and every string in ``secrets`` by ``<redacted>`` (max 300 chars).

    Library messages quote offending values (``invalid literal for int(): 'Smith^J'``); a
    header value that reaches a message this way must not leak, so quotes go first.
    """
    text = _QUOTED.sub("<redacted>", text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    return text[:300]


@contextlib.contextmanager
def scrubbed_warnings(secrets: Callable[[], Iterable[str]] | None = None):
    """Re-emit the warnings raised inside the block, passed through :func:`redact`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    values = list(secrets()) if (caught and secrets) else []
    for w in caught:
        warnings.warn(redact(str(w.message), values), w.category, stacklevel=3)
