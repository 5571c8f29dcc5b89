"""Fixtures for the evaluator tests: ../shared files (skipped when absent), the real IXI table, a small image split
and a spy on the driver's fine-tuning runs."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # --import-mode=importlib: make eval_helpers importable
    sys.path.insert(0, _HERE)

REPO = Path(__file__).resolve().parents[2]
from shared_data import shared_path as _shared  # noqa: E402  (after the sys.path set-up above)


@pytest.fixture(scope="session")
def openbhb_reference() -> dict:
    import json

    return json.loads(_shared("reference_vectors", "openbhb_metric.json").read_text())


@pytest.fixture(scope="session")
def ixi_table() -> dict:
    """Real DLMUSE regional volumes (mm³) of 291 IXI subjects from 3 sites, with age and sex.

    Returns ``{"x": (291, 260), "age": years, "sex": 1 = M, "site": Guys/HH/IOP, "subject": IDs}``.
    """
    root = _shared("data", "ixi_dlmuse_roi_multisite")
    rows = list(csv.DictReader((root / "IXI_DLMUSE.csv").open()))
    demog = {r["ID"]: r for r in csv.DictReader((root / "IXI_demog.csv").open())}
    cols = [c for c in rows[0] if c != "ID"]
    return {"x": np.array([[float(r[c]) for c in cols] for r in rows]),
            "age": np.array([float(demog[r["ID"]]["Age"]) for r in rows]),
            "sex": np.array([demog[r["ID"]]["Sex"] == "M" for r in rows], float),
            "site": np.array([r["ID"].split("-")[1] for r in rows]),
            "subject": np.array([r["ID"] for r in rows])}


@pytest.fixture(scope="module")
def data():
    """``(train, y_train, val, y_val, test, y_test)``: 36 / 12 / 12 scans of ``make_image_dataset(60, seed=1)``
    (items and ages in years), shared by the fine-tuning and probe-head tests."""
    from eval_helpers import make_image_dataset

    ds, age = make_image_dataset(60, seed=1)
    return ds[:36], age[:36], ds[36:48], age[36:48], ds[48:], age[48:]


@pytest.fixture
def calls(monkeypatch):
    """The arguments of every fine-tuning run of the evaluation driver (``finetune_and_score`` replaced by a spy
    that records them); each run scores MAE 1 / balanced accuracy 0.5."""
    from medssl.eval import driver as D

    seen = []

    def spy(encoder, train, y_train, val, y_val, test, y_test, options, groups_test, n_boot, class_names):
        seen.append({"fit": list(train.indices), "val": list(val.indices), "test": list(test.indices),
                     "y_fit": np.asarray(y_train), "y_val": np.asarray(y_val), "y_test": np.asarray(y_test),
                     "groups_test": groups_test, "class_names": class_names, "task": options.task,
                     "seed": options.seed})
        return {"mae": 1.0, "balanced_accuracy": 0.5}

    monkeypatch.setattr(D, "finetune_and_score", spy)
    return seen


@pytest.fixture(autouse=True)
def _single_threaded():
    """The problems here are tiny: one BLAS / torch thread is much faster than two threads competing
    with other processes on a shared 2-core CI machine (measured: up to 30x)."""
    import torch
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(n)
