"""Cache edges found by mutating medssl/data/cache.py: rows never built are not reused, an
interrupted prepared cache is not served as a prefix, a lost or mismatched done.npy rebuilds,
and a misspelt on_bad_file is refused."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.data.cache import build_cache
from medssl.io.errors import BadFileError


def _files(tmp_path, n):
    paths = []
    for i in range(n):
        p = tmp_path / f"f{i}.npy"
        np.save(p, np.full((1, 4, 4), i + 1, dtype=np.float32))
        paths.append(str(p))
    return paths


def _expected(paths):
    return np.stack([np.load(p) for p in paths]).astype(np.float16)


def _stops_at(name):
    """A loader interrupted (Ctrl-C) when it reaches the file ``name``."""
    def load(p):
        if p.endswith(name):
            raise KeyboardInterrupt
        return np.load(p)
    return load


def test_a_skipped_row_is_not_reused_as_a_row_of_zeros_when_scans_are_added(tmp_path):
    """The previous cache's row of a skipped file was never written (zeros, done False): after a scan
    is added it is decoded again (still bad: skipped again), never copied over and marked valid."""
    paths = _files(tmp_path, 4)

    def load(p):
        if p.endswith("f1.npy"):
            raise BadFileError(p, "truncated")
        return np.load(p)

    build_cache(paths[:3], load, (1, 4, 4), tmp_path / "c", settings="a", on_bad_file="skip", progress=False)
    res = build_cache(paths, load, (1, 4, 4), tmp_path / "c", settings="a", on_bad_file="skip", progress=False)
    assert res.valid.tolist() == [True, False, True, True] and (res.n_reused, res.n_built) == (2, 1)
    assert res.skipped == [{"path": paths[1], "reason": "truncated", "key": paths[1]}]


def test_a_row_an_interrupted_build_left_undone_is_built_not_reused(tmp_path):
    paths = _files(tmp_path, 4)

    with pytest.raises(KeyboardInterrupt):
        build_cache(paths[:3], _stops_at("f1.npy"), (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    res = build_cache(paths, np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    assert res.valid.all() and (res.n_reused, res.n_built) == (1, 3)
    np.testing.assert_array_equal(res.images, _expected(paths))


def test_the_first_rows_of_an_interrupted_prepared_cache_are_built_not_served_invalid(tmp_path):
    """data.limit=3 on a prepare that stopped after its first scan: rows 1 and 2 are not done, so the
    prefix is not served (it would mark them invalid, silently training on fewer scans)."""
    paths = _files(tmp_path, 5)

    with pytest.raises(KeyboardInterrupt):
        build_cache(paths, _stops_at("f1.npy"), (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    head = build_cache(paths[:3], np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    assert head.valid.tolist() == [True, True, True] and head.skipped == []
    np.testing.assert_array_equal(head.images, _expected(paths[:3]))


def test_a_lost_done_file_rebuilds_instead_of_crashing(tmp_path):
    paths = _files(tmp_path, 3)
    build_cache(paths, np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    (tmp_path / "c" / "done.npy").unlink()
    res = build_cache(paths, np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    assert res.valid.all() and res.n_built == 3
    np.testing.assert_array_equal(res.images, _expected(paths))


def test_a_done_file_of_another_length_reuses_nothing(tmp_path):
    """A done.npy that does not match index.json (e.g. copied from another cache) is not trusted."""
    paths = _files(tmp_path, 4)
    build_cache(paths[:3], np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    np.save(tmp_path / "c" / "done.npy", np.ones(2, bool))
    res = build_cache(paths, np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    assert res.valid.all() and (res.n_reused, res.n_built) == (0, 4)
    np.testing.assert_array_equal(res.images, _expected(paths))


@pytest.mark.parametrize("policy", ["Error", "ignore", "skip "])
def test_a_misspelt_bad_file_policy_is_refused_before_anything_is_built(tmp_path, policy):
    paths = _files(tmp_path, 2)
    with pytest.raises(ValueError, match=rf"on_bad_file must be 'error' or 'skip', got {policy!r}"):
        build_cache(paths, np.load, (1, 4, 4), tmp_path / "c", settings="a", on_bad_file=policy, progress=False)
    assert not (tmp_path / "c").exists()


def test_a_bad_file_is_named_as_the_reader_names_it_not_as_the_scan(tmp_path):
    """A DICOM series scan is a folder; the reader names the damaged slice inside it, and so must the
    strict build's error and the skip build's list (the folder alone leaves the user searching)."""
    paths = _files(tmp_path, 2)
    slice_file = str(tmp_path / "series" / "03.dcm")

    def load(p):
        if p.endswith("f1.npy"):
            raise BadFileError(slice_file, "lacks ImagePositionPatient")
        return np.load(p)

    with pytest.raises(BadFileError) as err:
        build_cache(paths, load, (1, 4, 4), tmp_path / "c1", settings="a", progress=False)
    assert str(err.value.path) == slice_file and err.value.reason.startswith("lacks ImagePositionPatient; ")
    res = build_cache(paths, load, (1, 4, 4), tmp_path / "c2", settings="a", on_bad_file="skip", progress=False)
    assert res.skipped == [{"path": slice_file, "reason": "lacks ImagePositionPatient", "key": paths[1]}]


def test_the_count_of_non_finite_values_is_the_count_of_nan_and_inf(tmp_path):
    paths = _files(tmp_path, 1)

    def load(p):
        a = np.load(p)
        a[0, 0, :2] = [np.nan, np.inf]
        return a

    with pytest.raises(BadFileError, match=r"f0\.npy: preprocessing produced 2 NaN/Inf value\(s\)"):
        build_cache(paths, load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)


def test_two_builders_of_one_cache_take_turns(tmp_path):
    """Two runs (or DDP ranks) building the same cache at once: the second waits on the lock, then finds
    every row built; each scan is decoded once and both see the same rows."""
    import threading
    import time

    paths = _files(tmp_path, 6)
    calls, results = [], [None, None]
    start = threading.Barrier(2)

    def slow(p):
        calls.append(p)
        time.sleep(0.03)
        return np.load(p)

    def build(k):
        start.wait()
        results[k] = build_cache(paths, slow, (1, 4, 4), tmp_path / "c", settings="a", progress=False)

    threads = [threading.Thread(target=build, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(calls) == sorted(paths) and sorted(r.n_built for r in results) == [0, 6]
    for r in results:
        np.testing.assert_array_equal(r.images, _expected(paths))


def test_an_added_scan_with_another_output_shape_rebuilds_every_row(tmp_path):
    """Sources changed and another ``out_shape`` with the same settings string (a direct build_cache call):
    no row of the old (1, 4, 4) cache may be copied into the new (1, 2, 8) one; every row is decoded."""
    paths = _files(tmp_path, 3)
    build_cache(paths[:2], np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    calls = []
    res = build_cache(paths, lambda p: calls.append(p) or np.load(p).reshape(1, 2, 8), (1, 2, 8), tmp_path / "c",
                      settings="a", progress=False)
    assert sorted(calls) == paths and (res.n_reused, res.n_built) == (0, 3)
    np.testing.assert_array_equal(res.images, _expected(paths).reshape(3, 1, 2, 8))
