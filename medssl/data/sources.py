"""Which files a scan is read from, and a signature of them for the cache fingerprint.

A scan's ``path`` is not always the only file behind it: a DICOM series is a folder of
slices, and a MetaImage ``.mhd`` or detached NRRD ``.nhdr`` header keeps its pixels in
other files. :func:`source_signature` covers all of them with stat calls only (plus the few
hundred bytes of a detached header), so :func:`medssl.data.cache.cache_fingerprint` notices a
slice or ``.raw`` file rewritten in place.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


#: headers whose pixels are in other files (MetaImage ``.mhd``, detached NRRD ``.nhdr``)
DETACHED_HEADERS = (".mhd", ".nhdr")
_HEADER_BYTES = 1 << 16  # a detached header is a few hundred bytes; never read more than this
#: bumped when the DICOM readers return other values for the same files (2: PixelPaddingValue filled, no
#: longer -3024 HU; 3: VOI LUT Data read in the file's byte order, 8-bit tables past entry 255; 4: a LUT's
#: negative first mapped value written as US; 5: a negative Rescale Slope no longer inverts the display
#: window), so that the DICOM rows of a cache built before are rebuilt once and no other row is (a
#: ``format: dicom`` card's files, of any name, carry it in the cache settings: prepare.ScanLoader.settings)
DICOM_REVISION = 5


def _stat(path: str | os.PathLike) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}|{st.st_mtime_ns}"


def _folder_files(folder: str) -> list[str]:
    """Relative names of the regular files under ``folder``, recursively, hidden files left out.

    A superset of what :func:`medssl.io.read_dicom_series` reads: it looks into sub-folders
    only with ``recursive=True`` and never reads hidden files. Symlinked folders are not
    followed (no loops); symlinked files count with their target's size and mtime.
    """
    names: list[str] = []
    for base, dirs, files in os.walk(folder):
        dirs.sort()
        names += sorted(os.path.relpath(os.path.join(base, f), folder) for f in files if not f.startswith("."))
    return names


def _expand_pattern(value: str) -> list[str] | None:
    """``"slice%03d.raw 1 40 1 [subdim]"`` (MetaImage / NRRD numbered data files) → names, else None."""
    parts = value.split()
    if len(parts) < 4 or "%" not in parts[0]:
        return None
    try:
        start, stop, step = (int(v) for v in parts[1:4])
        if step == 0 or abs(stop - start) // abs(step) > 100_000:
            return None
        return [parts[0] % i for i in range(start, stop + (1 if step > 0 else -1), step)]
    except (TypeError, ValueError):
        return None


def detached_data_files(header: str | os.PathLike) -> list[Path] | None:
    """The data files a MetaImage ``.mhd`` or detached NRRD ``.nhdr`` header points to.

    Reads only the text header: MetaImage ``ElementDataFile`` (the last field), NRRD
    ``data file:`` / ``datafile:`` (the header ends at the first blank line). A value is
    ``LOCAL`` (data in the header file itself: ``[]``), one file name, ``LIST [subdim]``
    followed by one name per line, or a numbered pattern ``name%03d.raw first last step``.
    Relative names are relative to the header's folder.

    Returns:
        the data files (they may not exist), or ``None`` when the header cannot be read or
        names no data file.
    """
    header = Path(header)
    try:
        with open(header, "rb") as fh:
            text = fh.read(_HEADER_BYTES).decode("latin-1")
    except OSError:
        return None
    nrrd = header.suffix.lower() == ".nhdr"
    lines = text.splitlines()
    value, rest = None, []
    for n, line in enumerate(lines):
        if nrrd:
            if not line.strip():
                break  # end of a NRRD header
            key, sep, val = line.partition(":")
            if line.startswith("#") or not sep or val.startswith("="):
                continue  # magic line, comment, or key:=value pair
        else:
            key, sep, val = line.partition("=")
            if not sep:
                continue
        if key.strip().lower() not in ("elementdatafile", "data file", "datafile"):
            continue
        value, rest = val.strip(), lines[n + 1:]
        break
    if not value:
        return None
    if value.upper() == "LOCAL":
        return []
    if value.split()[0].upper() == "LIST":
        names = []
        for line in rest:
            if nrrd and not line.strip():
                break
            names += line.split()
    elif (header.parent / value).exists() or " " not in value:
        names = [value]  # one file (a name may hold spaces)
    else:
        names = _expand_pattern(value)
        if names is None:
            return None
    return [header.parent / name for name in names] if names else None


def source_files(path: str | os.PathLike) -> list[str] | None:
    """Every file a scan at ``path`` is read from, relative to ``path``'s folder (``None``: a folder).

    A folder (DICOM series): see :func:`_folder_files`. A ``.mhd`` / ``.nhdr`` header: the
    header and its data file(s) (:func:`detached_data_files`); when the header cannot be
    parsed, every file in its folder with the header's stem (``img.mhd`` → ``img.*``).
    Anything else: the file itself.
    """
    path = os.fspath(path)
    if path.lower().endswith(DETACHED_HEADERS):
        data = detached_data_files(path)
        folder, name = os.path.split(path)
        if data is None:
            stem = name.rsplit(".", 1)[0]
            try:
                return sorted(f for f in os.listdir(folder or ".") if f == stem or f.startswith(stem + "."))
            except OSError:
                return [name]
        return [name, *(os.path.relpath(d, folder or ".") for d in data)]
    return None if os.path.isdir(path) else [os.path.basename(path)]


def source_signature(path: str | os.PathLike) -> str:
    """Size and mtime of every file the scan at ``path`` is read from (stat calls only, plus
    the text header of a ``.mhd`` / ``.nhdr``): any of them rewritten, added or removed
    changes it.

    A plain file keeps the signature of caches built before folders and detached headers
    were covered (``"size|mtime_ns"``), so those caches stay valid; a folder or detached
    header gets a new form, so a cache built with the old, incomplete signature is rebuilt
    once. A DICOM series folder or file (``.dcm``, ``.dicom``, no suffix) also carries
    :data:`DICOM_REVISION`.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        h = hashlib.sha256(f"dir\ndicom{DICOM_REVISION}\n".encode())
        for name in _folder_files(path):
            h.update(f"{name}|{_stat(os.path.join(path, name))}\n".encode())
        return "dir:" + h.hexdigest()[:20]
    files = source_files(path)
    if files is None or files == [os.path.basename(path)]:
        dicom = os.path.splitext(path)[1].lower() in ("", ".dcm", ".dicom")
        return f"dicom{DICOM_REVISION}:{_stat(path)}" if dicom else _stat(path)
    folder = os.path.dirname(path)
    h = hashlib.sha256(b"files\n")
    for name in files:
        h.update(f"{name}|{_stat(os.path.join(folder, name))}\n".encode())
    return "files:" + h.hexdigest()[:20]
