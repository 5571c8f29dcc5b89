"""api.build_method hands the augment section to the views (docs/training.md: ``augment.overrides`` changes preset
parameters, e.g. ``{flip_prob: 0.5, dropout_prob: 0}``)."""

from medssl.api import REPO_ROOT, build_method
from medssl.config import load_config
from medssl.transforms.presets import get_preset


def test_augment_overrides_change_the_preset_parameters_of_the_views():
    tiny = ["data.shape=[16,16,16]", "augment.crop_size=[14,14,14]", "encoder.options.width=4"]
    cfg = load_config(REPO_ROOT / "configs" / "pretrain" / "simclr.yaml",
                      [*tiny, "augment.overrides={flip_prob: 0.25, bias_prob: 0}"])
    preset = get_preset(cfg.augment.preset, {})
    assert (preset.flip_prob, preset.bias_prob) != (0.25, 0)  # the overrides change something
    views = build_method(cfg).views
    assert (views.params.flip_prob, views.params.bias_prob) == (0.25, 0)
    assert views.params.gamma_prob == preset.gamma_prob  # the rest is the preset's
    assert "RandomBiasField" not in [type(t).__name__ for t in views.others]
