"""Method-agnostic training loop with exact resume, safe checkpoints and progress logging.

The trainer knows nothing about contrastive vs. reconstruction objectives: it calls
``method.training_step(batch, generator)`` and optimises the returned loss.

Determinism: the data order of epoch ``e`` is a permutation drawn from ``seed`` and ``e``;
the view generator is re-seeded from ``(seed, step)`` before every step. A run resumed from a
checkpoint at any step therefore sees exactly the batches and views of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from medssl.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from medssl.train.optim import param_groups, warmup_cosine


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/Inf; the last good checkpoint is kept untouched."""


@dataclass
class TrainerOptions:
    """Loop settings (a plain copy of the config's ``train`` section)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    grad_clip: float = 0.0
    precision: str = "auto"  #: auto | bf16 | fp32
    keep_checkpoints: int = 2
    num_workers: int = 0
    seed: int = 0
    progress: bool = True
    log_every: int = 10


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name} but no CUDA GPU is visible; use train.device=cpu or auto")
    return dev


class Trainer:
    """Runs pretraining for ``method`` on ``dataset`` and writes into ``run_dir``.

    Writes ``checkpoints/step-*.pt`` (atomic), ``metrics.jsonl`` (one JSON object per logged
    step) and TensorBoard events under ``tensorboard/``.

    Args:
        method: a :class:`medssl.methods.Method`.
        dataset: map-style dataset of dict items (see :class:`medssl.data.dataset.CachedScans`).
        run_dir: output folder.
        options: loop settings.
        device: torch device.
        config: resolved config dict stored in checkpoints (checked on resume).
    """

    def __init__(self, method: torch.nn.Module, dataset: Dataset, run_dir: str | Path, options: TrainerOptions,
                 device: torch.device, config: dict | None = None) -> None:
        self.method, self.dataset, self.opt = method.to(device), dataset, options
        self.run_dir, self.device, self.config = Path(run_dir), device, config or {}
        self.ckpt_dir = self.run_dir / "checkpoints"
        n = len(dataset)
        if n < options.batch_size:
            raise ValueError(f"the training set has {n} scans, fewer than train.batch_size={options.batch_size}; "
                             "lower the batch size or add data")
        self.steps_per_epoch = n // options.batch_size
        self.total_steps = self.steps_per_epoch * options.epochs
        self.optimizer = torch.optim.AdamW(param_groups(method, options.weight_decay), lr=options.lr)
        self.scheduler = warmup_cosine(self.optimizer, int(options.warmup_epochs * self.steps_per_epoch), self.total_steps)
        use_bf16 = options.precision == "bf16" or (options.precision == "auto" and device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        self.step = 0
        self._stop_requested = False

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"model": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.step, "rng": rng_state(),
                "config": json.dumps(self.config, sort_keys=True), "method_class": type(self.method).__name__}

    def load_state_dict(self, state: dict, source: str = "checkpoint") -> None:
        if state.get("method_class") != type(self.method).__name__:
            raise CheckpointError(f"{source} was written by method {state.get('method_class')!r}, "
                                  f"this run uses {type(self.method).__name__!r}; start a new run directory")
        saved = json.loads(state.get("config", "{}"))
        for section in ("encoder", "method"):
            if saved.get(section) != self.config.get(section):
                raise CheckpointError(f"{source} has an incompatible {section} config {saved.get(section)} "
                                      f"(this run: {self.config.get(section)}); resume with the same config or start fresh")
        try:
            self.method.load_state_dict(state["model"])
        except RuntimeError as e:
            raise CheckpointError(f"{source}: weights do not fit this model ({e})") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        set_rng_state(state["rng"])

    def resume(self, how: str) -> bool:
        """``how`` = "auto" (latest in run_dir, if any) or a checkpoint path. Returns True if resumed."""
        if not how:
            return False
        path = Path(how) if how != "auto" else (list_checkpoints(self.ckpt_dir) or [None])[-1]
        if path is None:
            return False
        self.load_state_dict(load_checkpoint(path), source=str(path))
        return True

    def save(self) -> Path:
        return save_checkpoint(self.state_dict(), self.ckpt_dir, self.step, self.opt.keep_checkpoints)

    # ------------------------------------------------------------------ loop
    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.opt.seed * 100_003 + epoch)
        perm = torch.randperm(len(self.dataset), generator=g)[: self.steps_per_epoch * self.opt.batch_size]
        return perm.view(self.steps_per_epoch, self.opt.batch_size).tolist()

    def _request_stop(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        self._stop_requested = True

    def fit(self) -> dict:
        """Train until ``epochs`` are done (or SIGTERM). Returns a summary dict."""
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        previous = signal.signal(signal.SIGTERM, self._request_stop) if _main_thread() else None
        gen = torch.Generator(device=self.device)
        bar = tqdm(total=self.total_steps, initial=self.step, desc="pretrain", disable=not self.opt.progress,
                   dynamic_ncols=True, unit="step")
        t_start, views_done, last_loss = time.time(), 0, math.nan
        self.method.train()
        try:
            with (self.run_dir / "metrics.jsonl").open("a") as log:
                while self.step < self.total_steps and not self._stop_requested:
                    epoch, first = divmod(self.step, self.steps_per_epoch)
                    loader = DataLoader(self.dataset, batch_sampler=self._epoch_batches(epoch)[first:],
                                        num_workers=self.opt.num_workers, pin_memory=self.device.type == "cuda",
                                        persistent_workers=False)
                    for batch in loader:
                        last_loss, logs = self._train_step(batch, gen)
                        views_done += batch["image"].shape[0] * getattr(self.method, "n_views", 1)
                        rate = views_done / max(time.time() - t_start, 1e-9)
                        lr = self.scheduler.get_last_lr()[0]
                        bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}", views_s=f"{rate:.1f}")
                        bar.update(1)
                        if self.step % self.opt.log_every == 0 or self.step == self.total_steps:
                            row = {"step": self.step, "epoch": epoch, "loss": last_loss, "lr": lr, "views_per_s": rate, **logs}
                            log.write(json.dumps(row) + "\n")
                            log.flush()
                            for k, v in row.items():
                                if k not in ("step", "epoch"):
                                    writer.add_scalar(f"train/{k}", v, self.step)
                        if self._stop_requested:
                            break
                    self.save()  # end of epoch, or the step at which SIGTERM arrived
        finally:
            bar.close()
            writer.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return {"steps": self.step, "final_loss": last_loss, "seconds": time.time() - t_start,
                "stopped_early": self._stop_requested}

    def _train_step(self, batch: dict, gen: torch.Generator) -> tuple[float, dict]:
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        gen.manual_seed(self.opt.seed * 1_000_003 + self.step)
        ctx = torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype else contextlib.nullcontext()
        with ctx:
            out = self.method.training_step(batch, gen)
        loss = out.loss.float()
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss is {loss.item()} at step {self.step + 1}; training stopped. The last good "
                                     f"checkpoint in {self.ckpt_dir} was kept. Lower train.lr, enable train.grad_clip, "
                                     "or check the inputs for NaN")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.opt.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.method.parameters(), self.opt.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.method.on_step_end(self.step, self.total_steps)
        return float(loss.detach()), out.logs


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
