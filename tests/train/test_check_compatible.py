"""Which settings a resume may change (check_compatible against the checkpoint's config), checked on configs
alone: found by mutating medssl/train/trainer.py (RESUMABLE, _flat), which the end-to-end resume tests let by."""

import json

import pytest

from medssl.config import load_config, to_dict
from medssl.train.checkpoint import CheckpointError
from medssl.train.trainer import check_compatible


def _state(overrides):
    return {"config": json.dumps(to_dict(load_config(overrides=overrides)))}


@pytest.mark.parametrize("override", ["train.checkpoint_every=5", "train.checkpoint_epochs=2", "train.keep_checkpoints=4",
                                      "train.monitor_every=1", "train.epochs=20", "data.num_workers=2",
                                      "data.root=/elsewhere", "eval.batch_size=8", "train.device=cpu", "train.precision=bf16",
                                      "train.compile=true", "train.progress=false", "data.cache_dir=/elsewhere",
                                      "data.preload=ram", "output_dir=/elsewhere", "train.resume=auto"])
def test_a_resume_may_change_where_and_how_often_it_runs(override):
    check_compatible(_state([]), to_dict(load_config(overrides=[override])))


@pytest.mark.parametrize("override, was, now", [
    ("method.loss.temperature=0.5", "method.loss={}", "method.loss={'temperature': 0.5}"),  # an option added
    ("encoder.options.width=8", "encoder.options={}", "encoder.options={'width': 8}"),
    ("train.lr=0.5", "train.lr=0.001", "train.lr=0.5"),
])
def test_a_resume_that_adds_an_option_or_changes_a_training_setting_is_refused(override, was, now):
    """A whole option dict is one setting: an option the checkpoint's run did not have is a change too."""
    with pytest.raises(CheckpointError) as e:
        check_compatible(_state([]), to_dict(load_config(overrides=[override])))
    assert f"was written with {was}; this run has {now}" in str(e.value), str(e.value)
