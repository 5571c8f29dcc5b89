"""Trainer: logs and TensorBoard of resumed runs, the rebuilt schedule, exact resume with dropout, gradient
accumulation, out-of-memory message, the epochs' data order."""

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

from medssl.train.checkpoint import list_checkpoints

sys.path.insert(0, str(Path(__file__).parent))
from tiny_run import TinyEncoder  # noqa: E402
from trainer_helpers import _params, _trainer  # noqa: E402


def test_summary_of_a_finished_run_resumed_again_is_valid_json(tmp_path):
    _trainer(tmp_path, epochs=1).fit()
    again = _trainer(tmp_path, epochs=1)
    assert again.resume("auto")
    summary = again.fit()
    assert summary["steps"] == 3 and summary["final_loss"] is None
    json.loads(json.dumps(summary, allow_nan=False))


def test_a_row_torn_by_a_kill_does_not_stop_the_resume(tmp_path):
    """A kill while a row is appended leaves half a JSON line at the end of metrics.jsonl; resuming keeps
    the rows up to the checkpoint and drops the torn one, and the log then matches an uninterrupted run's."""
    def rows(path):
        return [{k: v for k, v in json.loads(x).items() if k != "views_per_s"} for x in path.read_text().splitlines()]

    full = _trainer(tmp_path / "full")
    full.fit()
    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    for ckpt in list_checkpoints(tmp_path / "cut" / "checkpoints")[1:]:
        ckpt.unlink()  # killed after the step-3 checkpoint …
    log = tmp_path / "cut" / "metrics.jsonl"
    log.write_text("".join(x + "\n" for x in log.read_text().splitlines()[:5]) + '{"step": 6, "epoch": 1, "lo')
    resumed = _trainer(tmp_path / "cut")  # … while appending the row of step 6
    assert resumed.resume("auto") and resumed.step == 3
    assert rows(log) == rows(tmp_path / "full" / "metrics.jsonl")[:3]
    resumed.fit()
    assert rows(log) == rows(tmp_path / "full" / "metrics.jsonl")


def test_a_run_resumed_with_more_epochs_follows_the_rebuilt_schedule_from_its_first_step(tmp_path):
    """train.epochs raised on resume (docs/training.md: "the schedule is rebuilt for the new length"): every
    optimiser step after the resume, the first included, uses lr × the cosine factor of the NEW length
    (Loshchilov & Hutter 2017, eq. 5, no warm-up here), not the checkpoint's lr of the old schedule."""
    _trainer(tmp_path / "short", epochs=2, warmup_epochs=0, final_lr_fraction=0.1).fit()  # 3 steps per epoch
    longer = _trainer(tmp_path / "long", epochs=4, warmup_epochs=0, final_lr_fraction=0.1)
    assert longer.resume(str(list_checkpoints(tmp_path / "short" / "checkpoints")[0])) and longer.step == 3
    used, step = [], longer.optimizer.step
    longer.optimizer.step = lambda *a, **kw: (used.append(longer.optimizer.param_groups[0]["lr"]), step(*a, **kw))[1]
    longer.fit()
    expected = [1e-2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / 12))) for s in range(3, 12)]
    assert used == pytest.approx(expected, rel=1e-9)


def test_each_logged_row_pairs_the_loss_with_the_lr_its_step_used(tmp_path):
    """metrics.jsonl row of step s (s optimiser steps done): ``lr`` is the one step s used, i.e. the
    schedule's value at step index s-1 (linear warm-up (s)/w × lr, then cosine), not the next step's."""
    t = _trainer(tmp_path, epochs=2, warmup_epochs=1, final_lr_fraction=0.1)  # 3 steps per epoch: w = 3, T = 6
    used, step = [], t.optimizer.step
    t.optimizer.step = lambda *a, **kw: (used.append(t.optimizer.param_groups[0]["lr"]), step(*a, **kw))[1]
    t.fit()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    cosine = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * i / 3)) for i in range(3)]
    assert used == pytest.approx([1e-2 * f for f in [1 / 3, 2 / 3, 1, *cosine]], rel=1e-9)
    assert [r["lr"] for r in rows] == pytest.approx(used, rel=1e-9)


class DropoutEncoder(TinyEncoder):
    def __init__(self):
        super().__init__()
        self.drop = torch.nn.Dropout(0.3)

    def forward(self, x):
        return self.fc(self.drop(self.conv(x).relu().mean(dim=(2, 3, 4))))


