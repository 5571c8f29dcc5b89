"""Cache items that share one file (the rows of an ``.npz``, keys ``file#i``): rows are told apart by key, not
by file, when the first rows of a cache are served and when a resumed build leaves out the skipped ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from medssl.data.cache import build_cache
from medssl.io.errors import BadFileError


@dataclass(frozen=True)
class _Row:
    path: str
    key: str


def _rows(tmp_path, n):
    (f := tmp_path / "scans.npz").write_bytes(b"one file for every row")
    return [_Row(str(f), f"{f}#{i}") for i in range(n)]


def _value(row: _Row) -> np.ndarray:
    return np.full((1, 2, 2), int(row.key.rsplit("#", 1)[1]), dtype=np.float32)


def test_first_rows_are_served_only_when_their_keys_match_not_just_their_file(tmp_path):
    """Rows 1, 0 of a cache of rows 0, 1, 2 of one file have the same source signatures as its first two rows;
    they are other scans, so they are built (in this order), not served as rows 0, 1."""
    rows, cache = _rows(tmp_path, 3), tmp_path / "c"
    build_cache(rows, _value, (1, 2, 2), cache, settings="a", progress=False)
    res = build_cache([rows[1], rows[0]], _value, (1, 2, 2), cache, settings="a", progress=False)
    assert [float(res.images[i].mean()) for i in range(2)] == [1.0, 0.0]


def test_a_resumed_skip_build_builds_the_other_rows_of_a_file_with_a_skipped_row(tmp_path):
    """Row 1 is bad (skipped, listed by key) and the build is interrupted before row 2; the rerun builds row 2,
    which lives in the same file as the skipped row, and leaves out only row 1."""
    rows, cache = _rows(tmp_path, 4), tmp_path / "c"
    calls = []

    def interrupted(row):
        calls.append(row.key)
        if row is rows[1]:
            raise BadFileError(row.path, "bad row")
        if row is rows[2]:
            raise KeyboardInterrupt
        return _value(row)

    with pytest.raises(KeyboardInterrupt):
        build_cache(rows, interrupted, (1, 2, 2), cache, settings="a", on_bad_file="skip", progress=False)
    calls.clear()
    res = build_cache(rows, lambda r: calls.append(r.key) or _value(r), (1, 2, 2), cache, settings="a",
                      on_bad_file="skip", progress=False)
    assert calls == [rows[2].key, rows[3].key] and res.n_built == 2
    assert res.valid.tolist() == [True, False, True, True]
    assert [s["key"] for s in res.skipped] == [rows[1].key]
    assert [float(res.images[i].mean()) for i in (0, 2, 3)] == [0.0, 2.0, 3.0]
