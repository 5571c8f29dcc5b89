"""A quote that is never closed: the table and the row it opens in are named, not csv's bare error."""

from __future__ import annotations

import csv
import io

import pytest

from medssl.data.tables import ManifestError, read_table


@pytest.mark.parametrize("name, sep", [("p.csv", ","), ("p.tsv", "\t")])
def test_a_quote_left_open_in_a_long_table_names_the_table_and_the_row_it_opens_in(tmp_path, name, sep):
    """Row 3 (spreadsheet numbering: header = row 1) opens a quote that nothing closes, so the rest of the file is one
    field; past csv's field size limit (128 KiB here: 30,000 rows) that was csv's bare `_csv.Error: field larger than
    field limit (131072)`, a traceback from `medssl data check` with no table named. Python's csv module on the same
    text is the reference that this text is unreadable; medssl names the table, row 3 and the open quote."""
    text = f"id{sep}age\ns1{sep}30\n\"s2{sep}40\n" + "".join(f"s{i}{sep}50\n" for i in range(3, 30_000))
    with pytest.raises(csv.Error):
        list(csv.reader(io.StringIO(text, newline=""), delimiter=sep))
    (tmp_path / name).write_text(text)
    with pytest.raises(ManifestError) as e:
        read_table(tmp_path / name)
    message = str(e.value)
    assert str(tmp_path / name) in message
    assert " row 3:" in message and "quote" in message
