"""The real tables under ../shared read as Python's csv module reads them, in every form a spreadsheet saves."""

from __future__ import annotations

import csv
import gzip

import pytest

from medssl.data.manifest import Record
from medssl.data.splits import subject_split
from medssl.data.tables import load_rows, read_numbered_table, read_table

TABLES = [("ixi_t1_hh_2mm", "participants.tsv", "\t"), ("ixi_dlmuse_roi_multisite", "IXI_demog.csv", ","),
          ("ixi_dlmuse_roi_multisite", "list_MUSE_all.csv", ",")]


def _reference(path, sep):
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh, delimiter=sep))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:] if any(c.strip() for c in r)]


@pytest.mark.parametrize("folder, name, sep", TABLES)
def test_a_real_table_and_its_spreadsheet_re_saves_read_as_the_csv_module_reads_it(shared, tmp_path, folder, name, sep):
    """The table itself, Excel's "Unicode Text" of it (.txt: UTF-16 LE + BOM, tabs, CRLF), 'CSV UTF-8' (BOM, CRLF)
    and a .tsv.gz: the same header and rows as csv.reader on the original; row n is the file's n-th line."""
    src = shared("data", folder, name)
    header, rows = _reference(src, sep)
    table = [header] + [[r[h] for h in header] for r in rows]

    def text(delimiter):
        return "".join(delimiter.join(r) + "\r\n" for r in table)
    assert all("\t" not in c and "," not in c and '"' not in c for r in table for c in r)  # so joining needs no quotes
    (tmp_path / "u.txt").write_bytes(text("\t").encode("utf-16"))
    (tmp_path / "b.csv").write_bytes(text(",").encode("utf-8-sig"))
    (tmp_path / "g.tsv.gz").write_bytes(gzip.compress(text("\t").encode()))
    for path in (src, tmp_path / "u.txt", tmp_path / "b.csv", tmp_path / "g.tsv.gz"):
        assert read_table(path) == (header, rows), path
    numbered = read_numbered_table(src)[1]
    assert [n for n, _ in numbered] == [str(i) for i in range(2, len(rows) + 2)]


def test_the_real_roi_table_joined_to_the_demographics_on_id_gives_each_subject_its_own_row(shared):
    """IXI_demog.csv joined with IXI_DLMUSE.csv on ID: every demographic row gets the ROI values of its own ID
    (looked up by hand with csv.DictReader), select keeps exactly the rows of the chosen sex."""
    root = shared("data", "ixi_dlmuse_roi_multisite")
    _, demog = _reference(root / "IXI_demog.csv", ",")
    _, roi = _reference(root / "IXI_DLMUSE.csv", ",")
    by_id = {r["ID"]: r for r in roi}
    rows, header, _ = load_rows("IXI_demog.csv", root, join=[{"table": "IXI_DLMUSE.csv", "key": "ID"}],
                                select={"Sex": ["F"]})
    assert header[:3] == ["ID", "Age", "Sex"] and "702" in header
    assert [r.values["ID"] for r in rows] == [d["ID"] for d in demog if d["Sex"] == "F"]
    assert all(r.values["702"] == by_id.get(r.values["ID"], {}).get("702", "") for r in rows)
    assert sum(r.values["702"] != "" for r in rows) > 0.9 * len(rows)


def test_a_split_of_the_real_multi_site_subjects_keeps_every_subject_on_one_side_and_every_site_on_both(shared):
    """Subjects of IXI_demog.csv, site from the ID (HH / Guys / IOP), two scans each: 20% test per site (floor,
    raised to one, the total rounded), no subject on both sides, the seed changes the draw."""
    _, demog = _reference(shared("data", "ixi_dlmuse_roi_multisite", "IXI_demog.csv"), ",")
    records = [Record(f"{d['ID']}/{k}.nii.gz", d["ID"].split("-")[0], site=d["ID"].split("-")[1])
               for d in demog for k in (1, 2)]
    split = subject_split(records, 0.2, seed=3)
    sides = {}
    for r, s in zip(records, split):
        sides.setdefault(r.subject, set()).add(s)
    assert all(len(s) == 1 for s in sides.values())
    subjects = {r.subject: r.site for r in records}
    test = {r.subject for r, s in zip(records, split) if s == "test"}
    assert len(test) == round(0.2 * len(subjects))
    for site in set(subjects.values()):
        n = sum(v == site for v in subjects.values())
        assert abs(sum(subjects[t] == site for t in test) - 0.2 * n) < 1.5, site
    assert subject_split(records, 0.2, seed=4) != split
