"""Brain age on real MRI: IXI T1 (Hammersmith, one site, 138 subjects with an age), 5-fold subject CV.

Per seed (``--seeds``), on the ``shared_ixi`` data card (143 real T1w head scans, 2 mm, not
skull-stripped; 138 with an age; see ../shared/data/ixi_t1_hh_2mm/PROVENANCE.md):

1. **Label-free pretraining on all 143 scans** (the issue's protocol: no age is read):
   SimCLR (Chen et al., ICML 2020; NT-Xent τ = 0.1) and Models Genesis (Zhou et al., MedIA 2021)
   with a 3D ResNet-18, MAE (He et al., CVPR 2022; mask ratio 0.75) with a 3D ViT.
2. **y-aware contrastive pretraining inside each CV fold** (Dufumier et al., MICCAI 2021; RBF
   kernel on age, σ in years): it reads ages, so it is pretrained five times per seed, each time
   on the training subjects of that fold only. The fold's test subjects are never seen (not even
   their images): the JSON lists, per fold, the subjects each y-aware run was trained on, and the
   CI test checks they are disjoint from the fold's test subjects.
3. **Age prediction with 5-fold subject-level CV** (folds stratified on age quintiles, one scan
   per subject): a Ridge probe on frozen embeddings (standardisation + RidgeCV, α by efficient
   leave-one-out CV on the fold's training subjects) and full fine-tuning (Huber loss, AdamW,
   flips + small affine augmentation, early stopping on 20 % of the fold's training subjects).
4. **Baselines in the same run**: the training-fold mean age; Ridge on downsampled raw voxels;
   the same encoders randomly initialised (+ Ridge probe); the same CNN trained supervised from
   scratch with the same fine-tuning recipe.
5. With ``--peers``: the same SimCLR budget (epochs, batch, lr, crop, network, initial weights) run
   by peer recipes (``benchmarks/peers``: the stock MONAI recipe, nidl) on all scans without ages,
   and nidl's y-aware estimator inside each fold like medssl's y-aware row, each scored by the same
   Ridge probe ("<peer> + Ridge probe" rows). The peers see each scan min-max rescaled to [0, 1],
   their input convention, at pretraining and at the probe.

Every hyper-parameter is fixed in :class:`Budget` before looking at any test fold; the only
data-driven choices (Ridge α, fine-tuning epoch) use the training subjects of the fold. The
reported MAE of a seed is over the pooled out-of-fold predictions of all 138 subjects; tables
give mean ± SD over seeds.

    python benchmarks/brain_age_ixi.py --quick --json /tmp/q.json          # CI smoke run (seconds)
    python benchmarks/brain_age_ixi.py --device cuda --seeds 0 1 2         # full run (GPU)
    python benchmarks/brain_age_ixi.py --merge runs/ixi0/result.json runs/ixi1/result.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import medssl.losses  # noqa: F401 - registers the losses
from medssl.data.card import load_card
from medssl.data.dataset import CachedScans, MetadataCoder
from medssl.data.manifest import build_manifest
from medssl.data.prepare import cache_records, make_loader, make_preprocessor
from medssl.encoders import build_encoder
from medssl.eval.features import extract_features
from medssl.eval.finetune import FinetuneOptions, finetune_encoder_lrs, predict
from medssl.eval.probes import regression_probe
from medssl.methods.contrastive import SimCLR, YAware
from medssl.methods.genesis import ModelsGenesis, minmax_per_sample
from medssl.methods.mae import MAE
from medssl.registry import LOSSES
from medssl.train.trainer import Trainer, TrainerOptions
from medssl.transforms.views import build_view_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_runs import (add_data_root, apply_set, command_line, fit_resumable, machine, merge_seeds,  # next to this script
                       pyplot, save_figure, write_result)
from peers import PEERS, usable, versions  # benchmarks/peers; optional packages are imported only when a peer runs
from peers.common import resnet_kwargs_of, unit_range  # the peers' input: each scan min-max rescaled to [0, 1] (as MinMaxInput)

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"probe": 5.0, "finetune": 4.5}  #: issue #9: best SSL probe / fine-tuned SSL model, MAE in years


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

ROWS = (  # key, label, kind
    ("mean", "training-fold mean age", "baseline"),
    ("voxels", "Ridge on downsampled raw voxels", "baseline"),
    ("random_cnn_probe", "random-init ResNet-18 + Ridge probe", "baseline"),
    ("random_vit_probe", "random-init ViT + Ridge probe", "baseline"),
    ("scratch_ft", "ResNet-18 supervised from scratch", "baseline"),
    ("simclr_probe", "SimCLR + Ridge probe", "probe"),
    ("genesis_probe", "Models Genesis + Ridge probe", "probe"),
    ("mae_probe", "MAE (ViT) + Ridge probe", "probe"),
    ("yaware_probe", "y-aware (in-fold) + Ridge probe", "probe"),
    ("monai_stock_probe", "stock MONAI SimCLR recipe + Ridge probe", "peer"),
    ("nidl_probe", "nidl SimCLR + Ridge probe", "peer"),
    ("nidl_yaware_probe", "nidl y-aware (in-fold) + Ridge probe", "peer"),
    ("simclr_ft", "SimCLR + fine-tuning", "finetune"),
    ("genesis_ft", "Models Genesis + fine-tuning", "finetune"),
    ("mae_ft", "MAE (ViT) + fine-tuning", "finetune"),
    ("yaware_ft", "y-aware (in-fold) + fine-tuning", "finetune"),
)


LABEL_FREE = ("simclr", "genesis", "mae")
YAWARE_PEERS = ("nidl",)  #: peers with a y-aware estimator: with ``yaware`` in ``methods`` they also pretrain in-fold


def active_rows(methods: str, scratch: bool = True, finetune: bool = True) -> tuple:
    """The rows of :data:`ROWS` that a run with these SSL ``methods`` produces (baselines always; the random ViT
    only with MAE; the from-scratch CNN only with ``scratch`` and ``finetune``; fine-tuned rows only with
    ``finetune``)."""
    chosen = set(filter(None, methods.split(",")))  # "" = baselines only
    unknown = chosen - set(LABEL_FREE) - {"yaware"}
    if unknown:
        raise SystemExit(f"unknown method(s) {sorted(unknown)} in Budget.methods; choose from {LABEL_FREE + ('yaware',)}")
    optional = {"random_vit_probe": "mae" in chosen, "scratch_ft": scratch and finetune}
    keep = lambda key, kind: (kind == "baseline" and optional.get(key, True)
                              or key.rsplit("_", 1)[0] in chosen and (finetune or kind != "finetune"))
    return tuple(r for r in ROWS if keep(r[0], r[2]))


def peer_rows(peers: tuple, methods: str) -> tuple:
    """The peer rows of :data:`ROWS` for these ``peers``: SimCLR on all scans for each, and in-fold y-aware for
    the :data:`YAWARE_PEERS` when ``methods`` has ``yaware``."""
    yaware = "yaware" in methods.split(",")
    keys = [f"{n}_probe" for n in peers] + [f"{n}_yaware_probe" for n in peers if yaware and n in YAWARE_PEERS]
    return tuple(r for r in ROWS if r[0] in keys)


class MinMaxInput(torch.nn.Module):
    """Feeds an encoder the per-sample min-max rescaled input it was pretrained on (Genesis, the peers)."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder, self.out_dim = encoder, getattr(encoder, "out_dim", None)  # a peer's MONAI net has none

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(minmax_per_sample(x))


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