def test_mid_epoch_resume_is_exact_with_dropout(tmp_path):
    """Dropout (encoder.options={dropout: …} of ViT/DenseNet) draws from the global torch RNG, which the trainer
    re-seeds from (seed, step, rank) before every step (a checkpoint holds no RNG state). Creating the resumed epoch's DataLoader drew its base seed from that RNG too, one draw the
    uninterrupted run never made mid-epoch, so every resume from a mid-epoch checkpoint ended elsewhere."""
    full = _trainer(tmp_path / "full", epochs=2, encoder=DropoutEncoder, checkpoint_every=1)
    full.fit()
    for ckpt in list_checkpoints(tmp_path / "full" / "checkpoints")[:-1]:  # steps 1-5; 3 steps per epoch
        resumed = _trainer(tmp_path / ckpt.stem, epochs=2, encoder=DropoutEncoder, checkpoint_every=1)
        assert resumed.resume(str(ckpt))
        resumed.fit()
        assert torch.equal(_params(full), _params(resumed)), ckpt.name


def test_tensorboard_of_a_resumed_run_holds_each_step_once(tmp_path):
    """Killed after step 9 with the step-3 checkpoint left: the resumed run logs steps 4-9 again. metrics.jsonl is
    cut back to the checkpoint; TensorBoard kept the old events too (steps 1-9, 4-9: two curves over each other,
    different ones when train.epochs changed). The resumed writer purges events after the checkpoint's step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    full = _trainer(tmp_path / "full")
    full.fit()
    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    for ckpt in list_checkpoints(tmp_path / "cut" / "checkpoints")[1:]:
        ckpt.unlink()
    resumed = _trainer(tmp_path / "cut")
    assert resumed.resume("auto") and resumed.step == 3
    resumed.fit()
    events = EventAccumulator(str(tmp_path / "cut" / "tensorboard"))
    events.Reload()
    logged = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == \
        [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in logged]


def test_logged_loss_terms_are_averaged_over_the_accumulated_micro_batches(tmp_path):
    """With train.grad_accum_steps=k a row's ``loss`` is the mean of the k micro-batch losses (what the step
    optimised); the method's own terms (here ``contrastive``, the whole loss without FairKL) were the last
    micro-batch's alone, so the two disagreed in every row. Each term is now the mean over the k micro-batches."""
    t = _trainer(tmp_path, epochs=2, grad_accum_steps=3)  # 24 scans, batch 8: one step of 3 micro-batches an epoch
    micro = []
    training_step = t.method.training_step

    def recorded(batch, g):
        out = training_step(batch, g)
        micro.append(float(out.loss))
        out.logs["as_float"] = float(out.loss)  # a method may log plain floats too
        return out
    t.method.training_step = recorded
    t.fit()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and len(micro) == 6
    for row, losses in zip(rows, (micro[:3], micro[3:])):
        mean = 0.0
        for loss in losses:  # the k micro-batch losses / k, summed in this order as Python floats: to the bit
            mean += loss / 3
        assert row["loss"] == row["contrastive"] == row["as_float"] == mean


def test_cuda_out_of_memory_names_the_batch_the_crop_the_views_and_what_to_reduce(tmp_path):
    """docs/training.md: the error names the per-GPU batch, the crop shape and the number of views, and what to
    reduce. (Raised here from the method on CPU, as torch raises it from a CUDA allocation.)"""
    t = _trainer(tmp_path, epochs=1)

    def oom(batch, generator):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    t.method.training_step = oom
    with pytest.raises(RuntimeError, match=r"out of memory at step 1 with a per-GPU batch of 8 scans of shape "
                                           r"\(1, 12, 12, 12\) cropped to \(10, 10, 10\) \(× 2 views\)\. Reduce "
                                           r"train\.batch_size .*augment\.crop_size"):
        t.fit()
    assert not list_checkpoints(tmp_path / "checkpoints")




def test_a_resume_from_an_older_checkpoint_into_a_folder_with_newer_ones_is_refused(tmp_path):
    """`--resume PATH` of step 3 while checkpoints/ holds step 6: the continued run (here stretched to more epochs,
    a change a resume may make) overwrote the old step 6 on reaching it, and until then keep-last-k pruning, which
    keeps the highest steps, deleted the resumed run's new checkpoints and left step 6 for --resume auto and export.
    Refused, nothing changed; the same checkpoint resumes into another folder, and the latest one in place."""
    from medssl.train.checkpoint import CheckpointError

    _trainer(tmp_path / "run", epochs=2).fit()  # 3 steps per epoch: step-3, step-6
    ckpts = list_checkpoints(tmp_path / "run" / "checkpoints")
    before = {p.name: p.read_bytes() for p in ckpts}
    with pytest.raises(CheckpointError, match=r"holds 1 checkpoint\(s\) newer than .*step-00000003.pt \(step 3\): "
                                              r"step-00000006.pt\. .*Resume into another output_dir"):
        _trainer(tmp_path / "run", epochs=4).resume(str(ckpts[0]))
    assert {p.name: p.read_bytes() for p in list_checkpoints(tmp_path / "run" / "checkpoints")} == before
    elsewhere = _trainer(tmp_path / "elsewhere", epochs=4)
    assert elsewhere.resume(str(ckpts[0])) and elsewhere.step == 3
    latest = _trainer(tmp_path / "run", epochs=4)
    assert latest.resume(str(ckpts[1])) and latest.step == 6


