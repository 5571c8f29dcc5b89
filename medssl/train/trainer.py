"""Method-agnostic training loop: DDP, bf16, exact resume, safe checkpoints, progress, logging.

The trainer knows nothing about contrastive vs. reconstruction objectives: it calls the
method (``method(batch, generator)`` = ``training_step``) and optimises the returned loss.

Determinism: the global batches of epoch ``e`` come from a permutation drawn from
``(seed, e)``; the view generator and torch's global RNG (dropout's) are re-seeded from
``(seed, step, rank)`` before every step. A run resumed from a checkpoint at any step therefore sees
exactly the batches, views and dropout masks of an uninterrupted run, and ends with identical parameters
on CPU; the checkpoint needs no RNG state.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from medssl.config import ConfigError
from medssl.train.checkpoint import (CheckpointError, list_checkpoints, load_checkpoint, refuse_newer, resume_path,
                                     save_checkpoint, write_atomic)
from medssl.train.distributed import (DistInfo, any_rank, mean_over_ranks, seed_step, shard, world_size_note,
                                     worker_ignores_sigterm)
from medssl.train.oom import explain_oom
from medssl.train.optim import autocast_dtype, build_optimizer, warmup_cosine


class NonFiniteLossError(RuntimeError):
    """The loss, a weight or a BatchNorm statistic became NaN/Inf; the last good checkpoint is kept untouched."""


@dataclass
class TrainerOptions:
    """Loop settings (a plain copy of the config's ``train`` section)."""

    epochs: int = 10
    batch_size: int = 32  #: global batch (all ranks together) per micro-step
    grad_accum_steps: int = 1  #: micro-batches per optimiser step
    optimizer: str = "adamw"  #: adamw | sgd | lars
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    final_lr_fraction: float = 0.01
    grad_clip: float = 0.0
    precision: str = "auto"  #: auto | bf16 | fp32
    compile: bool = False  #: ``torch.compile`` the encoder in place (``nn.Module.compile``: state-dict keys unchanged)
    keep_checkpoints: int = 2
    checkpoint_every: int = 0  #: also checkpoint every N optimiser steps (0: end of epoch only)
    checkpoint_epochs: int = 1  #: checkpoint at the end of every N-th epoch and of the last (many short epochs)
    monitor_every: int = 0  #: run the monitor every N epochs (0: never)
    num_workers: int = 0
    seed: int = 0
    progress: bool = True
    log_every: int = 10


#: settings a resumed run may change: where and how it runs, not what it trains (``train.epochs``
#: stretches or shortens the schedule; see docs/training.md). Everything else must match the checkpoint.
RESUMABLE = ("output_dir", "eval", "train.epochs", "train.device", "train.precision", "train.compile",
             "train.keep_checkpoints", "train.checkpoint_every", "train.checkpoint_epochs", "train.monitor_every",
             "train.resume", "train.progress", "data.root", "data.cache_dir", "data.num_workers", "data.preload")


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key not in ("options", "loss"):  # a whole options dict is one setting
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


RESUME_FIX = ("A resumed run keeps the settings it started with (only train.epochs, device, precision, compile, "
              "checkpointing, monitoring and data location may change): drop those overrides, or start fresh in "
              "another output_dir")


def check_compatible(state: dict, config: dict, source: str = "checkpoint", fix: str = RESUME_FIX) -> None:
    """Refuse a checkpoint ``state`` whose config differs from the run's ``config`` in anything that
    shapes training (all but :data:`RESUMABLE`; keys missing on either side, e.g. added by a later
    medssl version, are not compared), so that a run directory never mixes two runs."""
    saved, now = _flat(json.loads(state.get("config", "{}"))), _flat(config)
    changed = sorted(k for k in saved.keys() & now.keys()
                     if saved[k] != now[k] and not any(k == r or k.startswith(r + ".") for r in RESUMABLE))
    if changed:
        was = ", ".join(f"{k}={saved[k]!r}" for k in changed[:6])
        new = ", ".join(f"{k}={now[k]!r}" for k in changed[:6])
        raise CheckpointError(f"{source} was written with {was}; this run has {new}. {fix}")


def log_row(line: str) -> dict:
    """One ``metrics.jsonl`` row; ``{}`` for a blank or torn row, which a kill during the append leaves at
    the end of the file (a resume drops it; a killed run evaluated as it is still has it)."""
    try:
        row = json.loads(line)
    except ValueError:
        return {}
    return row if isinstance(row, dict) else {}


def _logged_step(line: str) -> float:
    """Step of a ``metrics.jsonl`` row; ``inf`` (dropped on resume) for a blank or torn row."""
    return log_row(line).get("step", math.inf)


class DeviceError(ValueError):
    """The requested device does not exist on this machine."""


def resolve_device(name: str, key: str = "train.device", fix: str = "") -> torch.device:
    """``"auto"`` (CUDA when visible, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``key`` names the
    setting in the error message, ``fix`` what to do (default: ``{key}=cpu or auto``)."""
    fix = fix or f"{key}=cpu or auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"{key}={name!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{key}={name} but no CUDA GPU is visible; use {fix}")
    return dev


class Trainer:
    """Runs pretraining for ``method`` on ``dataset`` and writes into ``run_dir`` (rank 0 only).

    Writes ``checkpoints/step-*.pt`` (atomic; last K kept), ``checkpoints/best.pt`` when a
    monitor reports ``best_metric`` (lower is better), ``metrics.jsonl`` and TensorBoard events.

    Args:
        method: a :class:`medssl.methods.Method`.
        dataset: map-style dataset of dict items (see :class:`medssl.data.dataset.CachedScans`).
        run_dir: output folder.
        options: loop settings.
        device: torch device of this process.
        config: resolved config dict stored in checkpoints (encoder/method sections are checked on resume).
        dist_info: rank/world size (from :func:`medssl.train.distributed.init_distributed`).
        monitor: optional ``encoder -> {"metric": value, …, "best_metric": value}`` run on rank 0.
    """

    def __init__(self, method: torch.nn.Module, dataset: Dataset, run_dir: str | Path, options: TrainerOptions,
                 device: torch.device, config: dict | None = None, dist_info: DistInfo | None = None,
                 monitor: Callable[[torch.nn.Module], dict] | None = None) -> None:
        self.dist = dist_info or DistInfo()
        self.opt, self.dataset, self.monitor = options, dataset, monitor
        self.run_dir, self.device, self.config = Path(run_dir), device, config or {}
        self.ckpt_dir = self.run_dir / "checkpoints"
        per_step = options.batch_size * options.grad_accum_steps
        if len(dataset) < per_step:
            raise ConfigError(f"the training set has {len(dataset)} scans, fewer than train.batch_size × "
                              f"train.grad_accum_steps = {per_step}; lower them or add data")
        self.steps_per_epoch = len(dataset) // per_step
        self.total_steps = self.steps_per_epoch * options.epochs
        if device.type == "cuda":  # fixed batch and crop shapes: cuDNN's one-time algorithm search pays (as measured
            torch.backends.cudnn.benchmark = True  # by benchmarks/throughput.py, which runs with it on)
        if self.dist.enabled and device.type == "cuda":
            method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)  # BN statistics over the global batch
        self.method = method.to(device)
        if options.compile:  # in place: checkpoints and exports keep the plain parameter names
            for module in self.method.compile_modules():
                module.compile()
        self.model = DistributedDataParallel(self.method, device_ids=[device.index] if device.type == "cuda" else None) \
            if self.dist.enabled else self.method
        self.optimizer = build_optimizer(self.method, options.optimizer, options.lr, options.weight_decay, options.momentum)
        self.scheduler = warmup_cosine(self.optimizer, int(options.warmup_epochs * self.steps_per_epoch), self.total_steps,
                                      options.final_lr_fraction)
        self.autocast_dtype = autocast_dtype(options.precision, device)
        self.step, self.best = 0, math.inf
        self._stop_requested = False  #: SIGTERM seen by this process (set by the handler)
        self._stopping = False  #: SIGTERM seen by any rank, agreed by all of them after a step (:func:`any_rank`)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"model": self.method.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                "scheduler": self.scheduler.state_dict(), "best": self.best, "world_size": self.dist.world_size,
                "config": json.dumps(self.config, sort_keys=True), "method_class": type(self.method).__name__}

    def load_state_dict(self, state: dict, source: str = "checkpoint") -> None:
        if state.get("method_class") != type(self.method).__name__:
            raise CheckpointError(f"{source} was written by method {state.get('method_class')!r}, "
                                  f"this run uses {type(self.method).__name__!r}; start a new run directory")
        check_compatible(state, self.config, source)
        try:
            self.method.load_state_dict(state["model"])
        except RuntimeError as e:
            raise CheckpointError(f"{source}: weights do not fit this model ({e})") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # the checkpoint's lr is its own schedule's; with train.epochs changed the next step takes this one's
        # (LambdaLR's own formula, so an unchanged schedule gives the very same float and the resume stays exact)
        sched = self.scheduler
        for group, base, factor in zip(self.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
            group["lr"] = base * factor(sched.last_epoch)
        self.step, self.best = int(state["step"]), float(state.get("best", math.inf))  # an older one's "rng": unused
        world_size_note(int(state.get("world_size", self.dist.world_size)), self.dist, source)  # older ones: none

    def resume(self, how: str, loaded: tuple[Path, dict] | None = None) -> bool:
        """``how`` = "auto" (latest in run_dir, if any) or a checkpoint path; ``loaded`` = ``(path, state)``
        already read by the caller (not read again). Returns True if resumed (refused: :func:`refuse_newer`)."""
        path, state = loaded or (resume_path(how, self.ckpt_dir), None)
        if path is None:
            return False
        self.load_state_dict(load_checkpoint(path) if state is None else state, source=str(path))
        refuse_newer(self.ckpt_dir, self.step, path)  # its later checkpoints would be overwritten, its own pruned
        log = self.run_dir / "metrics.jsonl"
        if self.dist.is_main and log.exists():  # drop rows logged after the checkpoint (they will be redone)
            rows = [x for x in log.read_text().splitlines() if _logged_step(x) <= self.step]
            tmp = log.with_name(f".{log.name}.tmp")
            tmp.write_text("".join(r + "\n" for r in rows))
            os.replace(tmp, log)  # a kill now leaves the old log or the new one, never half of it
        return True

    def save(self) -> Path | None:
        self._check_finite()  # on every rank: all of them stop, not only the one that writes
        if not self.dist.is_main:
            return None
        return save_checkpoint(self.state_dict(), self.ckpt_dir, self.step, self.opt.keep_checkpoints)

    def _last_checkpoint(self) -> str:
        """Where the last good checkpoint is, for error messages."""
        ckpts = list_checkpoints(self.ckpt_dir)
        return f"The last good checkpoint {ckpts[-1]} was kept" if ckpts else \
            f"No checkpoint was written to {self.ckpt_dir} yet"

    def _check_finite(self) -> None:
        """Raise :class:`NonFiniteLossError` naming the parameters/buffers that hold NaN/Inf (before any write)."""
        tensors = {n: t for n, t in self.method.state_dict().items() if t.is_floating_point()}
        if not tensors or torch.stack([torch.isfinite(t).all() for t in tensors.values()]).all():
            return
        bad = [n for n, t in tensors.items() if not torch.isfinite(t).all()]
        raise NonFiniteLossError(
            f"{', '.join(bad[:5])}{' …' if len(bad) > 5 else ''} became NaN/Inf at step {self.step} (finite loss, "
            f"non-finite weights or BatchNorm statistics); training stopped without writing this checkpoint. "
            f"{self._last_checkpoint()}. Lower train.lr, enable train.grad_clip (e.g. 1.0), or check the inputs")

    # ------------------------------------------------------------------ loop
    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """Global micro-batches of ``epoch``: (steps_per_epoch × grad_accum_steps) lists of indices."""
        g = torch.Generator().manual_seed(self.opt.seed * 100_003 + epoch)
        n = self.steps_per_epoch * self.opt.grad_accum_steps * self.opt.batch_size
        perm = torch.randperm(len(self.dataset), generator=g)[:n]
        return perm.view(-1, self.opt.batch_size).tolist()

    def _request_stop(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        self._stop_requested = True

    def _check_finite_loss(self, loss: float, mean: float) -> None:
        """Raise :class:`NonFiniteLossError` on every rank when any rank's loss is NaN/Inf (per-rank losses such
        as MAE's can fail on one rank alone): ``loss`` is this rank's, ``mean`` the mean over the ranks."""
        if not math.isfinite(mean):
            where = f"loss is {loss}" if not math.isfinite(loss) else "another process's loss is NaN/Inf"
            raise NonFiniteLossError(f"{where} at step {self.step + 1}; training stopped. {self._last_checkpoint()}. "
                                     "Lower train.lr, enable train.grad_clip, or check the inputs for NaN")

    def _check_same_start(self) -> None:
        """Under DDP, refuse to train when the ranks resumed from different steps (each loads the checkpoint itself,
        so a rank that cannot see rank 0's finds none and starts afresh; DDP would then average gradients of
        different models on batches of different epochs)."""
        if not self.dist.enabled:
            return
        steps = [torch.zeros(1, dtype=torch.long, device=self.device) for _ in range(self.dist.world_size)]
        torch.distributed.all_gather(steps, torch.tensor([self.step], device=self.device))
        steps = [int(s) for s in steps]
        if len(set(steps)) > 1:
            raise CheckpointError(f"the processes start at different steps {steps} (by rank): they did not all read "
                                  f"the same checkpoint. output_dir ({self.run_dir}) must be on a file system every node "
                                  "sees, like data.cache_dir (a --resume file too)")

    def fit(self) -> dict:
        """Train until ``epochs`` are done (or SIGTERM: checkpoint, then return). Returns a summary."""
        from torch.utils.tensorboard import SummaryWriter

        self._check_same_start()
        main = self.dist.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        # events after the checkpoint's step (a killed run's, redone now) are purged, as metrics.jsonl is cut back
        writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step + 1) if main else None
        on_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, self._request_stop) if on_main_thread else None
        gen = torch.Generator(device=self.device)
        bar = tqdm(total=self.total_steps, initial=self.step, desc="pretrain", disable=not (self.opt.progress and main),
                   dynamic_ncols=True, unit="step")
        t_start, views_done, last_loss = time.time(), 0, math.nan
        k = self.opt.grad_accum_steps
        self.method.train()
        log = (self.run_dir / "metrics.jsonl").open("a" if self.step else "w") if main else None  # fresh run: new log
        try:
            while self.step < self.total_steps and not self._stopping:
                epoch, first = divmod(self.step, self.steps_per_epoch)
                micro = [shard(b, self.dist) for b in self._epoch_batches(epoch)[first * k:]]
                # own generator, not the global torch RNG (dropout's, seeded per step): a mid-epoch resume is exact
                loader = iter(DataLoader(self.dataset, batch_sampler=micro, num_workers=self.opt.num_workers,
                                         pin_memory=self.device.type == "cuda" and self.opt.num_workers > 0,
                                         worker_init_fn=worker_ignores_sigterm,
                                         generator=torch.Generator().manual_seed(self.opt.seed * 100_003 + epoch)))
                for _ in range(self.steps_per_epoch - first):
                    lr = self.optimizer.param_groups[0]["lr"]  # the lr of this step (logged with its loss)
                    last_loss, logs, n_views = self._optimizer_step([next(loader) for _ in range(k)], gen)
                    views_done += n_views * self.dist.world_size
                    rate = views_done / max(time.time() - t_start, 1e-9)
                    bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}", views_s=f"{rate:.1f}")
                    bar.update(1)
                    if main and (self.step % self.opt.log_every == 0 or self.step == self.total_steps):
                        self._log(log, writer, {"step": self.step, "epoch": epoch, "loss": last_loss, "lr": lr,
                                                "views_per_s": rate, **logs})
                    end_of_epoch = self.step % self.steps_per_epoch == 0
                    # the monitor runs before the save, so the checkpoint holds the updated best value (a resumed
                    # run then makes the same best.pt decisions as an uninterrupted one), even under SIGTERM
                    if end_of_epoch and self.opt.monitor_every and (epoch + 1) % self.opt.monitor_every == 0:
                        self._check_finite()  # every rank, before rank 0 may write best.pt: all of them stop
                        if main and self.monitor:
                            self._run_monitor(log, writer, epoch)
                    # SIGTERM reaches each rank at its own moment: all stop at the same step (after the monitor,
                    # so a SIGTERM during it counts here)
                    self._stopping = any_rank(self._stop_requested, self.dist, self.device)
                    if (self._stopping
                            or (self.opt.checkpoint_every and self.step % self.opt.checkpoint_every == 0)
                            or (end_of_epoch and ((epoch + 1) % self.opt.checkpoint_epochs == 0
                                                  or self.step >= self.total_steps))):
                        self.save()
                    if self._stopping:
                        break
        finally:
            bar.close()
            if main:
                log.close()
                writer.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return {"steps": self.step, "final_loss": None if math.isnan(last_loss) else last_loss,  # JSON has no NaN
                "seconds": time.time() - t_start, "stopped_early": self._stopping and self.step < self.total_steps,
                "best_metric": self.best if self.best < math.inf else None}

    def _log(self, log, writer, row: dict) -> None:
        log.write(json.dumps(row) + "\n")
        log.flush()
        for key, value in row.items():
            if key not in ("step", "epoch"):
                writer.add_scalar(f"train/{key}", value, self.step)

    def _run_monitor(self, log, writer, epoch: int) -> None:
        encoder = self.method.encoder
        metrics = self.monitor(encoder)
        encoder.train()
        self._log(log, writer, {"step": self.step, "epoch": epoch, **{f"monitor/{k}": v for k, v in metrics.items()}})
        if metrics.get("best_metric", math.inf) < self.best:  # weights checked finite by the caller
            self.best = metrics["best_metric"]
            write_atomic(self.state_dict(), self.ckpt_dir / "best.pt")

    def _optimizer_step(self, micro_batches: list[dict], gen: torch.Generator) -> tuple[float, dict, int]:
        """One optimiser step over ``grad_accum_steps`` micro-batches; returns (loss, logs, views)."""
        self.optimizer.zero_grad(set_to_none=True)
        seed_step(self.opt.seed, self.step, self.dist.rank)  # dropout: this rank's own masks, the same after a resume
        total, logs, views, k = 0.0, {}, 0, len(micro_batches)
        for i, batch in enumerate(micro_batches):
            batch = {key: v.to(self.device, non_blocking=True) for key, v in batch.items()}
            # distinct for every (step, micro-batch, rank < 4096); the factor 64 kept for k ≤ 64 (their runs' views);
            # modulo 2**64, what manual_seed takes (a seed from ~7e7 overflowed; torch wrapped negative ones alike)
            gen.manual_seed((((self.opt.seed * 1_000_003 + self.step) * max(64, k) + i) * 4096 + self.dist.rank) % 2**64)
            sync = i == k - 1 or not self.dist.enabled
            with (contextlib.nullcontext() if sync else self.model.no_sync()), explain_oom(self.step, batch, self.method):
                with torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype else contextlib.nullcontext():
                    out = self.model(batch, gen)
                loss = out.loss.float()
                (loss / k).backward()  # also when NaN: DDP's other ranks wait in its all-reduce
            # the loss and each term averaged over the micro-batches, in float64 on the device (what float() / k
            # summed in Python gives, to the bit) and read once per step, below: nothing waits for the device before
            total = total + loss.detach().double() / k
            for key, value in out.logs.items():
                logs[key] = logs.get(key, 0.0) + torch.as_tensor(value, dtype=torch.float64, device=self.device) / k
            views += batch["image"].shape[0] * getattr(self.method, "n_views", 1)
        # means over the ranks (a per-rank loss such as MAE's: the global batch's), and the step's one read
        own, total, *values = torch.cat([total[None], mean_over_ranks(torch.stack([total, *logs.values()]),
                                                                      self.dist)]).tolist()
        logs = dict(zip(logs, values))
        self._check_finite_loss(own, total)  # before the update: the weights stay those of the last good step
        if self.opt.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.method.parameters(), self.opt.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.method.on_step_end(self.step, self.total_steps)
        return total, logs, views
