"""Helpers the benchmark scripts share (medmnist, brain_age_*, view_strength, multisite_study, demo_sweep).

* :func:`apply_set` — ``--set KEY=VALUE`` overrides of a budget dataclass, each value parsed to the
  field's type, with an error naming the pair when it cannot be;
* :func:`merge_seeds` — ``--merge`` of per-seed result JSONs written by separate processes (one seed
  each, e.g. run in parallel), refusing runs with different budgets or a repeated seed;
* :func:`fit_resumable` and :func:`run_config` — one pretraining run that a SIGTERM stops cleanly and
  ``--resume`` continues (a finished run's weights are reused without further steps; a checkpoint of
  other settings, or past this budget's last step, is refused); :func:`refuse_earlier_runs` checks all of a
  fresh run's pretraining folders before any training;
* :func:`machine` and :func:`host` — the machine record stored next to every result (CPU model, threads,
  GPU, and the medssl commit that ran, :func:`git_commit`);
* :func:`command_line` and :func:`write_result` — the command stored in a result, and the result
  written to ``<out>/result.json`` (and to ``--json`` when given; an earlier one is kept as ``result.<k>.json``);
* :func:`run_folder` — ``--out``, or the benchmark's default folder, which a fresh ``--quick`` run replaces (only
  when a quick run made it: :data:`QUICK_MARK`);
* :func:`add_data_root` — the ``--data-root`` argument (default ``$MEDSSL_SHARED/data`` or ``../shared/data``);
* :func:`pyplot` and :func:`save_figure` — matplotlib without a display, and a figure written to its path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import torch

from medssl.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, resume_path
from medssl.train.trainer import check_compatible

TRUE, FALSE = ("true", "1"), ("false", "0")
REPO = Path(__file__).resolve().parents[1]  #: the medssl checkout these scripts belong to
SHARED = Path(os.environ.get("MEDSSL_SHARED", Path(__file__).resolve().parents[2] / "shared"))  #: the shared data folder


def parse_value(key: str, text: str, current):
    """``text`` as the type of ``current``: bools take true/false/1/0, tuples a comma list of their element type."""
    try:
        if isinstance(current, bool):
            if text.lower() not in TRUE + FALSE:
                raise ValueError("expected true or false")
            return text.lower() in TRUE
        if isinstance(current, tuple):
            kind = type(current[0]) if current else float
            return tuple(kind(t) for t in text.split(",") if t.strip())
        return type(current)(text)
    except ValueError as e:
        raise SystemExit(f"--set {key}={text}: not a valid {type(current).__name__} ({e})") from None


def apply_set(budget, pairs: list[str]):
    """``budget`` (a dataclass) with each ``KEY=VALUE`` of ``pairs`` applied in order."""
    keys = [f.name for f in fields(budget)]
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in keys:
            raise SystemExit(f"--set {pair}: expected KEY=VALUE with KEY one of {', '.join(keys)}")
        budget = replace(budget, **{key: parse_value(key, text, getattr(budget, key))})
    return budget


def merge_seeds(paths: list[str], same: tuple[str, ...] = ("budget",), out: Path | None = None) -> tuple[list[dict], list[dict]]:
    """Per-seed rows of the result JSONs at ``paths`` sorted by seed, and the JSONs themselves.

    Every JSON must agree with the first on the keys ``same`` (the budget, and e.g. the dataset) and no
    seed may appear twice; otherwise the merge stops naming the file. The merge is written to
    ``out/result.json``, which must not be one of ``paths`` (that run's own result would be replaced).
    """
    if out is not None and any(Path(p).resolve() == (Path(out) / "result.json").resolve() for p in paths):
        raise SystemExit(f"--merge: {Path(out) / 'result.json'} is one of the merged results and would be overwritten "
                         "by the merge; give the merge its own --out folder")
    results = [json.loads(Path(p).read_text()) for p in paths]
    for path, r in zip(paths, results):
        for key in same:
            if r.get(key) != results[0].get(key):  # (a key absent from both agrees)
                raise SystemExit(f"--merge {path}: {key} {r.get(key)} differs from {results[0].get(key)} of {paths[0]}")
    per_seed = [s for r in results for s in r["per_seed"]]
    seeds = [s["seed"] for s in per_seed]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--merge: seed(s) repeated across {paths}: {seeds}")
    return sorted(per_seed, key=lambda s: s["seed"]), results


def merged_runs(paths: list[str], results: list[dict], per_seed: list[dict], seed_key: str) -> dict:
    """Wall times (s), commands and machines of the runs ``--merge`` joins (``results``, read from ``paths``).

    ``wall_seconds_per_run`` ``{path: s}`` and ``wall_seconds_per_seed`` ``{seed: s}`` (each seed's own
    ``seed_key``); ``wall_seconds`` is the longest run (the elapsed time when the runs were parallel
    processes, a lower bound otherwise) and ``wall_seconds_sum`` their sum (process time: the elapsed
    time had they run one after another). A run that is itself a merge counts with its own sum.
    ``commands_per_run`` and ``machine_per_run`` ``{path: …}``: what ran where (the merge's own command
    and machine only say how the JSON was put together).
    """
    runs = {p: float(r.get("wall_seconds", 0.0)) for p, r in zip(paths, results)}
    total = sum(float(r.get("wall_seconds_sum", r.get("wall_seconds", 0.0))) for r in results)
    return {"wall_seconds": max(runs.values()), "wall_seconds_sum": round(total, 1), "wall_seconds_per_run": runs,
            "wall_seconds_per_seed": {str(s["seed"]): s.get(seed_key) for s in per_seed}, "merged_from": list(paths),
            "commands_per_run": {p: r.get("command") for p, r in zip(paths, results)},
            "machine_per_run": {p: r.get("machine") for p, r in zip(paths, results)}}


def wall_line(result: dict) -> str:
    """``wall time … s`` of a result; for a merge, each merged run's, the longest and the sum (not elapsed)."""
    if "wall_seconds_sum" not in result:
        return f"wall time {result['wall_seconds']:.0f} s"
    runs = result["wall_seconds_per_run"].values()
    return (f"wall time of the {len(runs)} merged run(s) {', '.join(f'{v:.0f} s' for v in runs)}: longest "
            f"{result['wall_seconds']:.0f} s (the elapsed time if they ran in parallel), sum "
            f"{result['wall_seconds_sum']:.0f} s (process time)")


def run_config(opts, **settings) -> dict:
    """The ``config`` a benchmark gives its :class:`~medssl.train.trainer.Trainer`: what shapes the run's
    training, stored in each checkpoint and compared on ``--resume`` (:func:`fit_resumable`). ``opts``
    (TrainerOptions) gives epochs (which may change on resume), batch, lr, weight decay and seed;
    ``settings`` the rest (method, network, views, the images trained on)."""
    train = {k: getattr(opts, k) for k in ("epochs", "batch_size", "lr", "weight_decay", "seed")}
    return {"train": train, "benchmark": settings}


RESUME_FIX = ("pass that run's own --set values (ssl_epochs may grow), or give another --out for a new run; "
              "nothing was trained")


def refuse_earlier_runs(folders: list[Path]) -> None:
    """Stop a fresh run (no ``--resume``) before any training when any of its pretraining ``folders`` already
    holds checkpoints, naming every such folder (:func:`fit_resumable` would only refuse each one when reached,
    after the folders before it had trained)."""
    held = [(Path(f), list_checkpoints(Path(f) / "checkpoints")) for f in folders]
    held = [f"{f} (latest {ckpts[-1].name})" for f, ckpts in held if ckpts]
    if held:
        raise SystemExit(f"{len(held)} pretraining folder(s) of this run already hold checkpoints of an earlier run: "
                         f"{'; '.join(held)}; pass --resume to reuse or continue them (their settings are checked), or "
                         "give another --out (or delete those folders); nothing was trained")


def fit_resumable(trainer, resume: bool = False, finished_only: bool = False) -> dict:
    """``trainer.fit()`` after resuming from the latest checkpoint in its run folder when ``resume``.

    A SIGTERM stop (the trainer saved a checkpoint) ends the whole benchmark with a message saying how
    to continue. A resumed run's summary gets ``resumed_at_step`` and the last logged ``final_loss``.
    A checkpoint written with other settings than ``trainer.config`` (:func:`run_config`; all but
    ``train.epochs``), or past this budget's last step, is refused, naming what differs, so that a
    result never mixes two budgets (checkpoints without a config, from before, are not compared).
    Without ``resume``, a run folder that already holds checkpoints is refused: the fresh run's own
    checkpoint would be pruned in favour of the earlier run's at a later step, next to the new log.
    ``finished_only``: only load a finished run; a checkpoint at another step than this budget's total
    (an interrupted run, or a budget that is not the run's) is refused before any step is trained.
    """
    path = resume_path("auto", trainer.ckpt_dir) if resume else None
    if not resume:  # a fresh run would keep the old run's later checkpoint
        refuse_earlier_runs([trainer.run_dir])
    if path is not None:
        state = load_checkpoint(path)
        try:
            check_compatible(state, trainer.config, str(path), fix=RESUME_FIX)
        except CheckpointError as e:
            raise SystemExit(f"--resume: {e}") from None
        if int(state["step"]) > trainer.total_steps:
            raise SystemExit(f"--resume: {path} is at step {state['step']}, past the {trainer.total_steps} steps of "
                             f"this budget (the run had more epochs); {RESUME_FIX}")
        trainer.resume("auto", loaded=(path, state))
    resumed_at = trainer.step if path is not None else None
    if finished_only and resumed_at != trainer.total_steps:
        at = "no checkpoint" if resumed_at is None else f"a checkpoint at step {resumed_at}"
        raise SystemExit(f"{trainer.run_dir}: {at}, not a finished run of {trainer.total_steps} steps at this "
                         f"budget; pass the run's own budget (--set), or finish the run first; nothing was trained")
    summary = trainer.fit()
    if summary["stopped_early"]:
        raise SystemExit(f"stopped by SIGTERM during pretraining (checkpoint in {trainer.run_dir}; rerun with --resume)")
    if resumed_at is not None:
        rows = [json.loads(r) for r in (trainer.run_dir / "metrics.jsonl").read_text().splitlines() if r.strip()]
        summary.update(resumed_at_step=resumed_at, final_loss=[r for r in rows if "loss" in r][-1]["loss"])
    return summary


def command_line(script: str, argv: list[str] | None) -> str:
    """``python benchmarks/<script> <arguments>`` as run (``argv`` None: the process's own arguments)."""
    return " ".join([f"python benchmarks/{script}", *(argv if argv is not None else sys.argv[1:])])


def write_result(result: dict, out: Path, also: str = "") -> Path:
    """Write ``result`` as JSON to ``out/result.json`` and, when ``also`` is given, there too (NumPy
    scalars as floats). An earlier ``out/result.json`` (a run before, e.g. a ``--resume`` with other
    fine-tuning settings on the same checkpoints) is kept as ``out/result.<k>.json``, the first free k ≥ 1,
    and the move is printed. Returns the path under ``out``."""
    text = json.dumps(result, indent=1, default=float)
    path = Path(out) / "result.json"
    if path.exists():
        k = 1
        while (Path(out) / f"result.{k}.json").exists():
            k += 1
        path.rename(Path(out) / f"result.{k}.json")
        print(f"the earlier {path} is kept as {Path(out) / f'result.{k}.json'}", flush=True)
    path.write_text(text)
    if also:
        Path(also).write_text(text)
    return path


def git_commit(repo: Path = REPO) -> str:
    """The commit checked out in ``repo`` (40 hex digits), with ``+dirty`` when tracked files differ from
    it; ``"unknown"`` outside a git checkout (e.g. an exported copy) or without git. Read-only: without
    ``--no-optional-locks``, ``git status`` rewrites a stale ``.git/index`` under ``index.lock``."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
    try:
        return git("rev-parse", "HEAD") + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux; elsewhere what :mod:`platform` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host() -> dict:
    """Platform, CPU model and core count, torch version and threads, and the medssl commit that ran."""
    return {"platform": platform.platform(), "cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "medssl_commit": git_commit()}


def machine(device: str) -> dict:
    """:func:`host` and the device (with the GPU's name on CUDA)."""
    info = {"device": device, **host()}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info


QUICK_MARK = ".medssl-quick-run"  #: written into a default --quick folder: only a folder holding it is emptied


def run_folder(out: str, default: Path, replace_default: bool = False, keep: Path | None = None) -> Path:
    """The run folder, created: ``out`` (``--out``) when given, else ``default``. With ``replace_default`` (a fresh
    ``--quick`` run: it trains, without ``--resume``) the default folder is replaced: everything an earlier run
    left there goes (pretraining folders, result, figure) except ``keep`` (the scan cache), so the documented smoke
    command can be run again without mixing two runs (as ``medssl demo`` starts its run afresh). Only a folder that
    such a run made (it holds :data:`QUICK_MARK`) is emptied; other files there stop the run, named, before anything
    is deleted. An explicit ``--out`` is never emptied: a fresh run there refuses checkpoints of an earlier run
    (:func:`refuse_earlier_runs`)."""
    path = Path(out or default)
    if not out and replace_default and path.is_dir():
        gone = [e for e in path.iterdir() if keep is None or not Path(keep).resolve().is_relative_to(e.resolve())]
        if gone and not (path / QUICK_MARK).is_file():
            names = sorted(e.name for e in gone)
            raise SystemExit(f"{path} holds {', '.join(names[:5])}{' …' if len(names) > 5 else ''} but not the mark a "
                             f"--quick run leaves in the folder it makes ({QUICK_MARK}; quick runs before 2026-11-25 "
                             "left none), and a --quick run without --out empties its default folder: if they are an "
                             f"earlier quick run's, create {path / QUICK_MARK} (an empty file) and run again; else move "
                             "them elsewhere, or give --out; nothing was deleted")
        if gone:
            print(f"--quick without --out: replacing the earlier quick run in {path}"
                  + (f" (keeping {keep})" if keep is not None and Path(keep).exists() else ""), flush=True)
        for entry in gone:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    if not out and replace_default:
        (path / QUICK_MARK).write_text("made by a --quick run of a medssl benchmark; the next one empties this folder\n")
    return path


def add_data_root(parser: argparse.ArgumentParser, holds: str) -> None:
    """``--data-root``: the folder holding ``holds`` (default ``$MEDSSL_SHARED/data`` or ``../shared/data``)."""
    parser.add_argument("--data-root", default=str(SHARED / "data"),
                        help=f"folder holding {holds} (default $MEDSSL_SHARED/data or ../shared/data)")


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (benchmarks write figures to files and never open a window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 110) -> None:
    """Lay out ``fig``, write it to ``path`` (creating its folder) and close it."""
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
