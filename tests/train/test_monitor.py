"""The online probe monitor: logged every N epochs, scored on training subjects only, best kept."""

import json

import numpy as np
import torch

from medssl.api import pretrain
from medssl.config import load_config
from medssl.train.checkpoint import load_checkpoint


def test_monitor_logs_val_mae_and_keeps_best_checkpoint(small_cohort, tmp_path, monkeypatch):
    import medssl.train.pretrain_inputs as api

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


def _labelled(labels: list[str]):
    from medssl.api import PreparedData
    from medssl.data.dataset import MetadataCoder
    from medssl.data.manifest import Record

    records = [Record(path=f"scan{i}.nii.gz", subject=f"s{i // 2}", site="AB"[i % 2], label=label)
               for i, label in enumerate(labels)]  # two scans per subject, no ages
    images = np.random.default_rng(0).normal(size=(len(records), 1, 4, 4, 4)).astype(np.float16)
    return PreparedData(records=records, images=images, train=list(range(len(records))), test=[],
                        coder=MetadataCoder(records), skipped=[])


def test_label_monitor_leaves_out_unlabelled_scans_and_groups_by_subject(monkeypatch):
    """Scans without a label (code -1) are not a class of the monitor's probe; CV folds keep a subject's scans
    together; no bootstrap is drawn on every call."""
    import medssl.train.pretrain_inputs as pi

    seen = {}

    def probe(x_train, y_train, x_test, y_test, seed=0, groups=None, n_boot=1000, **kw):
        seen.update(y=np.concatenate([y_train, y_test]), groups=groups, n_rows=len(y_train), n_boot=n_boot)
        return {"balanced_accuracy": 0.5}

    monkeypatch.setattr(pi, "classification_probe", probe)
    labels = ["a", "b", "", "a", "b", "", "a", "b", "a", "b"] * 4
    cfg = load_config(overrides=["train.monitor_every=1"])
    monitor = pi.build_monitor(cfg, _labelled(labels), torch.device("cpu"))
    assert monitor(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))) == \
        {"val_label_bacc": 0.5, "best_metric": -0.5}
    assert len(seen["y"]) == sum(1 for x in labels if x) and set(seen["y"].tolist()) == {0, 1}
    assert len(seen["groups"]) == seen["n_rows"] and len(set(seen["groups"])) < seen["n_rows"]
    assert seen["n_boot"] == 0


def test_monitor_without_ages_or_labels_is_a_config_error():
    import pytest

    from medssl.config import ConfigError
    from medssl.train.pretrain_inputs import build_monitor

    with pytest.raises(ConfigError, match=r"train.monitor_every=1 probes age or label.*train.monitor_every=0"):
        build_monitor(load_config(overrides=["train.monitor_every=1"]), _labelled([""] * 8), torch.device("cpu"))


def test_monitor_feeds_a_genesis_encoder_the_0_1_input_it_pretrains_on(small_cohort, tmp_path, monkeypatch):
    """Models Genesis pretrains on each scan min-max rescaled to [0, 1]; the online probe (and so best.pt) must
    embed the same input, not the z-scored cache (the train/eval mismatch ``medssl evaluate`` already avoids)."""
    import medssl.train.pretrain_inputs as pi

    ranges: list[tuple[float, float]] = []
    real = pi.extract_features

    def spy(enc, ds, *a, **k):
        first_conv = next(m for m in enc.modules() if isinstance(m, torch.nn.Conv3d))
        hook = first_conv.register_forward_pre_hook(
            lambda _m, args: ranges.extend(zip(args[0].flatten(1).min(1).values.tolist(),
                                               args[0].flatten(1).max(1).values.tolist())))
        try:
            return real(enc, ds, *a, **k)
        finally:
            hook.remove()

    monkeypatch.setattr(pi, "extract_features", spy)
    cfg = load_config(overrides=[f"data.root={small_cohort}", f"output_dir={tmp_path}", "data.shape=[24,24,24]",
                                 "augment.crop_size=[16,16,16]", "augment.preset=none", "train.epochs=1",
                                 "train.batch_size=8", "train.progress=false", "method.name=genesis",
                                 "encoder.name=resnet10", "encoder.options.width=4", "train.monitor_every=1"])
    pretrain(cfg, progress=False)
    assert ranges  # the monitor ran, on every scan of its fit and validation subjects
    lo, hi = np.array(ranges).T
    np.testing.assert_allclose(lo, 0.0, atol=1e-6)  # z-scored scans would start well below 0
    np.testing.assert_allclose(hi, 1.0, atol=1e-5)
