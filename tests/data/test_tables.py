"""Metadata tables of a card: joined tables, split lists and messy spreadsheet exports (issue #3)."""

from __future__ import annotations

import pytest

from medssl.cli import main
from medssl.data.manifest import ManifestError, build_manifest, scan_manifest

CARD = ("name: t\nmodality: MR\ndimensionality: 3\nmanifest: {manifest}\ncolumns: {{subject: id, age: age{more}}}\n"
        "path_template: '{{id}}.nii.gz'\n")


def _card(tmp_path, manifest="p.csv", more="", extra=""):
    (tmp_path / "card.yaml").write_text(CARD.format(manifest=manifest, more=more) + extra)
    return str(tmp_path / "card.yaml")


def _scans(tmp_path, ids):
    for i in ids:
        (tmp_path / f"{i}.nii.gz").write_bytes(b"x")


def _load(card):
    from medssl.data.card import load_card

    return load_card(card)


def test_data_check_names_every_ragged_row_of_every_joined_table(tmp_path, capsys):
    """A joined table's first ragged row stopped `data check` (later ones, and the main table's, unnamed)."""
    _scans(tmp_path, ["s1", "s2", "s3", "s4"])
    (tmp_path / "p.csv").write_text("id,age\ns1,30\ns2,31,x\ns3,32\ns4,33\n")  # row 3 ragged
    (tmp_path / "sites.csv").write_text("id,site\ns1,A\ns2\ns3,B\n\ns4,B,extra\n")  # rows 3 and 6 ragged
    (tmp_path / "sex.csv").write_text("id,sex\ns1,F,F\ns2,M\n")  # row 2 ragged
    card = _card(tmp_path, more=", site: site, sex: sex",
                 extra="join: [{table: sites.csv, key: id}, {table: sex.csv, key: id}]\n")
    assert main(["data", "check", card, "--root", str(tmp_path), "--no-read", "--strict"]) == 1
    out = capsys.readouterr().out
    for table, row, n in [("p.csv", 3, 3), ("sites.csv", 3, 1), ("sites.csv", 6, 3), ("sex.csv", 2, 3)]:
        assert f"{tmp_path / table} row {row}: {n} fields but the header has 2" in out, out
    scan = scan_manifest(_load(card), tmp_path)
    assert [p.where for p in scan.problems] == [f"{tmp_path / t} row {r}" for t, r in
                                                [("p.csv", 3), ("sites.csv", 3), ("sites.csv", 6), ("sex.csv", 2)]]
    assert [(r.subject, r.site, r.sex) for r in scan.records] == [("s1", "A", ""), ("s3", "B", ""), ("s4", "", "")]
    with pytest.raises(ManifestError, match=r"p.csv row 3: 3 fields"):  # training still stops at the first
        build_manifest(_load(card), tmp_path)
    (tmp_path / "p.csv").write_text("id,age\ns1,30\n")
    with pytest.raises(ManifestError, match=r"sites.csv row 3: 1 fields"):
        build_manifest(_load(card), tmp_path)
