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


def test_a_split_list_of_subject_ids_matches_them_without_leading_zeros(tmp_path):
    """Split lists matched only file names: a list of subject ids, here written without the zeros a
    spreadsheet drops ("2" for "002"), matched no scan and every scan silently had no official split."""
    _scans(tmp_path, ["001", "002", "003", "004"])
    (tmp_path / "p.csv").write_text("id,age\n001,30\n002,31\n003,32\n004,33\n")
    (tmp_path / "train.txt").write_text("1\n2\n")
    (tmp_path / "test.txt").write_text("003\n")  # written as in the table: matched as before
    card = _card(tmp_path, extra="split_files: {train: train.txt, test: test.txt}\n")
    recs = build_manifest(_load(card), tmp_path)
    assert [(r.subject, r.split) for r in recs] == [("001", "train"), ("002", "train"), ("003", "test"), ("004", "")]
    # a file name still wins over the subject id
    (tmp_path / "test.txt").write_text("003\n001.nii.gz\n")
    assert [r.split for r in build_manifest(_load(card), tmp_path)] == ["test", "train", "test", ""]


def test_an_id_that_would_match_two_subjects_or_two_splits_is_an_error_naming_both(tmp_path):
    _scans(tmp_path, ["02", "2", "3"])
    (tmp_path / "p.csv").write_text("id,age\n02,30\n2,31\n3,32\n")
    (tmp_path / "train.txt").write_text("2\n")
    (tmp_path / "test.txt").write_text("3\n")
    card = _load(_card(tmp_path, extra="split_files: {train: train.txt, test: test.txt}\n"))
    scan = scan_manifest(card, tmp_path)
    [problem] = scan.problems  # the one id written two ways (the list's "2" would name both)
    assert problem.where == f"{tmp_path / '2.nii.gz'}"
    assert f"subject '2' and subject '02' ({tmp_path / '02.nii.gz'}) are one id" in problem.reason
    with pytest.raises(ManifestError, match=r"2.nii.gz: subject '2' and subject '02' .* are one id"):
        build_manifest(card, tmp_path)
    (tmp_path / "test.txt").write_text("3\n002\n")  # one id in two lists, written differently
    with pytest.raises(ManifestError, match=r"'002' \(test.txt\) and '2' \(train.txt\) are one id .* two split"):
        build_manifest(card, tmp_path)


def test_split_lists_that_name_no_scan_are_a_problem_not_silence(tmp_path):
    """Lists written with another folder prefix (or other ids) matched no scan: all were left without a split."""
    _scans(tmp_path, ["s1", "s2"])
    (tmp_path / "p.csv").write_text("id,age\ns1,30\ns2,31\n")
    (tmp_path / "train.txt").write_text("images/s1.nii.gz\n")
    (tmp_path / "test.txt").write_text("images/s2.nii.gz\n")
    card = _load(_card(tmp_path, extra="split_files: {train: train.txt, test: test.txt}\n"))
    [problem] = scan_manifest(card, tmp_path).problems
    assert problem.where == f"{tmp_path / 'train.txt'}, {tmp_path / 'test.txt'}"
    assert "no entry of the split lists names any of the 2 scan(s)" in problem.reason
    (tmp_path / "test.txt").write_text("s2.nii.gz\n")  # one scan found: the other is just not listed
    assert [r.split for r in build_manifest(card, tmp_path)] == ["", "test"]


