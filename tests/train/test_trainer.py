"""Trainer: exact resume, NaN handling, safe checkpoints, incompatible checkpoints refused."""

import json
import math
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch

from medssl.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from medssl.train.trainer import NonFiniteLossError, Trainer, TrainerOptions

sys.path.insert(0, str(Path(__file__).parent))
from tiny_run import TinyEncoder  # noqa: E402  (the tiny BN-free encoder shared with the subprocess tests)
from trainer_helpers import Items, _params, _trainer  # noqa: E402


def test_resume_from_any_checkpoint_is_exact(tmp_path):
    full = _trainer(tmp_path / "full")
    full.fit()
    ckpts = list_checkpoints(tmp_path / "full" / "checkpoints")
    assert [int(p.stem.split("-")[1]) for p in ckpts] == [3, 6, 9]
    resumed = _trainer(tmp_path / "resumed")
    assert resumed.resume(str(ckpts[0]))
    assert resumed.step == 3
    resumed.fit()
    assert torch.equal(_params(full), _params(resumed))
    assert not torch.equal(_params(full), _params(_trainer(tmp_path / "fresh")))


def test_checkpoint_epochs_saves_every_nth_epoch_and_the_last(tmp_path):
    t = _trainer(tmp_path / "run", epochs=5, checkpoint_epochs=2)  # 3 steps per epoch
    t.fit()
    assert [int(p.stem.split("-")[1]) for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == [6, 12, 15]
    resumed = _trainer(tmp_path / "resumed", epochs=5, checkpoint_epochs=2)
    assert resumed.resume(str(list_checkpoints(tmp_path / "run" / "checkpoints")[0]))
    resumed.fit()
    assert torch.equal(_params(t), _params(resumed))


def test_compiled_encoder_trains_like_eager_and_keeps_checkpoint_keys(tmp_path, monkeypatch):
    """train.compile=True compiles the encoder in place (dynamo; the aot_eager backend keeps this test fast and
    exact), trains to the same parameters as eager mode, and writes the same checkpoint keys (no _orig_mod.)."""
    original = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: original(self, backend="aot_eager", **kw))
    torch._dynamo.reset()
    eager, compiled = _trainer(tmp_path / "eager", epochs=1), _trainer(tmp_path / "compiled", epochs=1, compile=True)
    assert compiled.method.encoder._compiled_call_impl is not None and eager.method.encoder._compiled_call_impl is None
    eager.fit()
    compiled.fit()
    torch.testing.assert_close(_params(compiled), _params(eager), rtol=1e-5, atol=1e-6)
    keys = lambda run: set(load_checkpoint(list_checkpoints(tmp_path / run / "checkpoints")[-1])["model"])  # noqa: E731
    assert keys("compiled") == keys("eager") and not any("_orig_mod" in k for k in keys("compiled"))


@pytest.mark.parametrize("name", ["mae", "genesis"])
def test_compile_reaches_the_generative_methods_which_bypass_the_encoders_call(tmp_path, monkeypatch, name):
    """MAE enters the encoder through forward_tokens and Genesis through forward_pyramid, so compiling the
    encoder's __call__ compiled nothing of their training step (dynamo traced 0 frames). train.compile now
    compiles the modules each method's step calls (Method.compile_modules); training matches eager mode."""
    from medssl.encoders import build_encoder
    from medssl.methods.genesis import ModelsGenesis
    from medssl.methods.mae import MAE

    original = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: original(self, backend="aot_eager", **kw))

    def trainer(run_dir, compile):
        torch.manual_seed(0)
        method = (MAE(build_encoder("vit_tiny", 3, 1, img_size=12, patch_size=4, hidden_size=48, num_layers=1,
                                    num_heads=2), decoder_dim=16, decoder_depth=1, decoder_heads=2) if name == "mae"
                  else ModelsGenesis(build_encoder("resnet10", 3, 1, width=4)))
        # SGD, not AdamW: AdamW divides by sqrt(v), so aot_eager's float rounding on a near-zero gradient becomes a
        # step of the full lr (seen once Genesis shuffled the small test images); SGD keeps differences at rounding
        opts = TrainerOptions(epochs=1, batch_size=8, lr=1e-2, optimizer="sgd", progress=False, compile=compile)
        return Trainer(method, Items(), run_dir, opts, torch.device("cpu"), config={"m": name})

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager, compiled = trainer(tmp_path / "eager", False), trainer(tmp_path / "compiled", True)
    eager.fit()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 0
    compiled.fit()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    torch.testing.assert_close(_params(compiled), _params(eager), rtol=1e-4, atol=1e-5)


