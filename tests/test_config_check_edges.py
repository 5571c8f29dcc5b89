"""Edges of medssl/config_checks.py that no other test pinned (found by mutating it: each case let a mutant through):
the crop one voxel larger than the scan, settings a generative method ignores in a config read for evaluation,
factories taking ``**kwargs``, and ``~`` / ``$VARS`` in data paths."""

import re
from pathlib import Path

import pytest

from medssl.config import ConfigError, RunConfig, load_config


def test_a_crop_one_voxel_larger_than_the_scan_is_refused_naming_both_keys():
    """docs/training.md: the views are crops of data.shape; one voxel more than the scan cannot be cut."""
    with pytest.raises(ConfigError, match=re.escape("augment.crop_size [16, 16, 17] is larger than data.shape "
                                                    "[16, 16, 16]")):
        load_config(overrides=["data.shape=[16,16,16]", "augment.crop_size=[16,16,17]"])
    assert load_config(overrides=["data.shape=[16,16,16]", "augment.crop_size=[16,16,16]"]).augment.crop_size == [16] * 3


@pytest.mark.parametrize("setting, key", [("method.fairkl_weight=1.0", "method.fairkl_weight"),
                                          ("method.loss={temperature: 0.2}", "method.loss")])
def test_a_generative_runs_contrastive_setting_is_refused_for_training_only(setting, key):
    """validate(for_training=False) (evaluate / export read a trained run's config that way) keeps a run trained
    before the refusal readable; training with it is refused, naming the key."""
    base = ["method.name=genesis", "data.shape=[16,16,16]", "augment.crop_size=[16,16,16]", setting]
    with pytest.raises(ConfigError, match=re.escape(f"{key}: genesis has no contrastive loss and would ignore it")):
        load_config(overrides=base)
    cfg = load_config(overrides=base, for_training=False)
    assert cfg.method.name == "genesis" and (cfg.method.fairkl_weight == 1.0 or cfg.method.loss == {"temperature": 0.2})


def test_an_encoder_whose_factory_takes_keyword_arguments_accepts_any_option(monkeypatch):
    """A factory with ``**kwargs`` (a user's registered encoder) takes options the signature does not list: the
    check cannot know them and leaves them to the factory; a factory without it refuses an unknown option by name."""
    from medssl.registry import ENCODERS

    ENCODERS.list()  # the registering packages are imported before the stand-in is added

    def flexible(spatial_dims, in_channels, **options):
        raise AssertionError("not built by the config check")

    def strict(spatial_dims, in_channels, depth=2):
        raise AssertionError("not built by the config check")

    monkeypatch.setitem(ENCODERS._items, "flexible_test_encoder", flexible)
    monkeypatch.setitem(ENCODERS._items, "strict_test_encoder", strict)
    cfg = load_config(overrides=["encoder.name=flexible_test_encoder", "encoder.options={depth: 3, widths: [4, 8]}"])
    assert cfg.encoder.options == {"depth": 3, "widths": [4, 8]}
    load_config(overrides=["encoder.name=strict_test_encoder", "encoder.options={depth: 3}"])
    with pytest.raises(ConfigError, match=re.escape("unknown option encoder.options.widths")):
        load_config(overrides=["encoder.name=strict_test_encoder", "encoder.options={widths: [4, 8]}"])


def test_data_paths_with_home_or_variables_are_kept_as_written(tmp_path, monkeypatch):
    """absolute_data_paths expands ``~`` and ``$VARS`` only to decide whether a path is relative: a path that is
    absolute once expanded is stored as written (config.yaml keeps ``$DATA``, which another machine sets), and a
    relative one is made absolute against the current folder."""
    from medssl.config_checks import absolute_data_paths

    monkeypatch.setenv("MEDSSL_TEST_DATA", str(tmp_path / "scans"))
    monkeypatch.chdir(tmp_path)
    cfg = RunConfig()
    cfg.data.root, cfg.data.cache_dir = "$MEDSSL_TEST_DATA/ixi", "~/medssl-cache"
    absolute_data_paths(cfg)
    assert (cfg.data.root, cfg.data.cache_dir) == ("$MEDSSL_TEST_DATA/ixi", "~/medssl-cache")
    cfg.data.root = "$MEDSSL_TEST_UNSET_VARIABLE/ixi"  # unset: left as it is by expandvars, so relative
    absolute_data_paths(cfg)
    assert cfg.data.root == str(tmp_path / "$MEDSSL_TEST_UNSET_VARIABLE" / "ixi")


def test_a_patch_size_of_the_wrong_length_is_left_to_the_encoders_own_message():
    """The patch-grid check compares data.shape with a patch_size of one value per axis; one of another length is
    the ViT's to refuse (it names the number of entries), not a "not a multiple" message suggesting a 2-value
    data.shape for 3D scans."""
    from medssl.encoders import build_encoder

    vit = ["data.shape=[16,16,16]", "augment.crop_size=[16,16,16]", "encoder.name=vit_tiny", "method.name=mae",
           "encoder.options={img_size: 16, patch_size: [5, 5], hidden_size: 24, num_layers: 1, num_heads: 2}"]
    cfg = load_config(overrides=vit)
    with pytest.raises(ValueError, match=re.escape("ViT patch_size (5, 5) must have 3 entries for spatial_dims=3")):
        build_encoder(cfg.encoder.name, 3, 1, **cfg.encoder.options)


