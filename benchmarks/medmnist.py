"""Quality benchmark on real MedMNIST scans: SimCLR pretraining → linear probe and fine-tuning.

Per seed, on the official splits of the shared data cards (``shared_pneumoniamnist`` 2D chest
X-ray 28², ``shared_adrenalmnist3d`` 3D adrenal shape masks 28³):

1. SimCLR (Chen et al., ICML 2020; NT-Xent, τ = 0.1) on the **training images without labels**,
   with a ResNet-18 whose stem suits 28-pixel inputs (3×3 kernel, no max-pool);
2. linear probe on frozen embeddings (standardisation + logistic regression; C chosen by
   **validation** AUC, refitted on train) for the pretrained encoder and its random-init twin;
3. fine-tuning (full, early stopping on the **validation** loss) of the pretrained encoder and
   of the same CNN from random init (= supervised training from scratch);
4. few-label curve: 1 %, 10 %, 100 % of the training labels (class-stratified subsets, nested),
   SSL (probe and fine-tuning) vs from scratch;
5. with ``methods`` containing ``mae`` (``--set methods=mae`` or ``simclr,mae``): MAE (He et al.,
   CVPR 2022; mask ratio 0.75, per-patch normalised targets) of a ViT on the same training images,
   scored by the same probe and fine-tuning, with its random-init ViT and the same ViT trained from
   scratch as baselines;
6. with ``--peers``: the same SimCLR budget (epochs, batch, lr, crop, network, initial weights)
   run by peer recipes (``benchmarks/peers``: the stock MONAI recipe, lightly, nidl), each scored
   by the same linear probe ("<peer> + linear probe" rows).

The test split is scored once per model. AUC is the Mann–Whitney AUC of the positive class,
ACC the accuracy of argmax predictions (as in MedMNIST v2, Yang et al., Sci Data 2023).
Numbers are mean ± SD over seeds with the 95 % bootstrap interval of each test score in the JSON.

    python benchmarks/medmnist.py --dataset pneumonia --seeds 0 1 --out runs/medmnist_pneumonia
    python benchmarks/medmnist.py --dataset adrenal --seeds 0 1 --out runs/medmnist_adrenal
    python benchmarks/medmnist.py --dataset pneumonia --quick --json /tmp/q.json    # CI smoke run
    python benchmarks/medmnist.py --dataset pneumonia --seeds 0 --peers monai_stock lightly --set fractions=1.0
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

import medssl.losses  # noqa: F401 - registers the losses
from medssl.data.card import load_card
from medssl.encoders import build_encoder
from medssl.eval import metrics as M
from medssl.eval.features import extract_features
from medssl.eval.fewshot import subsample_subjects
from medssl.eval.finetune import FinetuneOptions, finetune_encoder_lrs, predict
from medssl.io import load_medmnist_split
from medssl.methods.contrastive import SimCLR
from medssl.methods.mae import MAE
from medssl.registry import LOSSES
from medssl.train.trainer import Trainer, TrainerOptions
from medssl.transforms.views import build_view_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_runs import (add_data_root, apply_set, command_line, fit_resumable, machine, merge_seeds,  # next to this script
                       pyplot, save_figure, write_result)
from peers import PEERS, usable, versions  # benchmarks/peers; optional packages are imported only when a peer runs
from peers.common import resnet_kwargs_of

REPO = Path(__file__).resolve().parents[1]

#: Published MedMNIST v2 test numbers (Yang et al., Sci Data 10:41, 2023, Table 3): (AUC, ACC).
PAPER = {
    "pneumonia": {"MedMNIST v2 ResNet-18 (28)": (0.944, 0.854), "MedMNIST v2 ResNet-50 (224)": (0.962, 0.884)},
    "adrenal": {"MedMNIST v2 ResNet-18+3D": (0.827, 0.721), "MedMNIST v2 ResNet-50+3D": (0.828, 0.745)},
    "adrenal64": {"MedMNIST v2 ResNet-18+3D (28³)": (0.827, 0.721), "MedMNIST v2 ResNet-50+3D (28³)": (0.828, 0.745)},
}
TARGETS = {"pneumonia": {"probe": 0.96, "finetune": 0.97}, "adrenal": {"probe": 0.90, "finetune": 0.92},
           "adrenal64": {"probe": 0.90, "finetune": 0.92}}
CARDS = {"pneumonia": "shared_pneumoniamnist", "adrenal": "shared_adrenalmnist3d", "adrenal64": "shared_adrenalmnist3d"}
NPZ = {"adrenal64": "adrenalmnist3d_64.npz"}  #: the 64³ file of the same card (same subjects, splits and labels)
FRACTIONS = (0.01, 0.1, 1.0)
PROBE_CS = tuple(10.0 ** k for k in range(-4, 3))


@dataclass
class Budget:
    """Compute budget of one benchmark run (all of it is printed and stored in the JSON)."""

    width: int = 16  #: ResNet-18 base width (channels of layer1)
    conv1_stride: int = 1  #: stem stride (1 keeps 28² / 28³ resolution in layer1)
    ssl_epochs: int = 4
    ssl_batch: int = 256
    ssl_lr: float = 2e-3
    crop: int = 28  #: side of each SimCLR view (random resized crop, resized to this)
    preset: str = "chest_xray"
    ft_epochs: int = 4  #: fine-tuning epochs at 100 % labels (more at fewer labels, see few_label_epochs)
    ft_batch: int = 128
    ft_lr: float = 1e-3
    ft_encoder_lrs: tuple = ()  #: CNN fine-tuning encoder lrs; the best official-val AUC is kept (empty: ft_lr)
    ft_head_init: str = "random"  #: fine-tuning head: "random" or "probe" (LP-FT, medssl.eval.finetune)
    scratch: bool = True  #: also train the same CNN / ViT from scratch (false: only the SSL fine-tuning rows)
    ssl_finetune: bool = True  #: fine-tune the SSL encoders (false: only the from-scratch rows, e.g. with --resume)
    patience: int = 2
    ft_augment: bool = True  #: flips (3D only) + small affine on fine-tuning batches (see ft_augment)
    limit: int = 0  #: use only the first N images of each split (0 = all; --quick)
    fractions: tuple = FRACTIONS
    methods: str = "simclr"  #: SSL methods (comma-separated): simclr (ResNet-18), mae (ViT); baselines follow them
    vit: str = "vit_tiny"  #: MAE encoder (192-dim tokens, 3 heads)
    vit_layers: int = 6  #: transformer blocks of the ViT (vit_tiny has 12; 6 halves the CPU cost on 28² inputs)
    patch: int = 4  #: ViT patch side (28 → a 7×7 grid of 49 tokens)
    mae_epochs: int = 24
    mae_lr: float = 1e-3
    vit_ft_lr: float = 5e-4  #: fine-tuning lr of the ViT rows (MAE and from scratch; MAE paper: 5e-4 per 256 images)


DEFAULTS = {
    "pneumonia": Budget(),
    "adrenal": Budget(width=8, conv1_stride=2, ssl_epochs=8, ssl_batch=64, preset="ct", ft_epochs=10, ft_batch=32),
    "adrenal64": Budget(width=8, conv1_stride=2, ssl_epochs=8, ssl_batch=64, crop=64, preset="ct", ft_epochs=10,
                        ft_batch=32),
}
QUICK = {"pneumonia": {"width": 8, "ssl_epochs": 1, "ssl_batch": 64, "ft_epochs": 1, "limit": 256, "fractions": (0.1, 1.0),
                       "vit_layers": 1, "mae_epochs": 1},
         "adrenal": {"width": 4, "ssl_epochs": 1, "ssl_batch": 16, "ft_epochs": 1, "limit": 48, "fractions": (0.25, 1.0)},
         "adrenal64": {"width": 4, "ssl_epochs": 1, "ssl_batch": 8, "ft_epochs": 1, "limit": 24, "fractions": (1.0,)}}


class Images(Dataset):
    """Items ``{"image": (C, *S) float32 in [0, 1]}`` (+ ``"label"`` when labels are given)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None) -> None:
        self.images, self.labels = torch.from_numpy(images), labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        item = {"image": self.images[i]}
        if self.labels is not None:
            item["label"] = torch.tensor(int(self.labels[i]))
        return item


