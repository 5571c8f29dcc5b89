"""Atomic, safe checkpoints.

Checkpoints are written to a temporary file in the same folder and renamed into place
(``os.replace`` is atomic on POSIX), so a crash never leaves a half-written file under the
final name. They contain only tensors and plain Python containers and are loaded with
``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from medssl.atomic import atomic_write

_NAME = re.compile(r"step-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used here (other architecture, other config, corrupt)."""


def write_atomic(state: dict, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename into place, both fsynced
    (:func:`~medssl.atomic.atomic_write` with ``durable=True``; the temporary file is removed when any of it fails)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: torch.save(state, tmp), durable=True)


def save_checkpoint(state: dict, folder: str | Path, step: int, keep: int = 2) -> Path:
    """Write ``state`` as ``folder/step-<8-digit step>.pt`` atomically and keep the newest ``keep``."""
    folder = Path(folder)
    final = write_atomic(state, folder / f"step-{step:08d}.pt")
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return final


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoints in ``folder`` sorted by step (oldest first)."""
    folder = Path(folder)
    found = [p for p in folder.glob("step-*.pt") if _NAME.search(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(_NAME.search(p.name).group(1)))


def resume_path(how: str, folder: str | Path) -> Path | None:
    """The checkpoint ``--resume how`` names: ``"auto"`` → the latest in ``folder`` (None if there is none),
    ``""`` → None, anything else → that file."""
    if not how:
        return None
    return Path(how) if how != "auto" else (list_checkpoints(folder) or [None])[-1]


def refuse_newer(folder: str | Path, step: int, source: str | Path) -> None:
    """Refuse to continue from ``source`` (a checkpoint of step ``step``) into ``folder`` when ``folder`` holds
    checkpoints of later steps (``--resume PATH`` of an older one): the continued run would overwrite them when it
    reaches their steps, and until then keep-last-k pruning, which keeps the highest steps, would delete its own new
    checkpoints instead, while ``--resume auto``, export and evaluate would pick up the old ones.

    Raises:
        CheckpointError: naming the newer checkpoints and what to do.
    """
    newer = [p for p in list_checkpoints(folder) if int(_NAME.search(p.name).group(1)) > step]
    if newer:
        names = ", ".join(p.name for p in newer[:3]) + (" …" if len(newer) > 3 else "")
        raise CheckpointError(f"{folder} holds {len(newer)} checkpoint(s) newer than {source} (step {step}): {names}. "
                              f"Continuing from step {step} there would mix two runs (the newer ones would be kept and "
                              "then overwritten, the resumed run's own checkpoints pruned). Resume into another "
                              "output_dir, or move the newer step-*.pt out of that folder first (--resume auto "
                              "continues from the latest)")


def load_checkpoint(path: str | Path) -> dict:
    """Load with ``weights_only=True`` (no arbitrary unpickling)."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give a step-*.pt file of a run's checkpoints/ "
                              "folder, or --resume auto to continue from the latest one in output_dir")
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the path and what to do
        raise CheckpointError(f"{path}: cannot load checkpoint safely ({type(e).__name__}: {e}); "
                              "it may be corrupt or not a medssl checkpoint. medssl writes checkpoints atomically, so "
                              "a damaged one was changed afterwards (a failed copy or disk): move it away, and --resume "
                              "auto, export and evaluate use the previous step-*.pt") from None


def stopped_early(run_dir: str | Path) -> int | None:
    """The step at which SIGTERM stopped the run's pretraining (its ``train_summary.json``), else None. Such a run
    is not evaluated by ``pretrain --evaluate`` or the demo: a scheduler's grace period is for the checkpoint."""
    path = Path(run_dir) / "train_summary.json"  # written by medssl.api.pretrain (rank 0)
    summary = json.loads(path.read_text()) if path.is_file() else {}
    return int(summary["steps"]) if summary.get("stopped_early") else None
