"""The safetensors round trip of an encoder whose weights are not contiguous: found by mutating medssl/export.py."""

from __future__ import annotations

import torch

import medssl
from medssl.encoders import build_encoder
from medssl.export import save_encoder


def _state(encoder):
    return (encoder.plain_module() if hasattr(encoder, "plain_module") else encoder).state_dict()


def test_a_channels_last_encoder_exports_and_loads_back_identical_tensors(tmp_path):
    """encoder.channels_last=True keeps conv weights in channels_last memory format (strided, not contiguous), which
    safetensors refuses to save as they are; the export writes contiguous copies, and load_encoder gives back every
    tensor bit for bit, the same features, in eval mode, with the recorded channels_last."""
    torch.manual_seed(0)
    enc = build_encoder("resnet10", spatial_dims=2, in_channels=1, width=2, channels_last=True).eval()
    assert any(not v.is_contiguous() for v in _state(enc).values())  # the case under test
    folder = save_encoder(enc, tmp_path / "export", "resnet10",
                          {"spatial_dims": 2, "in_channels": 1, "width": 2, "channels_last": True})
    loaded = medssl.load_encoder(folder)
    assert loaded.channels_last and not loaded.training
    original, back = _state(enc), _state(loaded)
    assert list(back) == list(original)
    for name, value in original.items():
        assert back[name].dtype == value.dtype and torch.equal(back[name], value), name
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), enc(x))


def test_a_boolean_format_version_is_refused_not_read_as_version_1(tmp_path):
    """JSON ``true`` is a Python bool, an int subclass equal to 1: an edited spec with it is named, not loaded."""
    import json

    import pytest

    from medssl.export import ExportError

    folder = save_encoder(build_encoder("resnet10", spatial_dims=2, in_channels=1, width=2), tmp_path / "export",
                          "resnet10", {"spatial_dims": 2, "in_channels": 1, "width": 2})
    spec = json.loads((folder / "encoder.json").read_text())
    (folder / "encoder.json").write_text(json.dumps({**spec, "format_version": True}))
    with pytest.raises(ExportError, match=r"'format_version' must be an integer, got True; export the encoder again"):
        medssl.load_encoder(folder)
