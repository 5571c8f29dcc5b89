"""Edges of override parsing and of the range checks that no other test pinned (found by mutating
medssl/config.py and medssl/config_checks.py: each case below let a mutant through before)."""

import re

import pytest
import yaml

from medssl.config import ConfigError, load_config, parse_override


@pytest.mark.parametrize("override, words", [
    ("encoder.spatial_dims=1", "encoder.spatial_dims must be 2 or 3, got 1"),
    ("augment.crop_size=[0,40,40]", "augment.crop_size must list 3 positive sizes, got [0, 40, 40]"),
    ("data.spacing=[1.0,0,1.0]", "data.spacing must be [] or 3 positive values in mm, got [1.0, 0.0, 1.0]"),
    ("data.test_fraction=1.0", "data.test_fraction must be in (0, 1), got 1.0"),
    ("data.test_fraction=0", "data.test_fraction must be in (0, 1), got 0.0"),
    ("train.checkpoint_epochs=0", "train.checkpoint_epochs must be >= 1, got 0"),
    ("train.grad_accum_steps=0", "train.grad_accum_steps must be >= 1, got 0"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints must be >= 1, got 0"),  # would keep no checkpoint
    ("train.monitor_every=-1", "train.monitor_every must be >= 0 (0: off), got -1"),
    ("data.limit=-1", "data.limit must be >= 0 (0: off), got -1"),
    ("data.num_workers=-1", "data.num_workers must be >= 0 (0: off), got -1"),
    ("train.lr=0", "train.lr must be > 0, got 0.0"),
    ("train.device=cudaa", "train.device 'cudaa' is not valid. Valid choices: auto, cpu, cuda, cuda:N"),
])
def test_each_out_of_range_value_is_refused_with_its_own_message(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    assert words in str(e.value), str(e.value)


@pytest.mark.parametrize("override, key, value", [
    ("train.device=cuda:1", ("train", "device"), "cuda:1"),  # a GPU index is accepted (checked when training starts)
    ("data.test_fraction=0.5", ("data", "test_fraction"), 0.5),
    ("train.keep_checkpoints=1", ("train", "keep_checkpoints"), 1),
    ("train.monitor_every=0", ("train", "monitor_every"), 0),
    ("data.spacing=[1,1,2.5]", ("data", "spacing"), [1.0, 1.0, 2.5]),
    ("augment.crop_size=[48,48,48]", ("augment", "crop_size"), [48, 48, 48]),  # as large as data.shape is fine
])
def test_values_at_the_edge_of_a_range_are_accepted(override, key, value):
    cfg = load_config(overrides=[override])
    assert getattr(getattr(cfg, key[0]), key[1]) == value


def test_views_in_a_generative_methods_options_are_refused():
    with pytest.raises(ConfigError, match=re.escape("method.options.views: views are built from the augment section")):
        load_config(overrides=["method.name=genesis", "method.options={views: 2}"])


def test_an_override_value_may_contain_an_equals_sign():
    """Only the first '=' separates key and value (a folder named a=b, a YAML value holding '=')."""
    assert parse_override("data.root=/data/run=3") == (["data", "root"], "/data/run=3")
    assert load_config(overrides=["data.root=/data/run=3"]).data.root == "/data/run=3"


def test_an_empty_override_value_is_the_empty_string_not_null():
    """`data.root=` clears a string setting (YAML would read the empty text as null, which a str key refuses)."""
    assert parse_override("data.root=") == (["data", "root"], "")
    cfg = load_config(overrides=["data.root=/somewhere", "data.root=", "data.cache_dir=  "])
    assert (cfg.data.root, cfg.data.cache_dir) == ("", "")


def test_spaces_around_the_key_of_an_override_are_ignored():
    assert parse_override(" train.epochs =5") == (["train", "epochs"], 5)
    assert load_config(overrides=["train.epochs = 7"]).train.epochs == 7


def test_a_null_option_dict_in_a_file_is_empty(tmp_path):
    """`options:` with nothing after it (YAML null) means no options, as an empty mapping does."""
    f = tmp_path / "run.yaml"
    f.write_text("encoder:\n  options:\nmethod:\n  loss:\naugment:\n  overrides: null\n")
    cfg = load_config(f)
    assert (cfg.encoder.options, cfg.method.loss, cfg.augment.overrides) == ({}, {}, {})


def test_a_folder_given_as_the_config_file_is_a_config_error(tmp_path):
    """Not an IsADirectoryError traceback from reading it."""
    with pytest.raises(ConfigError, match=re.escape(f"config file {tmp_path} does not exist")):
        load_config(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"train": {"epochs": 2}}))
    assert load_config(tmp_path / "c.yaml").train.epochs == 2


