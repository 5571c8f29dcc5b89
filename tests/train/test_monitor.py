"""The online probe monitor: logged every N epochs, scored on training subjects only, best kept."""

import json

import torch

from medssl.api import pretrain
from medssl.config import load_config
from medssl.train.checkpoint import load_checkpoint


def test_monitor_logs_val_mae_and_keeps_best_checkpoint(small_cohort, tmp_path, monkeypatch):
    import medssl.api as api

    seen: list[int] = []
    real = api.extract_features
    monkeypatch.setattr(api, "extract_features", lambda enc, ds, *a, **k: seen.extend(ds.indices) or real(enc, ds, *a, **k))
    cfg = load_config(overrides=[f"data.root={small_cohort}", f"output_dir={tmp_path}", "data.shape=[24,24,24]",
                                 "augment.crop_size=[20,20,20]", "train.epochs=2", "train.batch_size=8",
                                 "train.progress=false", "encoder.options.width=4", "train.monitor_every=1"])
    pretrain(cfg, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    monitored = [r for r in rows if "monitor/val_age_mae" in r]
    assert [r["epoch"] for r in monitored] == [0, 1]
    assert all(r["monitor/val_age_mae"] > 0 for r in monitored)
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["best"] == min(r["monitor/best_metric"] for r in monitored)
    splits = [line.split("\t")[7] for line in (tmp_path / "manifest.tsv").read_text().splitlines()[1:]]
    assert seen and "test" in splits
    assert {splits[i] for i in seen} == {"train"}  # the monitor never touches held-out subjects
    assert isinstance(best["model"], dict) and all(torch.is_tensor(v) for v in best["model"].values())
