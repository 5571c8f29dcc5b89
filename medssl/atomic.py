"""Atomic file writes: a reader sees the previous file or the new one whole, never half of one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], None], durable: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file of this writer in ``path``'s folder, then rename it over ``path``
    (``os.replace``: atomic on POSIX). The temporary name is unique per call (two processes writing the same
    file never rename each other's) and keeps ``path``'s suffix (``np.save`` / ``np.savez`` append theirs to
    other names); it is removed when the write fails.

    ``durable=True`` (checkpoints) also survives a power loss: the file's bytes are fsynced before the rename
    and the folder after it, so the new name is on disk too (POSIX; a no-op for the folder on Windows)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        write(tmp)
        if durable:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
        if durable and os.name != "nt":
            _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _fsync(target: Path, flags: int) -> None:
    fd = os.open(target, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