def test_relative_card_root_and_cache_paths_become_absolute(tmp_path, monkeypatch):
    """config.yaml must find the card and the data from any folder: a card file (.yaml or .yml), data.root and
    data.cache_dir given relative to the current folder are stored absolute; a card name stays a name."""
    from medssl.config import RunConfig
    from medssl.config_checks import absolute_data_paths

    monkeypatch.chdir(tmp_path)
    for card in ("cards/mine.yml", "cards/mine.yaml"):
        cfg = RunConfig()
        cfg.data.card, cfg.data.root, cfg.data.cache_dir = card, "data", "cache"
        absolute_data_paths(cfg)
        assert (cfg.data.card, cfg.data.root, cfg.data.cache_dir) == (
            str(tmp_path / card), str(tmp_path / "data"), str(tmp_path / "cache"))
    cfg = RunConfig()
    absolute_data_paths(cfg)
    assert (cfg.data.card, cfg.data.root) == ("synthetic", "")


def test_a_run_folders_config_naming_it_by_a_relative_path_is_not_taken_for_a_copy(tmp_path, monkeypatch):
    """output_dir 'runs/r' read from the folder above runs/ is that run folder: training from its config.yaml
    goes on (only a config whose output_dir is another folder is refused)."""
    from medssl.config import RunConfig
    from medssl.config_checks import refuse_other_run_folder

    (tmp_path / "runs" / "r" / "checkpoints").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    cfg = RunConfig(output_dir="runs/r")
    refuse_other_run_folder("runs/r/config.yaml", cfg, [])
    refuse_other_run_folder(str(tmp_path / "runs" / "r" / "config.yaml"), cfg, [])
    cfg.output_dir = "runs/other"
    with pytest.raises(ConfigError, match="the run folder was copied or moved"):
        refuse_other_run_folder("runs/r/config.yaml", cfg, [])


def test_options_for_a_contrastive_method_are_refused():
    with pytest.raises(ConfigError, match=re.escape("method.options is for generative methods; simclr is configured "
                                                    "with method.loss")):
        load_config(overrides=["method.name=simclr", "method.options={mask_ratio: 0.5}"])


def test_fewer_bandwidths_than_metadata_columns_are_refused():
    with pytest.raises(ConfigError, match=re.escape("method.loss.sigma=[2.0] has 1 bandwidths but method.metadata="
                                                    "['age', 'sex'] has 2 column(s)")):
        load_config(overrides=["method.name=yaware", "method.metadata=[age,sex]", "method.loss.sigma=[2.0]"])
    cfg = load_config(overrides=["method.name=yaware", "method.metadata=[age,sex]", "method.loss.sigma=[2.0,0.5]"])
    assert cfg.method.loss["sigma"] == [2.0, 0.5]


def test_empty_metadata_of_a_kernel_method_is_refused_for_training_only():
    """A run trained with it stays readable for evaluate / export (for_training=False)."""
    overrides = ["method.name=yaware", "method.metadata=[]"]
    with pytest.raises(ConfigError, match="method.metadata is empty"):
        load_config(overrides=overrides)
    assert load_config(overrides=overrides, for_training=False).method.metadata == []


@pytest.mark.parametrize("overrides, words", [
    (["data.spacing=[1.0,1.0]"], "data.spacing must be [] or 3 positive values in mm, got [1.0, 1.0]"),
    (["data.spacing=[1.0,-1.0,1.0]"], "data.spacing must be [] or 3 positive values in mm, got [1.0, -1.0, 1.0]"),
    (["encoder.spatial_dims=2", "data.shape=[64,64]", "augment.crop_size=[48,48]", "augment.preset=none",
      "data.spacing=[1.0,1.0,1.0]"], "data.spacing must be [] or 2 positive values in mm, got [1.0, 1.0, 1.0]"),
])
def test_spacing_needs_one_positive_value_per_axis(overrides, words):
    """A 2-value spacing on a 3D run, a 3-value one on a 2D run, a negative value: each refused with the
    number of values the run needs; [] (each scan's native spacing) and a matching list are accepted."""
    with pytest.raises(ConfigError) as e:
        load_config(overrides=overrides)
    assert words in str(e.value), str(e.value)
    assert load_config(overrides=overrides[:-1] + ["data.spacing=[]"]).data.spacing == []
    n = 2 if "encoder.spatial_dims=2" in overrides else 3
    assert load_config(overrides=overrides[:-1] + [f"data.spacing={[0.5] * n}"]).data.spacing == [0.5] * n