def test_metrics_log_and_tensorboard(tmp_path):
    t = _trainer(tmp_path, epochs=1)
    t.fit()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and r["views_per_s"] > 0 for r in rows)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    _trainer(tmp_path, epochs=1).fit()  # a fresh (not resumed) run in the same directory starts a new log
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    good = _trainer(tmp_path, epochs=1)
    good.fit()
    before = list_checkpoints(tmp_path / "checkpoints")
    bytes_before = before[-1].read_bytes()
    bad = _trainer(tmp_path, epochs=2, poison=True)
    bad.resume("auto")
    with pytest.raises(NonFiniteLossError, match=r"at step 4.*step-00000003\.pt was kept"):
        bad.fit()
    assert list_checkpoints(tmp_path / "checkpoints") == before
    assert before[-1].read_bytes() == bytes_before


def test_incompatible_checkpoint_is_refused(tmp_path):
    t = _trainer(tmp_path, epochs=1)
    t.fit()
    other = _trainer(tmp_path / "o", config={"encoder": {"n": "other"}})
    with pytest.raises(CheckpointError, match=r"was written with encoder.n=.*this run has encoder.n='other'"):
        other.resume(str(list_checkpoints(tmp_path / "checkpoints")[-1]))


def test_checkpoints_are_atomic_and_pickle_free(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    torch.save({"x": Evil()}, tmp_path / "step-00000001.pt")
    with pytest.raises(CheckpointError, match="cannot load checkpoint safely"):
        load_checkpoint(tmp_path / "step-00000001.pt")
    for step in range(1, 5):
        save_checkpoint({"w": torch.ones(2) * step}, tmp_path / "ck", step, keep=2)
    names = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert names == ["step-00000003.pt", "step-00000004.pt"]  # no temp files left, last 2 kept
    assert torch.equal(load_checkpoint(tmp_path / "ck" / "step-00000004.pt")["w"], torch.full((2,), 4.0))


def test_a_write_that_dies_half_way_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    """Atomicity itself: a crash inside torch.save (half the bytes written) must leave the file already under
    the final name as it was, loadable, with no half-written file under a step-*.pt name, nor a hidden temp file
    (on a full disk it held the space a resume needs, under a name `ls` does not show)."""
    final = save_checkpoint({"w": torch.arange(1000.0)}, tmp_path, 7)
    before = final.read_bytes()
    real_save = torch.save

    def dies_half_way(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        data = Path(f).read_bytes()
        Path(f).write_bytes(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"w": torch.zeros(1000)}, tmp_path, 7)
    monkeypatch.undo()
    assert final.read_bytes() == before and list_checkpoints(tmp_path) == [final]
    assert [p.name for p in tmp_path.iterdir()] == [final.name]  # the half-written temp file is removed, not left
    assert torch.equal(load_checkpoint(final)["w"], torch.arange(1000.0))


def _steps(folder):
    return [int(p.stem.split("-")[1]) for p in list_checkpoints(folder)]


def _scripted_monitor(t, metrics, on_call=None):
    """A monitor reporting ``metrics[epoch]`` (epoch = step // 3) as best_metric; ``on_call(step)`` runs first."""
    def monitor(encoder):
        if on_call:
            on_call(t.step)
        return {"best_metric": metrics[t.step // t.steps_per_epoch - 1]}
    t.monitor = monitor
    t.opt.monitor_every = 1
    return t


def test_resumed_run_keeps_the_same_best_checkpoint_as_an_uninterrupted_one(tmp_path):
    """Each step checkpoint holds the best value after that epoch's monitor, so a resumed run does not
    overwrite best.pt with a worse model (the old code saved the step checkpoint before the monitor)."""
    metrics = [5.0, 3.0, 4.0, 6.0]  # best after epoch 2 (step 6); epoch 3 is worse than it, better than epoch 1
    full = _scripted_monitor(_trainer(tmp_path / "full", epochs=4), metrics)
    summary = full.fit()
    best = load_checkpoint(tmp_path / "full" / "checkpoints" / "best.pt")
    assert (best["step"], best["best"], summary["best_metric"]) == (6, 3.0, 3.0)
    shutil.copytree(tmp_path / "full", tmp_path / "cut")  # interrupted right after the step-6 checkpoint
    for p in list_checkpoints(tmp_path / "cut" / "checkpoints"):
        if int(p.stem.split("-")[1]) > 6:
            p.unlink()
    resumed = _scripted_monitor(_trainer(tmp_path / "cut", epochs=4), metrics)
    assert resumed.resume("auto") and resumed.step == 6
    summary = resumed.fit()
    best = load_checkpoint(tmp_path / "cut" / "checkpoints" / "best.pt")
    assert (best["step"], best["best"], summary["best_metric"]) == (6, 3.0, 3.0)
    assert torch.equal(_params(full), _params(resumed))


@pytest.mark.parametrize("where", ["monitor", "last step of an epoch"])
def test_sigterm_always_leaves_a_checkpoint_of_the_current_step(tmp_path, where):
    """SIGTERM during the monitor (the step was not due for a checkpoint) or in an epoch's last step: fit
    returns early with a step checkpoint of the current step, the epoch's monitor has run, and resuming from it
    ends like an uninterrupted run."""
    metrics = [5.0, 3.0, 4.0, 6.0]
    full = _scripted_monitor(_trainer(tmp_path / "full", epochs=4, checkpoint_epochs=3), metrics)
    full.fit()
    sigterm = lambda step: step == 3 and os.kill(os.getpid(), signal.SIGTERM)  # noqa: E731
    t = _scripted_monitor(_trainer(tmp_path / "run", epochs=4, checkpoint_epochs=3), metrics,
                          on_call=sigterm if where == "monitor" else None)
    if where != "monitor":
        t.method.on_step_end = lambda step, total: sigterm(step)
    summary = t.fit()
    assert summary["stopped_early"] and summary["steps"] == 3
    assert _steps(tmp_path / "run" / "checkpoints") == [3]
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "monitor/best_metric" in r] == [3]
    resumed = _scripted_monitor(_trainer(tmp_path / "run", epochs=4, checkpoint_epochs=3), metrics)
    assert resumed.resume("auto") and resumed.step == 3
    assert resumed.fit()["best_metric"] == 3.0
    assert torch.equal(_params(full), _params(resumed))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["step"] == 6


def test_a_tied_monitor_value_keeps_the_earlier_best_checkpoint(tmp_path):
    """best.pt is replaced only by a strictly lower best_metric (docs/training.md): on a tie the earlier
    epoch's weights stay."""
    t = _scripted_monitor(_trainer(tmp_path / "run", epochs=4, checkpoint_epochs=3), [5.0, 3.0, 3.0, 3.0])
    assert t.fit()["best_metric"] == 3.0
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["step"] == 6


class BNEncoder(TinyEncoder):
    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm3d(4)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).relu().mean(dim=(2, 3, 4)))


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    """A step with a finite loss that leaves NaN in a BatchNorm running statistic (training-mode BN does not use
    it, so the loss stays finite) stops the run before its checkpoint is written, naming the tensor."""
    t = _trainer(tmp_path, epochs=2, encoder=BNEncoder, checkpoint_every=1)

    def poison(step, total):
        if step == 2:
            t.method.encoder.bn.running_var[0] = float("nan")
    t.method.on_step_end = poison
    with pytest.raises(NonFiniteLossError, match=r"encoder\.bn\.running_var .*at step 2.*step-00000001\.pt was kept.*"
                                                 r"train\.lr.*train\.grad_clip"):
        t.fit()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000001.pt"]
    assert all(torch.isfinite(v).all() for v in load_checkpoint(tmp_path / "checkpoints" / "step-00000001.pt")["model"].values()
               if v.is_floating_point())


