"""Config schema: defaults, YAML, overrides and every kind of validation error."""

import re

import pytest
import yaml

from medssl.config import ConfigError, RunConfig, config_hash, load_config, parse_override, save_config
from medssl.data.card import load_card


def test_defaults_validate_and_round_trip(tmp_path):
    cfg = load_config()
    assert isinstance(cfg, RunConfig)
    path = save_config(cfg, tmp_path / "config.yaml")
    assert load_config(path) == cfg


def test_yaml_and_overrides_merge(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text(yaml.safe_dump({"train": {"epochs": 3}, "method": {"name": "yaware", "loss": {"sigma": 2.0}}}))
    cfg = load_config(f, ["train.lr=0.01", "augment.crop_size=[32,32,32]", "method.loss.temperature=0.2"])
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.01
    assert cfg.augment.crop_size == [32, 32, 32]
    assert cfg.method.loss == {"sigma": 2.0, "temperature": 0.2}
    assert cfg.train.batch_size == RunConfig().train.batch_size  # untouched default


def test_int_accepted_for_float():
    assert load_config(overrides=["train.lr=1"]).train.lr == 1.0


@pytest.mark.parametrize("override, words", [
    ("train.epoch=3", ["train.epoch", "Did you mean 'epochs'"]),
    ("trian.epochs=3", ["trian", "Did you mean 'train'"]),
    ("train.epochs=three", ["train.epochs", "expected int"]),
    ("train.epochs=true", ["train.epochs", "boolean"]),
    ("data.normalise=zcore", ["data.normalise", "zscore", "minmax"]),
    ("encoder.name=resnet17", ["encoder.name", "Did you mean", "resnet18"]),
    ("method.name=simclrr", ["method.name", "simclr"]),
    ("method.loss.temprature=0.1", ["method.loss.temprature", "temperature"]),
    ("encoder.options.widht=8", ["encoder.options.widht", "width"]),
    ("augment.crop_size=[64,64,64]", ["crop_size", "larger than data.shape"]),
    ("data.shape=[48,48]", ["data.shape", "3 positive sizes"]),
    ("train.batch_size=1", ["train.batch_size"]),
    ("train.device=tpu", ["train.device", "cuda"]),
    ("eval.targets=[age,colour]", ["eval.targets", "colour"]),
    ("augment.preset=brain", ["augment", "brain_mri"]),
    ("train.epochs", ["key=value"]),
    ("train.checkpoint_every=-1", ["train.checkpoint_every must be >= 0"]),
    ("encoder.options={width:8}", ["write a space after the colon, e.g. {width: 8}"]),
])
def test_bad_values_name_the_key(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    for w in words:
        assert w in str(e.value), (w, str(e.value))


@pytest.mark.parametrize("override, words", [
    # each of these was accepted and failed late or silently: eval.batch_size=0 crashed pretrain --evaluate
    # after the whole training (DataLoader ValueError); a negative final_lr_fraction made the last steps'
    # lr negative (gradient ascent); a negative grad_clip or fairkl_weight was silently "off"
    ("eval.batch_size=0", ["eval.batch_size must be >= 1"]),
    ("encoder.in_channels=0", ["encoder.in_channels must be >= 1"]),
    ("method.proj_dim=0", ["method.proj_dim must be >= 1"]),
    ("method.proj_hidden_dim=0", ["method.proj_hidden_dim must be >= 1"]),
    ("train.final_lr_fraction=-0.5", ["train.final_lr_fraction must be >= 0"]),
    ("train.warmup_epochs=-1", ["train.warmup_epochs must be >= 0"]),
    ("train.weight_decay=-0.01", ["train.weight_decay must be >= 0"]),
    ("train.momentum=-0.9", ["train.momentum must be >= 0"]),
    ("train.grad_clip=-1", ["train.grad_clip must be >= 0"]),
    ("method.fairkl_weight=-1", ["method.fairkl_weight must be >= 0"]),
])
def test_out_of_range_numbers_are_refused_at_load_time(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_a_run_trained_with_a_negative_training_setting_stays_readable():
    """evaluate / export read a trained run's config with for_training=False: training-only ranges do not stop them."""
    cfg = load_config(overrides=["train.grad_clip=-1", "train.final_lr_fraction=-0.5"], for_training=False)
    assert cfg.train.grad_clip == -1 and cfg.train.final_lr_fraction == -0.5


def test_unknown_key_in_yaml_names_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  epocs: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*train.epocs.*epochs"):
        load_config(f)


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("nope.yaml")


def test_parse_override_nested():
    assert parse_override("a.b.c=[1, 2]") == (["a", "b", "c"], [1, 2])


def test_override_of_a_whole_option_dict_replaces_it(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("method: {name: yaware, loss: {sigma: 2.0}}\n")
    cfg = load_config(f, ["method.name=simclr", "method.loss={temperature: 0.3}"])
    assert cfg.method.loss == {"temperature": 0.3}


def test_shipped_configs_validate():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))
    assert files
    for f in files:
        cfg = load_config(f)
        card = getattr(getattr(cfg, "data", None), "card", None)
        if card:  # the card a config names must exist (a typo only surfaced at `medssl pretrain` before)
            load_card(card)


def test_exponents_without_a_decimal_point_are_numbers_in_overrides_and_files(tmp_path):
    """PyYAML (YAML 1.1) would keep '1e-4' a string and the lr check would refuse it; YAML 1.2 and
    Python read it as 0.0001. Strings that only look close stay strings."""
    assert parse_override("train.lr=1e-4") == (["train", "lr"], 1e-4)
    assert parse_override("train.lr=-2E+3")[1] == -2000.0 and parse_override("x=.5e2")[1] == 50.0
    assert parse_override("x=1e")[1] == "1e" and parse_override("x=e5")[1] == "e5"
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 3e-4\n  weight_decay: 1e-2\n")
    cfg = load_config(path, ["train.epochs=2"])
    assert (cfg.train.lr, cfg.train.weight_decay) == (3e-4, 1e-2)


@pytest.mark.parametrize("method, loss, words", [
    ("simclr", "yaware", "which simclr does not pass (the loss would silently be NT-Xent)"),
    ("yaware", "ntxent", "yaware passes method.metadata=['age'] (continuous), which ntxent does not use"),
    ("yaware", "supcon", "Losses that fit yaware: exp, threshold, yaware"),
    ("supinfonce", "exp", "Losses that fit supinfonce: decoupled, eps_supcon, eps_supinfonce, ntxent, supcon"),
])
def test_a_loss_that_does_not_fit_the_method_is_refused(method, loss, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_config(None, [f"method.name={method}", f"method.loss.name={loss}"])
    load_config(None, [f"method.name={method}"])  # its default loss fits


def test_every_config_key_is_documented_with_its_default():
    """docs/training.md lists every key of the schema once, with the default the dataclasses really have."""
    import dataclasses
    import re
    from pathlib import Path

    from medssl.config import RunConfig, load_yaml

    doc = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    rows = re.findall(r"^\| `([a-z_.]+)` \| `([^`]*)` \|", doc, flags=re.M)
    documented = dict(rows)
    assert len(documented) == len(rows), "a key is listed twice"
    expected = {}
    for f in dataclasses.fields(RunConfig):
        value = getattr(RunConfig(), f.name)
        if dataclasses.is_dataclass(value):
            expected.update({f"{f.name}.{k}": v for k, v in dataclasses.asdict(value).items()})
        else:
            expected[f.name] = value
    assert sorted(documented) == sorted(expected)
    for key, default in expected.items():
        assert load_yaml(documented[key]) == default, f"{key}: documented {documented[key]!r}, schema {default!r}"


def test_a_label_column_for_a_method_that_ignores_it_is_refused():
    with pytest.raises(ConfigError, match=r"method.label_column='label' is used only by .*\(supinfonce\); simclr would"):
        load_config(overrides=["method.name=simclr", "method.label_column=label"])
    assert load_config(overrides=["method.name=supinfonce", "method.label_column=label"]).method.label_column == "label"


@pytest.mark.parametrize("shape, crop, key, fix", [
    ("[20,20,20]", "[16,16,16]", "data.shape=[20, 20, 20]", "data.shape=[24, 24, 24]"),  # MAE evaluate: whole scans
    ("[24,24,24]", "[20,20,20]", "augment.crop_size=[20, 20, 20]", "augment.crop_size=[16, 16, 16]"),
])
def test_vit_sizes_off_the_patch_grid_are_refused_before_pretraining(shape, crop, key, fix):
    """A ViT embeds views of augment.crop_size in pretraining and whole scans of data.shape in the online monitor
    and ``medssl evaluate``: sizes that are not multiples of its patch size used to fail only after pretraining."""
    vit = ["encoder.name=vit_tiny", "encoder.options={img_size: 16, patch_size: 8, hidden_size: 48, num_heads: 2}"]
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[*vit, "method.name=mae", f"data.shape={shape}", f"augment.crop_size={crop}"])
    for words in (key, "patch_size [8, 8, 8]", fix):
        assert words in str(e.value), (words, str(e.value))
    ok = load_config(overrides=[*vit, "method.name=mae", "data.shape=[24,24,16]", "augment.crop_size=[16,16,16]"])
    assert ok.data.shape == [24, 24, 16]
    with pytest.raises(ConfigError, match=r"data.shape=\[20, 20, 20\].*patch_size \[16, 16, 16\]"):  # default patch 16
        load_config(overrides=["encoder.name=vit_tiny", "data.shape=[20,20,20]", "augment.crop_size=[16,16,16]"])


def test_a_value_error_names_the_config_file_it_came_from(tmp_path):
    """A refused value read back from a file (a run's config.yaml, a recipe) named the key but not the file."""
    cfg = tmp_path / "old_run" / "config.yaml"
    cfg.parent.mkdir()
    cfg.write_text("eval:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match=r"eval.batch_size must be >= 1, got 0 \(config .*old_run/config.yaml\)"):
        load_config(cfg)
    with pytest.raises(ConfigError, match=r"\(config .*config.yaml with overrides train.epochs=2\)"):
        load_config(cfg, ["train.epochs=2"])


@pytest.mark.parametrize("section, key, value, words", [
    ("train", "epochs", "2", "train.epochs: expected int"),                    # a string where the schema wants an int
    ("train", "epoch", 3, "unknown config key 'train.epoch'. Did you mean 'epochs'"),  # Python accepts any attribute
    ("augment", "crop_size", [64, 64, 64], "augment.crop_size [64, 64, 64] is larger than data.shape"),
    ("method", "loss", {"temprature": 0.1}, "unknown option method.loss.temprature"),
])
def test_pretrain_checks_a_config_changed_in_python(tmp_path, section, key, value, words):
    """medssl.api.pretrain(cfg) on a RunConfig changed in Python: a wrong type, a misspelt key, a crop larger
    than the scan or a misspelt loss option is a ConfigError naming the key before anything is written (it was a
    TypeError deep in training, a typo trained silently with the default, a crop too large trained)."""
    from medssl.api import pretrain

    cfg = load_config(overrides=[f"output_dir={tmp_path / 'run'}", f"data.root={tmp_path / 'no-cohort'}"])
    setattr(getattr(cfg, section), key, value)
    with pytest.raises(ConfigError, match=re.escape(words)):
        pretrain(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_check_config_coerces_values_as_loading_does():
    """Values set in Python are coerced as a config file's are, so config.yaml reads back the same config."""
    from medssl.config import check_config

    from pathlib import Path

    cfg = load_config()
    cfg.train.lr, cfg.data.shape, cfg.output_dir = 1, (48, 48, 40), Path("runs") / "x"
    assert check_config(cfg) is cfg
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float) and cfg.data.shape == [48, 48, 40]
    assert cfg.output_dir == "runs/x"  # a pathlib.Path is a str key's value (yaml.safe_dump could not write it)
    cfg.output_dir = "runs/default"
    assert config_hash(cfg) == config_hash(load_config(overrides=["train.lr=1.0", "data.shape=[48,48,40]"]))


def test_overrides_given_as_one_string_say_that_a_list_is_expected():
    """load_config(None, "train.epochs=3") iterated the string: "override 't' must look like key=value"."""
    with pytest.raises(ConfigError, match=re.escape("overrides must be a list of key=value strings, e.g. "
                                                    "['train.epochs=3'], not a string")):
        load_config(None, "train.epochs=3")


def test_a_fresh_python_run_into_a_folder_with_checkpoints_names_the_python_setting_that_resumes(tmp_path):
    """From Python the refusal said only `--resume auto`, a flag of the command line."""
    from medssl.api import pretrain

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "step-00000004.pt").write_bytes(b"")
    cfg = load_config(overrides=[f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match=re.escape("--resume auto (in Python: cfg.train.resume = 'auto')")):
        pretrain(cfg, progress=False)


@pytest.mark.parametrize("kind", ["config", "card"])
def test_a_yaml_file_that_is_not_utf8_names_the_file_and_the_byte(tmp_path, kind):
    """A config or data card saved in another encoding (here Latin-1 'ô' = 0xf4) is a ConfigError naming the file
    and the first byte that is not UTF-8, not a bare UnicodeDecodeError; a UTF-8 byte-order mark is read."""
    from medssl.data.card import load_card

    load = load_config if kind == "config" else load_card
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("# scanner: Siemens Avanto, Hôpital\n".encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        load(bad)
    assert str(e.value) == f"{bad}: not UTF-8 text (byte 0xf4 at offset 28); save it as UTF-8"
    if kind == "config":
        bom = tmp_path / "bom.yaml"
        bom.write_bytes(b"\xef\xbb\xbftrain:\n  epochs: 3\n")
        assert load_config(bom).train.epochs == 3
