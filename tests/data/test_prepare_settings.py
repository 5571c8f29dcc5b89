"""Preprocessing settings from a card and a run, found by mutating medssl/data/prepare.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medssl.config import ConfigError
from medssl.data.card import DataCard
from medssl.data.prepare import (make_loader, make_preprocessor, prepare_card, refuse_other_settings,
                                 refuse_overwriting_inputs)
from medssl.io import Volume
from medssl.io.errors import BadFileError


def _card(dims=3, **kw) -> DataCard:
    pre = {"shape": [8] * dims, "spacing": [2.0] * dims, "normalise": "none"}
    return DataCard(name="c", modality="MR", dimensionality=dims, format="npy", manifest="t.tsv",
                    columns={"subject": "id"}, path_template="{id}.npy", preprocessing=pre, **kw)


def test_an_empty_run_spacing_keeps_each_scans_own_and_none_takes_the_cards():
    """data.spacing=[] (the config default) means 'keep'; only an unset spacing (data prepare
    without --spacing) comes from the card."""
    assert make_preprocessor(_card(), [8, 8, 8], []).spacing == []
    assert make_preprocessor(_card(), [8, 8, 8]).spacing == [2.0, 2.0, 2.0]
    assert make_preprocessor(_card(), None, [1, 1, 1]).shape == [8, 8, 8]


@pytest.mark.parametrize("spacing, words", [([1.0, 1.0], r"card 'c' is 3D: spacing needs 3 values \(mm\), got \[1.0, 1.0\]"),
                                            ([1.0, math.inf, 1.0], r"data.spacing must be 3 positive voxel sizes"),
                                            ([1.0, -1.0, 1.0], r"data.spacing must be 3 positive voxel sizes")])
def test_a_spacing_of_the_wrong_length_or_not_finite_is_refused(spacing, words):
    with pytest.raises(ConfigError, match=words):
        make_preprocessor(_card(), [8, 8, 8], spacing)


def test_a_2d_image_keeps_its_file_orientation():
    """A radiograph has no patient frame: an in-plane affine whose first axis runs to -x is not flipped."""
    pixels = np.arange(64, dtype=np.float32).reshape(1, 8, 8)
    vol = Volume(pixels, np.diag([-1.0, 1.0, 1.0]))
    out = make_preprocessor(_card(2), [8, 8], [])(vol)
    np.testing.assert_array_equal(out, pixels)


def test_a_run_with_other_channels_is_refused_naming_encoder_in_channels(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "t.tsv").write_text("id\na\nb\n")
    for name in "ab":
        np.save(root / f"{name}.npy", np.ones((1, 8, 8), np.float32))
    card = _card(2, geometry={"spacing": [1.0, 1.0]})
    prepare_card(card, tmp_path / "c", root=root, spacing=[1.0, 1.0], progress=False)
    same = make_loader(card, make_preprocessor(card, None, [1.0, 1.0]), 1, root)
    refuse_other_settings(tmp_path / "c", same)  # the same settings: reused
    other = make_loader(card, make_preprocessor(card, None, [1.0, 1.0]), 3, root)
    with pytest.raises(ConfigError, match=r"encoder.in_channels: 1 there, 3 in this run"):
        refuse_other_settings(tmp_path / "c", other)


def test_a_cache_file_that_is_a_card_input_is_refused(tmp_path):
    """Preparing into the data root of a card whose split list is called index.json would replace it."""
    card = _card(split_files={"test": "index.json"})
    with pytest.raises(ConfigError, match=r"index\.json would overwrite card c's split list \(test\)"):
        refuse_overwriting_inputs(card, tmp_path, tmp_path / "out", tmp_path)
    refuse_overwriting_inputs(card, tmp_path, tmp_path / "out", tmp_path / "cache")


def test_prepare_takes_the_channel_count_from_the_card(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "t.tsv").write_text("id\na\n")
    rgb = np.stack([np.full((8, 8), v, np.float32) for v in (1.0, 2.0, 3.0)])
    np.save(root / "a.npy", rgb)
    card = _card(2, geometry={"spacing": [1.0, 1.0]})
    card.preprocessing["channels"] = 3
    res = prepare_card(card, tmp_path / "c", root=root, spacing=[1.0, 1.0], progress=False)
    assert res.cache.images.shape == (1, 3, 8, 8)
    np.testing.assert_array_equal(res.cache.images[0], rgb)


def test_a_card_voxel_size_changed_by_a_hundredth_of_a_mm_changes_the_settings(tmp_path):
    """The npy geometry enters the cache settings to 6 decimals: 1.00 and 1.02 mm are other preprocessing."""
    (tmp_path / "t.tsv").write_text("id\na\n")
    np.save(tmp_path / "a.npy", np.ones((1, 8, 8), np.float32))
    settings = [make_loader(c, make_preprocessor(c, None, [1.0, 1.0]), 1, tmp_path).settings()
                for c in (_card(2, geometry={"spacing": [v, v]}) for v in (1.0, 1.02, 1.0))]
    assert settings[0] != settings[1] and settings[0] == settings[2]


def test_a_run_whose_card_sets_another_voxel_size_is_refused_naming_the_geometry(tmp_path):
    """The card's npy geometry changes the cached rows (they are resampled from it): a run with a card of
    another voxel size is refused like any other setting, not handed a silent rebuild of the prepared rows."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "t.tsv").write_text("id\na\n")
    np.save(root / "a.npy", np.arange(64, dtype=np.float32).reshape(1, 8, 8))
    card = _card(2, geometry={"spacing": [1.0, 1.0]})
    prepare_card(card, tmp_path / "c", root=root, spacing=[1.0, 1.0], progress=False)
    other = _card(2, geometry={"spacing": [0.5, 0.5]})
    with pytest.raises(ConfigError, match=r"the card.s geometry: \[\[\[1\.0, .* there, \[\[\[0\.5, .* in this run"):
        refuse_other_settings(tmp_path / "c", make_loader(other, make_preprocessor(other, None, [1.0, 1.0]), 1, root))


