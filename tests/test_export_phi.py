"""encoder.json is shared with others: it keeps the card's intensity reader options and its name, never a
series UID given to the reader or the path of the card (a folder named after a patient, a hospital share)."""

from __future__ import annotations

import json

from medssl.config import load_config
from medssl.export import input_spec_from_config

UID = "1.2.826.0.1.3680043.8.498.99887766554433221100"


def _config(card: str):
    return load_config(None, [f"data.card={card}", "data.shape=[16,16,16]", "encoder.spatial_dims=3",
                              "augment.crop_size=[12,12,12]"])


def test_a_series_uid_in_the_cards_reader_options_is_not_exported(tmp_path):
    card = tmp_path / "ct_series.yaml"
    card.write_text(
        "name: ct_series\nmodality: CT\ndimensionality: 3\nformat: dicom_series\nfiles: 'sub-*/'\n"
        "path_regex: '(?P<subject>sub-\\d+)/'\n"
        f"reader_options: {{series_uid: '{UID}', spacing_rtol: 0.05}}\n"
        "preprocessing: {shape: [16, 16, 16], spacing: [2, 2, 2], normalise: zscore}\n"
        "licence: test\ncitation: test\nobtain: test\nphi: none\n")
    spec = input_spec_from_config(_config(str(card)))
    assert spec["data_card"] == "ct_series" and spec["reader_options"] == {}
    assert UID not in json.dumps(spec) and str(tmp_path) not in json.dumps(spec)


def test_a_card_that_moved_away_is_named_without_its_folder(tmp_path):
    card = tmp_path / "Qzxvbn_Wyrmtrude_scans" / "cxr.yaml"
    spec = input_spec_from_config(_config(str(card)))
    assert spec["data_card"] == "cxr"
    assert "Qzxvbn" not in json.dumps(spec)