def test_nan_loss_without_any_checkpoint_says_so(tmp_path):
    with pytest.raises(NonFiniteLossError, match="No checkpoint was written to .*checkpoints yet"):
        _trainer(tmp_path, epochs=1, poison=True).fit()
    assert not list_checkpoints(tmp_path / "checkpoints")


def test_bf16_precision_on_cpu_with_the_brain_mri_views(tmp_path):
    """train.precision=bf16 on CPU: the views are built in float32 outside autocast, the model runs in bf16."""
    t = _trainer(tmp_path, epochs=1, precision="bf16")
    assert t.autocast_dtype == torch.bfloat16
    dtypes = []  # what the encoder's convolution computes in: bf16 under autocast, not float32
    t.method.encoder.conv.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    summary = t.fit()
    assert summary["steps"] == 3 and math.isfinite(summary["final_loss"])
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in t.method.parameters())  # the weights stay float32


def test_sigterm_in_the_middle_of_an_epoch_stops_at_that_step(tmp_path):
    """SIGTERM during step 1 of a 3-step epoch: fit returns after that step with its checkpoint alone, instead of
    training (and checkpointing) the rest of the epoch past the scheduler's grace period."""
    t = _trainer(tmp_path, epochs=2)
    t.method.on_step_end = lambda step, total: step == 1 and os.kill(os.getpid(), signal.SIGTERM)
    summary = t.fit()
    assert summary["stopped_early"] and summary["steps"] == 1 and t.step == 1
    assert _steps(tmp_path / "checkpoints") == [1]


