"""The encoders of the brain-age rows: how each is built, pretrained and fine-tuned, and what the probe reads.

* :func:`cnn` / :func:`vit` — the 3D ResNet-18 and ViT of a :class:`~brain_age_data.Budget`, seeded;
* :func:`pretrain` — one medssl pretraining run (SimCLR, y-aware, Models Genesis, MAE) on chosen scans,
  resumable (:func:`seed_runs.fit_resumable`);
* :func:`pretrain_peer` and :func:`peer_encoder_kwargs` — a peer recipe (``benchmarks/peers``) under the
  SimCLR budget, on the same network as :func:`cnn`, fed through :class:`MinMaxInput`;
* :func:`features` / :func:`voxel_features` — what the Ridge probe reads: (N, D) embeddings or (N, V)
  pooled raw voxels of every labelled scan;
* :func:`ft_augment` and :func:`finetune_fold` — full fine-tuning inside one CV fold (Huber loss, early
  stopping on 20 % of the fold's training subjects, optional grid of encoder lrs).
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import medssl.losses  # noqa: F401 - registers the losses
from medssl.data.dataset import CachedScans
from medssl.encoders import build_encoder
from medssl.eval.features import extract_features
from medssl.eval.finetune import FinetuneOptions, finetune_encoder_lrs, predict
from medssl.methods.contrastive import SimCLR, YAware
from medssl.methods.genesis import MinMaxInput, ModelsGenesis  # MinMaxInput: the input Genesis and the peers pretrained on
from medssl.methods.mae import MAE
from medssl.registry import LOSSES
from medssl.train.trainer import Trainer, TrainerOptions
from medssl.transforms.views import build_view_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from brain_age_data import Budget, inner_split  # next to this file
from seed_runs import fit_resumable, run_config
from peers import PEERS  # benchmarks/peers; optional packages are imported only when a peer runs
from peers.common import resnet_kwargs_of, unit_range  # the peers' input: each scan min-max rescaled to [0, 1] (as MinMaxInput)


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
    rows = np.asarray(rows, dtype=np.int64)  # the scans trained on, and the settings --resume checks (run_config)
    settings = {"method": name, "spacing": b.spacing, "crop": b.crop, "scans": len(rows),
                "scans_sha1": hashlib.sha1(rows.tobytes()).hexdigest()[:12]}
    settings.update({"vit": b.vit, "patch": b.patch} if name == "mae" else {"width": b.width})
    if name in ("simclr", "yaware"):
        settings.update(preset=b.preset, physical_units=b.physical_units, **({"sigma": b.sigma} if name == "yaware" else {}))
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
    trainer = Trainer(method, dataset, run_dir, opts, torch.device(device), config=run_config(opts, **settings))
    summary = fit_resumable(trainer, resume, finished_only)
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
