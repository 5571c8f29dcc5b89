"""What a pretraining run learns from, and how it is watched while it trains.

* :func:`pretrain_indices`: the training records a method can use; scans that lack the
  metadata it needs are listed in ``excluded_from_pretraining.tsv``, never hidden.
* :func:`build_monitor`: the online probe behind ``train.monitor_every`` and ``best.pt``,
  fitted and scored on training subjects only (the test split is never seen).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from medssl.atomic import atomic_write
from medssl.config import ConfigError, RunConfig
from medssl.data.dataset import CachedScans
from medssl.data.splits import subject_split
from medssl.eval.features import extract_features
from medssl.eval.probes import classification_probe, regression_probe
from medssl.registry import METHODS

if TYPE_CHECKING:
    from medssl.api import PreparedData


def pretrain_indices(cfg: RunConfig, data: PreparedData, run_dir: Path, report: bool = True) -> list[int]:
    """Training records usable by the method; scans lacking required metadata are listed, not hidden.

    Required: ``method.metadata`` (kernel methods), ``method.label_column`` (class labels) and
    ``method.bias_column`` (FairKL); a missing class or bias code (-1) would act as one more class.

    ``report``: write ``excluded_from_pretraining.tsv`` (or remove an earlier attempt's, when no scan is left
    out) and print the notes. Under DDP only rank 0 reports (``medssl.api.pretrain``); every rank gets the
    same indices (and the same error).
    """
    m, method = cfg.method, METHODS.get(cfg.method.name)
    sources = {f"method.metadata={m.metadata}": list(m.metadata)} if method.uses == "metadata" else {}
    if method.uses == "class" and m.label_column:
        sources[f"method.label_column={m.label_column!r}"] = [m.label_column]
    if method.default_loss and m.fairkl_weight > 0:
        sources[f"method.bias_column={m.bias_column!r} (fairkl_weight > 0)"] = [m.bias_column]
    need = sorted({k for keys in sources.values() for k in keys})
    keep, dropped = [], {}
    for i in data.train:  # with nothing needed, `missing` is empty and every scan is kept
        r = data.records[i]
        missing = [k for k in need if k == "age" and math.isnan(r.age) or k != "age" and not getattr(r, k)]
        if missing:
            dropped[i] = missing
        else:
            keep.append(i)
    lacking = sorted({k for missing in dropped.values() for k in missing})
    path = run_dir / "excluded_from_pretraining.tsv"
    if report and not dropped:  # an earlier attempt's list (another method, a table since completed) would name
        path.unlink(missing_ok=True)  # scans this run uses
    if not need:
        return data.train
    if dropped and report:
        text = "path\treason\n" + "".join(f"{data.records[i].path}\tmissing {missing}\n" for i, missing in dropped.items())
        atomic_write(path, lambda tmp: tmp.write_text(text))
        print(f"{len(dropped)} training scan(s) lack a value of {lacking} and are not used for pretraining; see {path}")
    if not keep:
        absent = " or ".join(repr(k) for k in lacking)
        raise ConfigError(f"method.name={m.name} learns from {' and '.join(sources)}, but none of the {len(dropped)} "
                          f"training scans of data card {cfg.data.card!r} has a value of {absent} (listed in "
                          "excluded_from_pretraining.tsv); use a card with that column, method.fairkl_weight=0, or a "
                          "label-free method such as simclr")
    bias_values = {getattr(data.records[i], m.bias_column) for i in keep} if m.bias_column in need else set()
    if len(bias_values) == 1 and m.fairkl_weight > 0 and report:
        print(f"note: method.fairkl_weight={m.fairkl_weight} debiases method.bias_column={m.bias_column!r}, but all "
              f"{len(keep)} training scans have {m.bias_column} {bias_values.pop()!r}: with one value FairKL has no "
              f"bias to remove (no bias-conflicting pairs). Set method.fairkl_weight=0, or use a card with several "
              f"{m.bias_column} values")
    return keep


def build_monitor(cfg: RunConfig, data: PreparedData, device: torch.device, rescaling: str = ""):
    """Online probe for ``train.monitor_every``: Ridge on age (or logistic on label) fitted on 80 % of the
    TRAINING subjects and scored on the other 20 % (never on the test split); inner CV grouped by subject,
    no bootstrap intervals (one value per call). Scans without the target are left out. ``rescaling`` is the
    method's ``input_rescaling`` ("" = none): a Models Genesis encoder is probed through
    :class:`~medssl.methods.genesis.MinMaxInput`, on the [0, 1] input it pretrains on (as ``evaluate``). Returns
    ``encoder -> {"val_age_mae" | "val_label_bacc", "best_metric"}`` (lower is better), or None when off.

    Raises:
        ConfigError: monitoring is on but no training scan has an age or a label.
    """
    if not cfg.train.monitor_every:
        return None
    records = [data.records[i] for i in data.train]
    if all(math.isnan(r.age) for r in records) and not any(r.label for r in records):
        raise ConfigError(f"train.monitor_every={cfg.train.monitor_every} probes age or label, but no training scan "
                          f"of data card {cfg.data.card!r} has either; set train.monitor_every=0")
    inner = subject_split(records, 0.2, cfg.seed + 1, stratify="site")
    fit_idx = [i for i, s in zip(data.train, inner) if s == "train"]
    val_idx = [i for i, s in zip(data.train, inner) if s == "test"]
    fit_ds, val_ds = (CachedScans(data.images, data.records, idx, data.coder) for idx in (fit_idx, val_idx))
    target = "age" if not all(math.isnan(r.age) for r in records) else "label"

    def monitor(encoder: torch.nn.Module) -> dict:
        if rescaling:
            from medssl.methods.genesis import MinMaxInput

            encoder = MinMaxInput(encoder)
        a, b = (extract_features(encoder, ds, cfg.eval.batch_size, device) for ds in (fit_ds, val_ds))
        ok_a, ok_b = ((~np.isnan(f["age"]) if target == "age" else f["label"] >= 0) for f in (a, b))
        args = a["features"][ok_a], a[target][ok_a], b["features"][ok_b], b[target][ok_b]
        if target == "age":
            mae = regression_probe(*args, groups=a["subject"][ok_a], seed=cfg.seed, n_boot=0)["mae"]
            return {"val_age_mae": mae, "best_metric": mae}
        bacc = classification_probe(*args, cfg.seed, groups=a["subject"][ok_a], n_boot=0)["balanced_accuracy"]
        return {"val_label_bacc": bacc, "best_metric": -bacc}

    return monitor
