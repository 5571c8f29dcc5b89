"""`data prepare`: which card changes rebuild a cache, and which inputs it refuses to overwrite."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from medssl.config import ConfigError
from medssl.data import prepare, sources
from medssl.data.card import DataCard, load_card
from medssl.data.prepare import make_loader, make_preprocessor, prepare_card


def test_a_dicom_reader_revision_rebuilds_dicom_cards_only(cohort_copy, tmp_path, monkeypatch):
    """sources.DICOM_REVISION is in the settings of a `format: dicom` card (its files may have any name), so a new
    DICOM reader rebuilds such a cache; a NIfTI card's cache is reused as it was."""
    card = load_card("synthetic")
    assert prepare_card(card, tmp_path / "c", root=cohort_copy, shape=[8, 8, 8], progress=False).cache.n_built == 40
    dicom = replace(card, format="dicom")
    before = [make_loader(c, make_preprocessor(c, [8, 8, 8]), root=cohort_copy).settings() for c in (card, dicom)]
    monkeypatch.setattr(prepare, "DICOM_REVISION", sources.DICOM_REVISION + 1)
    monkeypatch.setattr(sources, "DICOM_REVISION", sources.DICOM_REVISION + 1)
    after = [make_loader(c, make_preprocessor(c, [8, 8, 8]), root=cohort_copy).settings() for c in (card, dicom)]
    assert before[0] == after[0] and before[1] != after[1]
    again = prepare_card(card, tmp_path / "c", root=cohort_copy, shape=[8, 8, 8], progress=False).cache
    assert again.n_built == 0 and again.valid.all()  # every row reused as it was


def test_a_medmnist_file_named_like_a_cache_file_is_refused_not_overwritten(tmp_path):
    """The MedMNIST file is an input like the table: prepared into its own folder, a cache file of the same name
    would replace it."""
    with open(tmp_path / "images.npy", "wb") as fh:  # np.savez would add .npz to the name
        np.savez(fh, train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.zeros((2, 1), np.uint8))
    data = (tmp_path / "images.npy").read_bytes()
    card = DataCard(name="m", modality="X", dimensionality=2, format="medmnist", npz="images.npy",
                    splits={"train": ["train"]}, preprocessing={"shape": [4, 4], "normalise": "none"})
    with pytest.raises(ConfigError, match=r"overwrite card m's MedMNIST file"):
        prepare_card(card, tmp_path, root=tmp_path, progress=False)
    assert (tmp_path / "images.npy").read_bytes() == data


def test_a_run_rebuilds_a_dicom_cache_of_an_older_reader_revision_instead_of_refusing_it(tmp_path, monkeypatch):
    """A `format: dicom` cache prepared before a DICOM reader revision differs from the run's settings only in
    dicom_revision, which no run key sets: the run rebuilds it (what the revision is for), no setting is named;
    a changed shape is named alone, not with the settings that are the same."""
    import json

    from medssl.data.prepare import refuse_other_settings

    card = replace(load_card("synthetic"), format="dicom")
    old = make_loader(card, make_preprocessor(card, [8, 8, 8])).settings()
    (tmp_path / "index.json").write_text(json.dumps({"settings": old}))
    monkeypatch.setattr(prepare, "DICOM_REVISION", sources.DICOM_REVISION + 1)
    refuse_other_settings(tmp_path, make_loader(card, make_preprocessor(card, [8, 8, 8])))
    with pytest.raises(ConfigError) as e:
        refuse_other_settings(tmp_path, make_loader(card, make_preprocessor(card, [6, 8, 8])))
    assert "(data.shape: [8, 8, 8] there, [6, 8, 8] in this run);" in str(e.value)
