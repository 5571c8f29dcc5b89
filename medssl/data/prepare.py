"""Decode → orient → resample → crop → normalise → pad every scan of a card, once, into the cache.

:class:`ScanLoader` turns one :class:`~medssl.data.manifest.Record` into the preprocessed
``(C, *shape)`` array (it is picklable, so a process pool can run it);
:func:`cache_records` builds the memory-mapped cache of a list of records with it, and
:func:`prepare_card` is ``medssl data prepare``: card → manifest → cache.

The cache written by ``medssl data prepare CARD --out DIR`` is the one a run reuses with
``data.cache_dir=DIR`` when the records and the settings (shape, spacing, normalise,
channels) are the same: both go through :func:`cache_records`, whose fingerprint covers
exactly those.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from medssl.atomic import atomic_write
from medssl.config import ConfigError
from medssl.data.cache import CacheResult, build_cache
from medssl.data.card import DataCard
from medssl.data.manifest import Record, build_manifest, write_manifest
from medssl.data.reader import ScanReader, make_reader
from medssl.data.sources import DICOM_REVISION
from medssl.io.errors import BadFileError
from medssl.transforms.preprocess import Preprocessor


def make_preprocessor(card: DataCard, shape=None, spacing=None, normalise: str | None = None) -> Preprocessor:
    """The :class:`Preprocessor` for a card; unset arguments come from ``card.preprocessing``.

    3D scans are reoriented to RAS first. 2D images keep their file orientation: a
    radiograph has no patient frame to reorient to (docs/io.md).

    Raises:
        ConfigError: no shape given and none in the card, a shape / spacing whose length
            is not the card's dimensionality, a size < 1 or a spacing that is not a positive number.
    """
    pre = card.preprocessing
    shape = list(shape or pre.get("shape") or [])
    spacing = list(spacing if spacing is not None else pre.get("spacing") or [])
    nd = card.dimensionality
    if len(shape) != nd:
        raise ConfigError(f"card {card.name!r} is {nd}D: give a shape with {nd} values (got {shape or 'none'}); "
                         f"e.g. --shape {' '.join(['64'] * nd)} or data.shape=[{','.join(['64'] * nd)}]")
    if spacing and len(spacing) != nd:
        raise ConfigError(f"card {card.name!r} is {nd}D: spacing needs {nd} values (mm), got {spacing}")
    if min(shape) < 1:
        raise ConfigError(f"--shape / data.shape must be {nd} positive sizes in voxels, got {shape}")
    if spacing and not all(s > 0 and math.isfinite(s) for s in spacing):  # NaN fails `s > 0`
        raise ConfigError(f"--spacing / data.spacing must be {nd} positive voxel sizes in mm, got {spacing} "
                          "(leave it out to keep each scan's own spacing)")
    return Preprocessor(shape=[int(s) for s in shape], spacing=[float(s) for s in spacing],
                        normalise=normalise or pre.get("normalise", "zscore"), orientation="RAS" if nd == 3 else "")


@dataclass
class ScanLoader:
    """Record → preprocessed float32 array ``(channels, *preprocessor.shape)``.

    Args:
        reader: decodes the record.
        preprocessor: the deterministic per-scan preprocessing.
        dimensionality: 2 or 3; other images are bad files.
        channels: expected channel count (``encoder.in_channels``).

    Raises (``__call__``):
        BadFileError: unreadable file, wrong dimensionality or channel count, or a file the
            preprocessing cannot handle.
    """

    reader: ScanReader
    preprocessor: Preprocessor
    dimensionality: int
    channels: int = 1

    def __call__(self, record: Record) -> np.ndarray:
        volume = self.reader(record)
        if volume.spatial_dims != self.dimensionality or volume.array.shape[0] != self.channels:
            fix = ("the card's dimensionality" if volume.spatial_dims != self.dimensionality else
                   "the channel count: data prepare --channels, encoder.in_channels or the card's preprocessing.channels; "
                   "PNG/JPEG/DICOM colour images give 3 channels only with the card's reader_options {color: rgb}")
            raise BadFileError(record.path, f"image is {volume.spatial_dims}D with {volume.array.shape[0]} channel(s); "
                                            f"expected {self.dimensionality}D with {self.channels} ({fix})")
        try:
            return self.preprocessor(volume)
        except (ValueError, RuntimeError, IndexError) as e:
            raise BadFileError(record.path, f"preprocessing failed ({type(e).__name__}: {str(e)[:200]}); "
                                            f"shape {volume.spatial_shape}, spacing {volume.spacing}") from None

    def settings(self) -> str:
        """Everything that changes the cached arrays (hashed into the cache fingerprint)."""
        g = self.reader.geometry
        geometry = None if g is None else [np.asarray(g[0]).round(6).tolist(), g[1]]
        # `format: dicom` reads files of any name (UID-named ones too), whose source signatures need not carry
        # DICOM_REVISION (sources.source_signature): a revision of the DICOM reader rebuilds such a cache here
        revision = {"dicom_revision": DICOM_REVISION} if self.reader.fmt == "dicom" else {}
        return json.dumps({"preprocessing": asdict(self.preprocessor), "dims": self.dimensionality,
                           "channels": self.channels, "format": self.reader.fmt, "reader": self.reader.reader_options,
                           "geometry": geometry, **revision}, sort_keys=True, default=str)


def make_loader(card: DataCard, preprocessor: Preprocessor, channels: int = 1, root=None) -> ScanLoader:
    """The :class:`ScanLoader` for a card."""
    return ScanLoader(make_reader(card, root), preprocessor, card.dimensionality, channels)


def cache_records(records: list[Record], loader: ScanLoader, cache_dir: str | Path, *, on_bad_file: str = "error",
                  workers: int = 1, progress: bool = True) -> CacheResult:
    """Build (or reuse) the memory-mapped cache of ``records`` with ``loader``."""
    out_shape = (loader.channels, *loader.preprocessor.shape)
    return build_cache(records, loader, out_shape, cache_dir, settings=loader.settings(), on_bad_file=on_bad_file,
                       progress=progress, workers=workers)


#: the files medssl writes into an output folder (``data prepare --out``, a run's output_dir) and a cache folder
OUTPUT_FILES = ("manifest.tsv", "skipped_files.json")
CACHE_FILES = ("images.npy", "done.npy", "index.json", ".lock")


def refuse_overwriting_inputs(card: DataCard, root, out_dir: str | Path, cache_dir: str | Path) -> None:
    """Refuse output / cache folders where a file medssl writes is one of the card's input files.

    A card whose table is ``manifest.tsv``, prepared into its own data root, had that table replaced by medssl's
    records (silently: the user's columns were gone).

    Raises:
        ConfigError: naming the file, the card and what to choose instead.
    """
    root = card.resolve_root(root)
    tables = [card.manifest] if isinstance(card.manifest, str) else list(card.manifest)
    named = [*((t, "table") for t in tables), *((j.get("table", ""), "joined table") for j in card.join
                                                 if isinstance(j, dict)),
             *((f, f"split list ({split})") for split, f in card.split_files.items()), (card.npz, "MedMNIST file")]
    inputs = {os.path.realpath(root / str(n)): what for n, what in named if n}
    written = [Path(out_dir) / f for f in OUTPUT_FILES] + [Path(cache_dir) / f for f in CACHE_FILES]
    for path in written:
        if os.path.realpath(path) in inputs:
            raise ConfigError(f"writing {path} would overwrite card {card.name}'s {inputs[os.path.realpath(path)]} "
                              "(an input of the card); "
                              "choose another output folder (data prepare --out, output_dir, data.cache_dir) "
                              "beside the data, not the data root")


@dataclass
class PrepareResult:
    records: list[Record]
    cache: CacheResult


def prepare_card(card: DataCard, out: str | Path, *, root=None, shape=None, spacing=None, normalise=None,
                 channels: int | None = None, workers: int = 1, on_bad_file: str = "error", progress: bool = True) -> PrepareResult:
    """``medssl data prepare``: every record of ``card`` preprocessed into the cache at ``out``.

    Unset ``shape`` / ``spacing`` / ``normalise`` / ``channels`` come from the card's
    ``preprocessing``. Missing files count as bad files (``on_bad_file`` decides). Writes ``out/manifest.tsv``
    (records in cache order) and, when files were skipped, ``out/skipped_files.json``.

    Returns:
        :class:`PrepareResult` (records and the cache; ``cache.n_built`` scans were
        preprocessed by this call, the others were already cached).
    """
    out = Path(out)
    if channels is None:
        channels = int(card.preprocessing.get("channels", 1))
    if channels < 1:
        raise ConfigError(f"--channels must be a positive integer (1 for grey-scale, 3 for RGB), got {channels}")
    refuse_overwriting_inputs(card, root, out, out)
    records = build_manifest(card, root, check_files=False)
    loader = make_loader(card, make_preprocessor(card, shape, spacing, normalise), channels, root)
    cache = cache_records(records, loader, out, on_bad_file=on_bad_file, workers=workers, progress=progress)
    write_manifest(records, out / "manifest.tsv")
    listing = out / "skipped_files.json"
    if cache.skipped:
        atomic_write(listing, lambda tmp: tmp.write_text(json.dumps(cache.skipped, indent=2)))
    else:  # an earlier build's list would name files this cache now holds
        listing.unlink(missing_ok=True)
    return PrepareResult(records, cache)


#: the run keys that set each cache setting (the others come from the card)
_RUN_KEYS = {("preprocessing", "shape"): "data.shape", ("preprocessing", "spacing"): "data.spacing",
             ("preprocessing", "normalise"): "data.normalise", ("channels",): "encoder.in_channels"}


def refuse_other_settings(cache_dir: str | Path, loader: ScanLoader) -> None:
    """Refuse a run's ``data.cache_dir`` that holds a cache built with other preprocessing settings.

    Building it with the run's settings would replace the rows other runs (and the ``data prepare``
    that wrote it) rely on, and the run would train on data preprocessed other than intended.

    Raises:
        ConfigError: naming each setting that differs, the overrides that reuse the cache, and the
            way to build a new one (another ``data.cache_dir``).
    """
    index_path = Path(cache_dir) / "index.json"
    try:
        old = json.loads(json.loads(index_path.read_text()).get("settings") or "null")
    except (OSError, ValueError, AttributeError):
        return  # no cache yet, or one marked stale mid-rebuild: building it is what the run should do
    new = json.loads(loader.settings())
    if not isinstance(old, dict) or old == new:
        return

    absent = object()

    def at(d: dict, key: tuple, missing=None):
        for k in key:
            d = d.get(k, missing) if isinstance(d, dict) else missing
        return d

    keys = [*_RUN_KEYS, ("preprocessing", "orientation"), ("dims",), ("format",), ("reader",), ("geometry",)]
    names = {k: _RUN_KEYS.get(k) or "the card's " + ".".join(k) for k in keys}
    diffs = [f"{names[k]}: {at(old, k)} there, {at(new, k)} in this run"
             for k in keys if at(old, k, absent) is not absent and at(old, k) != at(new, k)]
    if not diffs:
        return  # written by another medssl version (its settings hold other keys): rebuilt, as before

    def value(v) -> str:
        return f"[{','.join(map(str, v))}]" if isinstance(v, list) else str(v)

    reuse = " ".join(f"{run_key}={value(at(old, k))}" for k, run_key in _RUN_KEYS.items() if at(old, k) is not None)
    raise ConfigError(f"data.cache_dir={cache_dir} holds a cache built with other preprocessing ({'; '.join(diffs)}); "
                      f"this run would rebuild it and replace those rows. To use that cache pass {reuse}; to build "
                      f"one with this run's settings choose another data.cache_dir (or delete {cache_dir})")
