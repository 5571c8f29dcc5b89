"""`data check`: every bad row and file is reported with its reason; counts and geometry; exit status."""

from __future__ import annotations

import csv

import numpy as np

from medssl.cli import main
from medssl.data.card import load_card
from medssl.data.check import check_card, format_report


def _rows(cohort):
    with open(cohort / "participants.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _nii(cohort, sid):
    return cohort / sid / "anat" / f"{sid}_T1w.nii.gz"


def _break(cohort):
    """Plant one problem of each kind; returns {subject: expected reason fragment}."""
    rows = _rows(cohort)
    ids = [r["participant_id"] for r in rows]
    text = (cohort / "participants.tsv").read_text().splitlines()
    header = text[0].split("\t")
    age_col = header.index("age")
    cells = text[3].split("\t")
    cells[age_col] = "old"
    text[3] = "\t".join(cells)  # row 4 (= ids[2]): non-numeric age
    text.append(text[5])  # ids[4] listed twice
    (cohort / "participants.tsv").write_text("\n".join(text) + "\n")
    raw = _nii(cohort, ids[6]).read_bytes()
    _nii(cohort, ids[6]).write_bytes(raw[: len(raw) // 2])  # truncated gzip
    _nii(cohort, ids[8]).unlink()  # missing
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ones((24, 24), np.float32), np.eye(4)), _nii(cohort, ids[10]))  # a 2D image
    return {ids[2]: "age 'old'", ids[4]: "listed 2 times", ids[6]: "", ids[8]: "does not exist",
            ids[10]: "expected a 3D image"}


def test_check_reports_every_bad_row_and_file(cohort_copy):
    expected = _break(cohort_copy)
    report = check_card(load_card("synthetic"), cohort_copy, progress=False)
    assert not report.ok
    text = format_report(report)
    for sid, reason in expected.items():
        hits = [p for p in report.problems if sid in str(p) or sid in p.path]
        assert hits, f"{sid} not reported:\n{text}"
        assert any(reason in p.reason for p in hits), (sid, [p.reason for p in hits])
    assert len(report.problems) == 5
    rows = [r for r in _rows(cohort_copy)]
    assert report.n_records == len(rows) - 1  # the bad-age row is not a record
    assert sum(report.counts["site"].values()) == report.n_records
    assert report.counts["site"] == {s: sum(r["site"] == s for r in rows if r["age"] != "old")
                                     for s in {r["site"] for r in rows}}
    assert report.geometry["shape"] == {"24×24×24": report.n_files_read - 2}  # the truncated and the 2D file
    assert "result: 5 problem(s)" in text and "bad rows / files (5)" in text


def test_cli_check_exit_status(cohort_copy, capsys):
    assert main(["data", "check", "synthetic", "--root", str(cohort_copy), "--strict", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "records: 40 (40 subjects); files read: 40" in out and "result: OK" in out
    _break(cohort_copy)
    assert main(["data", "check", "synthetic", "--root", str(cohort_copy)]) == 0  # report only
    assert main(["data", "check", "synthetic", "--root", str(cohort_copy), "--strict"]) == 1
    assert "result: 5 problem(s)" in capsys.readouterr().out
    assert main(["data", "check", "synthetic", "--root", str(cohort_copy / "absent")]) == 0
    out = capsys.readouterr().out
    assert "does not exist" in out and "source:  participants.tsv" in out
    assert f"  cannot read the records: metadata table {cohort_copy / 'absent' / 'participants.tsv'} does not" in out


def test_check_on_the_real_ixi_files(shared):
    root = shared("data", "ixi_t1_hh_2mm")
    report = check_card(load_card("shared_ixi"), root, progress=False)
    assert report.ok, format_report(report)
    assert report.n_files_read == 143 and report.ages["n"] == 138 and report.ages["missing"] == 5
    assert report.geometry["shape"] == {"120×120×90": 143}  # as stated in the data set's README
    assert report.geometry["spacing"] == {"2.00×2.00×2.00 mm": 143}
    assert report.geometry["orientation"] == {"PSR": 143}
    assert 20 < report.ages["min"] < report.ages["max"] < 83
