"""Preprocessing cache: values, memory mapping, resume, invalidation, bad-file policy."""

import numpy as np
import pytest

from medssl.data.cache import build_cache
from medssl.io.errors import BadFileError


def _files(tmp_path, n=5):
    paths = []
    for i in range(n):
        p = tmp_path / f"f{i}.npy"
        np.save(p, np.full((1, 4, 4), i, dtype=np.float32))
        paths.append(str(p))
    return paths


def test_values_and_memmap(tmp_path):
    paths = _files(tmp_path)
    res = build_cache(paths, np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    assert isinstance(res.images, np.memmap) and res.images.dtype == np.float16
    assert [float(res.images[i].mean()) for i in range(5)] == [0, 1, 2, 3, 4]
    assert res.valid.all() and res.skipped == []


def test_second_build_reuses_and_settings_invalidate(tmp_path):
    paths = _files(tmp_path)
    calls = []
    load = lambda p: calls.append(p) or np.load(p)  # noqa: E731
    build_cache(paths, load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    assert len(calls) == 5
    build_cache(paths, load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    assert len(calls) == 5  # nothing decoded again
    build_cache(paths, load, (1, 4, 4), tmp_path / "c", settings="b", progress=False)
    assert len(calls) == 10  # other preprocessing settings → rebuilt


def test_interrupted_build_resumes(tmp_path):
    paths = _files(tmp_path, 40)

    def flaky(p):
        if p.endswith("f35.npy"):
            raise KeyboardInterrupt
        return np.load(p)

    with pytest.raises(KeyboardInterrupt):
        build_cache(paths, flaky, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    calls = []
    res = build_cache(paths, lambda p: calls.append(p) or np.load(p), (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    assert len(calls) == 8  # rows 0-31 were checkpointed; 32-39 are redone
    assert float(res.images[39].mean()) == 39


def test_bad_file_policy(tmp_path):
    paths = _files(tmp_path, 3)

    def load(p):
        if p.endswith("f1.npy"):
            raise BadFileError(p, "truncated")
        return np.load(p)

    with pytest.raises(BadFileError, match="f1.npy: truncated"):
        build_cache(paths, load, (1, 4, 4), tmp_path / "c1", settings="a", on_bad_file="error", progress=False)
    res = build_cache(paths, load, (1, 4, 4), tmp_path / "c2", settings="a", on_bad_file="skip", progress=False)
    assert res.valid.tolist() == [True, False, True]
    assert res.skipped == [{"path": paths[1], "reason": "truncated"}]
