"""Encoder export: `medssl export RUN --out DIR` → safetensors + JSON spec; the weights load
strictly into the plain MONAI networks; `medssl.load_encoder` rebuilds the encoder without
unpickling; the spec holds no patient data."""

import importlib
import json
from collections import OrderedDict

import pytest
import torch
from monai.networks.nets import DenseNet121, ResNet, ViT
from safetensors.torch import load_file
from torch import nn

import medssl
from medssl.api import pretrain
from medssl.cli import main
from medssl.config import ConfigError, config_hash, load_config
from medssl.encoders import build_encoder
from medssl.export import ExportError, read_spec, save_encoder
from medssl.registry import list_encoders

RUN = ("data.shape=[24,24,24]", "augment.preset=none", "augment.crop_size=[16,16,16]", "train.epochs=1",
       "train.batch_size=8", "train.progress=false", "data.test_fraction=0.3", "method.name=genesis",
       "encoder.name=resnet10", "encoder.options={width: 4}", "method.options={rescale: true}")


@pytest.fixture(scope="module")
def exported(small_cohort, tmp_path_factory):
    """A one-epoch Models Genesis run on the synthetic cohort, exported with the CLI."""
    tmp = tmp_path_factory.mktemp("export")
    run, out = tmp / "run", tmp / "exported"
    pretrain(load_config(None, [f"data.root={small_cohort}", f"output_dir={run}", *RUN]), progress=False)
    assert main(["export", str(run), "--out", str(out)]) == 0
    return run, out, small_cohort


def test_exported_resnet_loads_strictly_into_plain_monai_resnet(exported):
    from medssl.api import load_run_encoder

    run, out, _ = exported
    spec = read_spec(out)
    weights = load_file(str(out / "encoder.safetensors"))
    assert not [k for k in weights if k.split(".")[0] in ("module", "encoder", "net", "decoder")]
    plain = ResNet(block="basic", layers=[1, 1, 1, 1], block_inplanes=[4, 8, 16, 32], spatial_dims=3,
                   n_input_channels=1, conv1_t_size=7, conv1_t_stride=2, shortcut_type="B", feed_forward=False)
    plain.load_state_dict(weights, strict=True)
    assert spec["monai"]["class"] == "monai.networks.nets.ResNet"
    assert ResNet(**spec["monai"]["kwargs"]).load_state_dict(weights, strict=True) is not None
    _, trained = load_run_encoder(run)
    loaded = medssl.load_encoder(out)
    x = torch.randn(2, 1, 24, 24, 24)
    with torch.no_grad():
        ref = trained.eval()(x)
        assert torch.allclose(plain.eval()(x), ref, atol=1e-6) and torch.allclose(loaded(x), ref, atol=1e-6)
    assert not loaded.training


def test_spec_describes_architecture_input_and_provenance_without_patient_data(exported):
    run, out, cohort = exported
    spec = read_spec(out)
    assert spec["architecture"] == "resnet10" and spec["arguments"] == {  # the defaults too: a later default change
        "spatial_dims": 3, "in_channels": 1, "width": 4, "conv1_kernel": 7, "conv1_stride": 2,  # cannot alter it
        "no_max_pool": False, "checkpointing": False, "channels_last": False}
    assert (out / "encoder.safetensors").stat().st_mode & 0o777 == (out / "encoder.json").stat().st_mode & 0o777
    assert spec["out_dim"] == 32 and spec["medssl_version"] == medssl.__version__
    assert spec["input"]["shape"] == [24, 24, 24] and spec["input"]["crop_size"] == [16, 16, 16]
    assert spec["input"]["normalise"] == "zscore" and spec["input"]["modality"] == "MR"
    assert spec["input"]["orientation"] == "RAS" and spec["input"]["data_card"] == "synthetic"
    assert spec["input"]["method_rescaling"] == "per-scan min-max to [0, 1]"  # Models Genesis saw [0, 1] scans
    assert spec["pretraining"]["config_hash"] == config_hash(load_config(run / "config.yaml"))
    assert spec["pretraining"]["method"] == "genesis" and spec["pretraining"]["checkpoint_step"] > 0
    assert (spec["pretraining"]["method_options"], spec["pretraining"]["seed"]) == ({"rescale": True}, 0)  # RUN's
    text = (out / "encoder.json").read_text()
    manifest = (run / "manifest.tsv").read_text().splitlines()
    header = manifest[0].split("\t")
    subjects = {row.split("\t")[header.index("subject")] for row in manifest[1:]}
    assert str(cohort) not in text and str(run) not in text and "/" not in text.replace("monai.networks", "")
    assert not [s for s in subjects if s in text]


