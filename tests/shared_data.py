"""Where the shared real-data folder is (``../shared`` beside the repo, or ``$MEDSSL_SHARED``).

Tests that need it call :func:`shared_path`, which skips the test with the reason when the
folder is absent (a user's fresh clone). Importable from every test folder: the root
conftest puts ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("MEDSSL_SHARED", Path(__file__).resolve().parents[1].parent / "shared")).resolve()


def shared_path(*parts: str) -> Path:
    """Path under the shared folder, or skip the test saying what is missing."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not found: the shared real-data folder is absent (set MEDSSL_SHARED to use it)")
    return p
