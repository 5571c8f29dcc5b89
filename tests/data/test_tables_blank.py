"""Which lines of a table are blank, which headers look like another delimiter, which ids are numbers."""

from __future__ import annotations

import csv

from medssl.data.tables import id_key, read_numbered_table


def test_lines_of_spaces_or_empty_fields_are_blank_and_keep_the_row_numbers_of_the_others(tmp_path):
    """A line of spaces and a line of empty / space-only fields (a spreadsheet's cleared row) are blank lines, left
    out like an empty one; the rows after them keep the numbers a spreadsheet shows (header = row 1, blank rows
    counted): hand-counted s1 = row 2, s2 = row 5. Python's csv module reads the same rows with content."""
    text = "id,age,site\ns1,30,A\n   \n , ,  \ns2,40,B\n"
    (tmp_path / "p.csv").write_text(text)
    header, rows = read_numbered_table(tmp_path / "p.csv")
    assert header == ["id", "age", "site"]
    assert rows == [("2", {"id": "s1", "age": "30", "site": "A"}), ("5", {"id": "s2", "age": "40", "site": "B"})]
    with (tmp_path / "p.csv").open(newline="") as fh:
        reference = [r for r in csv.DictReader(fh) if r["id"].strip()]
    assert [r for _, r in rows] == reference


def test_a_two_column_header_whose_name_holds_a_semicolon_is_not_taken_for_a_semicolon_table(tmp_path):
    """Only a header that is ONE column holding ';' looks like a European Excel export; a comma-separated table
    whose first column is named 'dose;mg' is read as it is."""
    (tmp_path / "p.csv").write_text("dose;mg,id\n5,s1\n")
    assert read_numbered_table(tmp_path / "p.csv") == (["dose;mg", "id"], [("2", {"dose;mg": "5", "id": "s1"})])


def test_only_ascii_digits_make_a_numeric_id():
    """'002' and '2' are one id; an id of other Unicode digits (Arabic-Indic '٠٠٢', superscript '²') is text, kept
    as written: int() would read '٠٠٢' as 2 and fail on '²'."""
    assert id_key(" 002 ") == id_key("2") == "2"
    assert id_key("٠٠٢") == "٠٠٢"
    assert id_key("²") == "²"


def test_the_id_zero_is_a_number_too():
    """'0', '00' and '000' are one id, 0 (not the empty id that an empty cell has)."""
    assert id_key("000") == id_key("0") == "0" != id_key("")
