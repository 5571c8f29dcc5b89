"""Torch dataset over cached preprocessed scans + metadata tensors."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from medssl.data.manifest import Record


class MetadataCoder:
    """Maps categorical metadata (site, sex, label) to integer codes, fixed for a run.

    Codes are assigned in sorted order of the values seen in ``records``; missing → -1.
    """

    FIELDS = ("site", "sex", "label")

    def __init__(self, records: list[Record]) -> None:
        self.vocab = {f: sorted({getattr(r, f) for r in records if getattr(r, f)}) for f in self.FIELDS}

    def code(self, field: str, value: str) -> int:
        return self.vocab[field].index(value) if value in self.vocab[field] else -1


class CachedScans(Dataset):
    """Items: ``{"image": (C, *S) float32, "age": float (NaN if missing), "site"/"sex"/"label":
    int code (-1 if missing), "index": int}``.

    Args:
        images: (N, C, *S) array, typically the memory-mapped cache.
        records: N records aligned with ``images``.
        indices: which rows to expose (e.g. the training split).
        coder: categorical code tables shared by all splits of a run.
    """

    def __init__(self, images: np.ndarray, records: list[Record], indices: list[int], coder: MetadataCoder) -> None:
        self.images, self.records, self.indices, self.coder = images, records, list(indices), coder

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        j = self.indices[i]
        r = self.records[j]
        return {
            "image": torch.from_numpy(np.asarray(self.images[j], dtype=np.float32)),
            "age": torch.tensor(r.age if not math.isnan(r.age) else math.nan, dtype=torch.float32),
            "site": torch.tensor(self.coder.code("site", r.site)),
            "sex": torch.tensor(self.coder.code("sex", r.sex)),
            "label": torch.tensor(self.coder.code("label", r.label)),
            "index": torch.tensor(j),
        }
