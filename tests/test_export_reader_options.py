"""encoder.json records the card's reader options that set intensities (DICOM ``voi``, ``color``), and
``evaluate EXPORT --data CARD`` says when the card reads its files otherwise (``medssl.export.reader_note``)."""

from __future__ import annotations

import pytest

from medssl.api import REPO_ROOT
from medssl.config import load_config
from medssl.data.card import load_card
from medssl.encoders import build_encoder
from medssl.export import input_spec_from_config, reader_note, save_encoder


@pytest.mark.parametrize(("card", "options"), [("mimic_cxr", {"voi": "auto"}), ("chexpert", {"color": "luminance"}),
                                              ("synthetic", {})])
def test_the_spec_records_how_the_reader_turned_files_into_intensities(card, options):
    """encoder.json gave shape, spacing and normalisation but not the card's reader options (DICOM ``voi``: the
    file's window or the stored values; ``color``), so scans re-read for the encoder could not be preprocessed as
    in pretraining from encoder.json alone. The spec now records them (names and values from the card, no data)."""
    dims = 3 if card == "synthetic" else 2
    cfg = load_config(None, [f"data.card={card}", f"data.shape=[{','.join(['32'] * dims)}]",
                             f"encoder.spatial_dims={dims}", f"augment.crop_size=[{','.join(['28'] * dims)}]"])
    assert input_spec_from_config(cfg)["reader_options"] == options


def test_evaluating_an_export_on_a_card_that_reads_intensities_otherwise_says_so(tmp_path):
    """`evaluate EXPORT --data CARD` reads the card's files with the card's reader options: a card that windows
    (or not) differently from the pretraining card gave other intensities without a word. The report's notes say so;
    the readers' defaults (voi auto, color luminance) count as given; an export without the record says nothing."""
    encoder = build_encoder("resnet10", spatial_dims=2, in_channels=1, width=4)
    out = save_encoder(encoder, tmp_path / "export", "resnet10", {"spatial_dims": 2, "in_channels": 1, "width": 4},
                       {"reader_options": {}})  # pretrained with the readers' defaults
    assert reader_note(out, load_card("mimic_cxr")) == []  # voi: auto, the DICOM default
    assert reader_note(out, load_card("chexpert")) == []  # color: luminance, the default
    card = (REPO_ROOT / "data_cards" / "mimic_cxr.yaml").read_text().replace("voi: auto", "voi: none")
    (tmp_path / "raw_cxr.yaml").write_text(card)
    (note,) = reader_note(out, load_card(str(tmp_path / "raw_cxr.yaml")))
    assert "{'voi': 'auto', 'color': 'luminance'}" in note and "{'voi': 'none', 'color': 'luminance'}" in note
    assert "card mimic_cxr" in note
    older = save_encoder(encoder, tmp_path / "older", "resnet10", {"spatial_dims": 2, "in_channels": 1, "width": 4})
    assert reader_note(older, load_card(str(tmp_path / "raw_cxr.yaml"))) == []  # written before the record
