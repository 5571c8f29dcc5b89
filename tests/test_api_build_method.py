"""api.build_method hands the augment section to the views (docs/training.md: ``augment.overrides`` changes preset
parameters, e.g. ``{flip_prob: 0.5, dropout_prob: 0}``); api.check_cache_dir checks the run's own data.cache_dir."""

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


def test_a_run_whose_cache_dir_would_replace_a_card_input_is_refused_before_writing(tmp_path):
    """data.cache_dir = the data root of a card whose split list is index.json (a cache file's name): pretraining
    refuses it (api.check_cache_dir), and an output folder beside the data is fine."""
    import pytest

    from medssl.api import check_cache_dir
    from medssl.config import ConfigError

    root = tmp_path / "data"
    root.mkdir()
    (root / "t.tsv").write_text("id\na\n")
    (root / "index.json").write_text('["a"]')
    card = tmp_path / "c.yaml"
    card.write_text("name: c\nmodality: MR\ndimensionality: 3\nformat: npy\nmanifest: t.tsv\ncolumns: {subject: id}\n"
                    "path_template: '{id}.npy'\nsplit_files: {test: index.json}\n"
                    "geometry: {spacing: [1.0, 1.0, 1.0]}\npreprocessing: {shape: [16, 16, 16], normalise: none}\n")
    overrides = [f"data.card={card}", f"data.root={root}", "data.shape=[16,16,16]", "augment.crop_size=[14,14,14]"]
    cfg = load_config(REPO_ROOT / "configs" / "pretrain" / "simclr.yaml", [*overrides, f"data.cache_dir={root}"])
    with pytest.raises(ConfigError, match=r"index\.json would overwrite card c's split list \(test\)"):
        check_cache_dir(cfg, tmp_path / "run")
    assert (root / "index.json").read_text() == '["a"]' and not (tmp_path / "run").exists()
    check_cache_dir(load_config(REPO_ROOT / "configs" / "pretrain" / "simclr.yaml",
                                [*overrides, f"data.cache_dir={tmp_path / 'cache'}"]), tmp_path / "run")


def test_label_column_and_fairkl_weight_reach_the_method():
    """docs/training.md: ``method.label_column`` names the class labels of supinfonce (``""`` = label-free);
    ``method.fairkl_weight`` 0 = FairKL off (supinfonce.yaml uses 1.0)."""
    tiny = ["data.shape=[16,16,16]", "augment.crop_size=[14,14,14]", "encoder.options.width=4"]
    path = REPO_ROOT / "configs" / "pretrain" / "supinfonce.yaml"
    m = build_method(load_config(path, [*tiny, "method.label_column=sex"]))
    assert m.label_keys == ["sex"] and m.fairkl is not None and m.fairkl_weight == 1.0 and m.bias_key == "site"
    m = build_method(load_config(path, [*tiny, "method.fairkl_weight=0"]))
    assert m.label_keys == [] and m.fairkl is None


def test_bias_column_n_views_and_views_per_pass_reach_the_method():
    """docs/training.md: ``method.bias_column`` is FairKL's bias (default site), ``method.n_views`` the views per
    sample, ``method.views_per_pass`` one encoder pass or one per view: a step on a batch without a site column
    draws 3 views and reads FairKL's bias from sex."""
    import torch

    tiny = ["data.shape=[16,16,16]", "augment.crop_size=[14,14,14]", "encoder.options.width=4"]
    path = REPO_ROOT / "configs" / "pretrain" / "supinfonce.yaml"
    m = build_method(load_config(path, [*tiny, "method.bias_column=sex", "method.n_views=3",
                                        "method.views_per_pass=separate"]))
    assert (m.bias_key, m.n_views, m.views_per_pass) == ("sex", 3, "separate")
    batch = {"image": torch.rand(4, 1, 16, 16, 16), "sex": torch.tensor([0, 1, 1, 0])}
    assert m.make_views(batch["image"], torch.Generator().manual_seed(0)).shape[1] == 3
    out = m.training_step(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss) and "fairkl" in out.logs


def test_contrastive_methods_get_method_n_views_and_generative_ones_the_augment_sections_views():
    """docs/training.md: ``method.n_views`` (default 2) augmented views per scan for contrastive methods; MAE and
    Models Genesis draw one view (random crop + flip) per scan from the augment section (configs/pretrain/mae3d_brain.yaml:
    "MAE uses crops and flips only")."""
    import torch

    tiny = ["data.shape=[16,16,16]", "augment.crop_size=[12,12,12]", "encoder.options.width=4"]
    simclr = REPO_ROOT / "configs" / "pretrain" / "simclr.yaml"
    assert build_method(load_config(simclr, tiny)).n_views == 2
    m = build_method(load_config(simclr, [*tiny, "method.n_views=3"]))
    assert m.n_views == 3 and m.make_views(torch.zeros(2, 1, 16, 16, 16), torch.Generator()).shape == (2, 3, 1, 12, 12, 12)
    vit = ["data.shape=[16,16,16]", "augment.crop_size=[8,8,8]", "encoder.name=vit_tiny",
           "encoder.options={img_size: 8, patch_size: 4, hidden_size: 24, num_layers: 1, num_heads: 2}"]
    for path, tail in (("mae3d_brain.yaml", vit), ("genesis3d_mri.yaml", ["data.shape=[16,16,16]",
                                                                          "augment.crop_size=[12,12,12]", "encoder.options.width=4"])):
        cfg = load_config(REPO_ROOT / "configs" / "pretrain" / path, tail)
        views = build_method(cfg).views
        assert views is not None and tuple(views.crop_size) == tuple(cfg.augment.crop_size)
        assert views.params.flip_prob == 0.5  # the config's augment.overrides