def load_splits(dataset: str, data_root: Path, limit: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Official train / val / test splits of the shared card: ``{split: (images (N, 1, *S), labels (N,))}``."""
    card = load_card(CARDS[dataset])
    path = Path(data_root) / Path(card.root).name / NPZ.get(dataset, card.npz)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (data card {card.name}); pass --data-root to the folder that holds "
                                f"{Path(card.root).name}/ (default ../shared/data)")
    out = {}
    for split in ("train", "val", "test"):
        x, y = load_medmnist_split(path, split)
        y = y.reshape(-1)
        if limit:  # class-balanced enough for a smoke run: every limit-th image of a shuffled order
            keep = np.sort(np.random.default_rng(0).permutation(len(y))[:limit])
            x, y = x[keep], y[keep]
        out[split] = (np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int64))
    return out


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


def fit(method, train_x: np.ndarray, opts: TrainerOptions, run_dir: Path, device: str, resume: bool = False) -> dict:
    """Pretrain ``method`` on ``train_x`` (:func:`seed_runs.fit_resumable`)."""
    return fit_resumable(Trainer(method, Images(train_x), run_dir, opts, torch.device(device)), resume)


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
    return {"encoder": method.encoder, "summary": fit(method, train_x, opts, run_dir, device, resume)}


def pretrain_simclr(train_x: np.ndarray, spatial_dims: int, b: Budget, seed: int, run_dir: Path, device: str,
                    resume: bool = False) -> dict:
    """SimCLR on the training images (no labels). Returns the encoder and the trainer summary."""
    encoder = make_encoder(spatial_dims, b, seed)
    views = build_view_pipeline(b.preset, spatial_dims, (b.crop,) * spatial_dims)
    method = SimCLR(encoder, LOSSES.get("ntxent")(temperature=0.1), views, proj_hidden_dim=4 * encoder.out_dim,
                    proj_dim=64)
    opts = TrainerOptions(epochs=b.ssl_epochs, batch_size=b.ssl_batch, lr=b.ssl_lr, weight_decay=1e-4,
                          warmup_epochs=min(1.0, b.ssl_epochs / 4), keep_checkpoints=1, seed=seed, progress=False)
    return {"encoder": method.encoder, "summary": fit(method, train_x, opts, run_dir, device, resume)}


def score(y: np.ndarray, p1: np.ndarray, seed: int, n_boot: int) -> dict:
    """Test AUC (positive-class score ``p1``) and ACC (p1 ≥ 0.5) with 95 % bootstrap intervals."""
    pred = (p1 >= 0.5).astype(int)
    return {"auc": M.binary_auc(y, p1), "acc": _accuracy(y, pred),
            "auc_ci": list(M.bootstrap_ci(M.binary_auc, y, p1, n_boot=n_boot, seed=seed)),
            "acc_ci": list(M.bootstrap_ci(_accuracy, y, pred, n_boot=n_boot, seed=seed)), "n_test": len(y)}


def _accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(y == pred))


def linear_probe(feats: dict, rows: np.ndarray, seed: int, n_boot: int) -> dict:
    """Standardisation + logistic regression on ``rows`` of train; C by validation AUC; scored on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (xt, yt), (xv, yv), (xs, ys) = feats["train"], feats["val"], feats["test"]
    xt, yt = xt[rows], yt[rows]
    best = (-math.inf, None, None)
    for c in PROBE_CS:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, random_state=seed)).fit(xt, yt)
        auc = M.binary_auc(yv, model.predict_proba(xv)[:, 1])
        if auc > best[0]:
            best = (auc, c, model)
    out = score(ys, best[2].predict_proba(xs)[:, 1], seed, n_boot)
    out.update(C=best[1], val_auc=best[0], n_train=len(rows))
    return out


