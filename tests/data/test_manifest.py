"""Data cards, manifests and subject-level splits: happy path and every error path."""

import math

import pytest

from medssl.config import ConfigError
from medssl.data.card import DataCard, list_cards, load_card
from medssl.data.manifest import ManifestError, build_manifest, write_manifest
from medssl.data.splits import subject_split


def _card(**kw):
    base = dict(name="t", modality="MR", dimensionality=3, manifest="participants.tsv",
                columns={"subject": "participant_id", "age": "age", "site": "site", "sex": "sex"},
                path_template="{participant_id}.nii.gz")
    base.update(kw)
    return DataCard(**base)


def _table(tmp_path, rows, header="participant_id\tage\tsite\tsex", touch=True):
    (tmp_path / "participants.tsv").write_text(header + "\n" + "\n".join(rows) + "\n")
    if touch:
        for r in rows:
            (tmp_path / f"{r.split(chr(9))[0]}.nii.gz").write_bytes(b"x")


def test_synthetic_card_reads_cohort(small_cohort):
    recs = build_manifest(load_card("synthetic"), small_cohort)
    assert len(recs) == 40
    assert all(r.path.endswith("_T1w.nii.gz") for r in recs)
    assert {r.site for r in recs} == {"site-A", "site-B", "site-C"}
    assert all(20 <= r.age <= 90 for r in recs)


def test_missing_age_is_nan_and_bad_age_names_row(tmp_path):
    _table(tmp_path, ["s1\t30\tA\tF", "s2\tn/a\tA\tM"])
    recs = build_manifest(_card(), tmp_path)
    assert recs[0].age == 30 and math.isnan(recs[1].age)
    _table(tmp_path, ["s1\t30\tA\tF", "s2\tforty\tA\tM"])
    with pytest.raises(ManifestError, match=r"row 3: age 'forty'"):
        build_manifest(_card(), tmp_path)


def test_missing_file_names_row(tmp_path):
    _table(tmp_path, ["s1\t30\tA\tF"], touch=False)
    with pytest.raises(ManifestError, match=r"row 2: file .*s1.nii.gz does not exist"):
        build_manifest(_card(), tmp_path)


def test_path_escaping_root_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "evil.nii.gz").write_bytes(b"x")
    (root / "participants.tsv").write_text("participant_id\tpath\nsub1\t../evil.nii.gz\n")
    card = _card(columns={"subject": "participant_id", "path": "path"}, path_template="")
    with pytest.raises(ManifestError, match="escapes the data root"):
        build_manifest(card, root)


def test_missing_column_lists_columns(tmp_path):
    _table(tmp_path, ["s1\t30\tF"], header="participant_id\tage\tsex")
    with pytest.raises(ManifestError, match=r"column 'site'.*\['participant_id', 'age', 'sex'\]"):
        build_manifest(_card(), tmp_path)


