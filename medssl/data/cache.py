"""On-disk cache of preprocessed scans, memory-mapped and shared by every worker and rank.

Layout of a cache folder::

    images.npy    (N, C, *shape) float16, written with numpy's open_memmap
    done.npy      (N,) bool; which rows are written (makes building resumable)
    index.json    fingerprint (preprocessing settings + output shape + source files), keys, skipped files
    .lock         held while a process builds (DDP ranks / concurrent runs wait on it)

Reading uses ``np.load(mmap_mode="r")``: pages are shared through the OS page cache, so
DataLoader workers and DDP ranks on one node do not copy the array into their own RAM.

Building is idempotent and resumable: progress (``done.npy``, ``index.json``) is saved
atomically every ``checkpoint_every`` scans and when the build stops on an exception or
Ctrl-C; rows are written into the shared file mapping before they are marked done, so
even a killed build (SIGKILL) resumes from its last checkpoint. A source is every file a scan
is read from (:func:`~medssl.data.sources.source_signature`: path, size and mtime of each):
every file of a DICOM series folder (recursively, hidden files aside), a ``.mhd`` / ``.nhdr``
header and its data file(s), or the scan's file. ``index.json`` keeps each row's source
signature, so when scans are added, removed, reordered or changed the rows whose scan and
sources are unchanged are copied from the previous cache and only the others are
preprocessed; a change of the preprocessing settings (or output shape) rebuilds every row.
Items that are the cache's first rows (a run's ``data.limit`` on a prepared cache) are served
from it as they are, and the cache stays whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from medssl.atomic import atomic_write
from medssl.config import ConfigError
from medssl.data.sources import source_signature
from medssl.io.errors import BadFileError

try:  # POSIX advisory lock; without it concurrent builders are not serialised
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


@dataclass
class CacheResult:
    images: np.ndarray  #: memory-mapped (N, C, *shape) float16
    valid: np.ndarray  #: (N,) bool; False for skipped bad files
    skipped: list[dict]  #: [{"path", "reason"}] for every file skipped
    n_built: int = 0  #: scans preprocessed by this call (0 when everything was cached)
    n_reused: int = 0  #: rows copied from a previous cache of other scans (same settings, unchanged sources)
    cache_dir: Path = field(default_factory=Path)


def item_key(item: Any) -> str:
    """Identity of a cache item: a path string, or ``item.key`` (e.g. a Record)."""
    return item if isinstance(item, str) else item.key


def _item_file(item: Any) -> str:
    return item if isinstance(item, str) else item.path


def row_sources(items: Sequence[Any]) -> list[str]:
    """:func:`~medssl.data.sources.source_signature` of each item's file (each file signed once)."""
    stats: dict[str, str] = {}
    for it in items:
        f = _item_file(it)
        if f not in stats:
            stats[f] = source_signature(f)
    return [stats[_item_file(it)] for it in items]


def cache_fingerprint(items: Sequence[Any], settings: str, out_shape: Sequence[int] | None,
                      sources: Sequence[str] | None = None) -> str:
    """Hash of the preprocessing settings, the output shape ``out_shape`` (C, *shape) and every source (key,
    :func:`row_sources`: size and mtime of every file the item is read from). ``sources``: the items'
    :func:`row_sources`, if already known.

    The shape is hashed whoever calls (``cache_records``' settings hold it too, a direct :func:`build_cache`
    call's need not). ``out_shape=None`` gives the fingerprint of caches written before it was: such a cache
    is still used when the shape its ``index.json`` records is the one asked for (:func:`build_cache`).
    """
    h = hashlib.sha256(settings.encode())
    if out_shape is not None:
        h.update(f"shape={[int(s) for s in out_shape]}\n".encode())
    for it, sig in zip(items, row_sources(items) if sources is None else sources, strict=True):
        h.update(f"{item_key(it)}|{sig}\n".encode())
    return h.hexdigest()[:20]


def main_guard_hint(processes: str, one_process: str) -> str:
    """What to do when ``processes`` (started with spawn) re-ran a script without a main guard."""
    return (f"{processes} are started with 'spawn' and re-run the top level of the script that started them: put "
            f"the script's code under `if __name__ == \"__main__\":` (or {one_process})")


