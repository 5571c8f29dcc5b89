"""Errors raised for bad input files; they always name the file and the reason."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

#: A quoted span: the opening quote starts a word (or follows a one-letter b/u/r repr prefix, ``b'…'``), the
#: closing one ends it, and the span may hold apostrophes (``'O'Brien^J'``); an apostrophe inside a word
#: (``can't``) opens nothing.
_QUOTED = re.compile(r"""(?:(?<!\w)|(?<=\b[bBuUrR]))(?:'[\s\S]*?'|"[\s\S]*?")(?!\w)""")
#: A quote left after that which is not an apostrophe inside a word: everything from it on is redacted.
_STRAY_QUOTE = re.compile(r"""(?:(?<!\w)['"]|['"](?!\w))[\s\S]*""")
#: Characters of a message the quote passes read (the result keeps 300); a quote cut open here redacts the rest.
_SCANNED = 2000


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


def numpy_load_reason(error: Exception, what: str, fix: str = "") -> str:
    """Why ``np.load(..., allow_pickle=False)`` failed, in words: pickled objects are refused on
    purpose (loading them could run code from the file), anything else is damage (``fix`` appended).
    With ``mmap_mode`` numpy refuses an object array before it reads the flag ("Python objects in dtype")."""
    if "allow_pickle" in str(error) or "Python objects in dtype" in str(error):
        return (f"the {what} holds pickled Python objects, which medssl never loads (they could run code); "
                "save plain numeric arrays instead")
    return f"cannot read the {what} ({type(error).__name__}: {error}); the file is corrupt or truncated{fix}"


#: smallest voxel size accepted (mm): 1 µm; anything finer is a broken header for a medical scan
MIN_SPACING_MM = 1e-3


def check_affine(path: str | Path, affine: np.ndarray) -> np.ndarray:
    """Reject voxel → world matrices that no resampling can use.

    Args:
        path: file the affine came from (named in the error).
        affine: ``(D+1, D+1)`` matrix, D = 2 or 3 spatial dims (mm).

    Returns:
        ``affine`` unchanged.

    Raises:
        BadFileError: non-finite entries, a voxel size (column norm) below
            :data:`MIN_SPACING_MM`, or a singular (degenerate) orientation.
    """
    affine = np.asarray(affine, float)
    if not np.isfinite(affine).all():
        raise BadFileError(path, "its voxel-to-world matrix (affine) contains NaN or Inf; fix the header's "
                                 "orientation (e.g. the NIfTI sform/qform) before use")
    lin = affine[:-1, :-1]
    spacing = np.sqrt((lin**2).sum(axis=0))
    if (spacing < MIN_SPACING_MM).any():
        raise BadFileError(path, f"voxel size {tuple(round(float(s), 6) for s in spacing)} mm is zero or below "
                                 f"{MIN_SPACING_MM} mm; the header's spacing (pixdim / PixelSpacing) is broken")
    if abs(np.linalg.det(lin / spacing)) < 1e-6:
        raise BadFileError(path, "its voxel axes are parallel (singular affine), so the image has no valid "
                                 "orientation; fix the header's orientation before use")
    return affine


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace quoted substrings and every string in ``secrets`` (in any letter case) by ``<redacted>`` (max 300 chars).

    Library messages quote offending values (``invalid literal for int(): 'Smith^J'``); a
    header value that reaches a message this way must not leak, so quoted spans go too. The
    secrets go first: the quote pass may cut a value at an apostrophe inside it (``'St James' Hospital'``),
    after which the whole value would no longer be found.
    """
    for secret in sorted(set(filter(None, secrets)), key=len, reverse=True):  # in any case: a library may upper-case
        text = re.sub(re.escape(secret), "<redacted>", text, flags=re.IGNORECASE)
    text = text[:_SCANNED]  # an unclosed quote scans to the end: quadratic in a long message full of quotes
    text = _STRAY_QUOTE.sub("<redacted>", _QUOTED.sub("<redacted>", text))
    return text[:300]


class _HoldFilter(logging.Filter):
    """Holds back the records of a thread inside ``scrubbed_warnings(logger=...)`` for that block to re-emit
    scrubbed; every other record passes. One instance, attached to a logger and its children at their first
    scrubbed block and left there (inert outside blocks): logging walks a logger's filter list by index, so
    removing a filter while another thread's record is between filters makes that record skip the next one.

    The filter runs in the thread that logs, so the record goes to that thread's innermost open block
    (``record.thread`` is not used: it is None under ``logging.logThreads = False``)."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()  # .blocks: this thread's open blocks, innermost last: (logger, records)
        self.lock = threading.Lock()

    def blocks(self) -> list[tuple[str, list[logging.LogRecord]]]:
        if not hasattr(self.local, "blocks"):
            self.local.blocks = []
        return self.local.blocks

    def attach(self, name: str) -> None:
        """Attach to logger ``name`` and those of its children that exist now (once each)."""
        with self.lock:
            for key, lg in [(name, logging.getLogger(name)), *list(logging.Logger.manager.loggerDict.items())]:
                if (key == name or key.startswith(f"{name}.")) and isinstance(lg, logging.Logger) \
                        and self not in lg.filters:
                    lg.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        for name, records in reversed(self.blocks()):
            if record.name == name or record.name.startswith(f"{name}."):
                records.append(record)
                return False
        return True


_HOLD = _HoldFilter()


def _release(records: list[logging.LogRecord], secrets: list[str]) -> None:
    """Pass each held record on to its logger with message and exception redacted (an enclosing block of this
    thread holds it again and scrubs it with its own secrets too)."""
    for record in records:
        try:
            text = redact(record.getMessage(), secrets)
        except Exception:  # noqa: BLE001 - a record whose arguments do not fit its format
            text = redact(str(record.msg), secrets)
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:  # the traceback is dropped: only the scrubbed exception line is kept
            text += f" [{type(exc).__name__}: {redact(str(exc), secrets)}]"
        record.msg, record.args, record.exc_info, record.exc_text, record.stack_info = text, (), None, None, None
        logging.getLogger(record.name).handle(record)


@contextlib.contextmanager
def scrubbed_warnings(secrets: Callable[[], Iterable[str]] | None = None, logger: str | None = None):
    """Re-emit the warnings raised inside the block, passed through :func:`redact`, when the block ends,
    also when it raises (a warning before a bad file's error is kept, not lost).

    With ``logger`` (e.g. ``"pydicom"``), the records sent to that logger and its children by this
    thread inside the block are held back too and passed on redacted when the block ends, also
    when it raises (other threads' blocks hold their own; :class:`_HoldFilter`). ``secrets`` is called
    inside the block, so values it reads are covered too.
    """
    held: list[logging.LogRecord] = []
    values: list[str] = []
    caught: list[warnings.WarningMessage] = []
    if logger is not None:
        _HOLD.attach(logger)
        _HOLD.blocks().append((logger, held))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                values = list(secrets()) if (secrets and (caught or held)) else []
    finally:
        if logger is not None:
            blocks = _HOLD.blocks()
            del blocks[next(i for i in range(len(blocks) - 1, -1, -1) if blocks[i][1] is held)]
        _release(held, values)
        for w in caught:
            warnings.warn(redact(str(w.message), values), w.category, stacklevel=3)
