"""IXI T1 data of the brain-age benchmarks: the fixed :class:`Budget`, the scans on its grid, and the folds.

* :class:`Budget` and :data:`QUICK` — every hyper-parameter of ``benchmarks/brain_age_ixi.py`` (fixed
  before looking at any test fold), and the smoke-run overrides of ``--quick``;
* :func:`load_ixi` — the ``shared_ixi`` card's scans at ``Budget.spacing`` mm (z-scored, cached), with
  subject ids and ages;
* :func:`write_resampled_copy` — ``--write-copy``: the data set already on the benchmark's grid, small
  enough to carry to a GPU machine;
* :func:`age_folds` / :func:`inner_split` — subject-level CV folds stratified on age quintiles, and the
  early-stopping split inside a training fold.

Shared by ``brain_age_ixi.py``, ``brain_age_baselines.py``, ``brain_age_sensitivity.py`` and
``view_strength.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medssl.data.card import load_card
from medssl.data.dataset import MetadataCoder
from medssl.data.manifest import build_manifest
from medssl.data.prepare import cache_records, make_loader, make_preprocessor


@dataclass
class Budget:
    """Compute budget and fixed hyper-parameters (all printed and stored in the JSON)."""

    spacing: float = 6.0  #: mm; the card's 96×120×120 grid at 2 mm becomes 32×40×40 at 6 mm (sized for 2 CPU cores)
    crop: int = 28  #: side of the contrastive / Genesis views (random resized crops, voxels)
    preset: str = "brain_mri"  #: augmentation preset of the contrastive views (its strengths are in voxels, see docs)
    physical_units: bool = False  #: rescale the preset's voxel strengths to `spacing` (docs/augmentations.md)
    width: int = 16  #: ResNet-18 base width (layer1 channels; out_dim = 8·width)
    vit: str = "vit_tiny"
    patch: int = 8  #: ViT patch side (voxels); must divide the grid; MAE crops are patch multiples
    ssl_epochs: int = 40  #: SimCLR / y-aware / Genesis epochs (MAE: 2×)
    ssl_batch: int = 32
    ssl_lr: float = 1e-3
    sigma: float = 5.0  #: y-aware RBF kernel width on age (years), fixed a priori
    folds: int = 5
    ft_epochs: int = 20
    ft_patience: int = 6
    ft_batch: int = 16
    ft_lr_encoder: float = 3e-4
    ft_lr_encoders: tuple = ()  #: encoder lrs tried in every fold; the best validation loss is kept (empty: ft_lr_encoder)
    ft_lr_head: float = 1e-3
    ft_head_init: str = "random"  #: fine-tuning head: "random" or "probe" (LP-FT, medssl.eval.finetune)
    ft_augment: str = "affine"  #: fine-tuning augmentation: "affine" (flips + affine), "flip" (no interpolation), "none"
    ft_freeze_bn: bool = False  #: BatchNorm keeps its pretrained running statistics while fine-tuning
    methods: str = "simclr,genesis,mae,yaware"  #: SSL methods to run (comma-separated); baselines always run
    scratch: bool = True  #: also train the from-scratch CNN (false + ``methods=``: only the cheap probe baselines)
    finetune: bool = True  #: fine-tune the SSL encoders (false: probe rows only, and no from-scratch CNN)
    voxel_pool: int = 2  #: Ridge-on-voxels baseline: average-pool the scan by this factor (6 mm → 12 mm)
    limit: int = 0  #: use only the first N labelled scans (0 = all; --quick)


QUICK = {"spacing": 8.0, "crop": 20, "width": 4, "vit": "vit_tiny", "patch": 6, "ssl_epochs": 1, "ssl_batch": 8,
         "folds": 3, "ft_epochs": 1, "ft_patience": 1, "ft_batch": 8, "voxel_pool": 2, "limit": 24}


def grid_shape(card, spacing: float) -> list[int]:
    """The card's 2 mm grid (96×120×120 voxels, the same field of view) at ``spacing`` mm."""
    return [round(s * 2.0 / spacing) for s in card.preprocessing["shape"]]


