"""A `.txt` table: Excel's "Unicode Text" export (UTF-16 LE with a BOM, tab-separated, CRLF) is read as it is."""

from __future__ import annotations

import gzip

import pytest

from medssl.data.manifest import ManifestError, build_manifest
from medssl.data.tables import read_table

CARD = ("name: t\nmodality: MR\ndimensionality: 3\nmanifest: {manifest}\ncolumns: {{subject: id, age: age, site: site}}\n"
        "path_template: '{{id}}.nii.gz'\n")
ROWS = [("s1", 30.0, "Zürich, CH"), ("s2", 41.5, "A")]


def _records(tmp_path, name: str, raw: bytes):
    (tmp_path / name).write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    for subject, _, _ in ROWS:
        (tmp_path / f"{subject}.nii.gz").write_bytes(b"x")
    (tmp_path / "card.yaml").write_text(CARD.format(manifest=name))
    from medssl.data.card import load_card

    return [(r.subject, r.age, r.site) for r in build_manifest(load_card(str(tmp_path / "card.yaml")), tmp_path)]


@pytest.mark.parametrize("name", ["p.txt", "p.TXT", "p.txt.gz"])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-8"])
def test_a_tab_separated_txt_table_is_read_as_tab_separated(tmp_path, name, encoding):
    """Excel's "Unicode Text" is saved as .txt (UTF-16 LE + BOM, tabs, CRLF; a cell may hold a comma): it was
    read as comma-separated and refused ("the header is one column 'id\\tage\\tsite' … save it … as .tsv").
    A .txt whose header has more columns at tabs than at commas is tab-separated, in any of the encodings medssl reads."""
    text = "id\tage\tsite\r\n" + "".join(f"{s}\t{a}\t{site}\r\n" for s, a, site in ROWS)
    assert _records(tmp_path, name, text.encode(encoding)) == ROWS  # utf-16: BOM + little-endian


def test_a_comma_separated_txt_table_stays_comma_separated(tmp_path):
    """A header with commas (and a tab inside a quoted name) is read with commas, as before: it has more
    columns at commas than at tabs."""
    text = 'id,age,site,"note\tx"\ns1,30,"Zürich, CH",a\tb\n'
    header, rows = read_table(_write(tmp_path, "p.txt", text.encode()))
    assert header == ["id", "age", "site", "note\tx"] and rows == [{"id": "s1", "age": "30", "site": "Zürich, CH",
                                                                       "note\tx": "a\tb"}]


def _write(tmp_path, name, raw):
    (tmp_path / name).write_bytes(raw)
    return tmp_path / name


@pytest.mark.parametrize("name, content, message", [
    ("p.txt", b"id;age\r\n001;30,5\r\n", r"p.txt: the header is one column 'id;age' that holds ';'.*a .txt table is "
                                          r"read as ','-separated"),
    ("p.csv", "id\tage\r\ns1\t30\r\n".encode("utf-16"), r"looks '\\t'-separated, but a .csv table is read as ','-separated"),
])
def test_other_delimiters_and_tabs_in_a_csv_are_still_refused_with_the_hint(tmp_path, name, content, message):
    """Only a .txt chooses tabs by its header: a ';'-separated .txt and a tab-separated .csv keep their errors."""
    with pytest.raises(ManifestError, match=message):
        read_table(_write(tmp_path, name, content))


@pytest.mark.parametrize("header", ['id\t"age, years"\tsite', "id\tage, years\tsite"])
def test_a_tab_separated_txt_whose_header_names_a_column_with_a_comma_is_tab_separated(tmp_path, header):
    """Excel's "Unicode Text" of a sheet with a column named 'age, years' (quoted or not): the comma in the header
    made the .txt comma-separated, so its header became 2 columns 'id\t"age' and 'years"\tsite', a row with one
    comma (here in 'Zürich, CH') was read into them and the others refused. The header has more columns at tabs
    than at commas: tab-separated."""
    text = f"{header}\r\ns1\t30\tZürich, CH\r\n"
    header_, rows = read_table(_write(tmp_path, "p.txt", text.encode("utf-16")))
    assert header_ == ["id", "age, years", "site"] and rows == [{"id": "s1", "age, years": "30", "site": "Zürich, CH"}]


@pytest.mark.parametrize("name", ["p.TSV.GZ", "p.txt.GZ", "p.CSV.Gz"])
def test_an_upper_case_gz_suffix_is_decompressed(tmp_path, name):
    """.tsv / .TXT were matched in any case, .gz only in lower case: 'p.TSV.GZ' was read as text and refused as
    "not UTF-8 text (byte 1: b'\\x8b')" (gzip's magic), and its .tsv suffix was not seen either."""
    sep = "," if ".CSV" in name else "\t"
    header, rows = read_table(_write(tmp_path, name, gzip.compress(f"id{sep}age\ns1{sep}30\n".encode())))
    assert header == ["id", "age"] and rows == [{"id": "s1", "age": "30"}]