@pytest.mark.parametrize("change, named", [({"reader_options": {"spacing": 0.5}}, r"the card's reader: \{'spacing': 1\.0\} there, "
                                                                                  r"\{'spacing': 0\.5\} in this run"),
                                           ({"format": "auto"}, r"the card's format: png there, auto in this run")],
                         ids=["reader_options", "format"])
def test_a_run_whose_card_reads_the_files_otherwise_is_refused_naming_it(tmp_path, change, named):
    """The card's reader options and format are cache settings too: a run with other ones is refused, naming them."""
    from PIL import Image

    root = tmp_path / "data"
    root.mkdir()
    (root / "t.tsv").write_text("id\na\n")
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(root / "a.png")
    kw = {"name": "c", "modality": "DX", "dimensionality": 2, "manifest": "t.tsv", "columns": {"subject": "id"},
          "path_template": "{id}.png", "preprocessing": {"shape": [8, 8], "normalise": "none"}}
    card = DataCard(**kw, format="png", reader_options={"spacing": 1.0})
    prepare_card(card, tmp_path / "c", root=root, progress=False)
    other = DataCard(**{**kw, "format": "png", "reader_options": {"spacing": 1.0}, **change})
    with pytest.raises(ConfigError, match=named):
        refuse_other_settings(tmp_path / "c", make_loader(other, make_preprocessor(other), 1, root))


@pytest.mark.filterwarnings(r"ignore:std\(\)")
@pytest.mark.parametrize("spacing, error", [([1.0, 1.0, 1.0], "RuntimeError"), ([], "IndexError")], ids=["resample", "keep"])
def test_a_scan_with_an_empty_axis_is_a_bad_file_whichever_error_the_preprocessing_raises(spacing, error):
    """A decoded scan with no voxels along an axis makes torch raise RuntimeError (resampling) or IndexError
    (normalising); either is the file's fault, so the loader reports a BadFileError (a skip build lists it)."""
    from medssl.data.manifest import Record
    from medssl.data.prepare import ScanLoader

    empty = Volume(np.ones((1, 0, 8, 8), np.float32), np.diag([2.0, 1.0, 1.0, 1.0]))
    loader = ScanLoader(lambda record: empty, make_preprocessor(_card(), None, spacing, "zscore"), 3)
    with pytest.raises(BadFileError, match=rf"preprocessing failed \({error}"):
        loader(Record(subject="s", path="s.npy"))
