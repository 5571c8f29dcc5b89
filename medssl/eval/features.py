"""Embeddings of a frozen encoder: deterministic, no augmentation, batched, cached.

:func:`extract_features` runs the encoder in eval mode over a dataset of preprocessed
scans (the same deterministic preprocessing as pretraining, never the random views), on the
GPU when one is given, optionally averaging the embedding of each scan with that of its
mirror image (test-time flip). With ``cache=`` the result is stored as an ``.npz`` keyed by a
hash of the encoder weights, the data and the settings, and reused while all three are
unchanged (e.g. ``run_dir/features-<hash>.npz``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from medssl.atomic import atomic_write
from medssl.data.dataset import mapped_file_id

FEATURE_CACHE_VERSION = "1"  #: bump when the extraction itself changes


def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    """SHA-256 of the encoder's class name and every state-dict tensor (name, shape, dtype, bytes)."""
    h = hashlib.sha256(type(encoder).__qualname__.encode())
    for name, t in encoder.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _cache_fingerprint(dataset: Dataset, images) -> str:
    """The ``index.json`` fingerprint of the cache file ``images`` maps; "" when it cannot vouch for these rows:
    an in-memory array, a build in progress (its stale marker), or a file replaced since the dataset was made
    (index.json then describes another build). Read before the file check, so a swap in between is seen."""
    filename = getattr(images, "filename", None)
    index = Path(str(filename)).with_name("index.json") if filename else None
    if index is None or not index.is_file():
        return ""
    fingerprint = json.loads(index.read_text()).get("fingerprint", "")
    recorded = getattr(dataset, "_file", None)
    return fingerprint if recorded is None or mapped_file_id(images) == recorded else ""


def dataset_fingerprint(dataset: Dataset) -> str:
    """Identity of the rows of a dataset: record keys and the preprocessing cache fingerprint.

    For :class:`~medssl.data.dataset.CachedScans` this hashes the record keys and metadata
    (subject, age, site, sex, label and their code tables: an edited table must not reuse the
    ages / codes of the first evaluation) of the exposed rows, the array shape and the cache's
    ``index.json`` fingerprint (preprocessing settings + source files); for other datasets, the
    bytes of every image.
    """
    h = hashlib.sha256()
    records, indices, images = (getattr(dataset, k, None) for k in ("records", "indices", "images"))
    if records is not None and indices is not None and images is not None:
        h.update(json.dumps([[records[i].key, records[i].subject, repr(records[i].age), records[i].site,
                              records[i].sex, records[i].label] for i in indices]).encode())
        h.update(json.dumps(getattr(getattr(dataset, "coder", None), "vocab", None), sort_keys=True).encode())
        h.update(str(tuple(images.shape)).encode())
        fingerprint = _cache_fingerprint(dataset, images)
        if fingerprint:
            h.update(fingerprint.encode())
        else:
            for i in indices:
                h.update(np.ascontiguousarray(images[i]).tobytes())
    else:
        for i in range(len(dataset)):
            item = dataset[i]
            h.update((item["image"] if isinstance(item, dict) else item[0]).numpy().tobytes())
    return h.hexdigest()


def default_flip_axis(spatial_dims: int) -> int:
    """Left-right image axis (index among the spatial axes): x of RAS volumes (0), width of 2D images (1)."""
    return 0 if spatial_dims == 3 else 1


@torch.no_grad()
def _embed(encoder: torch.nn.Module, image: torch.Tensor, tta_flip: bool, flip_axis: int | None) -> torch.Tensor:
    z = encoder(image).float()
    if tta_flip:
        axis = default_flip_axis(image.ndim - 2) if flip_axis is None else flip_axis
        z = 0.5 * (z + encoder(torch.flip(image, dims=(2 + axis,))).float())
    return z


@torch.no_grad()
def extract_features(encoder: torch.nn.Module, dataset: Dataset, batch_size: int = 32, device: torch.device | str = "cpu",
                     progress: bool = False, tta_flip: bool = False, flip_axis: int | None = None,
                     cache: str | Path | None = None, num_workers: int = 0) -> dict[str, np.ndarray]:
    """Run ``encoder`` in eval mode over ``dataset`` (no augmentation, dataset order).

    Args:
        encoder: ``(B, C, *S) → (B, D)`` module (moved to ``device``; its mode is restored).
        dataset: items ``{"image": (C, *S), <metadata>: scalar tensors}`` such as
            :class:`~medssl.data.dataset.CachedScans`.
        batch_size: scans per forward pass.
        device: e.g. ``"cuda"``; inputs are moved there batch by batch.
        progress: show a progress bar.
        tta_flip: average each embedding with that of the image mirrored along ``flip_axis``.
        flip_axis: spatial axis to mirror (default: :func:`default_flip_axis`).
        cache: ``.npz`` path; reused when its key (encoder weights + data + settings) matches,
            rewritten otherwise.
        num_workers: DataLoader workers.

    Returns:
        ``{"features": (N, D) float32, "age": (N,) years (NaN = missing), "site"/"sex"/"label":
        (N,) int codes (-1 = missing), "index": (N,) row in the run's records, "subject": (N,)
        subject ids (datasets exposing ``records``)}``.
    """
    key = None
    if cache is not None:
        cache = Path(cache)
        key = hashlib.sha256(json.dumps([FEATURE_CACHE_VERSION, encoder_fingerprint(encoder), dataset_fingerprint(dataset),
                                         bool(tta_flip), flip_axis]).encode()).hexdigest()
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                if str(z["cache_key"]) == key:
                    return {k: z[k] for k in z.files if k != "cache_key"}
    device = torch.device(device)
    was_training = encoder.training
    encoder.eval().to(device)
    out: dict[str, list] = {}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    try:
        for batch in tqdm(loader, desc="features", disable=not progress, leave=False):
            image = batch["image"].to(device, non_blocking=True)
            out.setdefault("features", []).append(_embed(encoder, image, tta_flip, flip_axis).cpu().numpy())
            for k, v in batch.items():
                if k != "image":
                    out.setdefault(k, []).append(v.numpy())
    finally:
        encoder.train(was_training)
    result = {k: np.concatenate(v) for k, v in out.items()}
    records = getattr(dataset, "records", None)
    if records is not None and "index" in result:
        result["subject"] = np.array([records[int(i)].subject for i in result["index"]], dtype=str)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        # one temporary file per writer: two evaluations of a run write the same cache
        atomic_write(cache, lambda tmp: np.savez(tmp, cache_key=np.array(key), **result))
    return result


def feature_cache_path(run_dir: str | Path, encoder: torch.nn.Module, tag: str = "") -> Path:
    """``run_dir/features/<tag>-<first 12 hex of the encoder hash>.npz`` (the file also stores the full key)."""
    name = f"{tag + '-' if tag else ''}{encoder_fingerprint(encoder)[:12]}.npz"
    return Path(run_dir) / "features" / name
