"""Trainer: which steps are logged (TrainerOptions.log_every), the row's fields, the progress bar of a resumed run,
keep-last-k through the trainer, and the encoder put back in training mode after the monitor."""

import json
import sys
import types
from pathlib import Path

import medssl.train.trainer as trainer_module
from medssl.train.checkpoint import list_checkpoints

sys.path.insert(0, str(Path(__file__).parent))
from trainer_helpers import _trainer  # noqa: E402


def test_rows_every_log_every_steps_and_at_the_last_step_with_their_epoch_and_views_per_second(tmp_path, monkeypatch):
    """docs/training.md: a row every N (log_every) optimiser steps and at the last step; ``epoch`` counts from 0;
    ``views_per_s`` = views done since the start / seconds since the start (a clock ticking 1 s per read here:
    8 scans × 2 views a step, one read per step, so 16 views/s in every row)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    clock = iter(range(1000))
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(time=lambda: float(next(clock))))
    t = _trainer(tmp_path, epochs=3, n=16)  # 2 steps per epoch: steps 1-6
    t.opt.log_every = 4
    t.fit()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["epoch"]) for r in rows] == [(4, 1), (6, 2)]
    assert [r["views_per_s"] for r in rows] == [16.0, 16.0]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [4, 6]
    assert sorted(events.Tags()["scalars"]) == ["train/contrastive", "train/loss", "train/lr", "train/views_per_s"]


def test_keep_checkpoints_keeps_the_newest_k_of_a_run(tmp_path):
    t = _trainer(tmp_path, epochs=4, n=8)  # one step per epoch, a checkpoint after each
    t.opt.keep_checkpoints = 2
    t.fit()
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-00000003.pt", "step-00000004.pt"]


class Bar:
    """Records what the trainer shows on its progress bar."""

    bars = []

    def __init__(self, total, initial, **kwargs):
        self.total, self.n, self.postfix = total, initial, []
        Bar.bars.append(self)

    def set_postfix(self, **kwargs):
        self.postfix.append(kwargs)

    def update(self, n):
        self.n += n

    def close(self):
        pass


def test_the_progress_bar_of_a_resumed_run_starts_at_its_step_and_shows_each_steps_loss_and_lr(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "tqdm", Bar)
    _trainer(tmp_path / "full", epochs=2, n=16).fit()  # 2 steps per epoch
    resumed = _trainer(tmp_path / "full", epochs=2, n=16)
    for ckpt in list_checkpoints(tmp_path / "full" / "checkpoints")[1:]:
        ckpt.unlink()
    assert resumed.resume("auto") and resumed.step == 2
    resumed.fit()
    bar = Bar.bars[-1]
    assert (bar.total, bar.n) == (4, 4)  # steps 3-4 added to the 2 done before
    rows = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()][2:]
    assert [(p["loss"], p["lr"]) for p in bar.postfix] == [(f"{r['loss']:.4f}", f"{r['lr']:.2e}") for r in rows]


def test_the_monitor_leaves_the_encoder_in_training_mode_for_the_next_epoch(tmp_path):
    """The monitor embeds in eval mode (extract_features calls encoder.eval()); the steps after it must train with
    dropout and BatchNorm batch statistics again, as a resumed run (which starts in training mode) does."""
    t = _trainer(tmp_path, epochs=2, n=16)
    modes = []
    t.method.encoder.register_forward_hook(lambda module, args, out: modes.append(module.training))
    t.monitor = lambda encoder: encoder.eval() and {"best_metric": 1.0}
    t.opt.monitor_every = 1
    t.fit()
    assert modes and all(modes) and len(modes) == 4


def test_fit_trains_in_training_mode_also_a_method_handed_over_in_eval_mode(tmp_path):
    """A method left in eval mode (e.g. after embedding with it) still trains with dropout and batch statistics."""
    t = _trainer(tmp_path, epochs=1, n=16)
    modes = []
    t.method.encoder.register_forward_hook(lambda module, args, out: modes.append(module.training))
    t.method.eval()
    t.fit()
    assert modes == [True, True]
