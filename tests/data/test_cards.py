"""Every shipped data card is schema-valid and documented; card validation errors; shared cards on real data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medssl.config import ConfigError
from medssl.data.card import load_card
from medssl.data.manifest import build_manifest

CARDS = Path(__file__).resolve().parents[2] / "data_cards"
CARD_FILES = sorted(CARDS.glob("*.yaml"))


def test_cards_folder_holds_the_required_data_sets():
    names = {p.stem for p in CARD_FILES}
    required = {"synthetic", "openbhb_quasiraw", "openbhb_vbm", "ukbiobank_t1", "ixi", "bids_t1w", "chexpert",
                "nih_chestxray14", "mimic_cxr", "shared_ixi"}
    assert required <= names, required - names
    assert sum(n.startswith("medmnist_") and n.endswith("3d") for n in names) == 6
    assert sum(n.startswith("medmnist_") and not n.endswith("3d") for n in names) == 12


@pytest.mark.parametrize("path", CARD_FILES, ids=[p.stem for p in CARD_FILES])
def test_every_card_loads_and_is_documented(path):
    card = load_card(path)
    assert card.name == path.stem
    for key in ("description", "licence", "citation", "obtain", "phi"):
        assert str(getattr(card, key)).strip(), f"{path.name}: `{key}` is empty"
    shape = card.preprocessing.get("shape")
    assert shape is None or len(shape) == card.dimensionality
    readme = (CARDS / "README.md").read_text()
    assert card.name in readme or (card.name.startswith("medmnist_") and "medmnist_*" in readme)


def _write(tmp_path, text: str) -> Path:
    p = tmp_path / "card.yaml"
    p.write_text(text)
    return p


BASE = "name: x\nmodality: MR\ndimensionality: 3\n"


@pytest.mark.parametrize("extra, message", [
    ("format: nfiti\nmanifest: t.tsv\ncolumns: {subject: id}\npath_template: a\n", r"format 'nfiti'.*Did you mean 'nifti'"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\njoin: [{table: b.csv, on: id}]\n", "key: <column"),
    ("files: '*.nii.gz'\npath_regex: '(?P<site>x)'\n", r"\(\?P<subject>\.\.\.\) group"),
    ("files: '*.nii.gz'\npath_regex: '(?P<subject>x)(?P<colour>y)'\n", r"groups \['colour'\] are not roles"),
    ("format: medmnist\n", "needs both `format: medmnist` and `npz"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\npreprocessing: {shape: [8, 8]}\n", r"shape must be a list of 3 positive integers.*got \[8, 8\]"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\npreprocessing: {shape: 8}\n", r"shape must be a list of 3 positive integers \(dimensionality 3\)"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\npreprocessing: {shape: [8, -8, 8]}\n", "shape must be a list of 3 positive integers"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\npreprocessing: {spacing: 2}\n", r"spacing must be a list of 3 positive numbers \(dimensionality 3\), e.g. \[1.5, 1.5, 1.5\], got 2"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\npreprocessing: {normalise: zscor}\n", r"normalise 'zscor' is not known.*Did you mean 'zscore'"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\npreprocessing: {channels: three}\n", "channels must be a positive integer"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: 5\n", "path_template must be a format string"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: 'IXI{id.zfill}.nii.gz'\n",
     r"field \{id.zfill\} is not a column name; write \{column\} or \{column:0>3\}"),  # formats to a method repr
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: ['{id}.nii.gz', 'x{0}.nii.gz']\n", r"field \{0\}"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: '{id.nii.gz'\n", "not a valid format string"),
    ("files: '/etc/*'\npath_regex: '(?P<subject>x)'\n", "must be a glob relative to the data root"),
    ("format: nifti\nmanifest: t.tsv\ncolumns: {subject: id}\npath_template: a\nreader_options: {voi: auto}\n", r"reader_options.'voi' for format 'nifti'.*Valid: expect_spatial_dims"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\nreader_options: {expect_spatial_dim: 2}\n", r"reader_options.'expect_spatial_dim'.*Did you mean 'expect_spatial_dims'"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\npreprocessing: {shap: [8]}\n", "Did you mean 'shape'"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\nsplits: {training: [train]}\n", "Did you mean 'train'"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\nsplits: {train: [a, b], test: [b]}\n",
     r"split value 'b' is listed under splits.train and splits.test"),
    ("format: npy\nmanifest: t.tsv\ncolumns: {subject: id}\npath_template: a\n", "format npy needs geometry"),
    ("columns: {subject: id}\n", "give `manifest`"),
    ("dimensionality: 4\n", "dimensionality must be 2 or 3"),
    # a list where one file / column is meant crashed later with a bare TypeError (split_files) or a vague error
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\nsplit_files: {train: [a.txt, b.txt]}\n",
     r"split_files.train must be a list file, one name per line \(one text value\), got \['a.txt', 'b.txt'\]"),
    ("manifest: t.tsv\ncolumns: {subject: id, age: [age, years]}\npath_template: a\n", r"columns.age must be a column name"),
    ("manifest: t.tsv\ncolumns: {subject: }\npath_template: a\n", r"columns.subject must be a column name.*got None"),
    ("manifest: t.tsv\ncolumns: {subject: id, age: ' '}\npath_template: a\n", r"columns.age must be a column name.*got ' '"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\npreprocessing: {spacing: [1, 0, 1]}\n",
     "spacing must be a list of 3 positive numbers"),
    ("manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\npreprocessing: {channels: true}\n",
     "channels must be a positive integer"),
    ("files: '*.nii.gz'\npath_regex: '(?P<subject>x)'\nmanifest: t.tsv\ncolumns: {age: age}\n",
     "the manifest is joined on subject: set columns.subject"),
    ("manifest: t.tsv\ncolumns: {subject: id}\n", "give either path_template or a columns.path column"),
    ("manifest: t.tsv\ncolumns: {age: age}\npath_template: a\n", r"columns.subject \(or a \(\?P<subject>...\) group"),
])
def test_card_validation_errors(tmp_path, extra, message):
    text = BASE.replace("dimensionality: 3\n", "") if extra.startswith("dimensionality") else BASE
    with pytest.raises(ConfigError, match=message) as err:
        load_card(_write(tmp_path, text + extra))
    assert str(tmp_path / "card.yaml") in str(err.value)


def test_relative_root_is_resolved_against_the_card_folder(tmp_path, monkeypatch):
    (tmp_path / "cards").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.tsv").write_text("id\nA\n")
    (tmp_path / "data" / "A.nii.gz").write_bytes(b"x")
    p = tmp_path / "cards" / "c.yaml"
    p.write_text(BASE + "root: ../data\nmanifest: t.tsv\ncolumns: {subject: id}\npath_template: '{id}.nii.gz'\n")
    monkeypatch.chdir(tmp_path)  # not the card's folder: "../data" from here is another folder
    card = load_card(p)
    assert card.resolve_root() == (tmp_path / "data").resolve()
    monkeypatch.setenv("MY_DATA", str(tmp_path / "data"))
    assert card.resolve_root("$MY_DATA") == (tmp_path / "data").resolve()
    assert build_manifest(card)[0].path == str((tmp_path / "data" / "A.nii.gz").resolve())


def test_shared_medmnist_cards_match_the_published_split_sizes(shared):
    shared("data", "medmnist_adrenalmnist3d")
    recs = build_manifest(load_card("shared_adrenalmnist3d"), shared("data", "medmnist_adrenalmnist3d"))
    for split, n, n_pos in (("train", 1188, 259), ("val", 98, 22), ("test", 298, 69)):
        part = [r for r in recs if r.split == split]
        assert len(part) == n and sum(r.label == "1" for r in part) == n_pos
    recs = build_manifest(load_card("shared_pneumoniamnist"), shared("data", "medmnist_pneumoniamnist_reconstructed"))
    sizes = {s: (sum(r.split == s for r in recs), sum(r.split == s and r.label == "0" for r in recs))
             for s in ("train", "val", "test")}
    assert sizes == {"train": (4708, 1214), "val": (524, 135), "test": (624, 234)}


def test_medmnist_cards_state_the_official_sizes():
    """Each MedMNIST card's description carries its split sizes; DermaMNIST alone is non-commercial."""
    for path in CARDS.glob("medmnist_*.yaml"):
        card = load_card(path)
        assert re.search(r"train/val/test = \d+/\d+/\d+", card.description), path.name
        assert ("NC" in card.licence) == (card.name == "medmnist_dermamnist"), path.name


