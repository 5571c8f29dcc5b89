"""Composition root: configuration → components → ``pretrain`` / ``evaluate`` / ``demo``.

This is the only module that reads a :class:`~medssl.config.RunConfig`; every component it
builds takes plain arguments and is usable alone.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medssl.config import ConfigError, RunConfig, config_hash, load_config, save_config, to_dict
from medssl.data.card import load_card
from medssl.data.dataset import CachedScans, MetadataCoder
from medssl.data.manifest import Record, build_manifest, write_manifest
from medssl.data.prepare import cache_records, make_loader, make_preprocessor
from medssl.data.splits import assign_splits
from medssl.encoders import build_encoder
from medssl.eval.features import extract_features
from medssl.eval.probes import classification_probe, mean_predictor_mae, regression_probe
from medssl.eval.report import format_table, write_report
from medssl.registry import LOSSES, METHODS
from medssl.train.trainer import Trainer, TrainerOptions, resolve_device
from medssl.transforms.views import build_view_pipeline

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class PreparedData:
    """Records of a run with their cached arrays and the subject-level split."""

    records: list[Record]
    images: np.ndarray  #: (N, C, *shape) memory-mapped
    train: list[int]  #: indices of usable training records
    test: list[int]  #: indices of usable held-out records
    coder: MetadataCoder
    skipped: list[dict]


def prepare_data(cfg: RunConfig, run_dir: Path, progress: bool = True) -> PreparedData:
    """Card → manifest → subject split → preprocessing cache (built once, then memory-mapped).

    Official splits of the card are kept; the other subjects are split per subject (seeded
    by ``cfg.seed``, stratified by site and label). The records with their split are saved
    as ``run_dir/manifest.tsv``. The cache (``data.cache_dir`` or ``run_dir/cache``) is
    built with ``max(1, data.num_workers)`` processes and reused when its fingerprint
    matches (e.g. one written by ``medssl data prepare``). With ``data.on_bad_file=skip``
    every skipped file and its reason is written to ``run_dir/skipped_files.json``.
    """
    card = load_card(cfg.data.card)
    nd = card.dimensionality
    if len(cfg.data.shape) != nd or cfg.encoder.spatial_dims != nd:
        raise ConfigError(f"data card {card.name!r} is {nd}D but data.shape={list(cfg.data.shape)} and "
                          f"encoder.spatial_dims={cfg.encoder.spatial_dims}; set both for {nd}D images "
                          f"(e.g. data.shape=[{','.join(['64'] * nd)}] encoder.spatial_dims={nd})")
    records = build_manifest(card, cfg.data.root or None, check_files=cfg.data.on_bad_file == "error")
    if cfg.data.limit:
        records = records[: cfg.data.limit]
    for r, s in zip(records, assign_splits(records, cfg.data.test_fraction, cfg.seed, stratify=("site", "label"))):
        r.split = s
    write_manifest(records, run_dir / "manifest.tsv")
    pre = make_preprocessor(card, cfg.data.shape, cfg.data.spacing, cfg.data.normalise)
    loader = make_loader(card, pre, cfg.encoder.in_channels, cfg.data.root or None)
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else run_dir / "cache"
    cache = cache_records(records, loader, cache_dir, on_bad_file=cfg.data.on_bad_file,
                          workers=max(1, cfg.data.num_workers), progress=progress)
    if cache.skipped:
        (run_dir / "skipped_files.json").write_text(json.dumps(cache.skipped, indent=2))
        print(f"skipped {len(cache.skipped)} bad file(s); see {run_dir / 'skipped_files.json'}")
    ok = [i for i in range(len(records)) if cache.valid[i]]
    train = [i for i in ok if records[i].split == "train"]
    test = [i for i in ok if records[i].split == "test"]
    return PreparedData(records, cache.images, train, test, MetadataCoder(records), cache.skipped)


def build_method(cfg: RunConfig) -> torch.nn.Module:
    """Encoder + method (+ loss + views) from the config."""
    method_cls = METHODS.get(cfg.method.name)
    encoder = build_encoder(cfg.encoder.name, cfg.encoder.spatial_dims, cfg.encoder.in_channels, **cfg.encoder.options)
    if not getattr(method_cls, "default_loss", ""):  # generative methods (MAE, Models Genesis): own options
        return method_cls(encoder=encoder, **cfg.method.options)
    loss_opts = dict(cfg.method.loss)
    loss = LOSSES.get(loss_opts.pop("name", method_cls.default_loss))(**loss_opts)
    views = build_view_pipeline(preset=cfg.augment.preset, spatial_dims=cfg.encoder.spatial_dims,
                                crop_size=tuple(cfg.augment.crop_size), overrides=dict(cfg.augment.overrides))
    uses = method_cls.uses
    label_keys = cfg.method.metadata if uses == "metadata" else (["label"] if uses == "class" and cfg.method.label_column else [])
    fairkl = LOSSES.get("fairkl")() if cfg.method.fairkl_weight > 0 else None
    return method_cls(encoder, loss, views, n_views=cfg.method.n_views, proj_hidden_dim=cfg.method.proj_hidden_dim,
                      proj_dim=cfg.method.proj_dim, label_keys=label_keys, continuous=uses == "metadata",
                      fairkl=fairkl, fairkl_weight=cfg.method.fairkl_weight, bias_key=cfg.method.bias_column)


def _pretrain_indices(cfg: RunConfig, data: PreparedData, run_dir: Path) -> list[int]:
    """Training records usable by the method; scans lacking required metadata are listed, not hidden."""
    if METHODS.get(cfg.method.name).uses != "metadata":
        return data.train
    keep, dropped = [], []
    for i in data.train:
        r = data.records[i]
        missing = [k for k in cfg.method.metadata if k == "age" and math.isnan(r.age) or k != "age" and not getattr(r, k)]
        (dropped if missing else keep).append(i)
    if dropped:
        path = run_dir / "excluded_from_pretraining.tsv"
        path.write_text("path\treason\n" + "".join(f"{data.records[i].path}\tmissing {cfg.method.metadata}\n" for i in dropped))
        print(f"{len(dropped)} training scan(s) lack {cfg.method.metadata} and are not used for pretraining; see {path}")
    return keep


def _build_monitor(cfg: RunConfig, data: PreparedData, device: torch.device):
    """Online probe for ``train.monitor_every``: Ridge on age (or logistic on label) fitted on 80% of the
    TRAINING subjects and scored on the other 20% (never on the test split). Lower ``best_metric`` is better."""
    if not cfg.train.monitor_every:
        return None
    records = [data.records[i] for i in data.train]
    inner = subject_split(records, 0.2, cfg.seed + 1, stratify="site")
    fit_idx = [i for i, s in zip(data.train, inner) if s == "train"]
    val_idx = [i for i, s in zip(data.train, inner) if s == "test"]
    fit_ds, val_ds = (CachedScans(data.images, data.records, idx, data.coder) for idx in (fit_idx, val_idx))
    target = "age" if not all(math.isnan(r.age) for r in records) else "label"

    def monitor(encoder: torch.nn.Module) -> dict:
        a, b = (extract_features(encoder, ds, cfg.eval.batch_size, device) for ds in (fit_ds, val_ds))
        if target == "age":
            ok_a, ok_b = ~np.isnan(a["age"]), ~np.isnan(b["age"])
            mae = regression_probe(a["features"][ok_a], a["age"][ok_a], b["features"][ok_b], b["age"][ok_b])["mae"]
            return {"val_age_mae": mae, "best_metric": mae}
        bacc = classification_probe(a["features"], a["label"], b["features"], b["label"], cfg.seed)["balanced_accuracy"]
        return {"val_label_bacc": bacc, "best_metric": -bacc}

    return monitor


def pretrain(cfg: RunConfig, progress: bool = True) -> Path:
    """Pretrain per ``cfg``; writes the run directory and returns its path.

    Under ``torchrun`` every process calls this; rank 0 prepares the data cache and writes
    files while the others wait, then all train together (DDP).
    """
    from medssl.train.distributed import barrier, init_distributed

    dist_info, device = init_distributed(resolve_device(cfg.train.device))
    run_dir = Path(cfg.output_dir)
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        data = prepare_data(cfg, run_dir, progress)
    barrier(dist_info)
    if not dist_info.is_main:
        data = prepare_data(cfg, run_dir, progress=False)  # the cache exists now: memory-mapped, not rebuilt
    torch.manual_seed(cfg.seed)
    method = build_method(cfg)
    dataset = CachedScans(data.images, data.records, _pretrain_indices(cfg, data, run_dir), data.coder)
    t = cfg.train
    opts = TrainerOptions(epochs=t.epochs, batch_size=t.batch_size, grad_accum_steps=t.grad_accum_steps,
                          optimizer=t.optimizer, lr=t.lr, weight_decay=t.weight_decay, momentum=t.momentum,
                          warmup_epochs=t.warmup_epochs, grad_clip=t.grad_clip, precision=t.precision,
                          keep_checkpoints=t.keep_checkpoints, checkpoint_every=t.checkpoint_every,
                          monitor_every=t.monitor_every, num_workers=cfg.data.num_workers, seed=cfg.seed,
                          progress=progress and t.progress)
    trainer = Trainer(method, dataset, run_dir, opts, device, config=to_dict(cfg), dist_info=dist_info,
                      monitor=_build_monitor(cfg, data, device) if dist_info.is_main else None)
    if trainer.resume(t.resume) and dist_info.is_main:
        print(f"resumed at step {trainer.step}/{trainer.total_steps}")
    summary = trainer.fit()
    if dist_info.is_main:
        (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    barrier(dist_info)
    return run_dir


def _probe_all(features: dict, train_mask: np.ndarray, targets: list[str], seed: int) -> dict:
    out = {}
    x = features["features"]
    for target in targets:
        y = features[target]
        valid = ~np.isnan(y) if target == "age" else y >= 0
        tr, te = train_mask & valid, ~train_mask & valid
        if tr.sum() < 5 or te.sum() < 2 or (target != "age" and len(np.unique(y[tr])) < 2):
            continue
        if target == "age":
            out[target] = regression_probe(x[tr], y[tr], x[te], y[te])
        else:
            out[target] = classification_probe(x[tr], y[tr].astype(int), x[te], y[te].astype(int), seed)
    return out


def load_run_encoder(run_dir: str | Path) -> tuple[RunConfig, torch.nn.Module]:
    """The pretrained encoder of a run (latest checkpoint), with the run's config."""
    from medssl.train.checkpoint import list_checkpoints, load_checkpoint

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    ckpts = list_checkpoints(run_dir / "checkpoints")
    if not ckpts:
        raise FileNotFoundError(f"{run_dir}/checkpoints holds no checkpoint; run `medssl pretrain` first")
    method = build_method(cfg)
    method.load_state_dict(load_checkpoint(ckpts[-1])["model"])
    return cfg, method.encoder