def test_loading_never_unpickles_and_checks_the_files(exported, tmp_path, monkeypatch):
    _, out, _ = exported

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", no_pickle)
    assert medssl.load_encoder(out).out_dim == 32
    monkeypatch.undo()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "encoder.json").write_text((out / "encoder.json").read_text())
    data = bytearray((out / "encoder.safetensors").read_bytes())
    data[-1] ^= 1
    (bad / "encoder.safetensors").write_bytes(bytes(data))
    with pytest.raises(ExportError, match="SHA-256"):
        medssl.load_encoder(bad)
    with pytest.raises(ExportError, match="does not fit resnet10"):
        medssl.load_encoder(out, width=8)
    with pytest.raises(ExportError, match=r"resnet10 does not take the override\(s\) \['bogus'\]"):
        medssl.load_encoder(out, bogus=1)
    with pytest.raises(ExportError, match="medssl export"):
        medssl.load_encoder(tmp_path)


def test_export_cli_errors_are_clean(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_loading_a_run_directory_as_an_export_says_to_export_it_first(exported):
    run, _, _ = exported
    with pytest.raises(ExportError, match=r"is a run directory: export it first, `medssl export .* --out DIR`"):
        medssl.load_encoder(run)


def test_an_export_to_a_file_path_is_a_clean_error(exported, tmp_path, capsys):
    """`medssl export RUN --out FILE` was a FileExistsError traceback from mkdir."""
    run, _, _ = exported
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    assert main(["export", str(run), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"{target} is a file" in err and "--out" in err and "Traceback" not in err
    assert target.read_text() == "keep me"


def test_densenet_export_loads_strictly_into_plain_monai_densenet121(tmp_path):
    torch.manual_seed(0)
    enc = build_encoder("densenet121", spatial_dims=3, in_channels=1, width=2).eval()
    save_encoder(enc, tmp_path, "densenet121", {"spatial_dims": 3, "in_channels": 1, "width": 2})
    plain = DenseNet121(spatial_dims=3, in_channels=1, out_channels=1, init_features=4, growth_rate=2)
    plain.class_layers.out = nn.Identity()
    plain.load_state_dict(load_file(str(tmp_path / "encoder.safetensors")), strict=True)
    assert read_spec(tmp_path)["monai"]["identity"] == ["class_layers.out"]
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(plain.eval()(x), enc(x), atol=1e-5)
        assert torch.allclose(medssl.load_encoder(tmp_path)(x), enc(x), atol=1e-6)


@pytest.mark.parametrize("name, options, side", [
    ("vit_tiny", {"img_size": 16, "patch_size": 8, "hidden_size": 48, "num_layers": 1, "num_heads": 2}, 16),
    ("alexnet", {"width": 2, "channels_last": True}, 72),
    ("densenet169", {"width": 4}, 32),  # registered, so load_encoder rebuilds it (was only DenseNetEncoder(...))
])
def test_round_trip_of_vit_alexnet_and_densenet169(tmp_path, name, options, side):
    torch.manual_seed(0)
    enc = build_encoder(name, spatial_dims=2, in_channels=1, **options).eval()
    save_encoder(enc, tmp_path, name, {"spatial_dims": 2, "in_channels": 1, **options})
    spec = json.loads((tmp_path / "encoder.json").read_text())
    x = torch.randn(2, 1, side, side)
    with torch.no_grad():
        assert torch.allclose(medssl.load_encoder(tmp_path)(x), enc(x), atol=1e-6)
    if name == "vit_tiny":
        plain = ViT(**spec["monai"]["kwargs"])
        plain.load_state_dict(load_file(str(tmp_path / "encoder.safetensors")), strict=True)
    elif name == "densenet169":
        assert spec["monai"]["kwargs"]["block_config"] == [6, 12, 32, 32]
    else:
        assert spec["monai"] is None and next(iter(load_file(str(tmp_path / "encoder.safetensors")))).startswith("features.")


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("weights"), "no 'weights' entry"),
    (lambda s: s["weights"].pop("sha256"), "no 'weights.sha256'"),
    (lambda s: s.pop("architecture"), "no 'architecture'"),
    (lambda s: s.update(arguments=[3, 1]), "'arguments' must be"),
    (lambda s: s["weights"].update(file="../encoder.safetensors"), "plain file name"),
    # written by another medssl version: the spec is to blame (was "does not take the override(s) []" and a bare
    # "unknown encoder", neither naming encoder.json)
    (lambda s: s["arguments"].update(stem_pool="max"), r"resnet10 in this medssl .* takes no argument\(s\) \['stem_pool'\]"),
    (lambda s: s.update(architecture="swin_tiny"), r"names architecture 'swin_tiny', which this medssl"),
    # values the factory refuses with ValueError / RuntimeError, and mistyped entries (were bare tracebacks)
    (lambda s: s["arguments"].update(spatial_dims=5), r"resnet10 cannot be built .* spatial_dims must be 2 or 3"),
    (lambda s: s["arguments"].update(width=-3), r"resnet10 cannot be built .*negative dimension"),
    (lambda s: s.update(format_version="1"), "'format_version' must be an integer"),
    (lambda s: s.update(input=[24, 24]), "'input' must be a mapping"),
])
def test_incomplete_or_edited_spec_is_named_not_a_key_error(tmp_path, edit, message):
    enc = build_encoder("resnet10", spatial_dims=2, in_channels=1, width=2)
    folder = tmp_path / "export"
    save_encoder(enc, folder, "resnet10", {"spatial_dims": 2, "in_channels": 1, "width": 2})
    spec = json.loads((folder / "encoder.json").read_text())
    edit(spec)
    (folder / "encoder.json").write_text(json.dumps(spec))
    with pytest.raises(ExportError, match=message) as err:
        medssl.load_encoder(folder)
    assert "encoder.json" in str(err.value)