def test_a_key_given_twice_is_named_with_its_line(tmp_path):
    text = BASE + "manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\ncolumns: {subject: sid}\n"
    with pytest.raises(ConfigError, match=r"key 'columns' appears twice in one mapping at line 7, column 1"):
        load_card(_write(tmp_path, text))


def test_a_split_value_repeated_under_one_role_is_not_two_roles(tmp_path):
    """splits: {train: [a, a]} gives 'a' one role: nothing to refuse (it was 'listed under splits.train and
    splits.train'); a value under two roles stays refused."""
    card = load_card(_write(tmp_path, BASE + "manifest: t.tsv\ncolumns: {subject: id}\npath_template: a\n"
                                             "splits: {train: [a, a], test: [b]}\n"))
    assert card.splits == {"train": ["a", "a"], "test": ["b"]}


def _ixi_release(shared, tmp_path) -> Path:
    """The shared IXI HH scans named as in IXI-T1.tar, with IXI.xls saved as IXI.csv (the `ixi` card's `obtain`)."""
    import shutil

    src = shared("data", "ixi_t1_hh_2mm")
    root = tmp_path / "ixi"
    root.mkdir()
    for f in sorted((src / "images").glob("IXI*_T1.nii.gz")):
        (root / f.name.replace("_T1.nii.gz", "-T1.nii.gz")).symlink_to(f)
    shutil.copy(src / "IXI_demographics_from_xls.csv", root / "IXI.csv")
    return root


def test_ixi_card_reads_the_real_ixi_spreadsheet(shared, tmp_path):
    """IXI.xls names its sex column 'SEX_ID (1=m, 2=f)'; the card asked for 'SEX_ID' and no record could be read."""
    from medssl.data.manifest import scan_manifest

    scan = scan_manifest(load_card("ixi"), _ixi_release(shared, tmp_path))
    assert len(scan.records) == 139 and {r.sex for r in scan.records} == {"1", "2"}
    assert {r.site for r in scan.records} == {"HH"} and all(20 < r.age < 90 for r in scan.records)


def test_ixi_spreadsheet_problems_are_only_the_real_ones(shared, tmp_path):
    """Of IXI.xls's 26 repeated subjects only IXI219 and IXI328 disagree (age; age and sex); 4 scans have no row."""
    from medssl.data.manifest import scan_manifest

    scan = scan_manifest(load_card("ixi"), _ixi_release(shared, tmp_path))
    disagree = sorted(re.search(r"subject '(\d+)' has rows that disagree", p.reason)[1] for p in scan.problems
                      if "disagree" in p.reason)
    no_row = sorted(re.search(r"subject '(\d+)'", p.reason)[1] for p in scan.problems if "has no row" in p.reason)
    assert disagree == ["219", "328"] and no_row == ["637", "638", "643", "661"] and len(scan.problems) == 6
