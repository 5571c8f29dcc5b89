"""Kill/resume, SIGTERM and DDP equivalence, each in real subprocesses."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SCRIPT = str(Path(__file__).with_name("tiny_run.py"))


def _run(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, SCRIPT, *map(str, args)], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _steps_logged(run_dir: Path) -> int:
    log = run_dir / "metrics.jsonl"
    if not log.exists():
        return 0
    rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    return max((r["step"] for r in rows), default=0)


def _wait_for_step(proc, run_dir, step, timeout=120):
    t0 = time.time()
    while _steps_logged(run_dir) < step:
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - t0 < timeout
        time.sleep(0.05)


def _same(a: Path, b: Path) -> None:
    pa, pb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.allclose(pa[k], pb[k], atol=1e-6, rtol=0), k


def test_sigkill_at_an_arbitrary_step_then_resume_equals_uninterrupted(tmp_path):
    ref = _run(tmp_path / "ref", "--epochs", 3, "--params", tmp_path / "ref.pt")
    assert ref.wait(timeout=300) == 0, ref.stdout.read()
    victim = _run(tmp_path / "run", "--epochs", 3, "--checkpoint-every", 1, "--sleep", 0.3)
    _wait_for_step(victim, tmp_path / "run", 7)  # mid-epoch 2 (4 steps per epoch)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert _steps_logged(tmp_path / "run") < 12
    resumed = _run(tmp_path / "run", "--epochs", 3, "--resume", "auto", "--params", tmp_path / "resumed.pt")
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()
    _same(tmp_path / "ref.pt", tmp_path / "resumed.pt")
    steps = [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))  # the log was cut back to the checkpoint: no duplicated steps


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    proc = _run(tmp_path, "--epochs", 50, "--sleep", 0.2)
    _wait_for_step(proc, tmp_path, 2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "'stopped_early': True" in out
    ckpts = sorted((tmp_path / "checkpoints").glob("step-*.pt"))
    assert ckpts and 2 <= int(ckpts[-1].stem.split("-")[1]) < 200


def test_sigterm_to_the_process_group_with_dataloader_workers_still_checkpoints(tmp_path):
    """torchrun stops a worker with os.killpg(SIGTERM) (and Slurm signals every process of a job step), so the
    DataLoader worker processes (data.num_workers > 0) get the signal too. They died of it, and the training
    process failed on "DataLoader worker … exited unexpectedly" without a checkpoint. Workers now leave SIGTERM
    to the training process: it finishes the step, checkpoints and exits 0."""
    proc = _run(tmp_path, "--epochs", 50, "--sleep", 0.2, "--num-workers", 2, start_new_session=True)
    _wait_for_step(proc, tmp_path, 2)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "'stopped_early': True" in out
    ckpts = sorted((tmp_path / "checkpoints").glob("step-*.pt"))
    assert ckpts and 2 <= int(ckpts[-1].stem.split("-")[1]) < 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_equals_one_process_with_the_same_global_batch(tmp_path):
    single = _run(tmp_path / "one", "--epochs", 2, "--params", tmp_path / "one.pt")
    assert single.wait(timeout=300) == 0, single.stdout.read()
    port = str(_free_port())
    procs = [_run(tmp_path / "two", "--epochs", 2, "--params", tmp_path / "two.pt",
                  env={"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}) for r in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stdout.read()
    _same(tmp_path / "one.pt", tmp_path / "two.pt")
    assert not (tmp_path / "two.pt").with_name("two.pt.rank1").exists()
    # the logged numbers are the global batch's too: the gathered loss, and a per-rank term (as MAE's loss is) was
    # rank 0's half of the batch alone; it is now the mean over the ranks
    rows = {n: [json.loads(x) for x in (tmp_path / n / "metrics.jsonl").read_text().splitlines()] for n in ("one", "two")}
    assert [r["step"] for r in rows["two"]] == [r["step"] for r in rows["one"]] == list(range(1, 9))
    for key in ("loss", "contrastive", "image_mean"):
        assert [r[key] for r in rows["two"]] == pytest.approx([r[key] for r in rows["one"]], rel=1e-6, abs=1e-7), key


def _ddp(*args, port: str):
    return [_run(*args, env={"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                             "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}) for r in range(2)]


def test_ddp_ranks_draw_their_own_dropout_masks_and_a_resume_draws_them_again(tmp_path):
    """Every rank seeds alike, so draws from torch's global RNG (dropout masks, anything without a generator)
    were the same on every rank at every step although each rank holds other samples: a correlation that one
    process on the global batch does not have. Each rank now draws its own, and a 2-process run resumed from a
    checkpoint draws what the uninterrupted run drew at the same steps."""
    for p in _ddp(tmp_path / "full", "--epochs", 2, "--draws", tmp_path / "full.pt", port=str(_free_port())):
        assert p.wait(timeout=300) == 0, p.stdout.read()
    full = [torch.load(f"{tmp_path / 'full.pt'}.rank{r}", weights_only=True) for r in range(2)]
    assert full[0].shape == (8, 4)  # 2 epochs of 4 steps, one draw of 4 numbers per step
    for step in range(8):
        assert not torch.equal(full[0][step], full[1][step]), f"step {step + 1}: both ranks drew the same mask"
    assert len({tuple(d.tolist()) for d in full[0]}) == 8  # and a new one every step
    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    (tmp_path / "cut" / "checkpoints" / "step-00000008.pt").unlink()  # killed after the step-4 checkpoint
    for p in _ddp(tmp_path / "cut", "--epochs", 2, "--resume", "auto", "--draws", tmp_path / "cut.pt",
                  port=str(_free_port())):
        assert p.wait(timeout=300) == 0, p.stdout.read()
    for r in range(2):
        assert torch.equal(torch.load(f"{tmp_path / 'cut.pt'}.rank{r}", weights_only=True), full[r][4:]), f"rank {r}"


def test_a_2_process_run_resumed_by_1_process_says_it_is_not_the_exact_continuation(tmp_path):
    """A resume may change the number of processes (train.batch_size is global: the same batches per step), but
    views and dropout masks are drawn per rank, so it does not repeat the uninterrupted run (docs/training.md).
    Before, it continued without a word; the checkpoint now records its world size and the resume says so."""
    for p in _ddp(tmp_path / "two", "--epochs", 1, port=str(_free_port())):
        assert p.wait(timeout=300) == 0, p.stdout.read()
    shutil.copytree(tmp_path / "two", tmp_path / "same")
    one = _run(tmp_path / "two", "--epochs", 2, "--resume", "auto")
    out = one.communicate(timeout=300)[0]
    assert one.returncode == 0 and "'steps': 8" in out, out
    assert "step-00000004.pt was written by 2 process(es), this run has 1" in out and "will not repeat" in out, out
    for p in _ddp(tmp_path / "same", "--epochs", 2, "--resume", "auto", port=str(_free_port())):
        out = p.communicate(timeout=300)[0]
        assert p.returncode == 0 and "'steps': 8" in out and "note:" not in out, out


def test_ddp_non_finite_weights_at_the_monitor_stop_every_rank_with_the_reason(tmp_path):
    """NaN weights found when rank 0 would write best.pt (no step checkpoint due that epoch) stop every rank
    with the NaN/Inf message; before, rank 0 alone raised and the others failed on the next collective
    (gloo: a connection error; NCCL: a hang until the 30-minute timeout)."""
    port = str(_free_port())
    procs = [_run(tmp_path / "run", "--epochs", 3, "--nan-after-step", 4, "--checkpoint-epochs", 3,
                  env={"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}) for r in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode != 0, out
        assert "encoder.fc.bias became NaN/Inf at step 4" in out, f"rank {rank}:\n{out}"
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()


def test_ddp_non_finite_loss_on_one_rank_stops_every_rank_with_the_reason(tmp_path):
    """A per-rank loss (MAE, Genesis) can become NaN on one process alone. That rank used to raise before its
    backward pass while the others waited in the gradient all-reduce (gloo: connection closed; NCCL: a hang
    until the timeout). Now every rank stops at the same step with the reason, and no update is applied."""
    port = str(_free_port())
    procs = [_run(tmp_path / "run", "--epochs", 3, "--checkpoint-every", 1, "--nan-loss-at", "1:6",
                  env={"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}) for r in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode != 0, f"rank {rank}:\n{out}"
        assert "NonFiniteLossError" in out and "at step 6" in out and "step-00000005.pt was kept" in out, \
            f"rank {rank}:\n{out}"
    assert "loss is nan at step 6" in outs[1] and "another process's loss is NaN/Inf" in outs[0]
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("step-*.pt"))
    assert int(ckpts[-1].stem.split("-")[1]) == 5


def test_ddp_sigterm_reaching_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    """torchrun and Slurm deliver SIGTERM to each process at its own moment, so one rank can see it a step
    before another. Each rank used to decide alone: the signalled one checkpointed and left, the others began
    the next step and died in its gradient all-reduce (gloo: connection closed; NCCL: a hang until SIGKILL).
    Here only rank 1 is signalled: both ranks must stop after the same step, exit 0 and leave its checkpoint."""
    port = str(_free_port())
    procs = [_run(tmp_path, "--epochs", 50, "--sleep", 0.2,
                  env={"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}) for r in range(2)]
    _wait_for_step(procs[0], tmp_path, 2)
    procs[1].send_signal(signal.SIGTERM)
    outs = [p.communicate(timeout=120)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"rank {rank}:\n{out}"
        assert "'stopped_early': True" in out, f"rank {rank}:\n{out}"
    steps = {int(o.split("'steps': ")[1].split(",")[0]) for o in outs}
    ckpts = sorted((tmp_path / "checkpoints").glob("step-*.pt"))
    assert len(steps) == 1 and ckpts and int(ckpts[-1].stem.split("-")[1]) == steps.pop() < 200


def test_ddp_ranks_that_resume_from_different_steps_are_refused(tmp_path):
    """A multi-node job whose output_dir is not on a shared file system: rank 0 finds the checkpoint, a rank on
    another node finds none and starts at step 0. Before, both trained (each rank applied the averaged gradients
    to its own weights, on batches of different epochs) until rank 0 finished and the other died in a
    collective. Now every rank refuses to start, naming the steps and output_dir."""
    first = _run(tmp_path / "node1", "--epochs", 1)
    assert first.wait(timeout=300) == 0, first.stdout.read()
    port = str(_free_port())
    procs = [_run(tmp_path / ("node1" if r == 0 else "node2"), "--epochs", 2, "--resume", "auto",
                  env={"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}) for r in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode != 0, f"rank {rank}:\n{out}"
        assert "start at different steps [4, 0]" in out and "output_dir" in out, f"rank {rank}:\n{out}"


def test_pretrain_evaluate_stopped_by_sigterm_exits_without_evaluating(small_cohort, tmp_path, monkeypatch, capsys):
    """`medssl pretrain … --evaluate` under SIGTERM: the scheduler gives the job a short grace period to save
    and exit (docs/training.md: "pretrain returns normally … re-submit with --resume auto"). The CLI went on to
    evaluate the half-trained encoder, writing its report into the run directory and running into the kill.
    Now it says where it stopped and how to continue, and exits 0 without evaluating."""
    from medssl.cli import main
    from medssl.train.trainer import Trainer

    step = Trainer._optimizer_step

    def step_then_sigterm(self, *args):
        out = step(self, *args)
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return out
    monkeypatch.setattr(Trainer, "_optimizer_step", step_then_sigterm)
    run = tmp_path / "run"
    assert main(["pretrain", f"data.root={small_cohort}", f"output_dir={run}", "data.shape=[24,24,24]",
                 "augment.crop_size=[20,20,20]", "train.batch_size=8", "train.progress=false", "train.epochs=3",
                 "encoder.options.width=8", "method.name=simclr", "--evaluate"]) == 0
    out = capsys.readouterr().out
    assert "stopped early at step 1" in out and "--resume auto" in out
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000001.pt"]
    assert not (run / "metrics.json").exists() and not (run / "report.md").exists()


def test_ctrl_c_in_pretrain_names_the_checkpoint_to_resume_from(small_cohort, tmp_path, monkeypatch, capsys):
    """Ctrl-C (SIGINT) during `medssl pretrain` ended in a KeyboardInterrupt traceback from inside the backward
    pass, saying neither what was kept nor how to go on. Now: exit status 130 and a line naming the latest
    checkpoint and --resume auto; following it continues from that step and finishes the run."""
    from medssl.cli import main
    from medssl.train.trainer import Trainer

    step = Trainer._optimizer_step

    def step_then_ctrl_c(self, *args):
        out = step(self, *args)
        if self.step == 4:  # 30 training subjects / batch 8: 3 steps an epoch, checkpoint at step 3
            os.kill(os.getpid(), signal.SIGINT)
        return out
    run = tmp_path / "run"
    args = ["pretrain", f"data.root={small_cohort}", f"output_dir={run}", "data.shape=[24,24,24]",
            "augment.crop_size=[20,20,20]", "train.batch_size=8", "train.progress=false", "train.epochs=2",
            "encoder.options.width=8", "method.name=simclr", "data.test_fraction=0.25"]
    # Python turns SIGINT into KeyboardInterrupt only where the parent left it at SIG_DFL: a test run started in the
    # background by a non-interactive shell (`make test &`, nohup) inherits SIG_IGN and the signal did nothing
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with monkeypatch.context() as m:
            m.setattr(Trainer, "_optimizer_step", step_then_ctrl_c)
            code = main(args)
    except KeyboardInterrupt:  # not caught by pretrain: a test failure, not pytest's own stop of the whole session
        pytest.fail("Ctrl-C escaped `medssl pretrain` as KeyboardInterrupt")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130
    err = capsys.readouterr().err
    assert f"the latest checkpoint is {run / 'checkpoints' / 'step-00000003.pt'}" in err and "--resume auto" in err
    assert "Traceback" not in err
    assert main([*args, "--resume", "auto"]) == 0
    assert "resumed at step 3/6" in capsys.readouterr().out
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 6 and summary["stopped_early"] is False
    docs = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text(encoding="utf-8")
    row = next(line for line in docs.splitlines() if line.startswith("| summary |"))
    assert set(summary) == set(re.findall(r"`(\w+)`", row)), "docs/training.md's summary row names other keys"