def test_a_spec_that_does_not_fit_its_weights_is_refused_before_the_encoder_is_built(tmp_path, monkeypatch):
    """An export is untrusted input: its spec's arguments (width, depth, image size) size the network, which was
    built, parameters allocated and initialised, before the weights were compared with it, so an edited spec
    (width 65536) could take all memory before "does not fit". It is now compared with the weights file's header
    on the meta device (no memory); only a spec that fits is built for real."""
    import medssl.encoders

    enc = build_encoder("resnet10", spatial_dims=2, in_channels=1, width=2)
    folder = tmp_path / "export"
    save_encoder(enc, folder, "resnet10", {"spatial_dims": 2, "in_channels": 1, "width": 2})
    spec = json.loads((folder / "encoder.json").read_text())
    spec["arguments"]["width"] = 64  # small enough to build on the old code in a test
    (folder / "encoder.json").write_text(json.dumps(spec))
    devices, real = [], medssl.encoders.build_encoder
    monkeypatch.setattr(medssl.encoders, "build_encoder",
                        lambda *a, **k: devices.append(torch.empty(0).device.type) or real(*a, **k))
    with pytest.raises(ExportError, match=r"does not fit resnet10.*encoder.json") as err:
        medssl.load_encoder(folder)
    assert "layer1" in str(err.value) or "conv1" in str(err.value)  # names a tensor whose shape differs
    assert devices and set(devices) == {"meta"}  # never built with real memory
    spec["arguments"]["width"] = 2
    (folder / "encoder.json").write_text(json.dumps(spec))
    devices.clear()
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(medssl.load_encoder(folder)(x), enc.eval()(x))
    assert devices == ["meta", "cpu"]


def test_a_genesis_encoder_is_evaluated_on_the_0_1_input_it_pretrained_on(exported, tmp_path, monkeypatch):
    """Models Genesis pretrains on each scan min-max rescaled to [0, 1]; evaluating it on z-scored scans (as
    before) fed its BatchNorm layers inputs it never saw. The run and its export both get the rescaling, the
    random-init baseline too, and fine-tuning trains the same blocks as on the bare encoder."""
    import medssl.api as api
    from medssl.eval.finetune import FinetuneOptions, _frozen_blocks, encoder_blocks
    from medssl.methods.genesis import MinMaxInput, minmax_per_sample

    run, out, cohort = exported
    seen = []
    real = api.extract_features
    monkeypatch.setattr(api, "extract_features", lambda enc, ds, *a, **k: seen.append((enc, ds[0]["image"])) or
                        real(enc, ds, *a, **k))
    for source, extra in ((run, {}), (out, {"data": "synthetic", "root": str(cohort)})):
        seen.clear()
        res = api.evaluate(source, progress=False, out=str(tmp_path / source.name), **extra)
        assert res["info"]["encoder input"] == "per-scan min-max to [0, 1] (as in pretraining)"
        assert len(seen) == 2 and all(isinstance(enc, MinMaxInput) for enc, _ in seen)  # pretrained + random init
        enc, image = seen[0]
        with torch.no_grad():
            assert torch.allclose(enc.eval()(image[None]), enc.net.eval()(minmax_per_sample(image[None])))
    bare = enc.net
    assert encoder_blocks(enc) == encoder_blocks(bare)
    last = FinetuneOptions(mode="last", last_blocks=2)
    assert _frozen_blocks(enc, last) == _frozen_blocks(bare, last)


