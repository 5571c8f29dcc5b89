"""Torch dataset over cached preprocessed scans + metadata tensors."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import torch
from torch.utils.data import Dataset

from medssl.data.manifest import Record, natural_order


def _as_float_tensor(row: np.ndarray) -> torch.Tensor:
    """float32 tensor of a cache row (float16 → float32 in torch: ~10× faster than NumPy's cast)."""
    with warnings.catch_warnings():  # a read-only memmap row: .float() copies it, nothing writes to the file
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.asarray(row)).float()


def _is_npy_head(images: np.memmap) -> bool:
    """True when ``images`` maps a whole ``.npy`` file or its first rows (``whole[:n]``), not another view.

    A view keeps its file's ``offset`` attribute wherever it starts (``whole[3:6]`` too), so the first
    row is checked by address against the array that maps the file (the end of the ``.base`` chain).
    """
    try:
        whole = np.load(images.filename, mmap_mode="r")
    except (OSError, ValueError):
        return False
    mapped = images
    while isinstance(mapped.base, np.ndarray):
        mapped = mapped.base
    return (whole.shape[1:] == images.shape[1:] and len(images) <= len(whole) and whole.dtype == images.dtype
            and whole.offset == images.offset and images.flags.c_contiguous
            and images.ctypes.data == mapped.ctypes.data)


def mapped_file_id(images) -> tuple[int, int] | None:
    """``(device, inode)`` of the ``.npy`` file a memmap maps (a rebuild's ``os.replace`` makes a new one)."""
    filename = getattr(images, "filename", None) if isinstance(images, np.memmap) else None
    try:
        st = os.stat(filename) if filename else None
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st else None


class MetadataCoder:
    """Maps categorical metadata (site, sex, label) to integer codes, fixed for a run.

    Codes are assigned in sorted order of the values seen in ``records``, numbers by value
    (:func:`~medssl.data.manifest.natural_order`: MedMNIST's "10" after "2", so a code is the published
    class index when every class occurs); missing → -1.
    """

    FIELDS = ("site", "sex", "label")

    def __init__(self, records: list[Record]) -> None:
        self.vocab = {f: sorted({getattr(r, f) for r in records if getattr(r, f)}, key=natural_order)
                      for f in self.FIELDS}

    def code(self, field: str, value: str) -> int:
        return self.vocab[field].index(value) if value in self.vocab[field] else -1


class CachedScans(Dataset):
    """Items: ``{"image": (C, *S) float32, "age": float (NaN if missing), "site"/"sex"/"label":
    int code (-1 if missing), "index": int}``.

    Args:
        images: (N, C, *S) array, typically the memory-mapped cache, or a tensor already on a
            device (the GPU-resident cache of ``data.preload=gpu``, see :func:`preload`; then
            items are views on that device and the DataLoader must use ``num_workers=0``).
        records: N records aligned with ``images``.
        indices: which rows to expose (e.g. the training split).
        coder: categorical code tables shared by all splits of a run.
    """

    def __init__(self, images: np.ndarray, records: list[Record], indices: list[int], coder: MetadataCoder) -> None:
        self.images, self.records, self.indices, self.coder = images, records, list(indices), coder
        self._file = mapped_file_id(images)  # the file workers re-open must still be this one

    def __getstate__(self) -> dict:
        """Pickle a memory-mapped cache as its file name, not its data.

        DataLoader workers started with ``spawn``/``forkserver`` (macOS, Windows, some
        clusters) receive the dataset by pickling; an ``np.memmap`` would be copied whole into
        every worker. Re-opening the ``.npy`` read-only shares the OS page cache instead, unless
        another build has replaced that file since (then the rows go by value).
        """
        state = dict(self.__dict__)
        images = self.images
        mapped = getattr(self, "_file", None)
        if not isinstance(images, np.memmap) or mapped is None:
            return state
        replaced = mapped_file_id(images) != mapped
        if not replaced and _is_npy_head(images):
            state["images"] = ("__npy_memmap__", str(images.filename), images.shape, mapped)
        elif replaced:
            warnings.warn(f"cache {images.filename} was replaced by another build while this dataset used it; its "
                          f"rows ({images.nbytes / 2**20:.0f} MiB) are copied into each DataLoader worker", stacklevel=2)
        return state

    def __setstate__(self, state: dict) -> None:
        images = state["images"]
        if isinstance(images, tuple) and images and images[0] == "__npy_memmap__":
            whole, shape = np.load(images[1], mmap_mode="r"), tuple(images[2])
            if whole.shape[1:] != shape[1:] or len(whole) < shape[0] or mapped_file_id(whole) != tuple(images[3]):
                raise RuntimeError(f"cache {images[1]} changed while the dataset was being sent to a worker "
                                   f"(shape {whole.shape}, expected {shape}); rerun")
            state["images"] = whole[: shape[0]]
        self.__dict__.update(state)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        j = self.indices[i]
        r = self.records[j]
        return {
            "image": self.images[j].float() if torch.is_tensor(self.images) else _as_float_tensor(self.images[j]),
            "age": torch.tensor(r.age if not math.isnan(r.age) else math.nan, dtype=torch.float32),
            "site": torch.tensor(self.coder.code("site", r.site)),
            "sex": torch.tensor(self.coder.code("sex", r.sex)),
            "label": torch.tensor(self.coder.code("label", r.label)),
            "index": torch.tensor(j),
        }


def preload(images: np.ndarray, where: str, device: torch.device) -> np.ndarray | torch.Tensor:
    """Keep the cache where batches are read fastest.

    Args:
        images: the (N, C, *S) float16 memory-mapped cache.
        where: "none" (memory-mapped, read by DataLoader workers), "ram" (one copy in this
            process's memory) or "gpu" (one float16 tensor on ``device``: no loader, no host
            copies per step; see docs/benchmarks.md for what it buys on an H200).

    Raises:
        ValueError: "gpu" without a CUDA device, or a cache larger than 80 % of the free GPU memory.
    """
    if where == "none":
        return images
    if where == "ram":  # a copy: np.ascontiguousarray of a C-ordered memmap is a view of the mapped file
        return np.array(images, order="C")
    if device.type != "cuda":
        raise ValueError(f"data.preload=gpu needs a CUDA device (train.device is {device}); use data.preload=ram or none")
    free, _ = torch.cuda.mem_get_info(device)
    if images.nbytes > 0.8 * free:
        raise ValueError(f"the cache needs {images.nbytes / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB of GPU memory "
                         "is free; use data.preload=ram or none, or a smaller data.shape")
    return torch.from_numpy(np.ascontiguousarray(images)).to(device)
