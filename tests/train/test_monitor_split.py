"""How the online monitor splits the training subjects (docs/training.md: fitted on 80 % of the training subjects,
scored on the other 20 %): found by mutating medssl/train/pretrain_inputs.py."""

import sys
from pathlib import Path

import numpy as np
import torch

from medssl.config import load_config

sys.path.insert(0, str(Path(__file__).parent))
from test_monitor import _labelled  # noqa: E402


def test_the_monitor_fits_on_80_percent_of_the_subjects_and_scores_on_the_other_20(monkeypatch):
    """20 subjects of two scans each: the probe is fitted on the 32 scans of 16 subjects and scored on the 8 scans of
    the 4 others (subject_split: floor(0.2 · 20) test subjects), never on scans it was fitted on."""
    import medssl.train.pretrain_inputs as pi

    seen = {}

    def probe(x_train, y_train, x_test, y_test, seed=0, groups=None, n_boot=1000, **kw):
        seen.update(fit=x_train, val=x_test, groups=groups)
        return {"balanced_accuracy": 0.75}

    monkeypatch.setattr(pi, "classification_probe", probe)
    cfg = load_config(overrides=["train.monitor_every=1"])
    monitor = pi.build_monitor(cfg, _labelled(["a", "b"] * 20), torch.device("cpu"))
    torch.manual_seed(0)
    assert monitor(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))) == \
        {"val_label_bacc": 0.75, "best_metric": -0.75}  # lower is better: the negated balanced accuracy
    assert (len(seen["fit"]), len(seen["val"]), len(set(seen["groups"]))) == (32, 8, 16)
    fit_rows = {tuple(np.round(r, 5)) for r in seen["fit"]}
    assert not any(tuple(np.round(r, 5)) in fit_rows for r in seen["val"])  # distinct scans give distinct features


def test_the_age_monitor_groups_its_inner_cv_by_subject_and_scores_the_mae(monkeypatch):
    """With ages the monitor is a Ridge regression whose inner CV keeps a subject's scans together (groups = the
    fit scans' subjects), without bootstrap; its best_metric is the MAE itself (lower is better)."""
    import medssl.train.pretrain_inputs as pi

    seen = {}

    def probe(x_train, y_train, x_test, y_test, groups=None, seed=0, n_boot=1000, **kw):
        seen.update(y=y_train, groups=groups, n_boot=n_boot)
        return {"mae": 3.5}

    monkeypatch.setattr(pi, "regression_probe", probe)
    from medssl.api import PreparedData
    from medssl.data.dataset import MetadataCoder
    from medssl.data.manifest import Record

    records = [Record(path=f"scan{i}.nii.gz", subject=f"s{i // 2}", site="AB"[i % 2], age=20.0 + i) for i in range(40)]
    images = np.random.default_rng(0).normal(size=(40, 1, 4, 4, 4)).astype(np.float16)
    data = PreparedData(records=records, images=images, train=list(range(40)), test=[], coder=MetadataCoder(records),
                        skipped=[])
    monitor = pi.build_monitor(load_config(overrides=["train.monitor_every=1"]), data, torch.device("cpu"))
    assert monitor(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))) == \
        {"val_age_mae": 3.5, "best_metric": 3.5}
    assert seen["n_boot"] == 0 and len(seen["groups"]) == len(seen["y"]) == 32
    subject_of_age = {20.0 + i: f"s{i // 2}" for i in range(40)}
    assert [subject_of_age[float(a)] for a in seen["y"]] == list(seen["groups"])