def plain_alexnet(dims: int, c_in: int, w: int) -> nn.Module:
    """The AlexNet of Abrol et al. (2021) in plain PyTorch, from the layer table of docs/encoders.md and
    medssl/encoders/alexnet.py: conv (kernel, stride, pad, channels) + BN + ReLU, max-pool 3/3 after 1, 2, 5."""
    conv, bn, pool = ((nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d) if dims == 3 else
                      (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d))
    layers = []
    for k, s, p, c, pooled in ((5, 2, 0, w, True), (3, 1, 0, 2 * w, True), (3, 1, 1, 3 * w, False),
                               (3, 1, 1, 3 * w, False), (3, 1, 1, 2 * w, True)):
        layers += [conv(c_in, c, k, s, p), bn(c), nn.ReLU()] + ([pool(3, 3)] if pooled else [])
        c_in = c
    return nn.Sequential(OrderedDict(features=nn.Sequential(*layers)))


#: registry name prefix → (small options, input side); every registered encoder must match one
PLAIN = {"resnet": ({"width": 4}, 32), "densenet": ({"width": 2}, 32), "alexnet": ({"width": 2}, 72),
         "vit": ({"img_size": 16, "patch_size": 8, "hidden_size": 48, "num_layers": 2, "num_heads": 2}, 16)}


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", list_encoders())
def test_every_export_gives_the_same_embedding_in_plain_monai_or_pytorch(tmp_path, name, dims):
    """Only encoder.json and encoder.safetensors are used to build the plain network (class path, kwargs, dropped
    classifier); its embedding, read as docs/encoders.md says, equals medssl's and load_encoder's."""
    options, side = next(v for k, v in PLAIN.items() if name.startswith(k))
    torch.manual_seed(0)
    enc = build_encoder(name, spatial_dims=dims, in_channels=2, **options)
    with torch.no_grad():  # BatchNorm running statistics away from their (0, 1) initial values
        enc.train()(3 * torch.randn(4, 2, *[side] * dims) + 1)
    enc.eval()
    save_encoder(enc, tmp_path, name, {"spatial_dims": dims, "in_channels": 2, **options})
    spec, weights = read_spec(tmp_path), load_file(str(tmp_path / "encoder.safetensors"))
    if spec["monai"] is None:
        assert name == "alexnet"
        plain = plain_alexnet(dims, 2, options["width"])
    else:
        module, cls = spec["monai"]["class"].rsplit(".", 1)
        plain = getattr(importlib.import_module(module), cls)(**spec["monai"]["kwargs"])
        for path in spec["monai"]["identity"]:
            parent, child = path.rsplit(".", 1)
            setattr(plain.get_submodule(parent), child, nn.Identity())
    plain.load_state_dict(weights, strict=True)
    plain.eval()
    x = torch.randn(3, 2, *[side] * dims)
    with torch.no_grad():
        ref = enc(x)
        if name.startswith("vit"):  # MONAI's ViT returns (tokens, hidden states): the embedding is the token mean
            out = plain(x)[0].mean(1)
        elif name == "alexnet":  # global average of the last map
            out = plain(x).flatten(2).mean(-1)
        else:  # ResNet (feed_forward=False) and DenseNet (classifier dropped) return the pooled embedding
            out = plain(x)
        assert out.shape == ref.shape == (3, spec["out_dim"])
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        assert torch.equal(medssl.load_encoder(tmp_path)(x), ref)


