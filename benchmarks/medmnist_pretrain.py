"""Pretraining of the MedMNIST rows (``benchmarks/medmnist.py``): the encoders, SimCLR, MAE and the peers.

* :func:`make_encoder` / :func:`make_vit` — the ResNet-18 with a 28-pixel stem and the ViT of a
  :class:`~medmnist_data.Budget`, seeded;
* :func:`method_names` — the SSL methods of ``Budget.methods`` (checked);
* :func:`pretrain_simclr` / :func:`pretrain_mae` — one resumable run on the training images, no labels;
* :func:`pretrain_peers` and :func:`peer_encoder_kwargs` — each peer recipe (``benchmarks/peers``) under
  the SimCLR budget, on the same network as :func:`make_encoder`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

import medssl.losses  # noqa: F401 - registers the losses
from medssl.encoders import build_encoder
from medssl.methods.contrastive import SimCLR
from medssl.methods.mae import MAE
from medssl.registry import LOSSES
from medssl.train.trainer import Trainer, TrainerOptions
from medssl.transforms.views import build_view_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from medmnist_data import Budget, Images  # next to this file
from seed_runs import fit_resumable, run_config
from peers import PEERS  # benchmarks/peers; optional packages are imported only when a peer runs
from peers.common import resnet_kwargs_of


def make_encoder(spatial_dims: int, b: Budget, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_encoder("resnet18", spatial_dims, 1, width=b.width, conv1_kernel=3, conv1_stride=b.conv1_stride,
                         no_max_pool=True)


def make_vit(spatial_dims: int, size: int, b: Budget, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_encoder(b.vit, spatial_dims, 1, img_size=size, patch_size=b.patch, num_layers=b.vit_layers)


def method_names(b: Budget) -> tuple[str, ...]:
    """The SSL methods of ``b.methods`` (checked: simclr and/or mae)."""
    names = tuple(m.strip() for m in b.methods.split(",") if m.strip())
    if not names or set(names) - {"simclr", "mae"}:
        raise SystemExit(f"budget methods={b.methods!r}: expected simclr, mae or simclr,mae")
    return names


def fit(method, train_x: np.ndarray, opts: TrainerOptions, run_dir: Path, device: str, resume: bool = False,
        **settings) -> dict:
    """Pretrain ``method`` on ``train_x`` (:func:`seed_runs.fit_resumable`); ``settings`` (network, views) and the
    images' shape are what ``--resume`` checks against the checkpoint, besides ``opts`` (:func:`seed_runs.run_config`)."""
    config = run_config(opts, method=type(method).__name__, images=list(train_x.shape), **settings)
    return fit_resumable(Trainer(method, Images(train_x), run_dir, opts, torch.device(device), config=config), resume)


def pretrain_mae(train_x: np.ndarray, spatial_dims: int, b: Budget, seed: int, run_dir: Path, device: str,
                 resume: bool = False) -> dict:
    """MAE of a ViT on the training images (no labels): light random crops (scale 0.8–1, 3D also flips),
    mask ratio 0.75, decoder 128-dim × 2 blocks, AdamW (weight decay 0.05), warm-up + cosine."""
    size = train_x.shape[-1]
    encoder = make_vit(spatial_dims, size, b, seed)
    views = build_view_pipeline("none", spatial_dims, (size,) * spatial_dims,
                                {"crop_scale": (0.8, 1.0), **({"flip_prob": 0.5} if spatial_dims == 3 else {})})
    method = MAE(encoder, views, decoder_dim=128, decoder_depth=2, decoder_heads=4)
    opts = TrainerOptions(epochs=b.mae_epochs, batch_size=b.ssl_batch, lr=b.mae_lr, weight_decay=0.05,
                          warmup_epochs=min(2.0, b.mae_epochs / 4), keep_checkpoints=1, seed=seed, progress=False)
    return {"encoder": method.encoder,
            "summary": fit(method, train_x, opts, run_dir, device, resume, vit=b.vit, vit_layers=b.vit_layers, patch=b.patch)}


def pretrain_simclr(train_x: np.ndarray, spatial_dims: int, b: Budget, seed: int, run_dir: Path, device: str,
                    resume: bool = False) -> dict:
    """SimCLR on the training images (no labels). Returns the encoder and the trainer summary."""
    encoder = make_encoder(spatial_dims, b, seed)
    views = build_view_pipeline(b.preset, spatial_dims, (b.crop,) * spatial_dims)
    method = SimCLR(encoder, LOSSES.get("ntxent")(temperature=0.1), views, proj_hidden_dim=4 * encoder.out_dim,
                    proj_dim=64)
    opts = TrainerOptions(epochs=b.ssl_epochs, batch_size=b.ssl_batch, lr=b.ssl_lr, weight_decay=1e-4,
                          warmup_epochs=min(1.0, b.ssl_epochs / 4), keep_checkpoints=1, seed=seed, progress=False)
    return {"encoder": method.encoder, "summary": fit(method, train_x, opts, run_dir, device, resume, width=b.width,
                                                      conv1_stride=b.conv1_stride, crop=b.crop, preset=b.preset)}


def peer_encoder_kwargs(b: Budget) -> dict:
    """``monai.networks.nets.resnet18`` arguments giving the network of :func:`make_encoder` (same weights per seed,
    same function)."""
    with torch.random.fork_rng(devices=[]):  # make_encoder() seeds torch; leave the caller's random state alone
        return resnet_kwargs_of(make_encoder(2, b, 0))


def pretrain_peers(train_x: np.ndarray, spatial_dims: int, b: Budget, seed: int, device: str, peers) -> dict:
    """``{peer: {"encoder", "seconds", "history"}}``: each peer's SimCLR under medssl's SSL budget."""
    out = {}
    for name in peers:
        t0, history = time.time(), []
        encoder = PEERS[name].pretrain(train_x, spatial_dims, b.ssl_epochs, b.ssl_batch, b.ssl_lr, seed,
                                       device, b.crop, encoder_kwargs=peer_encoder_kwargs(b), history=history)
        out[name] = {"encoder": encoder, "seconds": round(time.time() - t0, 1), "history": history}
        losses = " → ".join(f"{h['loss']:.3f}" for h in history)
        print(f"  seed {seed} peer {name}: {len(history)} epoch(s) in {out[name]['seconds']:.0f} s, loss {losses}",
              flush=True)
    return out