def evaluate(run_dir: str | Path, progress: bool = True) -> dict:
    """Linear probes (age, site, …) for the run's encoder and a random-init twin; writes the report."""
    run_dir = Path(run_dir)
    cfg, encoder = load_run_encoder(run_dir)
    data = prepare_data(cfg, run_dir, progress=False)
    idx = data.train + data.test
    ds = CachedScans(data.images, data.records, idx, data.coder)
    train_mask = np.array([data.records[i].split == "train" for i in idx])
    device = resolve_device(cfg.train.device)
    encoders = {"pretrained": encoder}
    if cfg.eval.random_init_baseline:
        torch.manual_seed(cfg.seed)
        encoders["random init"] = build_encoder(cfg.encoder.name, cfg.encoder.spatial_dims, cfg.encoder.in_channels,
                                                **cfg.encoder.options)
    results: dict = {"probes": {}, "baselines": {}}
    for name, enc in encoders.items():
        feats = extract_features(enc, ds, cfg.eval.batch_size, device, progress)
        results["probes"][name] = _probe_all(feats, train_mask, list(cfg.eval.targets), cfg.seed)
    ages = feats["age"]
    if "age" in cfg.eval.targets and not np.isnan(ages).all():
        ok = ~np.isnan(ages)
        results["baselines"]["mean_predictor_mae"] = mean_predictor_mae(ages[train_mask & ok], ages[~train_mask & ok])
        results["test_age"] = ages[~train_mask & ok]
    results["info"] = {"method": cfg.method.name, "encoder": cfg.encoder.name, "train subjects": len(data.train),
                       "test subjects": len(data.test), "sites": len(data.coder.vocab["site"]), "config hash": config_hash(cfg)}
    results["skipped_files"] = data.skipped
    write_report(run_dir, results)
    return results