def test_a_2d_shape_for_a_3d_encoder_says_how_to_configure_2d_images():
    """A data.shape with 2 values under the default encoder.spatial_dims=3 names both keys to change; a shape
    that fits no dimensionality (4 values) gets no such hint."""
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["data.shape=[64,64]"])
    assert str(e.value) == ("data.shape must list 3 positive sizes, got [64, 64] (encoder.spatial_dims is 3; for 2D "
                            "images set encoder.spatial_dims=2 and give data.shape and augment.crop_size 2 values each)")
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["data.shape=[64,64,64,2]"])
    assert str(e.value) == "data.shape must list 3 positive sizes, got [64, 64, 64, 2]"


@pytest.mark.parametrize("override, message", [
    ("augment.preset=brainn", "augment: unknown augmentation preset 'brainn'. Did you mean 'brain_mri'?"),
    ("augment.overrides={flipp_prob: 0.5}", "augment: unknown augmentation parameter 'flipp_prob' in overrides for "
                                            "preset 'brain_mri'. Did you mean 'flip_prob'?"),
    ("augment.overrides={blur_sigma: [-1, 1]}", "augment.overrides.blur_sigma: augmentation parameter "
                                                "blur_sigma=(-1, 1) is a standard deviation"),
    ("augment.overrides={flip_prob: 0.5, interpolation: cubic}", "augment.overrides.interpolation: augmentation "
                                                                 "parameter interpolation='cubic': use"),
])
def test_a_bad_preset_or_override_is_a_config_error_naming_the_augment_section(override, message):
    """The view pipeline's own ValueError becomes a ConfigError that says which section of the config it is about."""
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    assert str(e.value).startswith(message), str(e.value)


@pytest.mark.parametrize("option", ["spatial_dims", "in_channels"])
def test_the_encoders_dimensionality_and_channels_are_no_encoder_options(option):
    """They are encoder.spatial_dims / encoder.in_channels, passed to the factory by build_encoder: as an option
    too they would reach it twice (a TypeError when the run starts)."""
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[f"encoder.options={{{option}: 2}}"])
    assert f"unknown option encoder.options.{option}." in str(e.value)
    assert option not in str(e.value).split("Valid options: ")[1].split(", ")


def test_a_generative_methods_options_are_checked_against_its_constructor():
    """method.options are keyword arguments of the method (Models Genesis: rescale, the corruption probabilities,
    decoder_channels); a misspelt one is a ConfigError with a suggestion, not a TypeError when the run starts, and
    the encoder (built from the encoder section) is no option."""
    base = ["method.name=genesis", "data.shape=[16,16,16]", "augment.crop_size=[16,16,16]"]
    assert load_config(overrides=[*base, "method.options={rescale: false}"]).method.options == {"rescale": False}
    for option, hint in (("rescal", " Did you mean 'rescale'?"), ("encoder", "")):
        with pytest.raises(ConfigError) as e:
            load_config(overrides=[*base, f"method.options={{{option}: 1}}"])
        assert str(e.value).startswith(f"unknown option method.options.{option}.{hint} Valid options: rescale, "), \
            str(e.value)


def test_a_card_path_with_home_or_variables_is_found_as_data_root_is(tmp_path, monkeypatch):
    """``data.card=~/cards/x.yaml`` (or ``$CARDS/x.yaml``) loads the card there, as ``data.root`` expands the same
    way; a relative card path is made absolute (expanded), a card given by name is left alone."""
    import shutil

    from medssl.config_checks import absolute_data_paths
    from medssl.data.card import load_card

    (tmp_path / "cards").mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "data_cards" / "ixi.yaml", tmp_path / "cards" / "mine.yaml")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MEDSSL_TEST_CARDS", str(tmp_path / "cards"))
    assert load_card("~/cards/mine.yaml").name == load_card("$MEDSSL_TEST_CARDS/mine.yaml").name == load_card("ixi").name
    monkeypatch.chdir(tmp_path)
    cfg = RunConfig()
    for card, stored in (("~/cards/mine.yaml", "~/cards/mine.yaml"), ("cards/mine.yaml", str(tmp_path / "cards" / "mine.yaml")),
                         ("ixi", "ixi")):
        cfg.data.card = card
        absolute_data_paths(cfg)
        assert cfg.data.card == stored


@pytest.mark.parametrize("override, message", [
    ("method.loss.temperature=-1", "method.loss: YAwareLoss: temperature must be > 0 and finite, got -1"),
    ("method.loss.kernel=foo", "method.loss: YAwareLoss: unknown kernel 'foo'"),
    ('method.loss.sigma="10"', "method.loss: sigma must be a number or one number per metadata column, got the "
                               "string '10'"),  # a quoted YAML number
])
def test_a_bad_loss_value_is_refused_when_the_config_is_loaded(override, message):
    """The loss's own checks run at load time, before any data are prepared (they ran when the method was built)."""
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["method.name=yaware", "method.metadata=[age]", override])
    assert str(e.value).startswith(message), str(e.value)