def test_one_subject_id_written_two_ways_is_a_problem_not_two_subjects(tmp_path):
    """Joins and split lists take "002" and "2" for one id, but the subject-level split took them for two:
    two tables from different exports put one subject's scans on both sides (train and test)."""
    from medssl.data.splits import subject_split

    _scans(tmp_path, ["a", "b", "c"])
    (tmp_path / "p1.csv").write_text("id,age,f\n002,30,a\n")
    (tmp_path / "p2.csv").write_text("id,age,f\n2,31,b\n3,40,c\n")  # the spreadsheet export lost the zeros
    card = _card(tmp_path, manifest="[p1.csv, p2.csv]")
    (tmp_path / "card.yaml").write_text((tmp_path / "card.yaml").read_text().replace("'{id}.nii.gz'", "'{f}.nii.gz'"))
    scan = scan_manifest(_load(card), tmp_path)
    [problem] = scan.problems
    assert problem.where == str(tmp_path / "b.nii.gz")
    assert f"subject '2' and subject '002' ({tmp_path / 'a.nii.gz'}) are one id" in problem.reason
    with pytest.raises(ManifestError, match=r"b.nii.gz: subject '2' and subject '002' .* are one id"):
        build_manifest(_load(card), tmp_path)
    # what the old code let through: with the two spellings as two subjects, a split separates them
    recs = [r for r in scan.records if r.subject in ("002", "2")]
    assert sorted(subject_split(recs, 0.5, seed=0, stratify="site")) == ["test", "train"]


@pytest.mark.parametrize("name, content, message", [
    ("p.csv", b"id;age\r\n001;30,5\r\n",  # a European Excel's "CSV": ';' between fields, ',' in decimals
     r"p.csv: the header is one column 'id;age' that holds ';': the table looks ';'-separated, but a .csv table is "
     r"read as ','-separated \(.tsv / .tab: tabs, .txt: tabs if its header has more columns at tabs than at commas, "
     r"any other: commas\); save it comma-separated"),
    ("p.csv", b"id\tage\n001\t30\n", r"looks '\\t'-separated, but a .csv table is read as ','-separated.*or tab-separated as .tsv"),
    ("p.tsv", b"id,age\n001,30\n", r"looks ','-separated, but a .tsv table is read as '\\t'-separated"),
    ("p.xlsx", b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\x9a", r"p.xlsx is a spreadsheet workbook.*save the sheet as "
                                                                        r"'CSV UTF-8 \(Comma delimited\)'"),
    ("p.xls", bytes.fromhex("D0CF11E0A1B11AE1"), r"p.xls is a spreadsheet workbook"),
])
def test_a_table_in_another_format_names_what_it_looks_like_and_what_to_do(tmp_path, name, content, message):
    """Was: "column 'id' is not in the table. Columns are ['id;age']", or "not UTF-8 text (byte 16)" for a workbook."""
    _scans(tmp_path, ["001"])
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ManifestError, match=message):
        build_manifest(_load(_card(tmp_path, manifest=name)), tmp_path)
    (tmp_path / "p2.csv").write_text("id,age\n001,30\n")  # the same in a joined table
    (tmp_path / "card.yaml").write_text(CARD.format(manifest="p2.csv", more="") + f"join: [{{table: {name}, key: id}}]\n")
    with pytest.raises(ManifestError, match=message):
        build_manifest(_load(str(tmp_path / "card.yaml")), tmp_path)


def test_unnamed_columns_of_spreadsheet_exports_are_left_out(tmp_path):
    """Two unnamed columns (Excel's empty trailing columns, pandas' index beside one) failed as
    "column(s) [''] appear more than once in the header; rename them"; no card can name such a column."""
    _scans(tmp_path, ["001", "002"])
    (tmp_path / "p.csv").write_text(",id,age,,\n0,001,30,,\n1,002,31,,\n,,,,\n")
    recs = build_manifest(_load(_card(tmp_path)), tmp_path)
    assert [(r.subject, r.age) for r in recs] == [("001", 30.0), ("002", 31.0)]
    from medssl.data.tables import read_table

    assert read_table(tmp_path / "p.csv") == (["id", "age"], [{"id": "001", "age": "30"}, {"id": "002", "age": "31"}])
    (tmp_path / "p.csv").write_text(",id,age,,\n0,001,30,\n")  # the field count still counts them
    with pytest.raises(ManifestError, match=r"p.csv row 2: 4 fields but the header has 5"):
        build_manifest(_load(_card(tmp_path)), tmp_path)


