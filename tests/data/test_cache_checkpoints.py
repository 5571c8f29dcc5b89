"""Cache-building rules of docs/data.md §3 that mutation testing found unchecked: the progress saved every
``checkpoint_every`` scans (exactly), a cache fingerprinted without its shape (an older one) rebuilt when
another shape is asked for, and a cache folder whose images.npy is gone rebuilt rather than crashing."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from medssl.data.cache import build_cache


def _files(tmp_path, n):
    paths = []
    for i in range(n):
        np.save(p := tmp_path / f"f{i}.npy", np.full((1, 4, 4), i, dtype=np.float32))
        paths.append(str(p))
    return paths


def test_progress_on_disk_is_saved_after_every_checkpoint_every_scans(tmp_path):
    """What a killed build resumes from: done.npy on disk, read as each scan starts, counts the scans of
    the last whole checkpoint (every 2 here), never one more or one fewer."""
    paths, cache = _files(tmp_path, 5), tmp_path / "c"
    seen = []

    def load(p):
        seen.append(int(np.load(cache / "done.npy").sum()))
        return np.load(p)

    res = build_cache(paths, load, (1, 4, 4), cache, settings="a", progress=False, checkpoint_every=2)
    assert seen == [0, 0, 2, 2, 4]
    assert res.valid.all() and np.load(cache / "done.npy").all()  # the final save after the last scan


def test_a_cache_fingerprinted_without_its_shape_is_rebuilt_for_another_shape(tmp_path):
    """An older index.json (fingerprint of settings and sources only) is kept as it is only for the shape it
    records; asked for another shape, every row is rebuilt in that shape (never the old rows handed out)."""
    paths, cache = _files(tmp_path, 3), tmp_path / "c"
    build_cache(paths, lambda p: np.load(p).reshape(1, 2, 8), (1, 2, 8), cache, settings="a", progress=False)
    index_path = cache / "index.json"
    index = json.loads(index_path.read_text())
    old = hashlib.sha256(b"a")  # the fingerprint as written before the shape was hashed
    for p, sig in zip(paths, index["sources"], strict=True):
        old.update(f"{p}|{sig}\n".encode())
    index["fingerprint"] = old.hexdigest()[:20]
    index_path.write_text(json.dumps(index))
    res = build_cache(paths, np.load, (1, 4, 4), cache, settings="a", progress=False)
    assert res.images.shape == (3, 1, 4, 4) and res.n_built == 3 and res.valid.all()
    for i, p in enumerate(paths):
        np.testing.assert_array_equal(res.images[i], np.load(p).astype(np.float16))
    assert json.loads(index_path.read_text())["shape"] == [1, 4, 4]


def test_a_cache_whose_images_file_was_deleted_is_rebuilt(tmp_path):
    """done.npy and index.json say every row is built, but images.npy is gone (deleted by hand, a partial
    copy): the build preprocesses every scan again instead of failing to open the file."""
    paths, cache = _files(tmp_path, 3), tmp_path / "c"
    build_cache(paths, np.load, (1, 4, 4), cache, settings="a", progress=False)
    (cache / "images.npy").unlink()
    res = build_cache(paths, np.load, (1, 4, 4), cache, settings="a", progress=False)
    assert res.n_built == 3 and res.valid.all()
    assert [float(res.images[i].mean()) for i in range(3)] == [0, 1, 2]