def demo(out_dir: str | Path = "demo_run", overrides: tuple[str, ...] = (), subjects: int = 300) -> dict:
    """The end-to-end walking skeleton on a freshly written synthetic multi-site cohort."""
    from medssl.data.synthetic import write_synthetic_cohort

    t0 = time.time()
    out_dir = Path(out_dir)
    cfg = load_config(REPO_ROOT / "configs" / "pretrain" / "demo.yaml",
                      [f"output_dir={out_dir / 'run'}", f"data.root={out_dir / 'cohort'}", *overrides])
    shape = tuple(cfg.data.shape)
    cohort = out_dir / "cohort"
    if not (cohort / "participants.tsv").exists():
        print(f"[1/4] writing a synthetic cohort of {subjects} subjects ({'x'.join(map(str, shape))}) to {cohort}")
        write_synthetic_cohort(cohort, n_subjects=subjects, n_sites=3, shape=shape, seed=cfg.seed, progress=True)
    print(f"[2/4] pretraining {cfg.encoder.name} with {cfg.method.name} for {cfg.train.epochs} epochs")
    run_dir = pretrain(cfg)
    print("[3/4] linear probes on frozen embeddings: pretrained vs random init")
    results = evaluate(run_dir, progress=False)
    print("[4/4] report written to", run_dir / "report.md")
    print(format_table(results))
    print(f"total time {time.time() - t0:.0f} s")
    return results
