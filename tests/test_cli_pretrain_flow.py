"""What `medssl pretrain` does after (or instead of) training, as docs/training.md ("Failures") says: --resume reaches
the config, Ctrl-C exits with status 130 naming the checkpoint --resume auto continues from, a run stopped by
SIGTERM is not evaluated, --evaluate evaluates the finished run and only when given (found by mutating
medssl/cli.py: each test here let a mutant through before). pretrain / evaluate are replaced by recorders."""

import json

import pytest

import medssl.api
import medssl.eval.report
from medssl.cli import main


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """pretrain returns tmp_path/run (or raises ``calls["raise"]``); evaluate records its argument."""
    calls = {"evaluated": []}

    def pretrain(cfg, *args, **kwargs):
        calls["cfg"] = cfg
        if "raise" in calls:
            raise calls["raise"]
        return tmp_path / "run"

    monkeypatch.setattr(medssl.api, "pretrain", pretrain)
    monkeypatch.setattr(medssl.api, "evaluate", lambda run, *a, **k: calls["evaluated"].append(run) or {})
    monkeypatch.setattr(medssl.eval.report, "format_table", lambda results: "TABLE")
    (tmp_path / "run").mkdir()
    return calls


def test_resume_reaches_the_config_and_wins_over_an_override(calls, tmp_path):
    assert main(["pretrain", f"output_dir={tmp_path / 'run'}", "--resume", "auto"]) == 0
    assert calls["cfg"].train.resume == "auto"
    assert main(["pretrain", f"output_dir={tmp_path / 'run'}", "train.resume=old.pt", "--resume", "auto"]) == 0
    assert calls["cfg"].train.resume == "auto"
    assert main(["pretrain", f"output_dir={tmp_path / 'run'}"]) == 0
    assert calls["cfg"].train.resume == ""


def test_ctrl_c_exits_130_naming_the_latest_checkpoint_by_step(calls, tmp_path, capsys):
    calls["raise"] = KeyboardInterrupt()
    args = ["pretrain", f"output_dir={tmp_path / 'run'}", "--evaluate"]
    assert main(args) == 130
    assert "interrupted before the first checkpoint" in capsys.readouterr().err
    (tmp_path / "run" / "checkpoints").mkdir()
    for step in (2, 10, 9):  # step 10 is the latest, although "step-2.pt" sorts after it as text
        (tmp_path / "run" / "checkpoints" / f"step-{step}.pt").write_bytes(b"")
    assert main(args) == 130
    err = capsys.readouterr().err
    assert f"the latest checkpoint is {tmp_path / 'run' / 'checkpoints' / 'step-10.pt'}: continue with --resume auto" in err
    assert calls["evaluated"] == []


def test_a_run_stopped_by_sigterm_is_not_evaluated_and_exits_0(calls, tmp_path, capsys):
    summary = {"steps": 5, "final_loss": 1.0, "seconds": 1.0, "stopped_early": True, "best_metric": None}
    (tmp_path / "run" / "train_summary.json").write_text(json.dumps(summary))
    assert main(["pretrain", f"output_dir={tmp_path / 'run'}", "--evaluate"]) == 0
    assert calls["evaluated"] == []
    assert "pretraining stopped early at step 5 (SIGTERM)" in capsys.readouterr().out


@pytest.mark.parametrize("flags, evaluated", [([], False), (["--evaluate"], True)])
def test_a_finished_run_is_evaluated_only_with_evaluate(calls, tmp_path, capsys, flags, evaluated):
    summary = {"steps": 5, "final_loss": 1.0, "seconds": 1.0, "stopped_early": False, "best_metric": None}
    (tmp_path / "run" / "train_summary.json").write_text(json.dumps(summary))
    assert main(["pretrain", f"output_dir={tmp_path / 'run'}", *flags]) == 0
    assert calls["evaluated"] == ([tmp_path / "run"] if evaluated else [])
    out = capsys.readouterr().out
    assert out.startswith(f"pretraining done: {tmp_path / 'run'}\n") and out.endswith("TABLE\n") == evaluated
