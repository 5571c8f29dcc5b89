"""On-disk cache of preprocessed scans, memory-mapped and shared by every worker and rank.

Layout of a cache folder::

    images.npy    (N, C, *shape) float16, written with numpy's open_memmap
    done.npy      (N,) bool; which rows are written (makes building resumable)
    index.json    fingerprint (preprocessing settings + source files), record paths, skipped

Reading uses ``np.load(mmap_mode="r")``: pages are shared through the OS page cache, so
DataLoader workers and DDP ranks on one node do not copy the array into their own RAM.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from medssl.io.errors import BadFileError


@dataclass
class CacheResult:
    images: np.ndarray  #: memory-mapped (N, C, *shape) float16
    valid: np.ndarray  #: (N,) bool; False for skipped bad files
    skipped: list[dict]  #: [{"path", "reason"}] for every file skipped


def cache_fingerprint(paths: list[str], settings: str) -> str:
    h = hashlib.sha256(settings.encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}|{st.st_size}|{int(st.st_mtime)}".encode())
    return h.hexdigest()[:20]


def build_cache(paths: list[str], load: Callable[[str], np.ndarray], out_shape: tuple[int, ...], cache_dir: str | Path,
                settings: str, on_bad_file: str = "error", progress: bool = True) -> CacheResult:
    """Preprocess every path once into ``cache_dir`` (idempotent, resumable).

    Args:
        paths: source files, one per record.
        load: path → preprocessed float32 array of shape ``out_shape`` (C, *shape).
        out_shape: (C, *shape).
        cache_dir: folder for the cache.
        settings: a string identifying the preprocessing (e.g. ``Preprocessor.fingerprint()``).
        on_bad_file: "error" re-raises :class:`BadFileError`; "skip" records it and goes on.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fp = cache_fingerprint(paths, settings)
    index_path, img_path, done_path = cache_dir / "index.json", cache_dir / "images.npy", cache_dir / "done.npy"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    fresh = index.get("fingerprint") != fp or not img_path.exists() or not done_path.exists()
    if fresh:
        images = np.lib.format.open_memmap(img_path, mode="w+", dtype=np.float16, shape=(len(paths), *out_shape))
        done = np.zeros(len(paths), dtype=bool)
        skipped: list[dict] = []
        index = {"fingerprint": fp, "paths": paths, "shape": list(out_shape), "skipped": skipped}
        index_path.write_text(json.dumps(index))
    else:
        images = np.load(img_path, mmap_mode="r+")
        done = np.load(done_path)
        skipped = index.get("skipped", [])
    todo = [i for i in range(len(paths)) if not done[i] and paths[i] not in {s["path"] for s in skipped}]
    for n, i in enumerate(tqdm(todo, desc="preprocess", disable=not progress or not todo, unit="scan")):
        try:
            images[i] = load(paths[i])
            done[i] = True
        except BadFileError as e:
            if on_bad_file == "error":
                raise
            skipped.append({"path": str(e.path), "reason": e.reason})
        if n % 32 == 31 or n == len(todo) - 1:  # checkpoint progress so an interrupted build resumes
            images.flush()
            np.save(done_path, done)
            index["skipped"] = skipped
            index_path.write_text(json.dumps(index))
    if not todo:
        np.save(done_path, done)
    del images
    return CacheResult(images=np.load(img_path, mmap_mode="r"), valid=done.copy(), skipped=skipped)
