"""Cells a spreadsheet pads with spaces, the path of a scan, which split wins, a manifest read back."""

from __future__ import annotations

import math

import pytest

from medssl.config import ConfigError
from medssl.data.card import DataCard, load_card
from medssl.data.manifest import Record, read_manifest, scan_manifest, write_manifest


def _scan(tmp_path, table: str, files=("s1", "s2"), **card):
    (tmp_path / "t.tsv").write_text(table)
    for f in files:
        (tmp_path / f"{f}.nii.gz").write_bytes(b"x")
    card = {"path_template": "{id}.nii.gz", **card}
    scan = scan_manifest(DataCard(name="t", modality="MR", dimensionality=3, manifest="t.tsv", **card), tmp_path)
    assert [str(p) for p in scan.problems] == []
    return scan.records


def test_site_sex_label_and_split_cells_padded_with_spaces_are_read_as_written_without_them(tmp_path):
    """' A ' is site A (one category with 'A', not two), ' n/a ' and ' NA ' are missing, ' test ' is the test split:
    docs/data.md §1, cells stripped as the id and age cells are."""
    records = _scan(tmp_path, "id\tsite\tsex\tlabel\tsplit\ns1\t A \t n/a \t NA \t test \ns2\tA\tF\tx\ttrain\n",
                    columns={"subject": "id", "site": "site", "sex": "sex", "label": "label", "split": "split"})
    assert [(r.site, r.sex, r.label, r.split) for r in records] == [("A", "", "", "test"), ("A", "F", "x", "train")]


def test_a_path_cell_padded_with_spaces_names_the_file_without_them(tmp_path):
    records = _scan(tmp_path, "id\tfile\ns1\t s1.nii.gz \n", files=("s1",), path_template="",
                    columns={"subject": "id", "path": "file"})
    assert [r.path for r in records] == [str(tmp_path / "s1.nii.gz")]


def test_the_first_path_template_whose_file_exists_is_the_scan(tmp_path):
    """Two templates (e.g. .nii.gz or .nii): s1 exists only under the second, s2 under both (the first wins)."""
    (tmp_path / "s1.nii").write_bytes(b"x")
    (tmp_path / "s2.nii").write_bytes(b"x")
    records = _scan(tmp_path, "id\ns1\ns2\n", files=("s2",), path_template=["{id}.nii.gz", "{id}.nii"],
                    columns={"subject": "id"})
    assert [r.path for r in records] == [str(tmp_path / "s1.nii"), str(tmp_path / "s2.nii.gz")]


def test_a_split_in_the_table_wins_over_the_split_lists_which_fill_only_empty_cells(tmp_path):
    """s1's table says train and the list says test: the table's value stays; s2's empty cell is filled from the list."""
    (tmp_path / "test.txt").write_text("s1.nii.gz\ns2.nii.gz\n")
    records = _scan(tmp_path, "id\tsplit\ns1\ttrain\ns2\t\n", columns={"subject": "id", "split": "split"},
                    split_files={"test": "test.txt"})
    assert [(r.subject, r.split) for r in records] == [("s1", "train"), ("s2", "test")]


def test_a_manifest_read_back_is_the_records_written_and_without_an_index_column_each_is_a_whole_file(tmp_path):
    """Round trip of write_manifest / read_manifest; a manifest TSV without the index / npz_split columns (written
    by hand or by an older medssl) reads index -1: each scan is its whole file, its key the path."""
    records = [Record("a.nii.gz", "002", "ses-1", "A", 45.5, "F", "", "train"),
               Record("b.npz", "s2", age=math.nan, split="test", index=3, npz_split="test")]
    back = read_manifest(write_manifest(records, tmp_path / "m.tsv"))
    assert [r.key for r in back] == ["a.nii.gz", "b.npz::test[3]"]
    assert back[0] == records[0] and math.isnan(back[1].age)
    (tmp_path / "old.tsv").write_text("path\tsubject\tage\na.nii.gz\ts1\t30\n")
    assert [(r.index, r.key, r.age) for r in read_manifest(tmp_path / "old.tsv")] == [(-1, "a.nii.gz", 30.0)]


def test_select_without_a_manifest_is_refused_when_the_card_loads(tmp_path):
    """docs/data.md: join and select apply to the manifest table; a glob card with select (and no manifest to select
    rows of) would silently keep every file."""
    (tmp_path / "card.yaml").write_text("name: g\nmodality: MR\ndimensionality: 3\nfiles: '*.nii.gz'\n"
                                        "path_regex: '(?P<subject>[^.]+)'\nselect: {view: [PA]}\n")
    with pytest.raises(ConfigError, match="join / select apply to the manifest table; give `manifest` too"):
        load_card(str(tmp_path / "card.yaml"))


def test_blank_lines_in_two_split_lists_are_no_entry_of_either(tmp_path):
    """Each list has an empty line (and one of spaces) between its names: not the entry '' listed in two lists."""
    (tmp_path / "train.txt").write_text("s1.nii.gz\n\n   \n")
    (tmp_path / "test.txt").write_text("\ns2.nii.gz\n\n")
    records = _scan(tmp_path, "id\ns1\ns2\n", columns={"subject": "id"},
                    split_files={"train": "train.txt", "test": "test.txt"})
    assert [(r.subject, r.split) for r in records] == [("s1", "train"), ("s2", "test")]


def test_a_listed_path_wins_over_a_listed_file_name(tmp_path):
    """a/x.nii.gz is listed by its path under train, and 'x.nii.gz' (a file name, so every x.nii.gz) under test: the
    path is the more precise entry, so a/x is train and b/x, named only by its file name, is test."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.nii.gz").write_bytes(b"x")
    (tmp_path / "train.txt").write_text("a/x.nii.gz\n")
    (tmp_path / "test.txt").write_text("x.nii.gz\n")
    records = _scan(tmp_path, "id\tdir\ns1\ta\ns2\tb\n", files=(), path_template="{dir}/x.nii.gz",
                    columns={"subject": "id"}, split_files={"train": "train.txt", "test": "test.txt"})
    assert [(r.subject, r.split) for r in records] == [("s1", "train"), ("s2", "test")]


def test_a_join_on_a_column_missing_from_either_table_names_the_column(tmp_path):
    """Without the check every row's key would be '' and match nothing (or a row with an empty key)."""
    from medssl.data.tables import ManifestError, load_rows

    (tmp_path / "t.tsv").write_text("id\tage\ns1\t30\n")
    (tmp_path / "j.tsv").write_text("subject\tsite\ns1\tA\n")
    for key, table in (("subject", "manifest"), ("id", "j.tsv")):
        with pytest.raises(ManifestError, match=rf"join on '{key}': column not in .*{table}"):
            load_rows("t.tsv", tmp_path, join=[{"table": "j.tsv", "key": key}])


def test_a_template_that_escapes_the_root_is_a_problem_even_when_another_template_stays_inside(tmp_path):
    (tmp_path / "t.tsv").write_text("id\ns1\n")
    (tmp_path / "s1.nii.gz").write_bytes(b"x")
    card = DataCard(name="t", modality="MR", dimensionality=3, manifest="t.tsv", columns={"subject": "id"},
                    path_template=["../{id}.nii.gz", "{id}.nii.gz"])
    scan = scan_manifest(card, tmp_path)
    assert scan.records == [] and ["escapes the data root" in p.reason for p in scan.problems] == [True]
