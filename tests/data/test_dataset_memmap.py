"""CachedScans over a memory map that does not start at the first row of its .npy file."""

from __future__ import annotations

import pickle

import numpy as np

from medssl.data.dataset import CachedScans, MetadataCoder
from medssl.data.manifest import Record


def test_a_memmap_opened_past_the_header_reaches_workers_with_its_own_rows(tmp_path):
    """An ``np.memmap`` opened by hand at row 2 of a cache file (offset = header + 2 rows) maps no other array, so
    only its offset tells it from the file's head; re-opened by file name it would be rows 0.. (another scan)."""
    path = tmp_path / "images.npy"
    np.save(path, np.arange(6, dtype=np.float16).reshape(6, 1, 1, 1) * np.ones((1, 1, 2, 2), np.float16))
    whole = np.load(path, mmap_mode="r")
    row = whole[0].nbytes
    images = np.memmap(path, dtype=np.float16, mode="r", offset=whole.offset + 2 * row, shape=(3, 1, 2, 2))
    recs = [Record(path=f"s{i}.nii.gz", subject=f"s{i}") for i in range(3)]
    ds = CachedScans(images, recs, [0, 1, 2], MetadataCoder(recs))
    back = pickle.loads(pickle.dumps(ds))
    assert [float(back[i]["image"][0, 0, 0]) for i in range(3)] == [2.0, 3.0, 4.0]