def test_a_checkpoint_one_step_newer_is_refused_and_the_same_step_is_not(tmp_path):
    """refuse_newer: any later step counts, the very next one too; the checkpoint's own step does not."""
    from medssl.train.checkpoint import refuse_newer

    for step in (5, 6):
        save_checkpoint({"step": step}, tmp_path, step, keep=10)
    refuse_newer(tmp_path, 6, "step-00000006.pt")
    with pytest.raises(CheckpointError, match=r"holds 1 checkpoint\(s\) newer than .*\(step 5\): step-00000006.pt"):
        refuse_newer(tmp_path, 5, tmp_path / "step-00000005.pt")


def test_checkpoint_every_and_monitor_every_count_steps_and_epochs_from_one(tmp_path):
    """train.checkpoint_every=2 writes steps 2, 4, 6, … (plus the last epoch's end; checkpoint_epochs=4 here), and
    train.monitor_every=2 monitors after epochs 2 and 4 (steps 6 and 12 at 3 steps per epoch), not after epoch 1.
    Every other test used N = 1, for which an off-by-one in either count does not show."""
    t = _trainer(tmp_path, epochs=4, checkpoint_every=2, checkpoint_epochs=4)
    monitored = []
    t.monitor = lambda encoder: monitored.append(t.step) or {"best_metric": 1.0}
    t.opt.monitor_every = 2
    t.fit()
    assert _steps(tmp_path / "checkpoints") == [2, 4, 6, 8, 10, 12]
    assert monitored == [6, 12]


def test_sigterm_in_the_very_last_step_is_a_finished_run(tmp_path):
    """SIGTERM during the last step: that step completes the run, so it is not 'stopped early' (which made
    `medssl pretrain --evaluate` and the demo skip the evaluation of a fully trained encoder); the run's last
    checkpoint is written once. (A signal one step earlier still stops early:
    test_sigterm_in_the_middle_of_an_epoch_stops_at_that_step.)"""
    t = _trainer(tmp_path, epochs=1)  # 3 steps
    t.method.on_step_end = lambda step, total: step == total and os.kill(os.getpid(), signal.SIGTERM)
    summary = t.fit()
    assert (summary["steps"], summary["stopped_early"]) == (3, False)
    assert _steps(tmp_path / "checkpoints") == [3]