def test_card_errors(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'synthetic'"):
        load_card("synthtic")
    f = tmp_path / "c.yaml"
    f.write_text("name: x\nmodality: MR\ndimensionality: 3\nmanifest: t.tsv\ncolumns: {subject: id, agee: age}\npath_template: a\n")
    with pytest.raises(ConfigError, match="columns.agee.*Did you mean 'age'"):
        load_card(f)
    f.write_text("name: x\nmodality: MR\n")
    with pytest.raises(ConfigError, match="required card key 'dimensionality'"):
        load_card(f)
    assert "synthetic" in list_cards()


def test_subject_split_is_subject_level_stratified_and_seeded(tmp_path):
    rows = [f"s{i}\t{20 + i}\t{'AB'[i % 2]}\tF" for i in range(40)]
    _table(tmp_path, rows)
    recs = build_manifest(_card(), tmp_path)
    recs += [type(r)(**{**r.to_dict(), "session": "2"}) for r in recs[:10]]  # second sessions
    split = subject_split(recs, 0.25, seed=1)
    by_subject = {}
    for r, s in zip(recs, split):
        by_subject.setdefault(r.subject, set()).add(s)
    assert all(len(v) == 1 for v in by_subject.values())  # never on both sides
    for site in "AB":
        test = [r.subject for r, s in zip(recs, split) if s == "test" and r.site == site and not r.session]
        assert len(test) == 5  # 25% of 20 subjects per site
    assert split == subject_split(recs, 0.25, seed=1)
    assert split != subject_split(recs, 0.25, seed=2)


def test_write_manifest(tmp_path):
    _table(tmp_path, ["s1\t30\tA\tF"])
    out = write_manifest(build_manifest(_card(), tmp_path), tmp_path / "m.tsv")
    assert out.read_text().splitlines()[0].split("\t")[:3] == ["path", "subject", "session"]


# ----------------------------------------------------------------- sources: tables, globs, npz

import csv  # noqa: E402
import gzip  # noqa: E402

from medssl.data.manifest import Record, read_manifest, scan_manifest  # noqa: E402


def _csv(path, header, rows, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join([",".join(header), *(",".join(map(str, r)) for r in rows)]) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())


def test_tables_concat_join_select_and_path_regex(tmp_path):
    """CheXpert-like: two tables, subject/session/split from the path, a gz table joined on a zero-padded id."""
    rows = {"train": [("X/train/patient00001/study1/view1_frontal.jpg", 41, "Frontal"),
                      ("X/train/patient00001/study2/view1_frontal.jpg", 42, "Frontal"),
                      ("X/train/patient00002/study1/view2_lateral.jpg", 70, "Lateral")],
            "valid": [("X/valid/patient00003/study1/view1_frontal.jpg", 55, "Frontal")]}
    for split, rs in rows.items():
        _csv(tmp_path / "X" / f"{split}.csv", ["Path", "Age", "View"], rs)
        for r in rs:
            (tmp_path / r[0]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / r[0]).write_bytes(b"x")
    _csv(tmp_path / "extra.csv.gz", ["pid", "site"], [(1, "north"), (3, "south")], gz=True)
    card = DataCard(name="t", modality="DX", dimensionality=2, manifest=["X/train.csv", "X/valid.csv"],
                    columns={"path": "Path", "age": "Age"}, select={"View": ["Frontal"]},
                    path_regex=r"(?P<split>train|valid)/(?P<subject>patient\d+)/(?P<session>study\d+)/",
                    splits={"train": ["train"], "test": ["valid"]})
    recs = build_manifest(card, tmp_path)
    assert [(r.subject, r.session, r.split, r.age) for r in recs] == [
        ("patient00001", "study1", "train", 41), ("patient00001", "study2", "train", 42),
        ("patient00003", "study1", "test", 55)]  # the lateral view is not selected
    # join: the joined table's numeric id "1" matches the zero-padded "00001"
    table = tmp_path / "t.csv"
    _csv(table, ["pid", "file", "age"], [("00001", "a.png", 30), ("00002", "b.png", 31), ("00003", "c.png", 32)])
    for f in "abc":
        (tmp_path / f"{f}.png").write_bytes(b"x")
    card = DataCard(name="j", modality="DX", dimensionality=2, manifest="t.csv", join=[{"table": "extra.csv.gz", "key": "pid"}],
                    columns={"subject": "pid", "path": "file", "site": "site", "age": "age"})
    assert [(r.subject, r.site) for r in build_manifest(card, tmp_path)] == [("00001", "north"), ("00002", ""),
                                                                            ("00003", "south")]


def test_split_files_and_split_mapping(tmp_path):
    _table(tmp_path, ["s1\t30\tA\tF", "s2\t31\tA\tM", "s3\t32\tB\tF"])
    (tmp_path / "train_val_list.txt").write_text("s1.nii.gz\ns2.nii.gz\n")
    (tmp_path / "test_list.txt").write_text("s3.nii.gz\n")
    card = _card(split_files={"train_val": "train_val_list.txt", "test": "test_list.txt"},
                 splits={"train": ["train_val"], "test": ["test"]})
    assert [r.split for r in build_manifest(card, tmp_path)] == ["train", "train", "test"]
    card = _card(split_files={"train_val": "train_val_list.txt", "test": "test_list.txt"})  # no mapping
    with pytest.raises(ManifestError, match=r"row 2: split value 'train_val' is not one of"):
        build_manifest(card, tmp_path)
    (tmp_path / "test_list.txt").write_text("s1.nii.gz\n")
    with pytest.raises(ManifestError, match="listed in two split files"):
        build_manifest(_card(split_files={"train": "train_val_list.txt", "test": "test_list.txt"}), tmp_path)


def test_files_mode_bids_layout(tmp_path):
    """BIDS: sessions found by the glob, metadata joined from participants.tsv, every mismatch reported."""
    files = ["sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz",
             "sub-02/anat/sub-02_T1w.nii.gz", "sub-03/anat/sub-03_T1w.nii.gz", "sub-04/anat/sub-04_T2w.nii.gz"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(b"x")
    (tmp_path / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t20.5\tF\nsub-02\tn/a\tM\n")
    card = DataCard(name="bids", modality="MR", dimensionality=3, files="sub-*/**/anat/sub-*_T1w.nii.gz",
                    path_regex=r"(?P<subject>sub-[^/_]+)/(?:(?P<session>ses-[^/_]+)/)?anat/",
                    manifest="participants.tsv", columns={"subject": "participant_id", "age": "age", "sex": "sex"})
    scan = scan_manifest(card, tmp_path)
    got = [(r.subject, r.session, r.age if r.age == r.age else None, r.sex) for r in scan.records]
    assert got == [("sub-01", "ses-1", 20.5, "F"), ("sub-01", "ses-2", 20.5, "F"), ("sub-02", "", None, "M")]
    assert [(p.where, "no row in participants.tsv" in p.reason) for p in scan.problems] == [
        ("sub-03/anat/sub-03_T1w.nii.gz", True)]  # T2w is not globbed; sub-03 lacks a table row
    with pytest.raises(ManifestError, match="sub-03.*has no row"):
        build_manifest(card, tmp_path)


def test_scan_collects_every_problem_and_build_raises_the_first(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "participants.tsv").write_text(
        "participant_id\tage\tpath\n"
        "s1\t30\ts1.nii.gz\n"          # row 2 fine
        "s2\tforty\ts2.nii.gz\n"       # row 3 bad age
        "s3\t33\t../s3.nii.gz\n"       # row 4 escapes the root
        "\t34\ts4.nii.gz\n"            # row 5 empty subject
        "s5\t35\tmissing.nii.gz\n"     # row 6 missing file
        "s6\t36\t/etc/hostname\n")     # row 7 absolute path outside the root
    for f in ("s1", "s2", "s4"):
        (root / f"{f}.nii.gz").write_bytes(b"x")
    card = DataCard(name="t", modality="MR", dimensionality=3, manifest="participants.tsv",
                    columns={"subject": "participant_id", "age": "age", "path": "path"})
    scan = scan_manifest(card, root)
    where = [(p.where.rsplit(" ", 1)[-1], p.kind) for p in scan.problems]
    assert where == [("3", "row"), ("4", "row"), ("5", "row"), ("6", "missing"), ("7", "row")]
    assert "escapes the data root" in scan.problems[1].reason and "escapes" in scan.problems[4].reason
    assert [r.subject for r in scan.records] == ["s1", "s5"]  # the missing file is kept as a record
    with pytest.raises(ManifestError, match=r"row 3: age 'forty'"):
        build_manifest(card, root, check_files=False)


def test_manifest_round_trip(tmp_path):
    recs = [Record("/d/a.nii.gz", "s1", "ses-1", "A", 31.5, "F", "AD", "train"),
            Record("/d/b.npz", "train-000002", label="1", split="val", index=2, npz_split="train")]
    back = read_manifest(write_manifest(recs, tmp_path / "m.tsv"))
    assert [r.to_dict() for r in back] == [r.to_dict() for r in recs]
    missing = read_manifest(write_manifest([Record("/d/c.nii.gz", "s3")], tmp_path / "n.tsv"))[0]
    assert math.isnan(missing.age) and missing.index == -1


def test_medmnist_records(tmp_path, medmnist_file):
    arrays = medmnist_file(tmp_path / "set.npz", sizes=(5, 2, 3))
    card = DataCard(name="m", modality="CT", dimensionality=2, format="medmnist", npz="set.npz")
    recs = build_manifest(card, tmp_path)
    assert [(r.npz_split, r.index) for r in recs] == [(s, i) for s, n in (("train", 5), ("val", 2), ("test", 3))
                                                      for i in range(n)]
    assert [r.split for r in recs] == [r.npz_split for r in recs]
    assert [r.label for r in recs] == [str(int(v)) for s in ("train", "val", "test") for v in arrays[f"{s}_labels"][:, 0]]
    assert len({r.subject for r in recs}) == 10 and all(r.path == str(tmp_path / "set.npz") for r in recs)
    medmnist_file(tmp_path / "multi.npz", sizes=(2, 1, 1), multilabel=14)
    card.npz = "multi.npz"
    assert {r.label for r in build_manifest(card, tmp_path)} == {""}
    card.npz = "absent.npz"
    with pytest.raises(ManifestError, match="absent.npz does not exist"):
        build_manifest(card, tmp_path)


def test_shared_ixi_card_matches_its_table(shared):
    root = shared("data", "ixi_t1_hh_2mm")
    with open(root / "participants.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    recs = build_manifest(load_card("shared_ixi"), root)
    assert [r.subject for r in recs] == [row["subject_id"] for row in rows]
    assert [r.path for r in recs] == [str(root / row["filename"]) for row in rows]
    ages = [r.age for r in recs]
    assert sum(not math.isnan(a) for a in ages) == 138
    assert all(math.isnan(a) if not row["age"] else a == float(row["age"]) for a, row in zip(ages, rows))
    assert {r.site for r in recs} == {"HH"}


@pytest.mark.parametrize("age, reason", [("45Y", "not a plain number"), ("4_5", "not a plain number"),
                                         ("-3", "not a plain number"), ("inf", "not a plain number"),
                                         ("1e3", "not a plain number"), ("200", "above 130 years")])
def test_impossible_ages_name_the_row_and_why(tmp_path, age, reason):
    _table(tmp_path, ["s1\t30\tA\tF", f"s2\t{age}\tA\tM"])
    with pytest.raises(ManifestError, match=rf"row 3: age '{age}' in column 'age' (is )?{reason}"):
        build_manifest(_card(), tmp_path)


def test_decimal_ages_are_read(tmp_path):
    _table(tmp_path, ["s1\t45.5\tA\tF", "s2\t.5\tA\tM", "s3\t0\tA\tM", "s4\t130\tA\tF"])
    assert [r.age for r in build_manifest(_card(), tmp_path)] == [45.5, 0.5, 0.0, 130.0]


def test_a_scan_listed_for_two_subjects_is_refused(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    (tmp_path / "participants.tsv").write_text("participant_id\tpath\ns01\ta.nii.gz\ns02\ta.nii.gz\n")
    card = _card(columns={"subject": "participant_id", "path": "path"}, path_template="")
    with pytest.raises(ManifestError, match=r"a.nii.gz: the same scan is listed 2 times \(subjects \['s01', 's02'\]\)"):
        build_manifest(card, tmp_path)


@pytest.mark.parametrize("content, message", [
    ("participant_id\tage\tsite\tsex\ns1\t30\tZürich\tF\n".encode("latin-1"), r"not UTF-8 text \(byte \d+: b'\\xfc'\).*re-save it as UTF-8"),
    ("participant_id\tage\tsite\tsex\ns1\t30\tA\tF\n".encode("utf-16-le"),  # no BOM: columns 'p\x00a\x00…' were named
     r"participants.tsv holds NUL characters \(character 1\): UTF-16 text without a byte-order mark.*re-save it as UTF-8"),
    (b"\xff\xfeparticipant_id\n\x00\xdc", r"starts with a UTF-16 byte-order mark but is not UTF-16 text"),
    (b"participant_id\tage\tsite\tsex\ns1\t30\tA\tF\textra\n", r"row 2: 5 fields but the header has 4; a field holding"),
    (b"participant_id\tage\tsite\tsex\ns1\t30\tA\n", r"row 2: 3 fields but the header has 4"),
    (b"participant_id\tage\tsite\tage\ns1\t30\tA\t31\n", r"column\(s\) \['age'\] appear more than once"),
])
def test_malformed_tables_name_the_table_and_row(tmp_path, content, message):
    (tmp_path / "participants.tsv").write_bytes(content)
    (tmp_path / "s1.nii.gz").write_bytes(b"x")
    with pytest.raises(ManifestError, match=message):
        build_manifest(_card(), tmp_path)


def test_utf8_tables_with_bom_crlf_and_blank_lines_still_read(tmp_path):
    (tmp_path / "participants.tsv").write_bytes("\ufeffparticipant_id\tage\tsite\tsex\r\ns1\t30\tZürich\tF\r\n\r\n".encode())
    (tmp_path / "s1.nii.gz").write_bytes(b"x")
    [rec] = build_manifest(_card(), tmp_path)
    assert (rec.subject, rec.age, rec.site) == ("s1", 30.0, "Zürich")


@pytest.mark.parametrize("template", ["IXI{participant_id:03d}.nii.gz", "IXI{}.nii.gz", "IXI{participant_id!x}.nii.gz",
                                      "IXI{participant_id[x]}.nii.gz", "IXI{participant_id.x}.nii.gz"])
def test_path_template_that_cannot_format_text_cells_names_card_row_and_fix(tmp_path, template):
    """Cells are text: '{id:03d}' (natural for numeric ids) was a bare 'Unknown format code' ValueError."""
    _table(tmp_path, ["7\t30\tA\tF"])
    with pytest.raises(ManifestError, match=r"card t: path_template .*/participants.tsv row 2 .*\{column:0>3\}"):
        build_manifest(_card(path_template=template), tmp_path)
    (tmp_path / "IXI007.nii.gz").write_bytes(b"x")
    assert build_manifest(_card(path_template="IXI{participant_id:0>3}.nii.gz"), tmp_path)[0].path.endswith("IXI007.nii.gz")


def test_bids_n_a_in_categorical_columns_is_missing_like_an_empty_cell(tmp_path):
    """BIDS participants.tsv writes unknown values as 'n/a': for sex / site / label that must be the
    missing code -1 (as for age), not one more sex, site or diagnosis named 'n/a'."""
    from medssl.data.dataset import MetadataCoder

    _table(tmp_path, ["s1\t30\tA\tF\tCN", "s2\tn/a\tn/a\tn/a\tN/A", "s3\t40\tB\tM\tnan", "s4\t50\tB\tM\tAD"],
           header="participant_id\tage\tsite\tsex\tdx")
    columns = {"subject": "participant_id", "age": "age", "site": "site", "sex": "sex", "label": "dx"}
    recs = build_manifest(_card(columns=columns), tmp_path)
    assert [(r.site, r.sex, r.label) for r in recs] == [("A", "F", "CN"), ("", "", ""), ("B", "M", ""), ("B", "M", "AD")]
    coder = MetadataCoder(recs)
    assert coder.vocab == {"site": ["A", "B"], "sex": ["F", "M"], "label": ["AD", "CN"]}
    assert [coder.code("sex", r.sex) for r in recs] == [0, -1, 1, 1]


def test_a_manifest_is_replaced_whole_never_seen_half_written(tmp_path):
    """Every DDP rank rewrites RUN/manifest.tsv while the others read it back (api.run_splits: the run's
    split): a reader must see the previous or the new file whole. A write that stops mid-way (here a bad
    second record) leaves the previous manifest as it was and no temporary file behind."""
    path = tmp_path / "manifest.tsv"
    old = [Record(f"/d/{i}.nii.gz", f"s{i}", split="test" if i % 4 == 0 else "train") for i in range(8)]
    write_manifest(old, path)
    with pytest.raises(AttributeError):
        write_manifest([Record("/d/x.nii.gz", "x", split="train"), None], path)
    assert [(r.subject, r.split) for r in read_manifest(path)] == [(r.subject, r.split) for r in old]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.tsv"]


def test_row_numbers_count_blank_lines_as_the_file_does(tmp_path):
    """Blank lines are skipped, but the rows after one were numbered as if it were not there (one too low)."""
    _table(tmp_path, ["s1\t30\tA\tF", "", "", "s2\tforty\tA\tF"])
    with pytest.raises(ManifestError, match=r"participants.tsv row 5: age 'forty'"):
        build_manifest(_card(), tmp_path)
    (tmp_path / "extra.tsv").write_text("participant_id\tscanner\ns1\tX\n\ns1\tY\n")
    with pytest.raises(ManifestError, match=r"extra.tsv row 4: key \{'participant_id': 's1'\} appears twice"):
        build_manifest(_card(join=[{"table": "extra.tsv", "key": "participant_id"}]), tmp_path)


def test_every_row_with_a_wrong_field_count_is_a_problem_and_the_other_rows_are_read(tmp_path):
    """`data check` stopped at the first ragged row: later ragged rows, bad ages and files went unreported."""
    _table(tmp_path, ["s1\t30\tA\tF\textra", "s2\t45y\tA\tF", "s3\t32\tA", "s4\t33\tA\tF"])
    scan = scan_manifest(_card(), tmp_path)
    where = [p.where.rsplit(" ", 1)[-1] for p in scan.problems]
    assert where == ["2", "4", "3"]  # both ragged rows, then the bad age
    assert "5 fields but the header has 4" in scan.problems[0].reason
    assert "3 fields but the header has 4" in scan.problems[1].reason
    assert [r.subject for r in scan.records] == ["s4"]
    with pytest.raises(ManifestError, match=r"participants.tsv row 2: 5 fields but the header has 4"):
        build_manifest(_card(), tmp_path)  # training still stops at the first
    _table(tmp_path, ["s1\t30\tA", "s2\t31\tA"])  # every row ragged: named, not "no rows"
    assert [p.where.rsplit(" ", 1)[-1] for p in scan_manifest(_card(), tmp_path).problems] == ["2", "3"]


def test_a_column_typo_in_a_card_names_the_card_file_the_key_and_the_likely_column(tmp_path):
    """A misspelt column named only the card's name and the role, with no hint of the intended column."""
    _table(tmp_path, ["s1\t30\tA\tF"])
    card_file = tmp_path / "mycard.yaml"
    base = "name: t\nmodality: MR\ndimensionality: 3\nmanifest: participants.tsv\npath_template: '{participant_id}.nii.gz'\n"
    card_file.write_text(base + "columns: {subject: participant_id, age: agee}\n")
    with pytest.raises(ManifestError, match=r"column 'agee' \(columns.age of card .*mycard.yaml\) is not in the table. "
                                            r"Did you mean 'age'\?"):
        build_manifest(load_card(card_file), tmp_path)
    card_file.write_text(base + "columns: {subject: participant_id}\nselect: {sitee: [A]}\n")
    with pytest.raises(ManifestError, match=r"select.sitee names a column that is not in participants.tsv. Did you mean 'site'\?"):
        build_manifest(load_card(card_file), tmp_path)
    card_file.write_text(base.replace("{participant_id}", "{participantid}") + "columns: {subject: participant_id}\n")
    with pytest.raises(ManifestError, match=r"card .*mycard.yaml: path_template .* Did you mean 'participant_id'\?"):
        build_manifest(load_card(card_file), tmp_path)


def test_an_absolute_path_inside_the_root_is_read_as_documented(tmp_path):
    """data_cards/README.md said absolute paths are refused; only those that leave the root are (docs/data.md)."""
    (tmp_path / "participants.tsv").write_text(f"participant_id\tpath\ns1\t{tmp_path / 's1.nii.gz'}\n")
    (tmp_path / "s1.nii.gz").write_bytes(b"x")
    [rec] = build_manifest(_card(columns={"subject": "participant_id", "path": "path"}, path_template=""), tmp_path)
    assert rec.path == str(tmp_path / "s1.nii.gz")


def test_files_mode_merges_repeated_subject_rows_that_agree_and_names_those_that_conflict(tmp_path):
    """IXI.xls repeats 26 subjects (a second row with HEIGHT/WEIGHT zeroed): rows that agree on every column the
    card uses are one subject, not a problem that stops training; rows that disagree name the values and the fix."""
    for sid in ("001", "002", "003"):
        (tmp_path / f"IXI{sid}-T1.nii.gz").write_bytes(b"x")
    (tmp_path / "IXI.csv").write_text("IXI_ID,HEIGHT,AGE,SEX\n1,170,30.5,1\n1,0,30.5,1\n2,160,41,2\n2,0,44,2\n"
                                      "3,150,50,2\n")
    card = DataCard(name="ixi", modality="MR", dimensionality=3, files="IXI*-T1.nii.gz",
                    path_regex=r"IXI(?P<subject>\d{3})-T1", manifest="IXI.csv",
                    columns={"subject": "IXI_ID", "age": "AGE", "sex": "SEX"})
    scan = scan_manifest(card, tmp_path)
    assert [(r.subject, r.age) for r in scan.records if r.subject != "002"] == [("001", 30.5), ("003", 50.0)]
    assert [p.where for p in scan.problems] == [f"{tmp_path / 'IXI.csv'} row 5"]
    assert "subject '2' has rows that disagree (age: '41' in row 4, '44' in row 5)" in scan.problems[0].reason
    assert "keep one row per subject in IXI.csv" in scan.problems[0].reason
    (tmp_path / "IXI004-T1.nii.gz").write_bytes(b"x")  # a scan without a row: the message says what to do
    assert "add a row for it" in scan_manifest(card, tmp_path).problems[-1].reason

