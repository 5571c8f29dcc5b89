"""Composition root: configuration → components → ``pretrain`` / ``evaluate`` / ``demo``.

This is the only module that reads a :class:`~medssl.config.RunConfig`; every component it
builds takes plain arguments and is usable alone.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medssl.atomic import atomic_write
from medssl.config import (ConfigError, RunConfig, check_config, config_hash, load_config, save_config,
                           to_dict)
from medssl.config_checks import absolute_data_paths, view_spacing
from medssl.data.card import load_card
from medssl.data.dataset import CachedScans, MetadataCoder, preload
from medssl.data.manifest import Record, build_manifest, read_manifest, write_manifest
from medssl.data.prepare import (cache_records, make_loader, make_preprocessor, refuse_other_settings,
                                 refuse_overwriting_inputs)
from medssl.data.splits import assign_splits
from medssl.encoders import build_encoder
from medssl.eval.features import extract_features
from medssl.eval.report import write_report
from medssl.registry import LOSSES, METHODS
from medssl.train.pretrain_inputs import build_monitor, pretrain_indices
from medssl.train.trainer import Trainer, TrainerOptions, check_compatible, resolve_device
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
    val: list[int] = field(default_factory=list)  #: official validation split (kept out of pretraining and test)
    card_name: str = ""  #: the data card's ``name``


def prepare_data(cfg: RunConfig, run_dir: Path, progress: bool = True,
                 keep_splits: dict[str, str] | None = None) -> PreparedData:
    """Card → manifest → subject split → preprocessing cache (built once, then memory-mapped).

    Official splits of the card are kept, then ``keep_splits`` (``{subject: split}``, e.g. the
    pretraining run's manifest, see :func:`run_splits`); the other subjects are split per
    subject (seeded by ``cfg.seed``, stratified by site and label). The records with their split
    are saved as ``run_dir/manifest.tsv``. The cache (``data.cache_dir`` or ``run_dir/cache``) is
    built with ``max(1, data.num_workers)`` processes and reused when its fingerprint
    matches (e.g. one written by ``medssl data prepare``); a ``data.cache_dir`` built with other
    preprocessing settings is refused (:func:`check_cache_dir`), not rebuilt. With ``data.on_bad_file=skip``
    every skipped file and its reason is written to ``run_dir/skipped_files.json``.
    """
    card = load_card(cfg.data.card)
    loader = check_cache_dir(cfg, run_dir)
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else run_dir / "cache"
    records = build_manifest(card, cfg.data.root or None, check_files=cfg.data.on_bad_file == "error")
    if cfg.data.limit:
        records = records[: cfg.data.limit]
    for r in records:
        r.split = r.split or (keep_splits or {}).get(r.subject, "")
    for r, s in zip(records, assign_splits(records, cfg.data.test_fraction, cfg.seed, stratify=("site", "label"))):
        r.split = s
    run_dir.mkdir(parents=True, exist_ok=True)  # an evaluation's output folder is made here, once the records are read
    write_manifest(records, run_dir / "manifest.tsv")
    cache = cache_records(records, loader, cache_dir, on_bad_file=cfg.data.on_bad_file,
                          workers=max(1, cfg.data.num_workers), progress=progress)
    listing, text = run_dir / "skipped_files.json", json.dumps(cache.skipped, indent=2)
    if cache.skipped and not (listing.is_file() and listing.read_text() == text):  # said once per run directory
        atomic_write(listing, lambda tmp: tmp.write_text(text))
        print(f"skipped {len(cache.skipped)} bad file(s); see {listing}")
    elif not cache.skipped:  # an earlier attempt's list would name files this run now uses
        listing.unlink(missing_ok=True)
    ok = [i for i in range(len(records)) if cache.valid[i]]
    train = [i for i in ok if records[i].split == "train"]
    test = [i for i in ok if records[i].split == "test"]
    val = [i for i in ok if records[i].split == "val"]
    if val and progress:
        print(f"{len(val)} scan(s) of the official validation split are kept out of pretraining and test")
    return PreparedData(records, cache.images, train, test, MetadataCoder(records), cache.skipped, val, card.name)


def check_cache_dir(cfg: RunConfig, run_dir: Path | None = None):
    """The run's :class:`~medssl.data.prepare.ScanLoader`, after refusing a card of another dimensionality than
    ``data.shape`` / ``encoder.spatial_dims``, a ``data.cache_dir`` whose cache was built with other
    preprocessing settings (rebuilding it would replace a prepared cache other runs use) and, given the
    output folder ``run_dir``, outputs that would replace one of the card's input files."""
    card = load_card(cfg.data.card)
    if run_dir is not None:
        refuse_overwriting_inputs(card, cfg.data.root or None, run_dir,
                                  Path(cfg.data.cache_dir) if cfg.data.cache_dir else run_dir / "cache")
    nd = card.dimensionality
    if len(cfg.data.shape) != nd or cfg.encoder.spatial_dims != nd:
        raise ConfigError(f"data card {card.name!r} is {nd}D but data.shape={list(cfg.data.shape)} and "
                          f"encoder.spatial_dims={cfg.encoder.spatial_dims}; set both for {nd}D images "
                          f"(e.g. data.shape=[{','.join(['64'] * nd)}] encoder.spatial_dims={nd})")
    pre = make_preprocessor(card, cfg.data.shape, cfg.data.spacing, cfg.data.normalise)
    loader = make_loader(card, pre, cfg.encoder.in_channels, cfg.data.root or None)
    if cfg.data.cache_dir:
        refuse_other_settings(cfg.data.cache_dir, loader)
    return loader


def run_splits(run_dir: Path) -> dict[str, str]:
    """``{subject: split}`` of the run's ``manifest.tsv`` (empty if there is none): the split it pretrained
    with, kept by evaluation even if the table changed since (a redrawn split would move pretraining
    subjects into the test set)."""
    path = run_dir / "manifest.tsv"
    return {r.subject: r.split for r in read_manifest(path) if r.split} if path.is_file() else {}


def build_method(cfg: RunConfig) -> torch.nn.Module:
    """Encoder + method (+ loss + views) from the config."""
    method_cls = METHODS.get(cfg.method.name)
    encoder = build_encoder(cfg.encoder.name, cfg.encoder.spatial_dims, cfg.encoder.in_channels, **cfg.encoder.options)
    views = build_view_pipeline(preset=cfg.augment.preset, spatial_dims=cfg.encoder.spatial_dims,
                                crop_size=tuple(cfg.augment.crop_size), overrides=dict(cfg.augment.overrides),
                                spacing=view_spacing(cfg))  # data.spacing (mm) if augment.physical_units, else None
    if not method_cls.default_loss:  # generative methods (MAE, Models Genesis) take their own options
        import inspect  # kept inside the generative branch

        options = dict(cfg.method.options)
        if "views" in inspect.signature(method_cls).parameters:  # random crops/flips from the augment section
            options["views"] = views
        return method_cls(encoder=encoder, **options)
    loss_opts = dict(cfg.method.loss)
    loss = LOSSES.get(loss_opts.pop("name", method_cls.default_loss))(**loss_opts)
    uses = method_cls.uses
    label_keys = cfg.method.metadata if uses == "metadata" else (
        [cfg.method.label_column] if uses == "class" and cfg.method.label_column else [])
    fairkl = LOSSES.get("fairkl")() if cfg.method.fairkl_weight > 0 else None
    return method_cls(encoder, loss, views, n_views=cfg.method.n_views, proj_hidden_dim=cfg.method.proj_hidden_dim,
                      proj_dim=cfg.method.proj_dim, label_keys=label_keys, continuous=uses == "metadata",
                      fairkl=fairkl, fairkl_weight=cfg.method.fairkl_weight, bias_key=cfg.method.bias_column,
                      views_per_pass=cfg.method.views_per_pass)


def pretrain(cfg: RunConfig, progress: bool = True) -> Path:
    """Pretrain per ``cfg``; writes the run directory and returns its path.

    Under ``torchrun`` every process calls this; rank 0 prepares the data cache and writes
    files while the others wait, then all train together (DDP). ``cfg`` is checked first as
    :func:`~medssl.config.load_config` checks a file (:func:`~medssl.config.check_config`), so a key
    misspelt or a value of the wrong type set in Python is a ``ConfigError`` naming it.
    """
    from medssl.train.distributed import barrier, init_distributed, patient_group, shutdown_distributed

    check_config(cfg)  # a RunConfig built or changed in Python has not been through load_config's checks
    dist_info, device = init_distributed(resolve_device(cfg.train.device))
    if (b := cfg.train.batch_size) % (w := dist_info.world_size):  # the global batch is split evenly (shard)
        raise ConfigError(f"train.batch_size={b} is the global batch and must divide evenly among the {w} processes; "
                          f"use a multiple of {w}" + (f" (a resumed run keeps its batch: resume it with a number "
                                                      f"of processes that divides {b})" if cfg.train.resume else ""))
    absolute_data_paths(cfg)  # config.yaml must find the card and data from any folder (evaluate, export)
    run_dir, resume_from = Path(cfg.output_dir), None
    waiting = patient_group(dist_info)  # the others wait for the cache beyond the process group's 30 minutes
    if dist_info.is_main:
        resume_from = check_run_dir(cfg, run_dir)  # before anything is written: a refused run leaves it as it was
        check_cache_dir(cfg, run_dir)  # the card's dimensionality, the cache's settings, outputs replacing inputs:
        # all before anything is written
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        # a resumed run keeps its split even if the table changed since (no test subject enters pretraining)
        data = prepare_data(cfg, run_dir, progress, keep_splits=run_splits(run_dir) if resume_from else None)
    barrier(dist_info, waiting)
    if not dist_info.is_main:  # the cache exists now (memory-mapped, not rebuilt); rank 0's split, whatever the table
        data = prepare_data(cfg, run_dir, progress=False, keep_splits=run_splits(run_dir))
    torch.manual_seed(cfg.seed)
    method = build_method(cfg)
    images = preload(data.images, cfg.data.preload, device)
    dataset = CachedScans(images, data.records, pretrain_indices(cfg, data, run_dir, dist_info.is_main), data.coder)
    t = cfg.train
    opts = TrainerOptions(epochs=t.epochs, batch_size=t.batch_size, grad_accum_steps=t.grad_accum_steps,
                          optimizer=t.optimizer, lr=t.lr, weight_decay=t.weight_decay, momentum=t.momentum,
                          warmup_epochs=t.warmup_epochs, final_lr_fraction=t.final_lr_fraction,
                          grad_clip=t.grad_clip, precision=t.precision, compile=t.compile,
                          keep_checkpoints=t.keep_checkpoints, checkpoint_every=t.checkpoint_every,
                          checkpoint_epochs=t.checkpoint_epochs,
                          monitor_every=t.monitor_every, seed=cfg.seed,
                          num_workers=0 if torch.is_tensor(images) else cfg.data.num_workers,
                          progress=progress and t.progress)
    trainer = Trainer(method, dataset, run_dir, opts, device, config=to_dict(cfg), dist_info=dist_info,
                      monitor=build_monitor(cfg, data, device, getattr(method, "input_rescaling", ""))
                      if dist_info.is_main else None)
    resumed = trainer.resume(t.resume, resume_from)  # other ranks read the checkpoint themselves
    del resume_from  # the checkpoint's tensors are in the model now: do not hold a second copy while training
    if resumed and dist_info.is_main:
        print(f"resumed at step {trainer.step}/{trainer.total_steps}")
    summary = trainer.fit()
    if dist_info.is_main:
        atomic_write(run_dir / "train_summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2)))
    shutdown_distributed(dist_info)
    return run_dir


def check_run_dir(cfg: RunConfig, run_dir: Path) -> tuple[Path, dict] | None:
    """Refuse a fresh run into a directory that holds checkpoints (they would be mixed with the new ones), a
    resume whose checkpoint another encoder / method config wrote, and a resume from a checkpoint older than the
    directory's latest (:func:`~medssl.train.checkpoint.refuse_newer`), before the run writes anything.

    Returns:
        ``(path, state)`` of the checkpoint to resume from (handed to :meth:`Trainer.resume`, so it is read
        once), or None for a fresh start.
    """
    from medssl.train.checkpoint import list_checkpoints, load_checkpoint, refuse_newer, resume_path

    ckpts = list_checkpoints(run_dir / "checkpoints")
    if not cfg.train.resume and ckpts:
        raise ConfigError(f"output_dir {run_dir} already holds checkpoints (latest: {ckpts[-1].name}); continue "
                          "that run with --resume auto (in Python: cfg.train.resume = 'auto'), or choose another output_dir")
    path = resume_path(cfg.train.resume, run_dir / "checkpoints")
    if path is None:
        return None  # no --resume, or --resume auto with nothing to resume: a fresh start
    state = load_checkpoint(path)
    saved_card = str(json.loads(state.get("config", "{}")).get("data", {}).get("card", ""))
    if saved_card and os.path.abspath(saved_card) == cfg.data.card:  # a run that stored its card path relative
        cfg.data.card = saved_card
    check_compatible(state, to_dict(cfg), str(path))
    refuse_newer(run_dir / "checkpoints", int(state.get("step", 0)), path)  # --resume PATH of an older checkpoint
    return path, state


def load_run_encoder(run_dir: str | Path) -> tuple[RunConfig, torch.nn.Module]:
    """The pretrained encoder of a run (latest checkpoint), with the run's config. A Models Genesis
    encoder expects each input rescaled to [0, 1] (``medssl.methods.genesis.MinMaxInput``)."""
    cfg, method = _load_run_method(run_dir)
    return cfg, method.encoder


def _load_run_method(run_dir: str | Path) -> tuple[RunConfig, torch.nn.Module]:
    from medssl.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml", for_training=False)
    ckpts = list_checkpoints(run_dir / "checkpoints")
    if not ckpts:
        raise FileNotFoundError(f"{run_dir}/checkpoints holds no checkpoint; run `medssl pretrain` first")
    method = build_method(cfg)
    state = load_checkpoint(ckpts[-1])  # a damaged file says so (CheckpointError), not "the weights do not fit"
    try:
        method.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{ckpts[-1]}: the weights do not fit {run_dir / 'config.yaml'} ({str(e)[:300]}); "
                              "was the config edited after pretraining?") from None
    return cfg, method


def _evaluation_source(path: Path, protocol: str, data: str | None, root: str | None, out: str | None = None):
    """``(cfg, encoder, prep_dir, out_dir, kind, rescaling)`` for a run directory or an encoder export;
    ``rescaling`` is the input rescaling of the pretraining method ("" = none; Models Genesis: [0, 1]).

    The default protocol on a run's own data writes into the run directory (as always);
    other protocols write into ``RUN/eval-<protocol>``, and evaluations on another data card
    (``data``) into ``RUN/eval-<protocol>-<card>`` with their own manifest and cache (another
    ``root`` alone: ``RUN/eval-<protocol>``, its manifest and cache there too). An export is
    evaluated beside its folder, ``EXPORT-eval-<protocol>-<card>``, never into it: the manifest,
    cache and features name subjects and data paths, and the export stays as it was shared.
    ``out`` replaces that folder.
    """
    if (path / "config.yaml").is_file():
        cfg, method = _load_run_method(path)
        encoder, kind, rescaling = method.encoder, "run", getattr(method, "input_rescaling", "")
    elif (path / "encoder.json").is_file():
        from medssl.export import load_encoder, read_spec

        if not data:
            raise ConfigError(f"{path} is an encoder export: pass --data CARD (and --root DIR) to choose the data set")
        spec = read_spec(path)
        encoder, cfg, kind = load_encoder(path), load_config(None), "export"
        args, inp = dict(spec["arguments"]), spec.get("input", {})
        rescaling = inp.get("method_rescaling", "")
        cfg.encoder.name = spec["architecture"]
        cfg.encoder.spatial_dims = int(args.pop("spatial_dims", inp.get("spatial_dims", 3)))
        cfg.encoder.in_channels = int(args.pop("in_channels", inp.get("in_channels", 1)))
        cfg.encoder.options = args
        cfg.data.shape = list(inp.get("shape") or cfg.data.shape)
        cfg.data.spacing = list(inp.get("spacing_mm") or [])
        cfg.data.normalise = inp.get("normalise", cfg.data.normalise)
        # the targets the run itself evaluates by default (an export written before they were recorded: the default's)
        cfg.eval.targets = list(spec.get("evaluation", {}).get("targets") or cfg.eval.targets)
    else:
        raise FileNotFoundError(f"{path} is neither a run directory (config.yaml) nor an encoder export (encoder.json)")
    if data:  # another card: its own root (the card's `root:`), not the run's data.root, unless --root is given
        cfg.data.card, cfg.data.cache_dir, cfg.data.limit, cfg.data.root = data, "", 0, ""
    if root:  # other scans: their cache goes with the evaluation's manifest, never into the run's data.cache_dir
        cfg.data.root, cfg.data.cache_dir = root, ""
    if protocol == "default" and kind == "run" and not data and not root and not out:
        return cfg, encoder, path, path, kind, rescaling  # the run's own data: its manifest, cache and report
    card_name = Path(str(cfg.data.card)).stem
    name = f"eval-{protocol}" + (f"-{card_name}" if data else "")
    out_dir = Path(out) if out else path / name if kind == "run" else path.resolve().parent / f"{path.resolve().name}-{name}"
    return cfg, encoder, (path if kind == "run" and not data and not root else out_dir), out_dir, kind, rescaling


def evaluate(run_dir: str | Path, progress: bool = True, protocol: str | None = None, data: str | None = None,
             root: str | None = None, options=None, device: str | None = None, out: str | Path | None = None) -> dict:
    """Evaluate a run's encoder (or an exported one) with one protocol; write metrics.json + report.md.

    Args:
        run_dir: run directory (``medssl pretrain``) or export folder (``medssl export``).
        progress: progress bars for feature extraction.
        protocol: default | linear | knn | mlp | site | openbhb | fewshot | finetune
            (:mod:`medssl.eval.driver`); ``default`` = linear probes + PCA map, fast. None: ``options.protocol``
            (``default`` without options); a protocol given both ways must agree.
        data, root: evaluate on this data card / data root instead of the run's (required
            for exports).
        options: :class:`medssl.eval.driver.EvalOptions`.
        device: "cpu" / "cuda" / "auto" (default: the run's ``train.device``).
        out: write the report there (for an export also its manifest, cache and features,
            which name subjects and data paths) instead of under ``run_dir`` (for an export:
            beside it, ``EXPORT-eval-<protocol>-<card>``).

    Returns:
        The results dict (see :mod:`medssl.eval.report`); ``info["output directory"]`` says
        where the report went, ``info["hyper-parameter selection"]`` how probe hyper-parameters and
        the fine-tuning epoch were chosen: on the card's official validation split when it has one
        (its scans are embedded too, never fitted on or scored as test scans), otherwise by
        cross-validation / an inner split of train.
    """
    from dataclasses import replace as _replace

    from medssl.eval.driver import EvalOptions, multilabel_matrix, run_protocol
    from medssl.eval.features import feature_cache_path

    t0 = time.time()
    opts = options or EvalOptions()
    if protocol is not None and opts.protocol not in ("default", protocol):  # it was silently replaced by `protocol`
        raise ValueError(f"protocol={protocol!r} but options.protocol={opts.protocol!r}: give the protocol once")
    protocol = protocol or opts.protocol
    opts = _replace(opts, protocol=protocol)
    run_dir = Path(run_dir)
    cfg, encoder, prep_dir, out_dir, kind, rescaling = _evaluation_source(run_dir, protocol, data, root, out)
    dev = resolve_device(device, "--device") if device else \
        resolve_device(cfg.train.device, "the run's train.device", "--device cpu (or auto) for this evaluation")
    seed = cfg.seed if opts.seed is None else opts.seed
    keep = run_splits(run_dir) if kind == "run" else None  # subjects the run knows keep its split (also with --data)
    prepared = prepare_data(cfg, prep_dir, progress=False, keep_splits=keep)
    idx = prepared.train + prepared.test + prepared.val  # no val rows: the rows (and feature cache) as before
    ds = CachedScans(prepared.images, prepared.records, idx, prepared.coder)
    train_mask = np.array([prepared.records[i].split == "train" for i in idx])
    val_mask = np.array([prepared.records[i].split == "val" for i in idx])
    encoders = {"pretrained": encoder}
    if cfg.eval.random_init_baseline if opts.random_init is None else opts.random_init:
        torch.manual_seed(seed)
        encoders["random init"] = build_encoder(cfg.encoder.name, cfg.encoder.spatial_dims, cfg.encoder.in_channels,
                                                **cfg.encoder.options)
    if rescaling:  # both see the input the method pretrained on (Models Genesis: each scan in [0, 1])
        from medssl.methods.genesis import MinMaxInput

        encoders = {name: MinMaxInput(enc) for name, enc in encoders.items()}
    vocab = {k: list(v) for k, v in prepared.coder.vocab.items()}
    multilabel = any("|" in prepared.records[i].label for i in idx)
    feats = {}
    for name, enc in encoders.items():
        tag = name.replace(" ", "_") + ("-flip" if opts.tta_flip else "")
        feats[name] = extract_features(enc, ds, cfg.eval.batch_size, dev, progress, tta_flip=opts.tta_flip,
                                       cache=feature_cache_path(prep_dir, enc, tag))
        if multilabel:
            feats[name]["label"], vocab["label"] = multilabel_matrix([prepared.records[i].label for i in idx])
    targets = list(opts.targets or cfg.eval.targets)
    if protocol in ("finetune", "fewshot") and not opts.targets:  # downstream tasks: age and diagnosis, not site
        targets = [t for t in targets if t != "site"] + (["label"] if "label" not in targets and vocab["label"] else [])
    manifest = run_dir / "manifest.tsv"  # the run's pretraining split, also when evaluated on other data
    seen = sorted({r.site for r in read_manifest(manifest) if r.split == "train"}) if kind == "run" and \
        manifest.is_file() else None
    results = run_protocol(opts, feats, train_mask, vocab, seed, targets, encoders, {"all": ds}, str(dev), val_mask, seen)
    if kind == "export":  # the card reads its files its own way: say so when pretraining read them otherwise
        from medssl.export import reader_note

        results["notes"] += reader_note(run_dir, load_card(cfg.data.card))
    results["info"] = {"protocol": protocol, "source": f"{kind} {run_dir}", "method": cfg.method.name if kind == "run"
                       else "(export)", "encoder": cfg.encoder.name, "data card": prepared.card_name,
                       "train subjects": len(set(prepared.records[i].subject for i in prepared.train)),
                       "test subjects": len(set(prepared.records[i].subject for i in prepared.test)),
                       **({"validation subjects": len({prepared.records[i].subject for i in prepared.val})}
                          if prepared.val else {}),
                       "hyper-parameter selection": results.pop("selection"), "sites": len(vocab["site"]),
                       "targets": ", ".join(targets), "seed": seed,
                       "test-time flip": opts.tta_flip, "device": str(dev), "run directory": str(run_dir),
                       **({"encoder input": f"{rescaling} (as in pretraining)"} if rescaling else {}),
                       "output directory": str(out_dir)}
    if kind == "run":
        results["info"]["config hash"] = config_hash(cfg)
    results["skipped_files"] = prepared.skipped
    results["info"]["evaluation time (s)"] = round(time.time() - t0, 1)
    write_report(out_dir, results)
    return results
