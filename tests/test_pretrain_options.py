"""Every ``train.*`` setting reaches the training loop: :func:`medssl.api.pretrain` copies the config's train
section into :class:`~medssl.train.trainer.TrainerOptions` field by field, and a field left out there falls back
to the loop's own default, which equals the config's default, so only a non-default value shows it (found by
mutating medssl/api.py: dropping e.g. ``momentum=t.momentum`` let every test pass)."""

import dataclasses

import pytest

import medssl.api
from medssl.config import load_config
from medssl.data.synthetic import write_synthetic_cohort
from medssl.train.trainer import TrainerOptions

# a value other than the default for every train setting TrainerOptions takes
NON_DEFAULT = {"epochs": 3, "batch_size": 4, "grad_accum_steps": 2, "optimizer": "sgd", "lr": 0.05, "weight_decay": 0.02,
               "momentum": 0.8, "warmup_epochs": 0.5, "final_lr_fraction": 0.3, "grad_clip": 2.5, "precision": "fp32",
               "compile": True, "keep_checkpoints": 3, "checkpoint_every": 7, "checkpoint_epochs": 2,
               "monitor_every": 2, "progress": False}


class Recorded(Exception):
    pass


def test_every_train_setting_and_the_seed_reach_the_trainer_options(tmp_path, monkeypatch):
    assert all(NON_DEFAULT[k] != getattr(TrainerOptions(), k) for k in NON_DEFAULT)  # else a dropped one would pass
    write_synthetic_cohort(tmp_path / "c", n_subjects=8, n_sites=2, shape=(16, 16, 16), seed=0)
    seen = {}

    def trainer(method, dataset, run_dir, opts, *args, **kwargs):
        seen["opts"] = opts
        raise Recorded

    monkeypatch.setattr(medssl.api, "Trainer", trainer)
    cfg = load_config(None, [f"data.root={tmp_path / 'c'}", f"output_dir={tmp_path / 'r'}", "data.shape=[16,16,16]",
                             "augment.crop_size=[16,16,16]", "encoder.options.width=4", "method.name=simclr",
                             "data.test_fraction=0.25", "train.device=cpu", "seed=11",
                             *(f"train.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in NON_DEFAULT.items())])
    with pytest.raises(Recorded):
        medssl.api.pretrain(cfg, progress=True)
    opts = seen["opts"]
    assert {k: getattr(opts, k) for k in NON_DEFAULT} == NON_DEFAULT
    assert opts.seed == 11
    train_fields = {f.name for f in dataclasses.fields(cfg.train)}
    assert {f.name for f in dataclasses.fields(TrainerOptions)} & train_fields == set(NON_DEFAULT)  # none unchecked



def test_data_num_workers_reach_the_loader_unless_the_cache_is_a_device_tensor(tmp_path, monkeypatch):
    """docs/training.md: ``data.num_workers`` DataLoader workers; with ``data.preload=gpu`` the cache is one tensor on
    the device and the DataLoader must use ``num_workers=0`` (medssl.data.dataset.CachedScans). The GPU copy is
    stood in for by a CPU tensor of the cache, as ``preload`` returns it on a CUDA device."""
    import numpy as np
    import torch

    write_synthetic_cohort(tmp_path / "c", n_subjects=8, n_sites=2, shape=(16, 16, 16), seed=0)
    seen = {}

    def trainer(method, dataset, run_dir, opts, *args, **kwargs):
        seen["opts"], seen["images"] = opts, dataset.images
        raise Recorded

    real_cache_records = medssl.api.cache_records

    def cache_records(*args, workers, **kwargs):  # docs/data.md: the cache is built with max(1, data.num_workers)
        seen["cache workers"] = workers
        cache = real_cache_records(*args, workers=workers, **kwargs)
        seen["built"] = cache.n_built
        return cache

    monkeypatch.setattr(medssl.api, "Trainer", trainer)
    monkeypatch.setattr(medssl.api, "cache_records", cache_records)
    base = [f"data.root={tmp_path / 'c'}", f"data.cache_dir={tmp_path / 'cache'}", "data.shape=[16,16,16]",
            "augment.crop_size=[16,16,16]", "encoder.options.width=4", "method.name=simclr", "data.test_fraction=0.25",
            "train.device=cpu"]
    for run, workers, tensor_cache in (("r0", 0, False), ("r1", 2, False), ("r2", 2, True)):  # r0 builds the cache
        if tensor_cache:
            monkeypatch.setattr(medssl.api, "preload", lambda images, where, device: torch.from_numpy(np.array(images)))
        cfg = load_config(None, [*base, f"output_dir={tmp_path / run}", f"data.num_workers={workers}"])
        with pytest.raises(Recorded):
            medssl.api.pretrain(cfg, progress=False)
        assert torch.is_tensor(seen["images"]) is tensor_cache
        assert seen["opts"].num_workers == (0 if tensor_cache else workers), run
        assert seen["cache workers"] == max(1, workers) and seen["built"] == (8 if run == "r0" else 0), run