#: why a cache build stops in a worker that is importing the user's script (spawn re-runs its top level)
MAIN_GUARD_HINT = main_guard_hint("cache-building processes (workers > 1, data.num_workers > 1)",
                                  "build with one process: workers=1, data.num_workers=1")


def died_in_starting_worker(hint: str = MAIN_GUARD_HINT) -> str:
    """The end of a "worker process ended abruptly" message: the cause to look for first, a script without a
    main guard (:func:`stop_in_starting_worker` printed it in the worker), and what to do."""
    return f"if it printed that it was started while a worker process was starting: {hint}"


def stop_in_starting_worker(what: str, hint: str = MAIN_GUARD_HINT) -> None:
    """RuntimeError when called in a spawned worker that is still importing its parent's script: the script has
    no main guard, so its top level runs again there and ``what`` would start workers of its own (or wait for a
    lock its parent holds while the parent waits for this worker, for ever)."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError(f"{what} was started while a worker process was starting; {hint}")


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    stop_in_starting_worker("a cache build")
    if fcntl is None:
        yield
        return
    with open(cache_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ------------------------------------------------------------------ one scan (in any process)

_WORKER_LOAD: Callable | None = None


def _init_worker(load: Callable) -> None:
    global _WORKER_LOAD
    _WORKER_LOAD = load
    torch = sys.modules.get("torch")  # imported by ``load``'s module if it uses torch (e.g. MONAI)
    if torch is not None:  # one process per core: keep each single-threaded
        torch.set_num_threads(1)


def _load_one(load: Callable, i: int, item: Any) -> tuple[int, np.ndarray | None, dict | None]:
    try:
        return i, _as_float16(load(item), _item_file(item)), None
    except BadFileError as e:
        return i, None, {"path": str(e.path), "reason": e.reason}


def _as_float16(array: np.ndarray, path: str) -> np.ndarray:
    """The cache row of a preprocessed scan; a value float16 cannot hold (beyond ±65504, e.g. PET in Bq/ml
    with ``normalise: none``) makes the file bad instead of an ``inf`` in the cache."""
    array = np.asarray(array)
    with np.errstate(over="ignore", invalid="ignore"):
        row = array.astype(np.float16)
    if not np.isfinite(row).all():
        finite = np.isfinite(array)
        if finite.all():
            raise BadFileError(path, f"preprocessed values reach {float(np.abs(array).max()):.4g}, beyond the float16 "
                                     "cache's range (±65504); normalise the scans (zscore, minmax or range) instead "
                                     "of 'none'")
        raise BadFileError(path, f"preprocessing produced {int((~finite).sum())} NaN/Inf value(s)")
    return row


def _worker_load_one(i: int, item: Any) -> tuple[int, np.ndarray | None, dict | None]:
    return _load_one(_WORKER_LOAD, i, item)


def _results(items: Sequence[Any], todo: list[int], load: Callable, workers: int) -> Iterator[tuple]:
    """Yield ``(i, array | None, skipped | None)`` for every index in ``todo`` (any order)."""
    if workers <= 1:
        for i in todo:
            yield _load_one(load, i, items[i])
        return
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe with torch / OpenMP threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(load,)) as pool:
        pending: set[Future] = set()
        queue = iter(todo)
        try:
            while True:
                while len(pending) < 2 * workers:
                    i = next(queue, None)
                    if i is None:
                        break
                    pending.add(pool.submit(_worker_load_one, i, items[i]))
                if not pending:
                    return
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    try:
                        result = fut.result()
                    except BrokenProcessPool as e:
                        raise RuntimeError(f"a cache worker process ended abruptly ({e}); "
                                           f"{died_in_starting_worker()}") from None
                    yield result
        finally:
            for fut in pending:
                fut.cancel()


# ------------------------------------------------------------------ build


def build_cache(items: Sequence[Any], load: Callable[[Any], np.ndarray], out_shape: tuple[int, ...],
                cache_dir: str | Path, settings: str, on_bad_file: str = "error", progress: bool = True,
                workers: int = 1, checkpoint_every: int = 32) -> CacheResult:
    """Preprocess every item once into ``cache_dir`` (idempotent, resumable, parallel).

    Args:
        items: source paths (``str``) or objects with ``.path`` and ``.key`` (e.g.
            :class:`~medssl.data.manifest.Record`), one per cache row.
        load: item → preprocessed float32 array of shape ``out_shape`` (C, *shape). With
            ``workers > 1`` it must be picklable (a module-level function or a dataclass
            such as :class:`medssl.data.prepare.ScanLoader`).
        out_shape: (C, *shape).
        cache_dir: folder for the cache.
        settings: a string identifying the preprocessing (e.g. ``Preprocessor.fingerprint()``).
        on_bad_file: "error" re-raises :class:`BadFileError` (also for a file a previous
            ``skip`` build left out); "skip" records it and goes on.
        progress: show a progress bar.
        workers: processes decoding in parallel (1 = in this process).
        checkpoint_every: save progress after this many scans.

    Returns:
        :class:`CacheResult` with the read-only memory map.

    Raises:
        BadFileError: with ``on_bad_file="error"``.
        ValueError: ``load`` returned an array of another shape than ``out_shape``.
    """
    if on_bad_file not in ("error", "skip"):
        raise ValueError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
    cache_dir = Path(cache_dir)
    if cache_dir.exists() and not cache_dir.is_dir():
        raise ConfigError(f"cache folder {cache_dir} is a file; give a folder (data prepare --out / data.cache_dir)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    out_shape = tuple(int(s) for s in out_shape)
    with _locked(cache_dir):
        return _build(items, load, out_shape, cache_dir, settings, on_bad_file, progress, workers, checkpoint_every)


#: the way out named by every "bad file" error of a strict build
SKIP_HINT = ("fix or remove the file, or leave bad files out and list them: data.on_bad_file=skip "
             "(medssl data prepare --on-bad-file skip)")


def _build(items, load, out_shape, cache_dir, settings, on_bad_file, progress, workers, checkpoint_every) -> CacheResult:
    keys, sources = [item_key(it) for it in items], row_sources(items)
    fp = cache_fingerprint(items, settings, out_shape, sources)
    index_path, img_path, done_path = cache_dir / "index.json", cache_dir / "images.npy", cache_dir / "done.npy"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    if index.get("fingerprint") not in ("", fp) and index.get("shape") == list(out_shape) \
            and index.get("fingerprint") == cache_fingerprint(items, settings, None, sources):
        fp = index["fingerprint"]  # written before the shape was hashed, with this shape: still these rows
    fresh = index.get("fingerprint") != fp or not img_path.exists() or not done_path.exists()
    head = _prefix_done(index, keys, sources, settings, out_shape, img_path, done_path) if fresh else None
    if head is not None:  # e.g. data.limit on a prepared cache: served from its first rows, the cache kept whole
        in_head = set(keys)
        skipped = [s for s in index.get("skipped", []) if s.get("key", s["path"]) in in_head]
        if skipped and on_bad_file == "error":
            _refuse_skipped(skipped, index_path)
        return CacheResult(images=np.load(img_path, mmap_mode="r")[: len(keys)], valid=head, skipped=skipped,
                           cache_dir=cache_dir)
    n_reused = 0
    if fresh:
        reuse = _reusable_rows(index, keys, sources, settings, out_shape, img_path, done_path)
        images, done = _new_rows(cache_dir / ".next-images.npy", (len(items), *out_shape), img_path, reuse, progress)
        n_reused = len(reuse)
        # from here on the old rows are gone: mark the index stale first, so a kill before the new index is
        # written rebuilds instead of pairing the new images with the old done.npy
        atomic_write(index_path, lambda p: p.write_text(json.dumps({"fingerprint": ""})))
        os.replace(cache_dir / ".next-images.npy", img_path)  # a reader still mapping the old file keeps it
        index = {"fingerprint": fp, "shape": list(out_shape), "settings": settings, "paths": keys,
                 "sources": sources, "skipped": []}
        atomic_write(done_path, lambda p: np.save(p, done))
        atomic_write(index_path, lambda p: p.write_text(json.dumps(index)))
    else:
        images = np.load(img_path, mmap_mode="r+")
        done = np.load(done_path)
    skipped: list[dict] = index.get("skipped", [])
    if skipped and on_bad_file == "error":
        _refuse_skipped(skipped, index_path)
    skipped_keys = {s.get("key", s["path"]) for s in skipped}
    todo = [i for i in range(len(items)) if not done[i] and keys[i] not in skipped_keys]

    def checkpoint() -> None:
        images.flush()
        index["skipped"] = skipped
        atomic_write(done_path, lambda p: np.save(p, done))
        atomic_write(index_path, lambda p: p.write_text(json.dumps(index)))

    n_built = 0
    bar = tqdm(total=len(todo), desc="preprocess", disable=not progress or not todo, unit="scan")
    try:
        for n, (i, array, bad) in enumerate(_results(items, todo, load, workers), start=1):
            if bad is not None:
                if on_bad_file == "error":
                    raise BadFileError(bad["path"], f"{bad['reason']}; {SKIP_HINT}")
                skipped.append({**bad, "key": keys[i]})
            elif array.shape != out_shape:
                raise ValueError(f"preprocessing returned shape {array.shape} for {keys[i]}; the cache expects {out_shape}")
            else:
                images[i] = array
                done[i] = True
                n_built += 1
            bar.update()
            if n % checkpoint_every == 0:
                checkpoint()
    finally:  # also on Ctrl-C / errors: what is done stays done
        bar.close()
        checkpoint()
        images = None  # drop the writable memmap before reopening the file read-only
    return CacheResult(images=np.load(img_path, mmap_mode="r"), valid=done.copy(), skipped=skipped, n_built=n_built,
                       n_reused=n_reused, cache_dir=cache_dir)


def _same_build(index: dict, settings: str, out_shape: tuple[int, ...], img_path: Path, done_path: Path) -> bool:
    """Whether the cache on disk (``index``) was built with these settings and shape, and its files exist."""
    return (index.get("settings") == settings and index.get("shape") == list(out_shape) and img_path.exists()
            and done_path.exists())


def _reusable_rows(index: dict, keys: list[str], sources: list[str], settings: str, out_shape: tuple[int, ...],
                   img_path: Path, done_path: Path) -> dict[int, int]:
    """``{new row: old row}`` for the scans the previous cache (``index``) holds, built with the same
    settings and shape from sources with the same signature; empty when nothing can be reused."""
    old_keys, old_sources = index.get("paths") or [], index.get("sources") or []
    if not _same_build(index, settings, out_shape, img_path, done_path) or not old_keys \
            or len(old_sources) != len(old_keys):
        return {}
    old_done = np.load(done_path)
    if len(old_done) != len(old_keys):
        return {}
    old = {(k, s): j for j, (k, s) in enumerate(zip(old_keys, old_sources)) if old_done[j]}
    return {i: old[ks] for i, ks in enumerate(zip(keys, sources)) if ks in old}


def _refuse_skipped(skipped: list[dict], index_path: Path) -> None:
    """A strict build (``on_bad_file="error"``) over rows an earlier ``skip`` build left out."""
    raise BadFileError(skipped[0]["path"], f"{skipped[0]['reason']} (left out by an earlier build with "
                                           f"on_bad_file=skip; {len(skipped)} file(s) listed in {index_path}); pass "
                                           "data.on_bad_file=skip to train on the other scans, or fix the files and "
                                           "rerun `medssl data prepare`")


def _prefix_done(index: dict, keys: list[str], sources: list[str], settings: str, out_shape: tuple[int, ...],
                 img_path: Path, done_path: Path) -> np.ndarray | None:
    """``(len(keys),)`` bool ``done`` of the cache's first rows when they are these scans from the same sources,
    built with the same settings and shape, each done or skipped (a run's first N records of a larger
    prepared cache); None otherwise."""
    n = len(keys)
    if (not _same_build(index, settings, out_shape, img_path, done_path)
            or index.get("paths", [])[:n] != keys or index.get("sources", [])[:n] != sources):
        return None
    done = np.load(done_path)
    skipped = {s.get("key", s["path"]) for s in index.get("skipped", [])}
    if len(done) < n or not all(done[i] or keys[i] in skipped for i in range(n)):
        return None
    return done[:n].copy()


def _new_rows(path: Path, shape: tuple[int, ...], old_path: Path, reuse: dict[int, int],
              progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """A new images file at ``path`` (zeros) with the ``reuse`` rows copied from ``old_path``; ``(images, done)``."""
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=shape)
    done = np.zeros(shape[0], dtype=bool)
    if reuse:
        old = np.load(old_path, mmap_mode="r")
        for i, j in tqdm(reuse.items(), desc="reuse cached", unit="scan", disable=not progress):
            images[i] = old[j]
            done[i] = True
        images.flush()
        del old
    return images, done
