"""How the command line hands its arguments on: which flag reaches which option, which words are overrides
and in what order, and the exit status of a refused argument (found by mutating medssl/cli.py: each test
here let a mutant through before). The library calls are replaced by recorders, so nothing trains."""

import pytest

import medssl.api
import medssl.eval.compare
from medssl.cli import main
from medssl.config import ConfigError


@pytest.fixture
def recorded(monkeypatch):
    """medssl.api.evaluate / pretrain record what the CLI passes and stop there."""
    calls = {}

    def evaluate(run, **kwargs):
        calls["evaluate"] = kwargs
        raise FileNotFoundError("recorded")

    def pretrain(cfg, *args, **kwargs):
        calls["pretrain"] = cfg
        raise ConfigError("recorded")

    monkeypatch.setattr(medssl.api, "evaluate", evaluate)
    monkeypatch.setattr(medssl.api, "pretrain", pretrain)
    return calls


@pytest.mark.parametrize("flags, random_init", [([], None), (["--no-random-init"], False)])
def test_no_random_init_reaches_the_evaluation_options(recorded, tmp_path, flags, random_init):
    """Without the flag the run's own setting decides (None); with it the baseline is skipped (False)."""
    assert main(["evaluate", str(tmp_path), *flags]) == 2
    assert recorded["evaluate"]["options"].random_init is random_init


def test_a_bad_evaluation_option_is_a_one_line_error_with_status_2(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--n-boot", "-1"]) == 2
    err = capsys.readouterr().err
    assert "medssl evaluate: error: --n-boot must be >= 0" in err and "Traceback" not in err


def test_pretrain_overrides_without_a_config_file_apply_in_command_line_order(recorded):
    """The first word is taken for the config file unless it is key=value; it stays the first override."""
    assert main(["pretrain", "train.epochs=3", "train.epochs=5", "train.lr=0.5"]) == 2
    cfg = recorded["pretrain"]
    assert (cfg.train.epochs, cfg.train.lr) == (5, 0.5)
    assert main(["pretrain", "train.epochs=5", "train.epochs=3"]) == 2
    assert recorded["pretrain"].train.epochs == 3


@pytest.mark.parametrize("flags, encoders", [([], ("pretrained",)), (["--random-init"], ("pretrained", "random init"))])
def test_compare_shows_the_random_init_baseline_only_when_asked(monkeypatch, capsys, flags, encoders):
    seen = []
    monkeypatch.setattr(medssl.eval.compare, "compare_table", lambda runs, enc: seen.append(enc) or "TABLE")
    monkeypatch.setattr(medssl.eval.compare, "plot_compare", lambda runs, plot, enc: seen.append(enc) or plot)
    assert main(["compare", "a", "b", "--plot", "p.png", *flags]) == 0
    assert seen == [encoders, encoders]
    assert capsys.readouterr().out == "TABLE\nplot: p.png\n"


def test_list_of_one_kind_prints_only_that_kind(capsys):
    from medssl.registry import list_losses

    assert main(["list", "losses"]) == 0
    assert capsys.readouterr().out == f"losses: {', '.join(list_losses())}\n"
    assert main(["list"]) == 0
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()] == ["encoders", "methods", "losses",
                                                                                     "cards"]
