"""Shared test set-up: helper modules importable from every folder, small synthetic cohorts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # test helper modules (shared_data, …) import by name

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory) -> Path:
    """A 40-subject, 3-site synthetic cohort at 24³ written once per test session."""
    from medssl.data.synthetic import write_synthetic_cohort

    out = tmp_path_factory.mktemp("cohort")
    return write_synthetic_cohort(out, n_subjects=40, n_sites=3, shape=(24, 24, 24), seed=3, progress=False)


@pytest.fixture
def disk_full_on(monkeypatch):
    """``disk_full_on("metrics", …)``: from then on ``Path.write_text`` into a file whose name contains one of
    these words (the file itself or a temporary of it) writes half of the text and raises ENOSPC, as a full
    disk or a kill in the middle of the write leaves it."""
    import errno
    import pathlib

    real = pathlib.Path.write_text

    def arm(*words: str) -> None:
        def write_text(self, data, *args, **kwargs):
            if any(w in self.name for w in words):
                real(self, data[: len(data) // 2], *args, **kwargs)
                raise OSError(errno.ENOSPC, "No space left on device (test)", str(self))
            return real(self, data, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "write_text", write_text)

    return arm