def test_a_run_trained_before_a_setting_was_refused_can_still_be_evaluated_and_exported(exported, tmp_path, capsys):
    """Today's config checks refuse settings a method ignores (a FairKL weight for Models Genesis / MAE, …) before
    training. A run trained with one before (its config.yaml and checkpoints say so) could then no longer be loaded
    for evaluation or export (ConfigError, naming no file), although its weights are those of a normal run; editing
    config.yaml did not help, as the checkpoint's config must agree for export. Resuming it is refused, and the
    message now says that the run cannot be continued (its own fix, "remove it", is refused as another run's)."""
    import shutil

    import yaml

    from medssl.api import load_run_encoder
    from medssl.train.checkpoint import list_checkpoints, load_checkpoint, write_atomic

    run, _, _ = exported
    old = shutil.copytree(run, tmp_path / "old_run", ignore=shutil.ignore_patterns("eval-*"))
    config = yaml.safe_load((old / "config.yaml").read_text())
    config["method"]["fairkl_weight"] = 1.0  # accepted (and ignored) before a0607ea
    (old / "config.yaml").write_text(yaml.safe_dump(config))
    for ckpt in list_checkpoints(old / "checkpoints"):
        state = load_checkpoint(ckpt)
        saved = json.loads(state["config"])
        saved["method"]["fairkl_weight"] = 1.0
        write_atomic({**state, "config": json.dumps(saved)}, ckpt)
    _, encoder = load_run_encoder(old)
    _, trained = load_run_encoder(run)
    assert all(torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), trained.state_dict().values()))
    assert main(["export", str(old), "--out", str(tmp_path / "exp")]) == 0, capsys.readouterr().err
    with pytest.raises(ConfigError, match="method.fairkl_weight: genesis has no contrastive loss"):
        load_config(old / "config.yaml")  # training with it (a resume) is still refused
    # resuming it named config.yaml and the setting, but its fix ("remove it") is refused as another run's
    assert main(["pretrain", str(old / "config.yaml"), f"output_dir={old}", "method.fairkl_weight=0", "--resume",
                 "auto"]) == 2
    assert "was written with method.fairkl_weight=1.0; this run has method.fairkl_weight=0.0" in capsys.readouterr().err
    assert main(["pretrain", str(old / "config.yaml"), f"output_dir={old}", "--resume", "auto"]) == 2
    err = capsys.readouterr().err
    assert f"method.fairkl_weight: genesis has no contrastive loss and would ignore it; remove it (its options go in " \
           f"method.options) (config {old / 'config.yaml'} with overrides output_dir={old} train.resume=auto). With --resume: a run " \
           "trained with this setting before medssl refused it cannot be continued" in err
    assert "`medssl evaluate` and `medssl export` still read that run" in err and "another output_dir, no --resume" in err
    assert "With --resume" not in str(pytest.raises(ConfigError, load_config, old / "config.yaml").value)  # fresh run


def test_an_export_evaluates_the_targets_of_its_run_by_default(tmp_path, capsys):
    """`medssl evaluate EXPORT` without --targets probed age and site (the config default) whatever the run's
    eval.targets: an export of a MedMNIST run (eval.targets [label]; the card has no age or site) evaluated
    nothing. The export records the run's eval.targets (names only) and evaluate uses them; an export written
    before the field existed keeps the default, and an edited field is named."""
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez_compressed(tmp_path / "tiny.npz", **{f"{s}_{k}": v for s, n in (("train", 24), ("val", 6), ("test", 8))
                                                  for k, v in (("images", rng.integers(0, 256, (n, 16, 16), np.uint8)),
                                                               ("labels", np.arange(n)[:, None] % 2))})
    card = tmp_path / "tiny.yaml"
    card.write_text("name: tiny\nmodality: DX\ndimensionality: 2\nformat: medmnist\nnpz: tiny.npz\n"
                    "preprocessing: {shape: [16, 16], channels: 1, normalise: none}\n"
                    "splits: {train: [train], val: [val], test: [test]}\n")
    run, out = tmp_path / "run", tmp_path / "exported"
    pretrain(load_config(None, [f"data.card={card}", f"data.root={tmp_path}", f"output_dir={run}", "data.shape=[16,16]",
                                "encoder.spatial_dims=2", "encoder.name=resnet10", "encoder.options={width: 4}",
                                "augment.preset=none", "augment.crop_size=[12,12]", "train.epochs=1",
                                "train.batch_size=8", "train.progress=false", "eval.targets=[label]"]), progress=False)
    assert main(["export", str(run), "--out", str(out)]) == 0
    spec = read_spec(out)
    assert spec["evaluation"] == {"targets": ["label"]}
    evaluated = tmp_path / "eval"
    argv = ["evaluate", str(out), "--data", str(card), "--root", str(tmp_path), "--n-boot", "0", "--map", "none",
            "--no-random-init", "--out", str(evaluated)]
    assert main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["info"]["targets"] == "label" and set(metrics["probes"]["pretrained"]) == {"label"}
    del spec["evaluation"]  # an export of an older medssl: the default targets, as before
    (out / "encoder.json").write_text(json.dumps(spec))
    assert main(argv) == 0
    assert json.loads((evaluated / "metrics.json").read_text())["info"]["targets"] == "age, site"
    (out / "encoder.json").write_text(json.dumps({**spec, "evaluation": {"targets": ["agee"]}}))
    with pytest.raises(ExportError, match=r"encoder.json: 'evaluation' must be"):
        read_spec(out)
