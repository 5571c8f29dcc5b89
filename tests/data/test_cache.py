"""Preprocessing cache: values, memory mapping, resume after Ctrl-C and after SIGKILL, invalidation,
parallel build, bad-file policy."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from medssl.data.cache import build_cache
from medssl.data.manifest import Record
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
    assert res.valid.all() and res.skipped == [] and res.n_built == 5
    again = np.load(tmp_path / "c" / "images.npy", mmap_mode="r")  # what every worker / rank opens
    assert np.array_equal(again, res.images)


def test_second_build_reuses_and_settings_or_files_invalidate(tmp_path):
    paths = _files(tmp_path)
    calls = []
    load = lambda p: calls.append(p) or np.load(p)  # noqa: E731
    build_cache(paths, load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    assert len(calls) == 5
    assert build_cache(paths, load, (1, 4, 4), tmp_path / "c", settings="a", progress=False).n_built == 0
    assert len(calls) == 5  # nothing decoded again
    build_cache(paths, load, (1, 4, 4), tmp_path / "c", settings="b", progress=False)
    assert len(calls) == 10  # other preprocessing settings → rebuilt
    np.save(paths[2], np.full((1, 4, 4), 7, dtype=np.float32))
    os.utime(paths[2], ns=(time.time_ns(), time.time_ns() + 10**9))
    res = build_cache(paths, load, (1, 4, 4), tmp_path / "c", settings="b", progress=False)
    assert len(calls) == 11 and float(res.images[2].mean()) == 7  # only the changed source is decoded again
    assert (res.n_built, res.n_reused) == (1, 4)


def test_items_with_keys_share_a_file(tmp_path):
    """MedMNIST-like records: one .npz, many rows; keys, not paths, identify the cache rows."""
    path = tmp_path / "set.npz"
    np.savez(path, train_images=np.arange(3 * 16, dtype=np.float32).reshape(3, 1, 4, 4))
    recs = [Record(str(path), f"s{i}", index=i, npz_split="train") for i in range(3)]
    res = build_cache(recs, lambda r: np.load(r.path)[f"{r.npz_split}_images"][r.index], (1, 4, 4), tmp_path / "c",
                      settings="a", progress=False)
    assert [float(res.images[i, 0, 0, 0]) for i in range(3)] == [0, 16, 32]
    index = json.loads((tmp_path / "c" / "index.json").read_text())
    assert index["paths"] == [f"{path}::train[{i}]" for i in range(3)]


def test_interrupted_build_resumes_where_it_stopped(tmp_path):
    paths = _files(tmp_path, 40)

    def flaky(p):
        if p.endswith("f35.npy"):
            raise KeyboardInterrupt
        return np.load(p)

    with pytest.raises(KeyboardInterrupt):
        build_cache(paths, flaky, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    calls = []
    res = build_cache(paths, lambda p: calls.append(p) or np.load(p), (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    assert calls == paths[35:]  # progress saved on the interrupt: only 35-39 are redone
    assert [float(res.images[i].mean()) for i in range(40)] == list(range(40))


SLOW_LOADER = """
import time
import numpy as np

def slow_load(path):
    time.sleep(0.08)
    return np.load(path) * 2
"""


def test_killed_parallel_build_resumes(tmp_path):
    """SIGKILL a 2-worker build mid-way: a rerun redoes only what was not checkpointed, same values."""
    paths = _files(tmp_path, 48)
    (tmp_path / "slowmod.py").write_text(SLOW_LOADER)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from slowmod import slow_load
        from medssl.data.cache import build_cache
        if __name__ == "__main__":
            build_cache({paths!r}, slow_load, (1, 4, 4), {str(tmp_path / 'c')!r}, settings="s", progress=False,
                        workers=2, checkpoint_every=4)
    """)
    (tmp_path / "run.py").write_text(script)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py")], start_new_session=True)
    done_path = tmp_path / "c" / "done.npy"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the build finished (rc={proc.returncode}) before it could be killed")
            try:
                if np.load(done_path).sum() >= 8:
                    break
            except (FileNotFoundError, ValueError, EOFError, OSError):
                pass
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the group this test started: parent and its 2 workers
    finally:
        proc.wait(30)
    saved = np.load(done_path)
    assert 8 <= saved.sum() < 48
    sys.path.insert(0, str(tmp_path))
    try:
        from slowmod import slow_load
    finally:
        sys.path.remove(str(tmp_path))
    calls = []
    res = build_cache(paths, lambda p: calls.append(p) or slow_load(p), (1, 4, 4), tmp_path / "c", settings="s",
                      progress=False)
    assert sorted(calls) == sorted(p for p, ok in zip(paths, saved) if not ok)
    assert res.valid.all()
    assert [float(res.images[i].mean()) for i in range(48)] == [2.0 * i for i in range(48)]


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
    assert res.skipped == [{"path": paths[1], "reason": "truncated", "key": paths[1]}]
    # a later strict run must not silently use a cache that left a file out
    with pytest.raises(BadFileError, match="f1.npy: truncated .left out by an earlier build with on_bad_file=skip"):
        build_cache(paths, load, (1, 4, 4), tmp_path / "c2", settings="a", on_bad_file="error", progress=False)


