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

from medssl.config import RunConfig, config_hash, load_config, save_config, to_dict
from medssl.data.cache import build_cache
from medssl.data.card import load_card
from medssl.data.dataset import CachedScans, MetadataCoder
from medssl.data.manifest import Record, build_manifest, write_manifest
from medssl.data.splits import subject_split
from medssl.encoders import build_encoder
from medssl.eval.features import extract_features
from medssl.eval.probes import classification_probe, mean_predictor_mae, regression_probe
from medssl.eval.report import format_table, write_report
from medssl.io.errors import BadFileError
from medssl.io.read import read_image
from medssl.registry import LOSSES, METHODS
from medssl.train.trainer import Trainer, TrainerOptions, resolve_device
from medssl.transforms.preprocess import Preprocessor
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
    """Card → manifest → subject split → preprocessing cache (built once, then memory-mapped)."""
    card = load_card(cfg.data.card)
    records = build_manifest(card, cfg.data.root or None, check_files=cfg.data.on_bad_file == "error")
    if cfg.data.limit:
        records = records[: cfg.data.limit]
    splits = subject_split(records, cfg.data.test_fraction, cfg.seed, stratify="site")
    for r, s in zip(records, splits):
        r.split = r.split or s
    write_manifest(records, run_dir / "manifest.tsv")
    pre = Preprocessor(shape=list(cfg.data.shape), spacing=list(cfg.data.spacing), normalise=cfg.data.normalise)
    in_ch = cfg.encoder.in_channels
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else run_dir / "cache"

    def load(path: str) -> np.ndarray:
        volume = read_image(path)
        if volume.spatial_dims != card.dimensionality or volume.array.shape[0] != in_ch:
            raise BadFileError(path, f"image is {volume.spatial_dims}D with {volume.array.shape[0]} channel(s); card "
                               f"{card.name!r} expects {card.dimensionality}D and encoder.in_channels={in_ch}")
        return pre(volume)

    cache = build_cache([r.path for r in records], load, (in_ch, *cfg.data.shape), cache_dir,
                        settings=pre.fingerprint(), on_bad_file=cfg.data.on_bad_file, progress=progress)
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


def pretrain(cfg: RunConfig, progress: bool = True) -> Path:
    """Pretrain per ``cfg``; writes the run directory and returns its path."""
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    torch.manual_seed(cfg.seed)
    data = prepare_data(cfg, run_dir, progress)
    method = build_method(cfg)
    dataset = CachedScans(data.images, data.records, _pretrain_indices(cfg, data, run_dir), data.coder)
    t = cfg.train
    opts = TrainerOptions(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
                          warmup_epochs=t.warmup_epochs, grad_clip=t.grad_clip, precision=t.precision,
                          keep_checkpoints=t.keep_checkpoints, num_workers=cfg.data.num_workers, seed=cfg.seed,
                          progress=progress and t.progress)
    trainer = Trainer(method, dataset, run_dir, opts, resolve_device(t.device), config=to_dict(cfg))
    if trainer.resume(t.resume):
        print(f"resumed at step {trainer.step}/{trainer.total_steps}")
    summary = trainer.fit()
    (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
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
