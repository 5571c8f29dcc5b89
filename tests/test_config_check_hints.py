"""Config checks that second-pass mutation testing of medssl/config_checks.py found unpinned: the size a ViT's
patch-grid message suggests, and that the "would learn nothing" refusals are for training only (a run folder's
config.yaml written before they existed is still read by evaluate and export)."""

import re

import pytest

from medssl.config import ConfigError, load_config

VIT = ["encoder.name=vit_tiny", "method.name=mae", "augment.preset=none",
       "encoder.options={img_size: 16, patch_size: 8, hidden_size: 48, num_layers: 1, num_heads: 2}"]


@pytest.mark.parametrize("shapes, message", [
    # data.shape (whole scans) is rounded up to whole patches, augment.crop_size down, but never below one patch
    (["data.shape=[20,24,24]", "augment.crop_size=[16,16,16]"], "Use e.g. data.shape=[24, 24, 24]"),
    (["data.shape=[24,24,24]", "augment.crop_size=[4,17,16]"], "Use e.g. augment.crop_size=[8, 16, 16]"),
])
def test_the_patch_grid_message_suggests_the_nearest_whole_patches(shapes, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [*VIT, *shapes])
    assert str(e.value).endswith(message), str(e.value)


def test_one_view_of_a_label_free_method_is_refused_for_training_only():
    one_view = ["method.name=simclr", "method.n_views=1"]
    with pytest.raises(ConfigError, match=re.escape("method.n_views=1: the only positives are the other views")):
        load_config(None, one_view)
    assert load_config(None, one_view, for_training=False).method.n_views == 1  # an old run is still evaluated