def test_wrong_shape_from_the_loader_is_an_error(tmp_path):
    paths = _files(tmp_path, 2)
    with pytest.raises(ValueError, match=r"returned shape \(1, 4, 4\).*expects \(1, 5, 5\)"):
        build_cache(paths, np.load, (1, 5, 5), tmp_path / "c", settings="a", progress=False)


def test_added_removed_and_reordered_scans_reuse_the_unchanged_rows(tmp_path):
    paths = _files(tmp_path, 6)
    calls = []
    load = lambda p: calls.append(p) or np.load(p)  # noqa: E731
    build_cache(paths[:5], load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    calls.clear()
    now = [paths[4], paths[5], paths[0], paths[2]]  # 1 and 3 removed, 5 added, the order changed
    res = build_cache(now, load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    assert calls == [paths[5]] and (res.n_built, res.n_reused) == (1, 3) and res.valid.all()
    fresh = build_cache(now, np.load, (1, 4, 4), tmp_path / "fresh", settings="a", progress=False)
    np.testing.assert_array_equal(res.images, fresh.images)
    assert json.loads((tmp_path / "c" / "index.json").read_text())["paths"] == now


def test_a_kill_while_the_new_rows_replace_the_old_rebuilds_everything(tmp_path, monkeypatch):
    """The index is marked stale before images.npy is replaced: a kill between the two never pairs the new
    images with the old done.npy; the next build starts over and is correct."""
    paths = _files(tmp_path, 4)
    build_cache(paths, np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    real_replace = os.replace

    def killed(src, dst):
        if Path(dst).name == "images.npy":
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr("medssl.data.cache.os.replace", killed)
    with pytest.raises(KeyboardInterrupt):
        build_cache(paths[::-1], np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    monkeypatch.undo()
    res = build_cache(paths[::-1], np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    assert (res.n_built, res.n_reused) == (4, 0)
    np.testing.assert_array_equal(res.images, np.stack([np.load(p) for p in paths[::-1]]).astype(np.float16))


def test_the_first_rows_of_a_larger_cache_are_served_from_it_without_rebuilding(tmp_path):
    """data.limit=N on a prepared cache: its first N scans come from that cache, which stays whole."""
    paths = _files(tmp_path, 5)
    full = build_cache(paths, np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    stamp = (tmp_path / "c" / "images.npy").stat().st_mtime_ns, (tmp_path / "c" / "index.json").read_text()
    calls = []
    head = build_cache(paths[:3], lambda p: calls.append(p) or np.load(p), (1, 4, 4), tmp_path / "c", settings="a",
                       progress=False)
    assert calls == [] and head.images.shape == (3, 1, 4, 4) and head.valid.all()
    np.testing.assert_array_equal(head.images, full.images[:3])
    assert ((tmp_path / "c" / "images.npy").stat().st_mtime_ns, (tmp_path / "c" / "index.json").read_text()) == stamp
    assert build_cache(paths, np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False).n_built == 0
    other = build_cache(paths[1:3], np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)  # not a prefix
    assert (other.n_built, other.n_reused) == (0, 2) and other.images.shape[0] == 2


def test_first_rows_with_a_skipped_file_are_served_and_the_prepared_cache_stays_whole(tmp_path):
    """A cache prepared with on_bad_file=skip whose first N rows hold a skipped file: data.limit=N serves them
    (the skipped row invalid, listed) and a strict run is refused as for the whole cache, never by
    replacing the prepared cache with an N-row one."""
    paths = _files(tmp_path, 5)
    calls = []

    def load(p):
        calls.append(p)
        if p.endswith("f1.npy"):
            raise BadFileError(p, "truncated")
        return np.load(p)

    full = build_cache(paths, load, (1, 4, 4), tmp_path / "c", settings="a", on_bad_file="skip", progress=False)
    stamp = (tmp_path / "c" / "images.npy").stat().st_mtime_ns, (tmp_path / "c" / "index.json").read_text()
    calls.clear()
    head = build_cache(paths[:3], load, (1, 4, 4), tmp_path / "c", settings="a", on_bad_file="skip", progress=False)
    assert calls == [] and head.valid.tolist() == [True, False, True] and head.images.shape[0] == 3
    assert head.skipped == full.skipped == [{"path": paths[1], "reason": "truncated", "key": paths[1]}]
    np.testing.assert_array_equal(head.images[[0, 2]], full.images[[0, 2]])
    with pytest.raises(BadFileError, match="f1.npy: truncated .left out by an earlier build with on_bad_file=skip"):
        build_cache(paths[:3], load, (1, 4, 4), tmp_path / "c", settings="a", on_bad_file="error", progress=False)
    assert calls == []
    assert ((tmp_path / "c" / "images.npy").stat().st_mtime_ns, (tmp_path / "c" / "index.json").read_text()) == stamp
    assert build_cache(paths[:1], load, (1, 4, 4), tmp_path / "c", settings="a", progress=False).skipped == []


def test_values_beyond_float16_make_the_file_bad_not_inf_in_the_cache(tmp_path):
    """float16 tops out at 65504: a scan with larger values (PET in Bq/ml, normalise none) was cast to inf in the
    cache with only a RuntimeWarning, and training on it gives NaN losses."""
    paths = _files(tmp_path, 3)
    big = np.full((1, 4, 4), 7e4, dtype=np.float32)
    np.save(paths[1], big)
    with pytest.raises(BadFileError, match=r"f1.npy: preprocessed values reach 7e\+04, beyond the float16 cache's range"):
        build_cache(paths, np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    res = build_cache(paths, np.load, (1, 4, 4), tmp_path / "c2", settings="a", on_bad_file="skip", progress=False)
    assert res.valid.tolist() == [True, False, True] and [s["path"] for s in res.skipped] == [paths[1]]
    assert np.isfinite(res.images[[0, 2]].astype(np.float32)).all()
    np.save(paths[1], np.full((1, 4, 4), 65504.0, dtype=np.float32))  # the largest float16 is kept
    assert float(build_cache(paths, np.load, (1, 4, 4), tmp_path / "c3", settings="a", progress=False).images[1].max()) == 65504


def test_a_script_without_a_main_guard_stops_with_the_fix_instead_of_hanging(tmp_path):
    """A script calling prepare_card(..., workers=2) at its top level (no `if __name__ == "__main__":`) hung for
    ever: each spawned worker re-ran the script, waited for the cache lock its parent held, and the parent waited for
    the workers. It now stops in seconds, saying what to do."""
    script = tmp_path / "prepare_script.py"
    script.write_text(textwrap.dedent(f"""
        from medssl.data.card import load_card
        from medssl.data.prepare import prepare_card
        from medssl.data.synthetic import write_synthetic_cohort
        root = write_synthetic_cohort({str(tmp_path / 'cohort')!r}, n_subjects=4, n_sites=2, shape=(16, 16, 16),
                                      progress=False)
        prepare_card(load_card("synthetic"), {str(tmp_path / 'cache')!r}, root=root, workers=2, progress=False)
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert proc.returncode != 0
    assert 'put the script\'s code under `if __name__ == "__main__":`' in proc.stderr


def test_another_output_shape_rebuilds_and_caches_fingerprinted_without_it_are_kept(tmp_path):
    """A direct build_cache call with the same items and settings but another ``out_shape`` matched the
    fingerprint (settings and sources only) and was handed the old (N, 1, 4, 4) rows; the shape is now part
    of the fingerprint. A cache whose index.json holds the fingerprint without the shape (written before)
    is still served as it is, nothing decoded or rewritten."""
    import hashlib

    paths = _files(tmp_path, 3)
    build_cache(paths, np.load, (1, 4, 4), tmp_path / "c", settings="a", progress=False)
    flat = build_cache(paths, lambda p: np.load(p).reshape(1, 2, 8), (1, 2, 8), tmp_path / "c", settings="a",
                       progress=False)
    assert flat.images.shape == (3, 1, 2, 8) and flat.n_built == 3
    assert [float(flat.images[i].mean()) for i in range(3)] == [0, 1, 2]
    index_path = tmp_path / "c" / "index.json"
    index = json.loads(index_path.read_text())
    old = hashlib.sha256(b"a")  # the fingerprint as written before: settings, then one line per item
    for p, sig in zip(paths, index["sources"]):
        old.update(f"{p}|{sig}\n".encode())
    index["fingerprint"] = old.hexdigest()[:20]
    index_path.write_text(json.dumps(index))
    stamp = (tmp_path / "c" / "images.npy").stat().st_mtime_ns, index_path.read_text()
    calls = []
    res = build_cache(paths, lambda p: calls.append(p) or np.load(p).reshape(1, 2, 8), (1, 2, 8), tmp_path / "c",
                      settings="a", progress=False)
    assert calls == [] and (res.n_built, res.n_reused) == (0, 0) and res.valid.all()
    np.testing.assert_array_equal(res.images, flat.images)
    assert ((tmp_path / "c" / "images.npy").stat().st_mtime_ns, index_path.read_text()) == stamp