def load_ixi(data_root: Path, b: Budget, cache_dir: Path) -> dict:
    """All scans of the card at ``b.spacing`` mm (z-scored), with subject ids and ages (NaN = unknown)."""
    card = load_card("shared_ixi")
    root = Path(data_root) / "ixi_t1_hh_2mm"
    if not (root / "participants.tsv").is_file():
        raise FileNotFoundError(f"{root}/participants.tsv not found; pass --data-root to the folder holding "
                                f"ixi_t1_hh_2mm/ (default ../shared/data)")
    records = build_manifest(card, root)
    if b.limit:  # a smoke run: the first N labelled scans
        records = [r for r in records if np.isfinite(r.age)][: b.limit]
    shape = grid_shape(card, b.spacing)
    pre = make_preprocessor(card, shape, [b.spacing] * 3, "zscore")
    cache = cache_records(records, make_loader(card, pre, 1, root), cache_dir, workers=min(8, os.cpu_count() or 1),
                          progress=False)
    images = np.ascontiguousarray(cache.images)
    ages = np.array([r.age for r in records], float)
    return {"records": records, "images": images, "ages": ages, "coder": MetadataCoder(records), "shape": shape,
            "labelled": np.flatnonzero(np.isfinite(ages))}


def write_resampled_copy(data_root: Path, dst: Path, spacing: float) -> None:
    """A copy of ixi_t1_hh_2mm/ already on the benchmark's grid, small enough to carry to a GPU machine.

    Each scan goes through the benchmark's own preprocessing without the intensity normalisation
    (RAS, ``spacing`` mm trilinear, crop/pad) and is stored as uint8 with a slope, like the
    originals (3 mm: ~20 MB instead of 80 MB). The affine is a plain RAS ``spacing`` grid at the
    origin, so reading the copy again resamples nothing: the benchmark on the copy sees the same
    volumes up to the uint8 rounding (< 0.2 % of the intensity range).
    """
    import shutil

    import nibabel as nib

    card = load_card("shared_ixi")
    src, dst = (Path(data_root) / "ixi_t1_hh_2mm").resolve(), Path(dst).resolve()
    if dst == src or src in dst.parents or dst in src.parents:
        raise SystemExit(f"--write-copy {dst}: must be a folder outside the data set {src} (never overwrite the originals)")
    shape = grid_shape(card, spacing)
    load = make_loader(card, make_preprocessor(card, shape, [spacing] * 3, "none"), 1, src)
    (dst / "images").mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "participants.tsv", dst / "participants.tsv")
    for record in build_manifest(card, src):
        out = nib.Nifti1Image(np.clip(load(record)[0], 0, None), np.diag([spacing] * 3 + [1.0]))
        out.set_data_dtype(np.uint8)
        nib.save(out, dst / "images" / Path(record.path).name)  # a bare file name: always inside dst


def age_folds(ages: np.ndarray, n_folds: int, seed: int) -> list[np.ndarray]:
    """Test rows of each fold: subject-level (one scan per subject), stratified on age quintiles."""
    from sklearn.model_selection import StratifiedKFold

    bins = np.digitize(ages, np.quantile(ages, [0.2, 0.4, 0.6, 0.8]))
    skf = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    return [test for _, test in skf.split(np.zeros(len(ages)), bins)]


def inner_split(ages: np.ndarray, seed: int, fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows) of a training fold, stratified on age tertiles."""
    from sklearn.model_selection import train_test_split

    bins = np.digitize(ages, np.quantile(ages, [1 / 3, 2 / 3]))
    rows = np.arange(len(ages))
    stratify = bins if len(ages) * fraction >= 3 else None  # tiny smoke runs: too few rows to stratify
    return train_test_split(rows, test_size=fraction, random_state=seed, stratify=stratify)