def cnn(b: Budget, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_encoder("resnet18", 3, 1, width=b.width)


def vit(b: Budget, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_encoder(b.vit, 3, 1, img_size=mae_crop(b), patch_size=b.patch)


def mae_crop(b: Budget) -> tuple[int, int, int]:
    return (max(b.patch, b.crop // b.patch * b.patch),) * 3


def pretrain(name: str, data: dict, rows: np.ndarray, b: Budget, seed: int, run_dir: Path, device: str,
             resume: bool = False, finished_only: bool = False) -> dict:
    """One pretraining run on scans ``rows``: returns the encoder (for evaluation) and the trainer summary.
    ``resume``: continue from the latest checkpoint in ``run_dir`` (a finished run: its weights, no step);
    ``finished_only``: load a finished run of this budget or stop, never train (:func:`seed_runs.fit_resumable`)."""
    crop = (b.crop,) * 3
    epochs = b.ssl_epochs
    if name in ("simclr", "yaware"):
        encoder = cnn(b, seed)
        views = build_view_pipeline(b.preset, 3, crop, spacing=(b.spacing,) * 3 if b.physical_units else None)
        if name == "simclr":
            method = SimCLR(encoder, LOSSES.get("ntxent")(temperature=0.1), views, proj_hidden_dim=encoder.out_dim,
                            proj_dim=128)
        else:
            method = YAware(encoder, LOSSES.get("yaware")(temperature=0.1, sigma=b.sigma), views,
                            proj_hidden_dim=encoder.out_dim, proj_dim=128, label_keys=["age"], continuous=True)
    elif name == "genesis":
        encoder = cnn(b, seed)
        method = ModelsGenesis(encoder, build_view_pipeline("none", 3, crop, {"flip_prob": 0.5, "flip_axes": (0,)}))
    elif name == "mae":
        encoder = vit(b, seed)
        epochs = 2 * b.ssl_epochs
        method = MAE(encoder, build_view_pipeline("none", 3, mae_crop(b), {"crop_scale": (0.8, 1.0), "flip_prob": 0.5,
                                                                            "flip_axes": (0,)}),
                     decoder_dim=192, decoder_depth=2, decoder_heads=6)
    else:
        raise ValueError(name)
    dataset = CachedScans(data["images"], data["records"], rows, data["coder"])
    opts = TrainerOptions(epochs=epochs, batch_size=min(b.ssl_batch, len(rows)), lr=b.ssl_lr,
                          weight_decay=0.05 if name == "mae" else 1e-4, warmup_epochs=max(1.0, epochs / 20),
                          keep_checkpoints=1, checkpoint_epochs=epochs, seed=seed, progress=False,
                          log_every=50)
    summary = fit_resumable(Trainer(method, dataset, run_dir, opts, torch.device(device)), resume, finished_only)
    enc = MinMaxInput(method.encoder) if name == "genesis" else method.encoder
    return {"encoder": enc, "summary": {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}}


def peer_encoder_kwargs(b: Budget) -> dict:
    """``monai.networks.nets.resnet18`` arguments giving the network of :func:`cnn` (same weights per seed, same
    function): width ``b.width``, 7³ stem conv with stride 2, max-pool."""
    with torch.random.fork_rng(devices=[]):  # cnn() seeds torch; leave the caller's random state alone
        return resnet_kwargs_of(cnn(b, 0))


def pretrain_peer(name: str, data: dict, rows: np.ndarray, b: Budget, seed: int, device: str,
                  yaware: bool = False) -> dict:
    """Peer ``name``'s SimCLR (or, with ``yaware``, its y-aware estimator on the rows' ages, kernel σ = ``b.sigma``)
    on scans ``rows`` under the SimCLR budget; returns the encoder wrapped in :class:`MinMaxInput`, seconds and
    the per-epoch loss history."""
    t0, history = time.time(), []
    extra = {"aux": data["ages"][rows], "bandwidth": b.sigma ** 2} if yaware else {}
    encoder = PEERS[name].pretrain(unit_range(data["images"][rows]), 3, b.ssl_epochs, min(b.ssl_batch, len(rows)),
                                   b.ssl_lr, seed, device, b.crop, encoder_kwargs=peer_encoder_kwargs(b),
                                   history=history, **extra)
    seconds = round(time.time() - t0, 1)
    print(f"  seed {seed} peer {name}{' y-aware' if yaware else ''}: {len(history)} epoch(s) in {seconds:.0f} s, "
          f"loss {history[0]['loss']:.3f} → {history[-1]['loss']:.3f}", flush=True)
    return {"encoder": MinMaxInput(encoder), "seconds": seconds, "history": history}


def features(encoder: torch.nn.Module, data: dict, device: str) -> np.ndarray:
    """(N, D) embeddings of every labelled scan (no augmentation)."""
    ds = CachedScans(data["images"], data["records"], data["labelled"], data["coder"])
    return extract_features(encoder, ds, 16, device)["features"]


def voxel_features(data: dict, pool: int) -> np.ndarray:
    """(N, V) average-pooled raw voxels of every labelled scan (the Ridge-on-voxels baseline)."""
    x = torch.from_numpy(data["images"][data["labelled"]].astype(np.float32))
    return F.avg_pool3d(x, pool, ceil_mode=True).flatten(1).numpy()


FT_AUGMENTS = ("affine", "flip", "none")


def ft_augment(shape, kind: str = "affine") -> object | None:
    """Fine-tuning augmentation at the input size: ``"affine"``: left-right flips (p 0.5) and a small
    trilinear affine (p 0.8; ±5°, ±5 % scale, ±3 % shift); ``"flip"``: the flips only, which move voxels
    without interpolating; ``"none"``: no augmentation (returns None)."""
    if kind not in FT_AUGMENTS:
        raise ValueError(f"ft_augment must be one of {FT_AUGMENTS}, got {kind!r}")
    if kind == "none":
        return None
    affine = {"affine_prob": 0.8, "rotate": 5.0, "scale": (0.95, 1.05), "translate": 0.03} if kind == "affine" else {}
    return build_view_pipeline("none", 3, shape, {"flip_prob": 0.5, "flip_axes": (0,), **affine})


def finetune_fold(encoder, data: dict, tr: np.ndarray, te: np.ndarray, b: Budget, seed: int, device: str) -> dict:
    """Fine-tune on the fold's training rows, early stopping on 20 % of them, once per encoder lr of
    ``b.ft_lr_encoders`` (or ``b.ft_lr_encoder``); the run with the lowest validation loss is kept.

    Returns ``{"pred": (len(te),) years, "best_epoch": int, "val_mae": validation MAE per epoch in years
    (with ``ft_head_init=probe`` epoch 0 is the probe), "lr_encoder": the kept encoder lr, "val_loss_by_lr":
    {lr: best validation loss (Huber, standardised age)}}``. Ties keep the first lr: with LP-FT, when no
    lr beats the probe (epoch 0 everywhere) the model is the probe and the grid's first lr is listed."""
    ages, lab = data["ages"], data["labelled"]
    fit, val = inner_split(ages[lab[tr]], seed)
    ds = lambda rows: CachedScans(data["images"], data["records"], lab[rows], data["coder"])
    opts = FinetuneOptions(task="regression", mode="full", lr_head=b.ft_lr_head, epochs=b.ft_epochs,
                           batch_size=b.ft_batch, patience=b.ft_patience, device=device, seed=seed,
                           head_init=b.ft_head_init, freeze_norm_stats=b.ft_freeze_bn)
    result, val_loss_by_lr = finetune_encoder_lrs(encoder, ds(tr[fit]), ages[lab[tr[fit]]], ds(tr[val]), ages[lab[tr[val]]],
                                                  b.ft_lr_encoders or (b.ft_lr_encoder,), opts,
                                                  ft_augment(data["shape"], b.ft_augment))
    return {"pred": predict(result, ds(te)), "best_epoch": result.best_epoch, "lr_encoder": result.options.lr_encoder,
            "val_mae": [round(h["val_metric"], 3) for h in result.history],
            "val_loss_by_lr": {str(lr): v for lr, v in val_loss_by_lr.items()}}


def run_seed(data: dict, b: Budget, seed: int, out: Path, device: str, resume: bool = False,
             peers: tuple = ()) -> dict:
    """All rows of one seed: pooled out-of-fold predictions → MAE per row."""
    t0 = time.time()
    ages = data["ages"][data["labelled"]]
    n, all_rows = len(ages), np.arange(len(data["ages"]))
    times, pre, rows = {}, {}, active_rows(b.methods, b.scratch, b.finetune) + peer_rows(peers, b.methods)
    for name in [m for m in LABEL_FREE if any(r[0] == f"{m}_probe" for r in rows)]:  # label-free: on every scan
        t = time.time()
        pre[name] = pretrain(name, data, all_rows, b, seed, out / f"seed{seed}_{name}", device, resume)
        times[f"pretrain_{name}"] = round(time.time() - t, 1)
        print(f"  seed {seed}: {name} pretrained in {times[f'pretrain_{name}']:.0f} s", flush=True)
    peer_runs = {name: pretrain_peer(name, data, all_rows, b, seed, device) for name in peers}  # no ages read
    random_cnn = cnn(b, 10_000 + seed)
    feats = {"random_cnn_probe": features(random_cnn, data, device), "voxels": voxel_features(data, b.voxel_pool),
             **{f"{k}_probe": features(v["encoder"], data, device) for k, v in {**pre, **peer_runs}.items()}}
    if "mae" in pre:
        feats["random_vit_probe"] = features(vit(b, 10_000 + seed), data, device)
    pred = {key: np.full(n, np.nan) for key, _, _ in rows}
    ft_encoders = {key: enc for key, enc in (("scratch_ft", random_cnn), *((f"{k}_ft", v["encoder"]) for k, v in pre.items()))
                   if key in pred}
    folds, fold_info = age_folds(ages, b.folds, seed), []
    for k, te in enumerate(folds):
        tr = np.setdiff1d(np.arange(n), te)
        pred["mean"][te] = ages[tr].mean()
        for key, x in feats.items():
            pred[key][te] = regression_probe(x[tr], ages[tr], x[te], ages[te], n_boot=0)["pred"]
        t, fold_encoders, ya_rows = time.time(), dict(ft_encoders), []
        if "yaware_probe" in pred:
            ya_rows = data["labelled"][tr]  # y-aware reads ages: this fold's training subjects only
            ya = pretrain("yaware", data, ya_rows, b, seed, out / f"seed{seed}_yaware_fold{k}", device, resume)
            times.setdefault("pretrain_yaware_folds", []).append(round(time.time() - t, 1))
            x = features(ya["encoder"], data, device)
            pred["yaware_probe"][te] = regression_probe(x[tr], ages[tr], x[te], ages[te], n_boot=0)["pred"]
            if "yaware_ft" in pred:
                fold_encoders["yaware_ft"] = ya["encoder"]
        for name in [r[0][: -len("_yaware_probe")] for r in rows if r[0].endswith("_yaware_probe")]:
            run = pretrain_peer(name, data, data["labelled"][tr], b, seed, device, yaware=True)  # as y-aware: no test subject
            peer_runs.setdefault(f"{name}_yaware_folds", []).append({f: run[f] for f in ("seconds", "history")})
            x = features(run["encoder"], data, device)
            pred[f"{name}_yaware_probe"][te] = regression_probe(x[tr], ages[tr], x[te], ages[te], n_boot=0)["pred"]
        t = time.time()
        ft = {key: finetune_fold(enc, data, tr, te, b, seed, device) for key, enc in fold_encoders.items()}
        for key, run in ft.items():
            pred[key][te] = run["pred"]
        if fold_encoders:
            times.setdefault("finetune_folds", []).append(round(time.time() - t, 1))
        fold_info.append({"test_subjects": [data["records"][i].subject for i in data["labelled"][te]],
                          "yaware_pretrained_on": [data["records"][i].subject for i in ya_rows],
                          **{f"finetune_{k}": {key: run[k] for key, run in ft.items()}
                             for k in ("best_epoch", "val_mae", "lr_encoder", "val_loss_by_lr")}})
        print(f"  seed {seed} fold {k + 1}/{b.folds}: " + "  ".join(
            f"{key} {np.abs(pred[key][te] - ages[te]).mean():.2f}" for key in pred), flush=True)
    mae = {key: float(np.abs(pred[key] - ages).mean()) for key in pred}
    out = {"seed": seed, "mae": mae, "pred": {k: v.round(3).tolist() for k, v in pred.items()},
           "age": ages.tolist(), "subjects": [data["records"][i].subject for i in data["labelled"]],
           "folds": fold_info, "pretrain": {k: v["summary"] for k, v in pre.items()}, "seconds": times,
           "wall_seconds": round(time.time() - t0, 1)}
    if peers:
        out["peer_pretrain"] = {k: v if isinstance(v, list) else {"seconds": v["seconds"], "history": v["history"]}
                                for k, v in peer_runs.items()}
        out["peer_encoder_kwargs"] = peer_encoder_kwargs(b)
    return out


def rows_of(summary: dict) -> tuple:
    """The rows of :data:`ROWS` present in a summary (or a seed's ``mae``), in table order."""
    return tuple(r for r in ROWS if r[0] in summary)


def summarise(per_seed: list[dict]) -> dict:
    out = {}
    for key, _, _ in rows_of(per_seed[0]["mae"]):
        v = np.array([s["mae"][key] for s in per_seed])
        out[key] = {"mae_mean": float(v.mean()), "mae_sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                    "mae_per_seed": v.round(3).tolist()}
    return out


def verdict(summary: dict) -> dict:
    """The issue's targets, read off the means over seeds. A probe "beats" its random-init encoder only
    with a lower MAE on every seed (a lower mean alone can be one lucky seed)."""
    probes = {k: summary[k]["mae_mean"] for k, _, kind in rows_of(summary) if kind == "probe"}
    fts = {k: summary[k]["mae_mean"] for k, _, kind in rows_of(summary) if kind == "finetune"}
    rand = {"simclr_probe": "random_cnn_probe", "genesis_probe": "random_cnn_probe", "yaware_probe": "random_cnn_probe",
            "mae_probe": "random_vit_probe"}
    if not probes:  # baselines only
        return {}
    wins = {k: sum(a < b for a, b in zip(summary[k]["mae_per_seed"], summary[rand[k]]["mae_per_seed"])) for k in probes}
    n = len(summary[next(iter(probes))]["mae_per_seed"])
    beats = ", ".join(f"{k} {v:.2f} vs {summary[rand[k]]['mae_mean']:.2f} (lower on {wins[k]}/{n} seeds)"
                      for k, v in probes.items())
    best_p = min(probes, key=probes.get)
    out = {"every SSL probe beats its random-init encoder":
           f"{beats}: {all(wins[k] == n and v < summary[rand[k]]['mae_mean'] for k, v in probes.items())}",
           f"best SSL probe <= {TARGETS['probe']} y": f"{best_p} {probes[best_p]:.2f}: {probes[best_p] <= TARGETS['probe']}"}
    if fts:  # not with finetune=false
        best_f = min(fts, key=fts.get)
        out[f"best fine-tuned SSL <= {TARGETS['finetune']} y"] = f"{best_f} {fts[best_f]:.2f}: {fts[best_f] <= TARGETS['finetune']}"
    return out


def format_table(summary: dict, n_seeds: int) -> str:
    lines = [f"| method (IXI T1, {n_seeds} seed(s), 5-fold CV MAE in years) | MAE | per seed |", "|---|---|---|"]
    for key, label, _ in rows_of(summary):
        s = summary[key]
        sd = f" ± {s['mae_sd']:.2f}" if n_seeds > 1 else ""
        lines.append(f"| {label} | {s['mae_mean']:.2f}{sd} | {' / '.join(f'{v:.2f}' for v in s['mae_per_seed'])} |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Left: CV MAE per method (mean ± SD over seeds) with the targets; right: predicted vs true age of
    the best fine-tuned SSL model, or with ``finetune=false`` the best probe (pooled out-of-fold predictions,
    first seed)."""
    plt = pyplot()

    summ, per_seed = result["summary"], result["per_seed"]
    rows = rows_of(summ)
    fig, (a, c) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.6, 1]})
    colours = {"baseline": "C7", "probe": "C0", "peer": "C4", "finetune": "C1"}
    means = [summ[k]["mae_mean"] for k, _, _ in rows]
    sds = [0 if np.isnan(summ[k]["mae_sd"]) else summ[k]["mae_sd"] for k, _, _ in rows]
    a.barh(range(len(rows)), means, xerr=sds, color=[colours[kind] for _, _, kind in rows], alpha=0.85, capsize=3)
    for t, style in ((TARGETS["probe"], "--"), (TARGETS["finetune"], ":")):
        a.axvline(t, color="C2", ls=style, lw=1)
    a.set_yticks(range(len(rows)), [label for _, label, _ in rows], fontsize=8)
    a.invert_yaxis()
    a.set_xlabel("age MAE (years), 5-fold CV (green: targets 5.0 probe / 4.5 fine-tuned)")
    a.set_title(f"IXI brain age, {len(per_seed)} seed(s): grey baselines, blue probes, purple peers, "
                f"orange fine-tuned", fontsize=9)
    # the fine-tuned rows; with finetune=false the probes; baselines only: the CNN from scratch, or the random probe
    fts = ([k for k, _, kind in rows if kind == "finetune"] or [k for k, _, kind in rows if kind in ("probe", "peer")]
           or [k for k in ("scratch_ft", "random_cnn_probe") if k in summ][:1])
    best = min(fts, key=lambda k: summ[k]["mae_mean"])
    s0 = per_seed[0]
    age, p = np.array(s0["age"]), np.array(s0["pred"][best])
    c.scatter(age, p, s=12, alpha=0.7, label=f"{best} (seed {s0['seed']}), MAE {np.abs(p - age).mean():.2f}")
    c.scatter(age, np.array(s0["pred"]["random_cnn_probe"]), s=8, alpha=0.4, color="C7", label="random-init + probe")
    lim = [age.min() - 3, age.max() + 3]
    c.plot(lim, lim, "k--", lw=0.8)
    c.set_xlabel("age (years)")
    c.set_ylabel("predicted age (out of fold)")
    c.legend(fontsize=7)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_root(p, "ixi_t1_hh_2mm/")
    p.add_argument("--quick", action="store_true", help="smoke run: 24 scans at 8 mm, 3 folds, 1 epoch, tiny networks")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", default="", help="run folder (default runs/brain_age_ixi[_quick])")
    p.add_argument("--json", default="", help="also write the result JSON here")
    p.add_argument("--figure", default="", help="default docs/img/brain_age_ixi.png (--quick: <out>/brain_age_ixi.png)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--merge", nargs="+", default=[], metavar="JSON", help="no training: merge earlier runs' seeds")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a Budget field")
    p.add_argument("--resume", action="store_true",
                   help="continue each pretraining from the latest checkpoint in <out>/seed<S>_<method>[_fold<K>] "
                        "(after a SIGTERM stop; a finished run's encoder is reused without further steps)")
    p.add_argument("--cache", default="", help="preprocessed-scan cache folder (default <out>/cache); runs in parallel "
                   "can share one built beforehand with --prepare-only")
    p.add_argument("--prepare-only", action="store_true", help="only build the cache, then exit")
    p.add_argument("--peers", nargs="*", default=[], metavar="PEER",
                   help="also run these peer recipes (benchmarks/peers: monai_stock, nidl) with the SimCLR budget on "
                        "all scans, nidl also y-aware in-fold when methods has yaware, each scored by the same Ridge "
                        "probe; a peer that cannot run here is skipped with the reason (not retrained by --resume)")
    p.add_argument("--write-copy", default="", metavar="DIR", help="only write DIR/ixi_t1_hh_2mm resampled to "
                   "--set spacing (uint8, as the originals) to carry to another machine, then exit")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    b = apply_set(replace(Budget(), **(QUICK if a.quick else {})), a.set)
    for key, check in (("ft_head_init", lambda: FinetuneOptions(head_init=b.ft_head_init)),
                       ("ft_augment", lambda: ft_augment((8, 8, 8), b.ft_augment))):
        try:
            check()
        except ValueError as e:
            raise SystemExit(f"--set {key}={getattr(b, key)}: {e}") from None
    if a.write_copy:
        write_resampled_copy(Path(a.data_root), Path(a.write_copy) / "ixi_t1_hh_2mm", b.spacing)
        return {}
    out = Path(a.out or REPO / "runs" / f"brain_age_ixi{'_quick' if a.quick else ''}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    info = machine(a.device)
    if a.merge:
        per_seed, results = merge_seeds(a.merge)
        b, info = Budget(**results[0]["budget"]), results[0]["machine"]
    else:
        data = load_ixi(Path(a.data_root), b, Path(a.cache) if a.cache else out / "cache")
        if a.prepare_only:
            return {}
        print(f"IXI: {len(data['records'])} scans, {len(data['labelled'])} with an age, grid {data['shape']} at "
              f"{b.spacing} mm; budget {asdict(b)}", flush=True)
        peers, skipped = usable(a.peers, 3)
        for name, why in skipped.items():
            print(f"  peer {name} skipped: {why}", flush=True)
        per_seed = [run_seed(data, b, s, out, a.device, a.resume, peers) for s in a.seeds]
    summary = summarise(per_seed)
    result = {"benchmark": "brain_age_ixi", "budget": asdict(b), "seeds": [s["seed"] for s in per_seed],
              "summary": summary, "verdict": verdict(summary), "targets": TARGETS, "per_seed": per_seed,
              "quick": a.quick, "machine": info, "wall_seconds": round(time.time() - t0, 1),
              "command": command_line("brain_age_ixi.py", argv)}
    if a.merge:  # the peers of the merged runs (their machine record already lists the packages)
        result.update({k: results[0][k] for k in ("peers", "peers_skipped") if k in results[0]})
    elif a.peers:
        result.update(peers=list(peers), peers_skipped=skipped)
        result["machine"]["peer_packages"] = versions()
    fig = Path(a.figure) if a.figure else (out if a.quick else REPO / "docs" / "img") / "brain_age_ixi.png"
    plot(result, fig)
    result["figure"] = str(fig)
    write_result(result, out, a.json)
    print(f"\n{format_table(summary, len(per_seed))}\n\n" + "\n".join(f"{k}: {v}" for k, v in result["verdict"].items())
          + f"\n\nbudget: {asdict(b)}\nwall time {result['wall_seconds']:.0f} s on {info['device']}; "
            f"JSON {out / 'result.json'}; figure {fig}")
    return result


if __name__ == "__main__":
    main()
