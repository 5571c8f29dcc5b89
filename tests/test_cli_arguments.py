"""How the command line hands its arguments on: which flag reaches which option, which words are overrides
and in what order, and the exit status of a refused argument (found by mutating medssl/cli.py: each test
here let a mutant through before). The library calls are replaced by recorders, so nothing trains."""

import pytest

import medssl.api
import medssl.eval.compare
import medssl.eval.report
from medssl.cli import main, parse_args
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


def test_every_evaluation_flag_reaches_its_option(recorded, tmp_path):
    """Each flag with a value other than its default: one parsed but not passed on would leave the default."""
    assert main(["evaluate", str(tmp_path), "--protocol", "finetune", "--data", "card", "--root", "r", "--targets", "age",
                 "--seed", "3", "--n-boot", "7", "--fractions", "0.5", "1.0", "--seeds", "4", "5", "--fewshot-finetune",
                 "--external-sites", "s1", "--map", "tsne", "--tta-flip", "--device", "cpu", "--out", "o",
                 "--finetune-mode", "last", "--last-blocks", "2", "--lr-encoder", "0.01", "--lr-head", "0.02",
                 "--head-init", "probe", "--freeze-norm-stats", "--epochs", "4", "--batch-size", "6",
                 "--patience", "2"]) == 2
    kw = recorded["evaluate"]
    assert {k: kw[k] for k in ("protocol", "data", "root", "device", "out")} == \
        {"protocol": "finetune", "data": "card", "root": "r", "device": "cpu", "out": "o"}
    o = kw["options"]
    assert (o.protocol, o.targets, o.seed, o.n_boot, o.fractions, o.seeds, o.fewshot_finetune, o.external_sites,
            o.map_method, o.tta_flip) == ("finetune", ("age",), 3, 7, (0.5, 1.0), (4, 5), True, ("s1",), "tsne", True)
    ft = o.finetune
    assert (ft.mode, ft.last_blocks, ft.lr_encoder, ft.lr_head, ft.head_init, ft.freeze_norm_stats, ft.epochs,
            ft.batch_size, ft.patience) == ("last", 2, 0.01, 0.02, "probe", True, 4, 6, 2)


def test_a_config_file_whose_name_holds_an_equals_sign_is_read_as_the_config(recorded, tmp_path, monkeypatch):
    """`medssl pretrain lr=0.1.yaml train.lr=0.5`: an existing file is the config even with '=' in its name;
    only a word that is no file is taken for the first override."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lr=0.1.yaml").write_text("train:\n  epochs: 7\n  lr: 0.1\n")
    assert main(["pretrain", "lr=0.1.yaml", "train.lr=0.5"]) == 2
    assert (recorded["pretrain"].train.epochs, recorded["pretrain"].train.lr) == (7, 0.5)


@pytest.mark.parametrize("rank, reports", [("0", True), ("1", False), ("3", False)])
def test_only_rank_0_reports_and_evaluates_after_pretraining(monkeypatch, tmp_path, capsys, rank, reports):
    """Under torchrun every process runs `medssl pretrain`; rank 0 alone prints and runs --evaluate."""
    evaluated = []
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setattr(medssl.api, "pretrain", lambda cfg, *a, **k: tmp_path)
    monkeypatch.setattr(medssl.api, "evaluate", lambda run, **k: evaluated.append(run) or {})
    monkeypatch.setattr(medssl.eval.report, "format_table", lambda results: "TABLE")
    assert main(["pretrain", "train.epochs=1", "--evaluate"]) == 0
    assert (evaluated == [tmp_path]) is reports
    assert (capsys.readouterr().out == f"pretraining done: {tmp_path}\nTABLE\n") is reports


def test_a_file_exists_error_without_a_path_is_not_reported_as_folder_none(monkeypatch, capsys):
    """main() turns an OS error on an output folder into 'cannot use the folder PATH'; an error raised with its own
    message (no filename) is not dressed up as 'cannot use the folder None: a file of that name exists'."""
    def pretrain(cfg, *a, **k):
        raise FileExistsError("its own message")

    monkeypatch.setattr(medssl.api, "pretrain", pretrain)
    with pytest.raises(FileExistsError, match="its own message"):
        main(["pretrain", "train.epochs=1"])
    assert "folder None" not in capsys.readouterr().err


def test_command_defaults_are_those_the_docs_state():
    """README: `medssl demo` writes a cohort of 300 subjects from 3 sites; docs/evaluation.md: `--n-boot`, default
    1000 replicates. The numbers are read from the documents."""
    import re
    from pathlib import Path

    from medssl.cli import parse_args

    docs = Path(__file__).resolve().parents[1]
    readme = (docs / "README.md").read_text()
    evaluation = (docs / "docs" / "evaluation.md").read_text()
    subjects = int(re.search(r"writes a synthetic cohort of (\d+) subjects", readme).group(1))
    n_boot = int(re.search(r"\(`--n-boot`,\s+default (\d+) replicates\)", evaluation).group(1))
    assert (subjects, n_boot) == (300, 1000)
    assert parse_args(["demo"]).subjects == subjects and parse_args(["evaluate", "run"]).n_boot == n_boot


@pytest.mark.parametrize("argv, unknown", [
    (["evaluate", "run", "--fewshot"], "--fewshot"),                         # would be --fewshot-finetune
    (["evaluate", "run", "--last", "2"], "--last 2"),                        # would be --last-blocks
    (["pretrain", "cfg.yaml", "--eval"], "--eval"),                          # would be --evaluate
    (["data", "prepare", "card", "--out", "c", "--work", "2"], "--work 2"),  # nested: would be --workers
])
def test_an_abbreviated_flag_is_refused_not_taken_for_the_long_one(argv, unknown, capsys):
    """argparse's default takes any unique prefix of a long option; a prefix or typo must not quietly turn
    on another option (here each prefix is unique, so the old parser accepted it)."""
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2 and f"unrecognized arguments: {unknown}" in capsys.readouterr().err


def test_fine_tuning_flag_defaults_are_those_the_docs_state_and_the_python_apis():
    """docs/evaluation.md states the defaults of --lr-encoder, --lr-head, --patience, --epochs and --batch-size; the
    command line and FinetuneOptions (the Python API) must both have them (found by mutating medssl/cli.py: another
    --patience or --lr-encoder default let every test pass)."""
    import re
    from pathlib import Path

    from medssl.eval.finetune import FinetuneOptions

    text = " ".join((Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text().split())
    docs = {flag: float(re.search(rf"`--{flag}`[^0-9`]*([0-9][0-9.e-]*)", text).group(1))
            for flag in ("lr-encoder", "lr-head", "patience", "epochs", "batch-size")}
    assert docs == {"lr-encoder": 1e-4, "lr-head": 1e-3, "patience": 5, "epochs": 30, "batch-size": 16}
    args, ft = parse_args(["evaluate", "run"]), FinetuneOptions()
    for flag, value in docs.items():
        name = flag.replace("-", "_")
        assert getattr(args, name) == getattr(ft, name) == value, flag
