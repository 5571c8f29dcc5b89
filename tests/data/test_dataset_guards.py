"""CachedScans / preload guards: a cache shrunk in place before a worker opens it, the GPU memory limit."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from medssl.data.dataset import CachedScans, MetadataCoder, preload
from medssl.data.manifest import Record


def test_a_cache_shrunk_in_place_before_a_worker_unpickles_is_refused(tmp_path):
    path = tmp_path / "images.npy"
    np.save(path, np.ones((4, 1, 2, 2), np.float16))
    recs = [Record(path=f"s{i}.nii.gz", subject=f"s{i}") for i in range(4)]
    ds = CachedScans(np.load(path, mmap_mode="r"), recs, [0, 1, 2, 3], MetadataCoder(recs))
    state = pickle.dumps(ds)
    ino = path.stat().st_ino
    with open(path, "r+b") as f:  # rewritten in place (same inode) with 2 rows: rows 2, 3 are gone
        np.save(f, np.zeros((2, 1, 2, 2), np.float16))
        f.truncate()
    assert path.stat().st_ino == ino
    with pytest.raises(RuntimeError, match="changed while the dataset was being sent"):
        pickle.loads(state)


def test_gpu_preload_refuses_a_cache_over_80_percent_of_free_memory(monkeypatch):
    images = np.zeros((9, 10), np.float16)  # 180 bytes; 80 % of 200 free bytes is 160
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (200, 1000))
    with pytest.raises(ValueError, match="GPU memory"):
        preload(images, "gpu", torch.device("cuda"))
