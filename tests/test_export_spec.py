"""Entries of an export that other tests did not pin, found by mutating medssl/export.py: the documented
``input.pixels`` values, the weights file's permissions and header, an unregistered architecture's arguments,
and which card options ``reader_note`` compares."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from safetensors import safe_open

from medssl.data.card import load_card
from medssl.encoders import build_encoder
from medssl.export import pixels_2d_spec, read_spec, reader_note, save_encoder


def _small():
    return build_encoder("resnet10", spatial_dims=2, in_channels=1, width=2)


def test_a_2d_export_gives_the_documented_divisors_and_pil_s_luminance_weights():
    """docs/encoders.md: ``divisor_by_bits`` is {"1": 1, "8": 255, "16": 65535}; ``rgb_to_luminance`` are the (R, G,
    B) weights of PIL's own colour -> grey conversion (checked on pure red, green and blue)."""
    spec = pixels_2d_spec()
    assert spec["layout"] == "transpose" and spec["divisor_by_bits"] == {"1": 1, "8": 255, "16": 65535}
    for channel in range(3):
        rgb = np.zeros((1, 1, 3), np.uint8)
        rgb[..., channel] = 255
        grey = int(np.asarray(Image.fromarray(rgb, "RGB").convert("L"))[0, 0])
        assert round(255 * spec["rgb_to_luminance"][channel]) == grey, channel


def test_the_weights_file_is_as_readable_as_the_spec_under_the_user_s_umask(tmp_path):
    """safetensors creates its file 0600; the export gives it the permissions of a new file under the umask
    (0o666 & ~umask), as encoder.json has: here a group-shared umask 007, so 0660 for both."""
    before = os.umask(0o007)
    try:
        out = save_encoder(_small(), tmp_path / "export", "resnet10", {"spatial_dims": 2, "in_channels": 1, "width": 2})
    finally:
        os.umask(before)
    assert (out / "encoder.safetensors").stat().st_mode & 0o777 == 0o660
    assert (out / "encoder.json").stat().st_mode & 0o777 == 0o660


def test_the_weights_file_header_names_the_format_and_architecture(tmp_path):
    out = save_encoder(_small(), tmp_path / "export", "resnet10", {"spatial_dims": 2, "in_channels": 1, "width": 2})
    with safe_open(str(out / "encoder.safetensors"), framework="pt") as f:
        assert f.metadata() == {"format": "medssl-encoder", "architecture": "resnet10"}


def test_an_unregistered_architecture_keeps_the_arguments_given(tmp_path):
    """Defaults are filled in from the registry; a name it does not have (a user's own network) keeps its
    arguments as given instead of losing them."""
    out = save_encoder(_small(), tmp_path / "export", "my_resnet", {"spatial_dims": 2, "depth": 7})
    assert read_spec(out)["arguments"] == {"spatial_dims": 2, "depth": 7}


def test_reader_note_compares_only_the_options_that_set_intensities(tmp_path):
    """A card's other reader options (a DICOM series' series_uid, spacing_rtol) do not make its intensities
    differ from those of an export pretrained with the readers' defaults: no note."""
    card = tmp_path / "ct_series.yaml"
    card.write_text(
        "name: ct_series\nmodality: CT\ndimensionality: 3\nformat: dicom_series\nfiles: 'sub-*/'\n"
        "path_regex: '(?P<subject>sub-\\d+)/'\n"
        "reader_options: {series_uid: '1.2.3.4', spacing_rtol: 0.05}\n"
        "preprocessing: {shape: [16, 16, 16], spacing: [2, 2, 2], normalise: zscore}\n"
        "licence: test\ncitation: test\nobtain: test\nphi: none\n")
    out = save_encoder(_small(), tmp_path / "export", "resnet10", {"spatial_dims": 2, "in_channels": 1, "width": 2},
                       {"reader_options": {}})
    assert reader_note(out, load_card(str(card))) == []


