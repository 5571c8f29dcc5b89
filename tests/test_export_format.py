"""The known limits of an export folder (docs/encoders.md, "Export"): the spec's format and version are checked,
the weights must hold exactly the tensors of the network the spec names, nothing is unpickled, and
``load_encoder``'s overrides take precedence over the recorded arguments."""

import hashlib
import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

import medssl
from medssl.encoders import build_encoder
from medssl.export import FORMAT_VERSION, ExportError, read_spec, save_encoder


@pytest.fixture
def export(tmp_path):
    """A small 2D ResNet-10 export and the encoder it came from."""
    torch.manual_seed(0)
    enc = build_encoder("resnet10", spatial_dims=2, in_channels=1, width=2).eval()
    folder = save_encoder(enc, tmp_path / "export", "resnet10", {"spatial_dims": 2, "in_channels": 1, "width": 2})
    return folder, enc


def _edit(folder, **entries):
    spec = json.loads((folder / "encoder.json").read_text())
    spec.update(entries)
    for key, value in list(spec.items()):
        if value is None:
            del spec[key]
    (folder / "encoder.json").write_text(json.dumps(spec))


def _rewrite_weights(folder, weights):
    """Write ``weights`` as the export's safetensors file and record its (correct) SHA-256 in the spec."""
    path = folder / "encoder.safetensors"
    save_file(weights, str(path))
    _edit(folder, weights={"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})


def test_the_spec_holds_every_documented_key_and_the_full_sha256_of_the_weights(export):
    folder, enc = export
    spec = read_spec(folder)
    assert {"format", "format_version", "medssl_version", "architecture", "arguments", "out_dim", "monai", "input",
            "pretraining", "weights"} <= set(spec)  # the encoder.json table of docs/encoders.md
    assert (spec["format"], spec["format_version"], spec["out_dim"]) == ("medssl-encoder", FORMAT_VERSION, 16)
    assert spec["weights"] == {"file": "encoder.safetensors",
                               "sha256": hashlib.sha256((folder / "encoder.safetensors").read_bytes()).hexdigest()}


def test_a_newer_format_version_is_refused_and_older_ones_load(export):
    folder, enc = export
    x = torch.randn(2, 1, 32, 32)
    _edit(folder, format_version=FORMAT_VERSION + 1)
    with pytest.raises(ExportError, match=f"format_version {FORMAT_VERSION + 1}; this medssl reads up to "
                                          f"{FORMAT_VERSION}. Upgrade medssl"):
        medssl.load_encoder(folder)
    for older in (FORMAT_VERSION, FORMAT_VERSION - 1, None):  # None: a spec written before the field existed
        _edit(folder, format_version=older)
        with torch.no_grad():
            assert torch.equal(medssl.load_encoder(folder)(x), enc(x))


@pytest.mark.parametrize("fmt", ["medssl-decoder", None])
def test_a_spec_of_another_format_is_refused(export, fmt):
    folder, _ = export
    _edit(folder, format=fmt)
    with pytest.raises(ExportError, match="is not a medssl encoder spec"):
        medssl.load_encoder(folder)


def test_weights_missing_a_tensor_or_holding_an_extra_one_are_refused_by_name(export):
    """Even with a matching SHA-256 (the file was re-saved): the network the spec names has other tensors."""
    folder, _ = export
    weights = load_file(str(folder / "encoder.safetensors"))
    _rewrite_weights(folder, {k: v for k, v in weights.items() if k != "layer4.0.bn1.running_mean"})
    with pytest.raises(ExportError, match="layer4.0.bn1.running_mean missing from the file"):
        medssl.load_encoder(folder)
    _rewrite_weights(folder, {**weights, "fc.weight": torch.zeros(3, 16)})
    with pytest.raises(ExportError, match="fc.weight not in resnet10"):
        medssl.load_encoder(folder)


@pytest.mark.parametrize("name", ["..", ".", "", "/tmp/encoder.safetensors"])
def test_the_weights_file_must_be_a_plain_name_in_the_folder(export, name):
    folder, _ = export
    _edit(folder, weights={"file": name, "sha256": "0" * 64})
    with pytest.raises(ExportError, match="must be a plain file name in the export folder"):
        medssl.load_encoder(folder)


class _Payload:
    """Unpickling this writes a marker file: an export that unpickles its weights would run it."""

    marker = ""

    def __reduce__(self):
        return (_touch, (self.marker,))


def _touch(path):
    open(path, "w").close()
    return {}


def test_a_pickled_weights_file_is_never_unpickled(export, tmp_path):
    folder, _ = export
    payload, marker = _Payload(), tmp_path / "unpickled"
    payload.marker = str(marker)
    path = folder / "encoder.pt"
    path.write_bytes(pickle.dumps(payload))
    _edit(folder, weights={"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    with pytest.raises(ExportError, match="encoder.pt is not a readable safetensors file"):
        medssl.load_encoder(folder)
    assert not marker.exists()


def test_an_override_replaces_the_recorded_argument(export):
    """``load_encoder(dir, checkpointing=True)`` (docs/encoders.md) gives a checkpointing encoder with the same
    weights, although encoder.json records ``checkpointing: false``."""
    folder, enc = export
    assert read_spec(folder)["arguments"]["checkpointing"] is False
    loaded = medssl.load_encoder(folder, checkpointing=True, channels_last=True)
    assert loaded.checkpointing and loaded.channels_last and not loaded.training
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), enc(x), rtol=1e-5, atol=1e-5)