def ft_augment(spatial_dims: int, size: int):
    """Fine-tuning augmentation: a small affine (±10°, scale 0.9–1.1, shift 5 %) at the input size; flips on
    all axes for the 3D shape masks only (a left-right flip of a chest X-ray swaps the heart's side)."""
    flips = {"flip_prob": 0.5} if spatial_dims == 3 else {}
    return build_view_pipeline("none", spatial_dims, (size,) * spatial_dims,
                               {"affine_prob": 0.8, "rotate": 10.0, "scale": (0.9, 1.1), "translate": 0.05, **flips})


def few_label_epochs(b: Budget, fraction: float) -> int:
    """More passes over fewer labels (about the same number of optimiser steps as ~1/√fraction)."""
    return int(min(30, round(b.ft_epochs / math.sqrt(fraction))))


def finetune_score(encoder, data: dict, rows: np.ndarray, b: Budget, fraction: float, seed: int, device: str,
                   n_boot: int, lr: float = 0.0, encoder_lrs: tuple = ()) -> dict:
    """Full fine-tuning on ``rows`` of train (head learning rate ``lr``, default ``b.ft_lr``), early stopping on
    the official val loss, scored once on test.

    With several ``encoder_lrs`` (default: the head's), each starts from the same ``encoder`` weights and the
    one with the best official-val AUC is scored; the test split is never seen by the choice.
    """
    (xt, yt), (xv, yv), (xs, ys) = data["train"], data["val"], data["test"]
    epochs = few_label_epochs(b, fraction)
    lr = lr or b.ft_lr
    augment = ft_augment(xt.ndim - 2, xt.shape[-1]) if b.ft_augment else None
    t0 = time.time()
    opts = FinetuneOptions(task="classification", mode="full", lr_head=lr, epochs=epochs, batch_size=b.ft_batch,
                           patience=max(b.patience, epochs // 4), device=device, seed=seed, head_init=b.ft_head_init)
    result, val_auc = finetune_encoder_lrs(encoder, Images(xt[rows]), yt[rows], Images(xv), yv, encoder_lrs or (lr,),
                                           opts, augment, lambda r: M.binary_auc(yv, predict(r, Images(xv))[:, 1]),
                                           maximise=True)  # each run trains a copy of the encoder
    lr_encoder = result.options.lr_encoder
    out = score(ys, predict(result, Images(xs))[:, 1], seed, n_boot)
    out.update(best_epoch=result.best_epoch, epochs_run=len(result.history), n_train=len(rows),
               seconds=round(time.time() - t0, 1), history=result.history, lr_encoder=lr_encoder,
               val_auc=val_auc[lr_encoder])
    if len(val_auc) > 1:
        out["val_auc_per_encoder_lr"] = {str(k): v for k, v in val_auc.items()}
    return out


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


def run_seed(data: dict, dataset: str, b: Budget, seed: int, out_dir: Path, device: str, n_boot: int,
             peers: tuple = (), resume: bool = False) -> dict:
    spatial_dims, size = data["train"][0].ndim - 2, data["train"][0].shape[-1]
    methods = method_names(b)
    t0 = time.time()
    res, encoders, ft_lr = {"seed": seed, "few_label": {}}, {}, {}
    if "simclr" in methods:
        ssl = pretrain_simclr(data["train"][0], spatial_dims, b, seed, out_dir / f"simclr_seed{seed}", device,
                              resume)
        res["ssl_pretrain"] = {"seconds": round(time.time() - t0, 1), **ssl["summary"]}
        encoders.update(ssl=ssl["encoder"], random=make_encoder(spatial_dims, b, 10_000 + seed))
        ft_lr.update(**({"ssl_finetune": ("ssl", b.ft_lr, b.ft_encoder_lrs)} if b.ssl_finetune else {}),
                     **({"scratch": ("random", b.ft_lr, b.ft_encoder_lrs)} if b.scratch else {}))
    if "mae" in methods:
        t1 = time.time()
        mae = pretrain_mae(data["train"][0], spatial_dims, b, seed, out_dir / f"mae_seed{seed}", device, resume)
        res["mae_pretrain"] = {"seconds": round(time.time() - t1, 1), **mae["summary"]}
        encoders.update(mae=mae["encoder"], random_vit=make_vit(spatial_dims, size, b, 10_000 + seed))
        ft_lr.update(**({"mae_finetune": ("mae", b.vit_ft_lr, ())} if b.ssl_finetune else {}),
                     **({"vit_scratch": ("random_vit", b.vit_ft_lr, ())} if b.scratch else {}))
    peer_runs = pretrain_peers(data["train"][0], spatial_dims, b, seed, device, peers)
    encoders.update({f"peer:{name}": run["encoder"] for name, run in peer_runs.items()})
    probe_key = {"ssl": "ssl_probe", "random": "random_probe", "mae": "mae_probe", "random_vit": "random_vit_probe",
                 **{f"peer:{n}": f"{n}_probe" for n in peer_runs}}
    feats = {}
    for name, enc in encoders.items():
        feats[name] = {s: (extract_features(enc, Images(x), 256, device)["features"], y) for s, (x, y) in data.items()}
    y_train = data["train"][1]
    all_rows = np.arange(len(y_train))
    if peer_runs:
        res["peer_pretrain"] = {name: {"seconds": run["seconds"], "history": run["history"],
                                       "encoder_kwargs": peer_encoder_kwargs(b)} for name, run in peer_runs.items()}
    for fraction in b.fractions:
        rows = all_rows if fraction >= 1 else subsample_subjects(all_rows, all_rows.astype(str), fraction, seed, y=y_train)
        point = {"n_train": len(rows),
                 **{probe_key[name]: linear_probe(f, rows, seed, n_boot) for name, f in feats.items()},
                 **{key: finetune_score(encoders[enc], data, rows, b, fraction, seed, device, n_boot, lr, enc_lrs)
                    for key, (enc, lr, enc_lrs) in ft_lr.items()}}
        res["few_label"][str(fraction)] = point
        print(f"  seed {seed} labels {fraction:>5.0%} (n={len(rows)}): "
              + "  ".join(f"{k} AUC {v['auc']:.3f}" for k, v in point.items() if isinstance(v, dict)), flush=True)
    res["seconds"] = round(time.time() - t0, 1)
    return res


ROWS = (("ssl_probe", "SimCLR + linear probe"), ("ssl_finetune", "SimCLR + fine-tuning"),
        ("random_probe", "random init + linear probe"), ("scratch", "supervised from scratch (same CNN)"),
        ("mae_probe", "MAE (ViT) + linear probe"), ("mae_finetune", "MAE (ViT) + fine-tuning"),
        ("random_vit_probe", "random-init ViT + linear probe"), ("vit_scratch", "supervised from scratch (same ViT)"))
#: bar / curve colour of each row (SSL blue/orange, baselines grey/red, peers from C4 on)
COLOURS = {"ssl_probe": "C0", "ssl_finetune": "C1", "random_probe": "C7", "scratch": "C3", "mae_probe": "C9",
           "mae_finetune": "C8", "random_vit_probe": "0.75", "vit_scratch": "C6"}


def peer_names(per_seed: list[dict]) -> list[str]:
    """Peers scored in every seed (``per_seed[i]["peer_pretrain"]``), in run order."""
    names = [set(s.get("peer_pretrain", {})) for s in per_seed]
    return [n for n in per_seed[0].get("peer_pretrain", {}) if all(n in x for x in names)]


def table_rows(per_seed: list[dict]) -> tuple:
    """The :data:`ROWS` this run scored (they follow its ``methods``) plus one ``("<peer>_probe",
    "<peer> + linear probe")`` row per peer."""
    scored = next(iter(per_seed[0]["few_label"].values()))
    return (tuple(r for r in ROWS if r[0] in scored)
            + tuple((f"{n}_probe", f"{n} + linear probe") for n in peer_names(per_seed)))


def summarise(per_seed: list[dict], fraction: str = "1.0") -> dict:
    """``{row: {"auc_mean", "auc_sd", "acc_mean", "acc_sd", "auc_per_seed", …}}`` at one label fraction."""
    out = {}
    for key, _ in table_rows(per_seed):
        for m in ("auc", "acc"):
            v = np.array([s["few_label"][fraction][key][m] for s in per_seed], float)
            out.setdefault(key, {})[f"{m}_per_seed"] = v.round(4).tolist()
            out[key][f"{m}_mean"] = float(v.mean())
            out[key][f"{m}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
    return out


def format_table(dataset: str, summary: dict, n_seeds: int, rows: tuple = ROWS) -> str:
    lines = [f"| method ({dataset}, test split, {n_seeds} seed(s)) | AUC | ACC |", "|---|---|---|"]
    lines += [f"| {label} | {_mean_sd(summary[key]['auc_per_seed'])} | {_mean_sd(summary[key]['acc_per_seed'])} |"
              for key, label in rows]
    lines += [f"| {name} (published) | {auc:.3f} | {acc:.3f} |" for name, (auc, acc) in PAPER[dataset].items()]
    return "\n".join(lines)


def _mean_sd(values: list[float]) -> str:
    """``mean ± SD`` (sample SD); the mean alone for a single value (no fake ± 0)."""
    v = np.asarray(values, float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def format_curve(per_seed: list[dict], fractions) -> str:
    rows = table_rows(per_seed)
    keys = [k for k, _ in rows]
    lines = ["| labels | n train | " + " | ".join(f"{label} AUC" for _, label in rows) + " |",
             "|---|---|" + "---|" * len(rows)]
    for f in fractions:
        pts = [s["few_label"][str(f)] for s in per_seed]
        lines.append(f"| {f:.0%} | {pts[0]['n_train']} | "
                     + " | ".join(_mean_sd([p[k]["auc"] for p in pts]) for k in keys) + " |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Left: test AUC at 100 % labels (mean ± SD over seeds) with the published numbers; right: few-label curve
    (or, with one label fraction, each seed's AUC)."""
    plt = pyplot()

    ds, summ, per_seed = result["dataset"], result["summary"], result["per_seed"]
    rows, peers = table_rows(per_seed), peer_names(per_seed)
    fig, (a, c) = plt.subplots(1, 2, figsize=(11, 4 + 0.35 * len(peers)))
    labels = [lab for _, lab in rows]
    means = [summ[k]["auc_mean"] for k, _ in rows]
    sds = [0 if math.isnan(summ[k]["auc_sd"]) else summ[k]["auc_sd"] for k, _ in rows]
    colours = [COLOURS.get(k, f"C{4 + i % 4}") for i, (k, _) in enumerate(rows)]
    a.barh(range(len(rows)), means, xerr=sds, color=colours, alpha=0.8)
    for (name, (auc, _)), style in zip(PAPER[ds].items(), ("--", ":")):
        a.axvline(auc, color="k", ls=style, label=name)
    for name, t in TARGETS[ds].items():
        a.axvline(t, color="C2", ls="-", lw=0.8, alpha=0.6)
    a.set_yticks(range(len(rows)), labels)
    a.invert_yaxis()  # table order, top to bottom
    a.set_xlim(min(means + [v[0] for v in PAPER[ds].values()]) - 0.05, 1.0)
    a.set_xlabel("test AUC (green: issue targets)")
    a.legend(fontsize=7, loc="lower right")
    a.set_title(f"{ds}MNIST: 100 % labels, {len(per_seed)} seed(s)")
    fr = result["budget"]["fractions"]
    if len(fr) == 1:  # no curve to draw: each seed's AUC per row instead
        for i, ((key, label), col) in enumerate(zip(rows, colours)):
            c.scatter([s["few_label"][str(fr[0])][key]["auc"] for s in per_seed], [i] * len(per_seed), color=col)
        c.set_yticks(range(len(rows)), [""] * len(rows))
        c.invert_yaxis()
        c.set_xlabel("test AUC")
        c.set_title(f"each seed ({fr[0]:.0%} labels)")
    else:
        for (key, label), col in zip(rows, colours):
            v = np.array([[s["few_label"][str(f)][key]["auc"] for f in fr] for s in per_seed])
            c.errorbar(fr, v.mean(0), yerr=v.std(0, ddof=1) if len(v) > 1 else None, marker="o", label=label, color=col,
                       capsize=3)
        c.set_xscale("log")
        c.set_xticks(fr, [f"{f:.0%}" for f in fr])
        c.set_xlabel("fraction of training labels")
        c.set_ylabel("test AUC")
        c.legend(fontsize=8)
        c.set_title("few-label curve (mean ± SD over seeds)")
    save_figure(fig, path)


def merge_runs(paths: list[str], dataset: str) -> tuple[list[dict], Budget, bool, dict, dict]:
    """Per-seed results of earlier result JSONs (checked to share dataset and budget) sorted by seed, their
    budget, quick flag, ``{path: wall seconds}`` and the first run's machine record."""
    per_seed, results = merge_seeds(paths, same=("dataset", "budget", "quick"))
    if results[0]["dataset"] != dataset:
        raise SystemExit(f"--merge {paths[0]}: dataset {results[0]['dataset']!r}, not --dataset {dataset!r}")
    budget = {**results[0]["budget"], "fractions": tuple(results[0]["budget"]["fractions"])}
    walls = {p: r["wall_seconds"] for p, r in zip(paths, results)}
    return per_seed, Budget(**budget), results[0]["quick"], walls, results[0]["machine"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=sorted(CARDS), required=True)
    add_data_root(p, "medmnist_*")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (subset, 1 epoch, narrow CNN)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--out", default="", help="run folder (checkpoints, result.json); default runs/medmnist_<dataset>")
    p.add_argument("--json", default="", help="also write the result JSON here")
    p.add_argument("--figure", default="", help="figure path (default docs/img/medmnist_<dataset>[_mae][_peers].png; "
                                                "--quick: <out>/medmnist_<dataset>.png)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--merge", nargs="+", default=[], metavar="JSON",
                   help="no training: merge the per-seed results of earlier runs (same dataset and budget) into one "
                        "table, JSON and figure (e.g. seeds run as parallel processes)")
    p.add_argument("--resume", action="store_true",
                   help="continue SSL pretraining from the latest checkpoint in <out>/<method>_seed<S>/checkpoints "
                        "(after a SIGTERM stop; a finished run's encoder is reused without further steps)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a Budget field, e.g. ssl_epochs=20")
    p.add_argument("--peers", nargs="*", default=[], metavar="PEER",
                   help="also run these peer SimCLR recipes (benchmarks/peers: monai_stock, lightly, nidl) with the same "
                        "SSL budget and score them with the same linear probe; a peer that cannot run here is skipped "
                        "with its reason")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    b = apply_set(replace(DEFAULTS[a.dataset], **(QUICK[a.dataset] if a.quick else {})), a.set)
    method_names(b)  # fail on a typo before loading data
    if 1.0 not in b.fractions or not all(0 < f <= 1 for f in b.fractions):  # the table and figure are at 100 %
        raise SystemExit(f"--set fractions={','.join(map(str, b.fractions))}: label fractions must lie in (0, 1] and "
                         "include 1.0 (the table's 100 % row), e.g. fractions=0.1,1.0")
    try:
        FinetuneOptions(head_init=b.ft_head_init)
    except ValueError as e:
        raise SystemExit(f"--set ft_head_init={b.ft_head_init}: {e}") from None
    out = Path(a.out or REPO / "runs" / f"medmnist_{a.dataset}{'_quick' if a.quick else ''}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if a.merge:
        per_seed, b, a.quick, walls, merged_machine = merge_runs(a.merge, a.dataset)
        a.seeds = [s["seed"] for s in per_seed]
    else:
        data = load_splits(a.dataset, Path(a.data_root), b.limit)
        peers, skipped = usable(a.peers, data["train"][0].ndim - 2)
        print(f"{a.dataset}MNIST: train/val/test = {', '.join(str(len(v[1])) for v in data.values())}; "
              f"budget {asdict(b)}" + "".join(f"\n  peer {k} skipped: {v}" for k, v in skipped.items()), flush=True)
        per_seed = [run_seed(data, a.dataset, b, s, out, a.device, a.n_boot, peers, a.resume) for s in a.seeds]
    summary = summarise(per_seed)
    result = {"dataset": a.dataset, "card": CARDS[a.dataset], "budget": asdict(b), "seeds": a.seeds,
              "summary": summary, "published": {k: {"auc": v[0], "acc": v[1]} for k, v in PAPER[a.dataset].items()},
              "targets": TARGETS[a.dataset], "per_seed": per_seed, "quick": a.quick,
              "machine": machine(a.device),
              "command": command_line("medmnist.py", argv),
              "wall_seconds": round(time.time() - t0, 1)}
    if a.peers and not a.merge:
        result.update(peers=peer_names(per_seed), peers_skipped=skipped)
        result["machine"]["peer_packages"] = versions()
    if a.merge:
        result.update(merged_from=a.merge, wall_seconds_per_run=walls,
                      machine={**merged_machine, "note": "merged from separate runs"})
    suffix = "".join(f"_{m}" for m in method_names(b) if m != "simclr") + ("_peers" if peer_names(per_seed) else "")
    fig = Path(a.figure) if a.figure else (out if a.quick else REPO / "docs" / "img") / f"medmnist_{a.dataset}{suffix}.png"
    plot(result, fig)
    result["figure"] = str(fig)
    write_result(result, out, a.json)
    m = result["machine"]
    wall = (f"wall time per merged run {', '.join(f'{v:.0f} s' for v in result['wall_seconds_per_run'].values())}"
            if a.merge else f"wall time {result['wall_seconds']:.0f} s")
    print(f"\n{format_table(a.dataset, summary, len(a.seeds), table_rows(per_seed))}\n\nfew-label curve (test AUC, mean ± SD over seeds)\n"
          f"{format_curve(per_seed, b.fractions)}\n\nbudget: {asdict(b)}\n{wall} on {m['device']} "
          f"({m['torch_threads']} torch thread(s)); JSON {out / 'result.json'}; figure {fig}")
    return result


if __name__ == "__main__":
    main()