def test_an_export_is_read_and_loaded_from_its_encoder_json_too(tmp_path):
    """docs (read_spec, load_encoder): the export folder or its encoder.json file."""
    import torch

    import medssl

    torch.manual_seed(0)
    encoder = _small().eval()
    out = save_encoder(encoder, tmp_path / "export", "resnet10", {"spatial_dims": 2, "in_channels": 1, "width": 2})
    assert read_spec(out / "encoder.json")["architecture"] == "resnet10"
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(medssl.load_encoder(out / "encoder.json")(x), encoder(x))


def test_an_export_goes_into_a_folder_whose_parents_do_not_exist_yet(tmp_path):
    out = save_encoder(_small(), tmp_path / "exports" / "2026" / "resnet10", "resnet10",
                       {"spatial_dims": 2, "in_channels": 1, "width": 2})
    assert sorted(p.name for p in out.iterdir()) == ["encoder.json", "encoder.safetensors"]


def test_weights_that_do_not_fit_name_up_to_three_differing_tensors(tmp_path):
    import hashlib
    import json

    import pytest
    from safetensors.torch import load_file, save_file

    import medssl
    from medssl.export import ExportError

    out = save_encoder(_small(), tmp_path / "export", "resnet10", {"spatial_dims": 2, "in_channels": 1, "width": 2})
    weights = load_file(str(out / "encoder.safetensors"))
    dropped = sorted(weights)[:4]
    save_file({k: v for k, v in weights.items() if k not in dropped}, str(out / "encoder.safetensors"))
    spec = json.loads((out / "encoder.json").read_text())
    spec["weights"]["sha256"] = hashlib.sha256((out / "encoder.safetensors").read_bytes()).hexdigest()
    (out / "encoder.json").write_text(json.dumps(spec))
    with pytest.raises(ExportError, match="4 tensor") as err:
        medssl.load_encoder(out)
    assert sum(f"{k} missing from the file" in str(err.value) for k in dropped) == 3


def test_a_truncated_spec_or_a_missing_weights_file_is_an_export_error(tmp_path):
    """docs (load_encoder): missing or corrupt files are an ExportError naming the file, not a JSON or OS error."""
    import pytest

    import medssl
    from medssl.export import ExportError

    out = save_encoder(_small(), tmp_path / "export", "resnet10", {"spatial_dims": 2, "in_channels": 1, "width": 2})
    (out / "encoder.safetensors").unlink()
    with pytest.raises(ExportError, match=r"encoder.safetensors not found \(named in .*encoder.json\)"):
        medssl.load_encoder(out)
    (out / "encoder.json").write_text((out / "encoder.json").read_text()[:40])
    with pytest.raises(ExportError, match=r"encoder.json is not valid JSON"):
        medssl.load_encoder(out)


def test_a_card_that_cannot_be_read_is_named_by_its_stem_and_the_augmentation_preset_is_recorded(tmp_path):
    """A card path that is a folder (a ConfigError) is not fatal: the spec keeps the card's name only."""
    import json

    from medssl.config import load_config
    from medssl.export import input_spec_from_config

    card = tmp_path / "Qzxvbn_Wyrmtrude_scans" / "cxr.yaml"
    card.mkdir(parents=True)
    spec = input_spec_from_config(load_config(None, [f"data.card={card}", "data.shape=[16,16,16]",
                                                     "encoder.spatial_dims=3", "augment.crop_size=[12,12,12]",
                                                     "augment.preset=brain_mri"]))
    assert spec["data_card"] == "cxr" and spec["augment_preset"] == "brain_mri" and "Qzxvbn" not in json.dumps(spec)
    # an OSError while looking for it (here a name longer than the file system allows; on a cluster, a share that
    # this user cannot read) is not fatal either
    long = tmp_path / f"{'c' * 300}.yaml"
    spec = input_spec_from_config(load_config(None, [f"data.card={long}", "data.shape=[16,16,16]",
                                                     "encoder.spatial_dims=3", "augment.crop_size=[12,12,12]"]))
    assert spec["data_card"] == "c" * 300 and "orientation" not in spec
