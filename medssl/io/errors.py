"""Errors raised for bad input files; they always name the file and the reason."""

from __future__ import annotations

from pathlib import Path


class BadFileError(ValueError):
    """A file that cannot be used, with the path and a reason the user can act on."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