def test_split_lists_from_windows_editors_are_read_and_other_encodings_named(tmp_path):
    """A BOM (Notepad's UTF-8) hid the first entry: that scan silently had no split; a Latin-1 list was a
    bare UnicodeDecodeError traceback naming no file."""
    _scans(tmp_path, ["s1", "s2"])
    (tmp_path / "p.csv").write_text("id,age\ns1,30\ns2,31\n")
    (tmp_path / "train.txt").write_bytes("\ufeffs1.nii.gz\r\n".encode())
    (tmp_path / "test.txt").write_bytes(b"s2.nii.gz\r\n")
    card = _load(_card(tmp_path, extra="split_files: {train: train.txt, test: test.txt}\n"))
    assert [r.split for r in build_manifest(card, tmp_path)] == ["train", "test"]
    (tmp_path / "test.txt").write_bytes("s2.nii.gz\nZürich\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=r"split list .*test.txt \(split 'test'\) is not UTF-8 text \(byte 11: "
                                            r"b'\\xfc'\); re-save it as UTF-8"):
        build_manifest(card, tmp_path)


def test_a_joined_key_written_two_ways_names_both_rows(tmp_path):
    """ "02" and "2" in a joined table are one key: the error named only the second row, with the key as
    normalised ('2'), so the user could not see which other row clashed."""
    _scans(tmp_path, ["1", "2"])
    (tmp_path / "p.csv").write_text("id,age\n1,30\n2,31\n")
    (tmp_path / "j.csv").write_text("id,site\n02,A\n1,B\n2,C\n")
    card = _load(_card(tmp_path, more=", site: site", extra="join: [{table: j.csv, key: id}]\n"))
    with pytest.raises(ManifestError, match=r"j.csv row 4: key \{'id': '2'\} appears twice \(row 2 as \{'id': '02'\}; "
                                            r"numeric ids match without leading zeros\); a joined table needs one row"):
        build_manifest(card, tmp_path)


def test_a_joined_column_that_repeats_a_manifest_column_with_another_value_is_reported(tmp_path, capsys):
    """A joined table's column with the name of a manifest column was dropped without a word (MIMIC-CXR's tables
    repeat subject_id and study_id): where its value differs the user silently got the manifest's. Now a problem
    names both tables' rows and both values; equal repeats (also "007" vs "7") and unmatched rows stay silent."""
    _scans(tmp_path, ["1", "2", "3"])
    (tmp_path / "p.csv").write_text("id,study,age\n1,7,30\n2,8,31\n3,9,\n")
    (tmp_path / "meta.csv").write_text("id,study,site,age\n1,007,A,30\n2,5,B,31\n3,9,C,44\n")
    card = _card(tmp_path, more=", session: study, site: site", extra="join: [{table: meta.csv, key: id}]\n")
    assert main(["data", "check", card, "--root", str(tmp_path), "--no-read", "--strict"]) == 1
    out = capsys.readouterr().out
    assert (f"{tmp_path / 'p.csv'} row 3: column 'study' is '8' here but '5' in joined table {tmp_path / 'meta.csv'} "
            "row 3") in out, out
    assert f"{tmp_path / 'p.csv'} row 4: column 'age' is '' here but '44'" in out  # a value the join would have given
    assert "row 2: column" not in out and "2 problem(s)" in out  # '7' and '007', '30' and '30': the same
    assert [(r.session, r.site) for r in scan_manifest(_load(card), tmp_path).records] == [
        ("7", "A"), ("8", "B"), ("9", "C")]  # the manifest's value is kept, the other columns are joined
    with pytest.raises(ManifestError, match=r"p.csv row 3: column 'study' is '8' here but '5'"):
        build_manifest(_load(card), tmp_path)
    (tmp_path / "meta.csv").write_text("id,study,site\n1,7,A\n2,8,B\n")  # equal repeats, an unmatched row: silent
    assert [r.site for r in build_manifest(_load(card), tmp_path)] == ["A", "B", ""]


def test_a_missing_file_named_from_a_cell_with_spaces_at_its_ends_says_so(tmp_path, capsys):
    """A path_template filled from ' 002 ' looked for a file named with the spaces: the error showed them inside
    the path but not why. It now names the column, the cell and the file without the spaces (which files are
    found is unchanged)."""
    _scans(tmp_path, ["001", "002"])
    (tmp_path / "p.csv").write_text("id,age\n001,30\n 002 ,31\n003,32\n")
    card = _card(tmp_path)
    scan = scan_manifest(_load(card), tmp_path)
    assert [(p.where.rsplit(" ", 1)[-1], p.kind) for p in scan.problems] == [("3", "missing"), ("4", "missing")]
    spaced, plain = (p.reason for p in scan.problems)
    assert spaced.startswith(f"file {tmp_path / ' 002 .nii.gz'} does not exist (subject '002'); column 'id' holds "
                             f"' 002 ' with spaces at its ends, kept in the file name; {tmp_path / '002.nii.gz'} exists: "
                             "strip the spaces in the table"), spaced
    assert plain == f"file {tmp_path / '003.nii.gz'} does not exist (subject '003')"  # no spaces: no hint
    assert main(["data", "check", card, "--root", str(tmp_path), "--no-read"]) == 0
    assert "column 'id' holds ' 002 ' with spaces" in capsys.readouterr().out


def test_a_row_below_a_quoted_field_with_line_breaks_names_its_line_too(tmp_path):
    """Rows are numbered as a spreadsheet shows them (a quoted field with a line break is one cell of one row), but
    an editor's line numbers run ahead after such a field: "row 3" sent the user to the line of the note. Below such
    a field the message names the row and the line it starts on; above it, the row alone (row = line)."""
    _scans(tmp_path, ["1", "2", "3"])
    (tmp_path / "p.csv").write_text('id,age,note\n1,30,"first line\nsecond line\nthird"\n2,old,\n3,40,a,b\n')
    card = _card(tmp_path)
    scan = scan_manifest(_load(card), tmp_path)
    assert sorted(p.where for p in scan.problems) == [f"{tmp_path / 'p.csv'} row 3 (line 5)",
                                                        f"{tmp_path / 'p.csv'} row 4 (line 6)"]
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[5 - 1].startswith("2,old") and lines[6 - 1].startswith("3,40,a,b")  # what the editor shows there
    with pytest.raises(ManifestError, match=r"p.csv row 4 \(line 6\): 4 fields but the header has 3"):
        build_manifest(_load(card), tmp_path)
    (tmp_path / "p.csv").write_text('id,age,note\n1,30,\n2,old,"a\nb"\n')  # a row on the line of its number
    [problem] = scan_manifest(_load(card), tmp_path).problems
    assert problem.where == f"{tmp_path / 'p.csv'} row 3"


def test_a_join_conflict_in_a_row_that_select_drops_does_not_stop_the_run(tmp_path, capsys):
    """The join's repeated-column check ran before ``select``: a conflicting value in a row the card leaves out (a
    lateral view of a frontal-only card) stopped training and failed ``data check --strict`` although that row is
    no part of the data. Conflicts are reported for the rows ``select`` keeps (as before for those)."""
    _scans(tmp_path, ["1", "2", "3"])
    (tmp_path / "p.csv").write_text("id,study,view,age\n1,7,PA,30\n2,8,LATERAL,31\n3,9,PA,32\n")
    (tmp_path / "meta.csv").write_text("id,study,site\n1,7,A\n2,5,B\n3,9,C\n")  # row 3: study 5 ≠ 8, a lateral view
    card = _card(tmp_path, more=", session: study, site: site",
                 extra="join: [{table: meta.csv, key: id}]\nselect: {view: PA}\n")
    assert [(r.subject, r.site) for r in build_manifest(_load(card), tmp_path)] == [("1", "A"), ("3", "C")]
    assert main(["data", "check", card, "--root", str(tmp_path), "--no-read", "--strict"]) == 0
    capsys.readouterr()
    (tmp_path / "meta.csv").write_text("id,study,site\n1,7,A\n2,5,B\n3,6,C\n")  # and a kept row: still an error
    with pytest.raises(ManifestError, match=r"p.csv row 4: column 'study' is '9' here but '6' in joined table"):
        build_manifest(_load(card), tmp_path)
    assert main(["data", "check", card, "--root", str(tmp_path), "--no-read", "--strict"]) == 1
    out = capsys.readouterr().out
    assert "row 4: column 'study'" in out and "row 3: column" not in out, out


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig"])
@pytest.mark.parametrize("gz", [False, True])
def test_utf16_tables_marked_by_a_bom_read_as_their_utf8_copy(tmp_path, encoding, gz):
    """Excel's "Unicode Text" export is UTF-16 (little-endian) with a byte-order mark, tab-separated, with CRLF:
    it was refused as "not UTF-8 text (byte 0: b'\\xff')". A BOM names the encoding unambiguously, so such a
    table (either byte order, also gzip-compressed) gives the records of the same table in UTF-8."""
    import gzip

    text = "id\tage\tsite\tsex\r\ns1\t30\tZürich\tF\r\n\r\ns2\t41.5\tA\tM\r\n"
    raw = b"\xfe\xff" + text.encode("utf-16-be") if encoding == "utf-16-be" else text.encode(encoding)  # utf-16: BOM + LE
    name = "p.tsv.gz" if gz else "p.tsv"
    (tmp_path / name).write_bytes(gzip.compress(raw) if gz else raw)
    _scans(tmp_path, ["s1", "s2"])
    recs = build_manifest(_load(_card(tmp_path, manifest=name, more=", site: site, sex: sex")), tmp_path)
    assert [(r.subject, r.age, r.site, r.sex) for r in recs] == [("s1", 30.0, "Zürich", "F"), ("s2", 41.5, "A", "M")]


def test_r_na_in_categorical_columns_is_missing_like_in_the_age_column(tmp_path):
    """R's write.csv / write.table write a missing value as NA: the age column read it as missing, but sex /
    site / label made 'NA' one more class (a third sex, a site 'NA'), silently. It is missing (code -1) too."""
    import math

    from medssl.data.dataset import MetadataCoder

    (tmp_path / "p.csv").write_text("id,age,site,sex,dx\ns1,30,A,F,CN\ns2,NA,NA,NA,na\ns3,40,B,M,AD\n")
    _scans(tmp_path, ["s1", "s2", "s3"])
    recs = build_manifest(_load(_card(tmp_path, more=", site: site, sex: sex, label: dx")), tmp_path)
    assert math.isnan(recs[1].age)
    assert [(r.site, r.sex, r.label) for r in recs] == [("A", "F", "CN"), ("", "", ""), ("B", "M", "AD")]
    assert MetadataCoder(recs).vocab == {"site": ["A", "B"], "sex": ["F", "M"], "label": ["AD", "CN"]}


def test_select_matches_cells_padded_by_a_spreadsheet_export_and_numbers_written_in_yaml(tmp_path):
    """`select` compares each cell without the spaces an export leaves around it ("1, PA, 30"), and a value the
    card's YAML reads as a number (select: {fold: [1, 3]}) with the table's text."""
    _scans(tmp_path, ["1", "2", "3", "4"])
    (tmp_path / "p.csv").write_text("id,view,fold,age\n1, PA,1,30\n2,LATERAL ,1,31\n3,PA ,3,32\n4,PA,2,33\n")
    card = _card(tmp_path, extra="select: {view: PA, fold: [1, 3]}\n")
    assert [r.subject for r in build_manifest(_load(card), tmp_path)] == ["1", "3"]


def test_header_names_with_spaces_at_their_ends_are_found(tmp_path):
    (tmp_path / "p.csv").write_text(" id , age \ns1,30\ns2,41\n")
    _scans(tmp_path, ["s1", "s2"])
    assert [(r.subject, r.age) for r in build_manifest(_load(_card(tmp_path)), tmp_path)] == [("s1", 30.0), ("s2", 41.0)]


def test_a_tab_table_is_tab_separated(tmp_path):
    (tmp_path / "p.tab").write_text("id\tage\ns1\t30\ns2\t41\n")
    _scans(tmp_path, ["s1", "s2"])
    recs = build_manifest(_load(_card(tmp_path, manifest="p.tab")), tmp_path)
    assert [(r.subject, r.age) for r in recs] == [("s1", 30.0), ("s2", 41.0)]


def test_tables_of_one_manifest_with_other_columns_or_no_rows_are_errors(tmp_path):
    (tmp_path / "a.csv").write_text("id,age\ns1,30\n")
    (tmp_path / "b.csv").write_text("id,years\ns2,41\n")
    (tmp_path / "c.csv").write_text("id,age\n\n")
    _scans(tmp_path, ["s1", "s2"])
    with pytest.raises(ManifestError, match=r"b\.csv: columns \['id', 'years'\] differ from those of a\.csv"):
        build_manifest(_load(_card(tmp_path, manifest="[a.csv, b.csv]")), tmp_path)
    with pytest.raises(ManifestError, match=r"c\.csv: no rows"):
        build_manifest(_load(_card(tmp_path, manifest="[a.csv, c.csv]")), tmp_path)


def test_a_split_list_of_file_names_finds_scans_in_sub_folders(tmp_path):
    """NIH ChestX-ray14: the lists name files (00000001_000.png), the scans lie in images_001/images/."""
    (tmp_path / "p.csv").write_text("file,pid,age\n00000001_000.png,1,30\n00000002_000.png,2,41\n")
    for f in ("00000001_000.png", "00000002_000.png"):
        (tmp_path / "images_001" / "images").mkdir(parents=True, exist_ok=True)
        (tmp_path / "images_001" / "images" / f).write_bytes(b"x")
    (tmp_path / "train_val_list.txt").write_text("00000001_000.png\n")
    (tmp_path / "test_list.txt").write_text("00000002_000.png \n")  # a space at the end of the line
    (tmp_path / "card.yaml").write_text(
        "name: t\nmodality: DX\ndimensionality: 2\nmanifest: p.csv\ncolumns: {subject: pid, age: age}\n"
        "path_template: 'images_001/images/{file}'\nsplit_files: {train_val: train_val_list.txt, test: test_list.txt}\n"
        "splits: {train: [train_val], test: [test]}\n")
    recs = build_manifest(_load(str(tmp_path / "card.yaml")), tmp_path)
    assert [(r.subject, r.split) for r in recs] == [("1", "train"), ("2", "test")]


def test_age_cells_with_spaces_at_their_ends_are_read(tmp_path):
    """Spreadsheet exports pad cells (' 45', 'NA '); the age is read as the same number, NA as missing."""
    import math

    (tmp_path / "p.csv").write_text("id,age\ns1, 45\ns2,61.5 \ns3, NA \n")
    _scans(tmp_path, ["s1", "s2", "s3"])
    ages = [r.age for r in build_manifest(_load(_card(tmp_path)), tmp_path)]
    assert ages[:2] == [45.0, 61.5] and math.isnan(ages[2])


def test_a_join_on_two_key_columns_matches_both(tmp_path):
    (tmp_path / "p.csv").write_text("id,ses,age\ns1,1,30\ns1,2,31\ns2,1,40\n")
    (tmp_path / "scores.csv").write_text("id,ses,site\ns1,2,B\ns1,1,A\ns2,1,C\n")  # one row per (id, ses)
    for sid, ses in (("s1", 1), ("s1", 2), ("s2", 1)):
        (tmp_path / f"{sid}_{ses}.nii.gz").write_bytes(b"x")
    (tmp_path / "card.yaml").write_text(
        "name: t\nmodality: MR\ndimensionality: 3\nmanifest: p.csv\njoin: [{table: scores.csv, key: [id, ses]}]\n"
        "columns: {subject: id, session: ses, age: age, site: site}\npath_template: '{id}_{ses}.nii.gz'\n")
    recs = build_manifest(_load(str(tmp_path / "card.yaml")), tmp_path)
    assert [(r.subject, r.session, r.site) for r in recs] == [("s1", "1", "A"), ("s1", "2", "B"), ("s2", "1", "C")]