def test_every_micro_batch_of_a_run_gets_its_own_view_seed_also_past_64_accumulation_steps(tmp_path):
    """The view generator was seeded with ((seed·1_000_003 + step)·64 + micro-batch)·4096 + rank, so with
    train.grad_accum_steps > 64 micro-batch 64 of step s got the seed of micro-batch 0 of step s+1 (the same
    crops, flips and noise on other scans). Runs with at most 64 keep their seeds (and so their results)."""
    from trainer_helpers import Items

    from medssl.train.trainer import Trainer, TrainerOptions

    def seeds_of(t):
        seeds, training_step = [], t.method.training_step
        t.method.training_step = lambda batch, g: (seeds.append(g.initial_seed()), training_step(batch, g))[1]
        t.fit()
        return seeds

    k, method = 65, _trainer(tmp_path / "x").method
    opts = TrainerOptions(epochs=1, batch_size=2, grad_accum_steps=k, progress=False)
    seeds = seeds_of(Trainer(method, Items(n=2 * k * 2), tmp_path / "long", opts, torch.device("cpu")))  # 2 steps
    assert len(seeds) == 2 * k and len(set(seeds)) == 2 * k
    kept = seeds_of(_trainer(tmp_path / "kept", epochs=1, grad_accum_steps=3))  # 24 scans, batch 8: 1 step of 3
    assert kept == [i * 4096 for i in range(3)]  # seed 0, step 0, rank 0: the formula as before


@pytest.mark.parametrize("seed", [123_456_789, 2**31 - 1])
def test_a_large_seed_trains_and_keeps_its_view_seeds_modulo_2_to_the_64(tmp_path, seed):
    """The view seed ((seed·1_000_003 + step)·max(64, k) + i)·4096 + rank passed 2**64 for seeds from about
    7·10⁷ (e.g. 2**31 - 1, a usual 'random' seed), and torch.Generator.manual_seed then stopped the first step
    with 'Overflow when unpacking long long'. It is taken modulo 2**64, which keeps every seed torch accepted
    before (negative ones included: torch itself wraps them so)."""
    t = _trainer(tmp_path / "run", epochs=1, seed=seed, grad_accum_steps=3)
    seeds, training_step = [], t.method.training_step
    t.method.training_step = lambda batch, g: (seeds.append(g.initial_seed()), training_step(batch, g))[1]
    assert t.fit()["steps"] == 1
    assert seeds == [((seed * 1_000_003) * 64 + i) * 4096 % 2**64 for i in range(3)]  # the naive formula, wrapped


def _record_indices(t):
    """Make ``t`` append the scan indices of every micro-batch it trains on to the returned list."""
    seen, step = [], t.method.training_step
    t.method.training_step = lambda batch, generator: (seen.append(batch["index"].tolist()), step(batch, generator))[1]
    return seen


def test_every_epoch_sees_each_scan_once_in_a_new_order(tmp_path):
    """The epoch generator draws a permutation per (seed, epoch): each epoch covers every scan exactly once (24
    scans, 3 steps of 8), the epochs' batches differ from one another, and another train.seed gives other batches."""
    def epochs(seed):
        t = _trainer(tmp_path / f"seed{seed}", epochs=3, seed=seed)
        seen = _record_indices(t)
        t.fit()
        return [[tuple(b) for b in seen[e * 3:(e + 1) * 3]] for e in range(3)]

    runs = epochs(0)
    for batches in runs:
        assert sorted(i for b in batches for i in b) == list(range(24))
    assert len({frozenset(frozenset(b) for b in batches) for batches in runs}) == 3  # three different partitions
    assert epochs(1)[0] != runs[0]


def test_mid_epoch_resume_with_gradient_accumulation_trains_on_the_same_micro_batches(tmp_path):
    """train.grad_accum_steps=2 (4 × 2 scans per step, 3 steps per epoch): a run resumed from any step checkpoint
    trains on exactly the micro-batches the uninterrupted run trained on after that step, and ends with its weights."""
    full = _trainer(tmp_path / "full", epochs=2, batch_size=4, grad_accum_steps=2, checkpoint_every=1)
    seen_full = _record_indices(full)
    full.fit()
    assert len(seen_full) == 12
    for ckpt in list_checkpoints(tmp_path / "full" / "checkpoints")[:-1]:  # steps 1-5, mid-epoch ones included
        resumed = _trainer(tmp_path / ckpt.stem, epochs=2, batch_size=4, grad_accum_steps=2, checkpoint_every=1)
        assert resumed.resume(str(ckpt))
        seen = _record_indices(resumed)
        resumed.fit()
        assert seen == seen_full[2 * int(ckpt.stem.split("-")[1]):], ckpt.name
        assert torch.equal(_params(full), _params(resumed)), ckpt.name
