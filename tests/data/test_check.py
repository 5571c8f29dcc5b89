"""`data check`: every bad row and file is reported with its reason; counts and geometry; exit status."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medssl.cli import main
from medssl.data.card import load_card
from medssl.data import check
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
    assert "--root DIR, or data.root" in out  # data check has no data.root: name its flag too


def test_check_on_the_real_ixi_files(shared):
    root = shared("data", "ixi_t1_hh_2mm")
    report = check_card(load_card("shared_ixi"), root, progress=False)
    assert report.ok, format_report(report)
    assert report.n_files_read == 143 and report.ages["n"] == 138 and report.ages["missing"] == 5
    assert report.geometry["shape"] == {"120×120×90": 143}  # as stated in the data set's README
    assert report.geometry["spacing"] == {"2.00×2.00×2.00 mm": 143}
    assert report.geometry["orientation"] == {"PSR": 143}
    assert 20 < report.ages["min"] < report.ages["max"] < 83


@pytest.mark.parametrize("workers", [1, 2])
def test_unexpected_exceptions_are_problems_of_their_file(cohort_copy, monkeypatch, workers):
    from check_readers import FaultyReader

    ids = [r["participant_id"] for r in _rows(cohort_copy)]
    faults = {ids[1]: "nan_affine", ids[3]: "memory", ids[5]: "zero"}
    monkeypatch.setattr(check, "make_reader", lambda card, root: FaultyReader(faults=faults))
    report = check_card(load_card("synthetic"), cohort_copy, progress=False, workers=workers)
    bad = {p.path: p.reason for p in report.problems}
    assert len(bad) == 3 and report.n_files_read == 40, format_report(report)
    assert sum(report.geometry["shape"].values()) == 37  # every other file was read
    reasons = {sid: next(r for path, r in bad.items() if sid in path) for sid in faults}
    assert reasons[ids[1]].startswith("unexpected LinAlgError")
    assert reasons[ids[3]].startswith("unexpected MemoryError while reading (cannot allocate 80.0 GiB")
    assert reasons[ids[5]].startswith("unexpected ZeroDivisionError") and "Smith" not in reasons[ids[5]]


def _ct5n_series(folder: Path, pydicom_dir: Path) -> Path:
    folder.mkdir(parents=True)
    for i, f in enumerate(sorted((pydicom_dir / "dicomdirtests/98892001/CT5N").iterdir())):
        shutil.copy(f, folder / f"{i:03d}.dcm")
    return folder


def _card(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "card.yaml"
    path.write_text(f"name: test_card\nmodality: OT\n{text}\nlicence: test\ncitation: test\nobtain: test\n")
    return path


def test_series_problems_name_the_slice_and_ignored_files_are_listed(tmp_path):
    pydicom_dir = Path(get_testdata_file("CT_small.dcm")).parent
    root = tmp_path / "data"
    ok = _ct5n_series(root / "ok", pydicom_dir)
    (ok / "README.txt").write_text("notes")
    shutil.copy(pydicom_dir / "test-SR.dcm", ok / "report.dcm")
    cut = _ct5n_series(root / "cut", pydicom_dir)
    (cut / "004.dcm").write_bytes((cut / "004.dcm").read_bytes()[:700])
    bad_ipp = _ct5n_series(root / "bad_ipp", pydicom_dir)
    ds = pydicom.dcmread(bad_ipp / "002.dcm")
    ds.add_new(0x00200032, "LO", "a\\b\\c")  # ImagePositionPatient that is not numbers
    ds.save_as(bad_ipp / "002.dcm")
    (root / "ct.tsv").write_text("subject\tpath\nok\tok\ncut\tcut\nbad_ipp\tbad_ipp\n")
    card = _card(tmp_path, "dimensionality: 3\nformat: dicom_series\nmanifest: ct.tsv\n"
                           "columns: {subject: subject, path: path}")
    report = check_card(load_card(card), root, progress=False)
    reasons = {Path(p.path).name: p.reason for p in report.problems}
    assert reasons.keys() == {"cut", "bad_ipp"}, format_report(report)
    assert reasons["cut"].startswith("004.dcm: lacks Rows")
    assert reasons["bad_ipp"] == "002.dcm: ImagePositionPatient is missing or malformed"
    assert report.warnings == [f"{ok}: 2 file(s) ignored, not slices: 1 not DICOM (no DICM marker, no .dcm "
                               "suffix): README.txt; 1 non-image object (Modality SR): report.dcm"]
    assert f"warning: {report.warnings[0]}" in format_report(report)


def test_radiographs_without_pixel_spacing_are_a_warning(tmp_path):
    root = tmp_path / "data"
    for name, spacing in [("with", True), ("without", False), ("single", None)]:
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        if spacing is False:
            del ds.PixelSpacing
        elif spacing is None:
            ds.PixelSpacing = ["0.5"]  # one value: not a row and column spacing
        (root / name).mkdir(parents=True)
        ds.save_as(root / name / "image.dcm")
    card = _card(tmp_path, "dimensionality: 2\nfiles: '*/image.dcm'\npath_regex: '(?P<subject>[a-z]+)/'")
    report = check_card(load_card(card), root, progress=False)
    assert report.ok, format_report(report)  # a warning, not an error
    listed = [str(root / n / "image.dcm") for n in ("single", "without")]
    assert report.warnings == ["2 file(s) with no PixelSpacing/ImagerPixelSpacing: 1 mm assumed; resampling to "
                               f"a physical spacing will be wrong: {', '.join(listed)}; for these files data.spacing "
                               "counts pixels (e.g. [4.571, 4.571] takes 1024 px to 224, as the nih_chestxray14 card "
                               "does for its PNGs)"]


def test_real_nih_radiograph_has_no_pixel_spacing_warning(shared, tmp_path):
    root = shared("data", "dicom_cxr_nih_dx")
    card = _card(tmp_path, "dimensionality: 2\nfiles: '*.dcm'\npath_regex: '(?P<subject>[^/]+)\\.dcm$'")
    report = check_card(load_card(card), root, progress=False)
    files = sorted(root.glob("*.dcm"))
    assert report.ok and report.n_files_read == len(files) >= 1, format_report(report)
    assert "PixelSpacing" not in pydicom.dcmread(files[0]) and "ImagerPixelSpacing" not in pydicom.dcmread(files[0])
    assert report.warnings[0].startswith(f"{len(files)} file(s) with no PixelSpacing/ImagerPixelSpacing: 1 mm")


def test_channel_count_is_checked_against_the_card(tmp_path):
    import SimpleITK as sitk

    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for name, image in [("gray", sitk.GetImageFromArray(rng.integers(0, 255, (12, 14), dtype=np.uint8))),
                        ("rgb", sitk.GetImageFromArray(rng.integers(0, 255, (12, 14, 3), dtype=np.uint8), isVector=True))]:
        (root / name).mkdir(parents=True)
        sitk.WriteImage(image, str(root / name / "a.mha"))
    files = "dimensionality: 2\nfiles: '*/a.mha'\npath_regex: '(?P<subject>[a-z]+)/'\n"
    report = check_card(load_card(_card(tmp_path, files)), root, progress=False)
    assert report.geometry["channels"] == {"1": 1, "3": 1}
    assert [(Path(p.path).parent.name, p.reason.split(" (")[0]) for p in report.problems] == [
        ("rgb", "image has 3 channel(s) but the card's preprocessing.channels is 1")]
    report = check_card(load_card(_card(tmp_path, files + "preprocessing: {channels: 3}")), root, progress=False)
    assert [Path(p.path).parent.name for p in report.problems] == ["gray"]


def test_a_problem_of_a_whole_medmnist_split_is_one_line(tmp_path):
    """A split whose images array is wrong (float, not uint8) fails every record of it for the same reason:
    one problem naming the first record and the count, not one line per image."""
    root = tmp_path / "data"
    root.mkdir()
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 255, (n, 6, 6), dtype=np.uint8) for s, n in
              [("train", 7), ("val", 2), ("test", 3)]}
    arrays["train_images"] = arrays["train_images"].astype(np.float32)
    arrays.update({f"{s}_labels": np.zeros((len(arrays[f"{s}_images"]), 1), np.uint8) for s in ("train", "val", "test")})
    np.savez(root / "set.npz", **arrays)
    card = _card(tmp_path, "dimensionality: 2\nformat: medmnist\nnpz: set.npz\npreprocessing: {normalise: none}\n"
                           "splits: {train: [train], val: [val], test: [test]}")
    report = check_card(load_card(card), root, progress=False)
    assert report.n_files_read == 12
    assert [str(p) for p in report.problems] == [
        f"{root / 'set.npz'}::train[0] and 6 more record(s) of that file: 'train_images' has dtype float32; MedMNIST "
        "images are uint8"]


def test_check_names_every_ragged_row_and_still_reads_the_files(cohort_copy):
    """A row with a wrong field count stopped the whole check (no other row or file was looked at)."""
    text = (cohort_copy / "participants.tsv").read_text().splitlines()
    text[2] += "\textra"  # row 3
    text[5] = text[5].rsplit("\t", 1)[0]  # row 6
    (cohort_copy / "participants.tsv").write_text("\n".join(text) + "\n")
    report = check_card(load_card("synthetic"), cohort_copy, progress=False)
    assert [p.where.rsplit(" ", 1)[-1] for p in report.problems] == ["3", "6"], format_report(report)
    assert report.n_records == report.n_files_read == len(text) - 3


def test_the_cli_names_every_bad_file_however_many(tmp_path, capsys):
    """The report stopped after 200 problems ('… and 50 more'), though `data prepare` sends users to
    `data check` for the full list."""
    rows = "".join(f"s{i:03d}\t30\n" for i in range(250))
    (tmp_path / "participants.tsv").write_text("participant_id\tage\n" + rows)
    (tmp_path / "card.yaml").write_text("name: t\nmodality: MR\ndimensionality: 3\nmanifest: participants.tsv\n"
                                        "columns: {subject: participant_id, age: age}\n"
                                        "path_template: '{participant_id}.nii.gz'\n")
    assert main(["data", "check", str(tmp_path / "card.yaml"), "--root", str(tmp_path), "--strict"]) == 1
    out = capsys.readouterr().out
    assert all(f"s{i:03d}.nii.gz does not exist" in out for i in range(250)) and "more" not in out


def test_a_script_without_a_main_guard_is_told_so_in_the_report(tmp_path):
    """check_card(..., workers=2) at a script's top level (no `if __name__ == "__main__":`): each spawned reader
    re-ran the script and died, and the report listed every file as 'not checked … rerun with --workers 1 to find the
    file', as if the files were at fault. The workers now stop with the fix and the report warns with it."""
    import os
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "check_script.py"
    script.write_text(textwrap.dedent(f"""
        from medssl.data.card import load_card
        from medssl.data.check import check_card, format_report
        from medssl.data.synthetic import write_synthetic_cohort
        root = write_synthetic_cohort({str(tmp_path / 'cohort')!r}, n_subjects=4, n_sites=2, shape=(16, 16, 16),
                                      progress=False)
        print(format_report(check_card(load_card("synthetic"), root, workers=2, progress=False)))
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    guard = 'put the script\'s code under `if __name__ == "__main__":` (or check with workers=1)'
    assert "warning: a reading process ended abruptly" in proc.stdout and guard in proc.stdout
    assert "a data check with worker processes was started while a worker process was starting" in proc.stderr


def test_counts_ages_subjects_and_site_warnings_match_the_table(tmp_path):
    """Summary figures against a hand count of a small table (files not read)."""
    root = tmp_path / "data"
    root.mkdir()
    rows = [("s1", "ses1", "A", "12"), ("s1", "ses2", "B", "31.5"), ("s2", "ses1", "A", ""), ("s3", "ses1", "", "70"),
            ("s4", "ses1", "C", "n/a"), ("s5", "ses1", "A", "30"), ("s6", "ses1", "A", "44")]
    (root / "t.csv").write_text("id,ses,site,age\n" + "".join(",".join(r) + "\n" for r in rows))
    for sid, ses, _, _ in rows[:-2]:
        (root / f"{sid}_{ses}.nii.gz").write_bytes(b"x")  # s5 and s6 have no file: two problems
    card = _card(tmp_path, "dimensionality: 3\nmanifest: t.csv\ncolumns: {subject: id, session: ses, site: site, age: age}\n"
                           "path_template: '{id}_{ses}.nii.gz'")
    report = check_card(load_card(card), root, read_files=False, progress=False)
    assert report.n_records == 7 and report.n_subjects == 6
    assert report.counts["site"] == {"A": 4, "B": 1, "C": 1, "(empty)": 1}
    assert report.ages == {"n": 5, "missing": 2, "min": 12.0, "max": 70.0}
    assert report.warnings == ["1 subject(s) appear at more than one site (e.g. 's1'); leave-site-out folds drop them "
                               "from training when their other site is tested", "site(s) with a single scan: B, C"]
    text = format_report(report, max_problems=1)
    assert "bad rows / files (2):" in text and "s5_ses1.nii.gz does not exist" in text
    assert "s6_ses1" not in text and "  … and 1 more" in text


def test_an_image_of_other_dimensionality_than_the_card_is_a_problem(tmp_path):
    """MedMNIST 2D images under a card that says dimensionality 3 (the .npz reader takes either)."""
    root = tmp_path / "data"
    root.mkdir()
    images = np.random.default_rng(0).integers(0, 255, (2, 6, 6), dtype=np.uint8)
    np.savez(root / "set.npz", **{f"{s}_images": images for s in ("train", "val", "test")},
             **{f"{s}_labels": np.zeros((2, 1), np.uint8) for s in ("train", "val", "test")})
    card = _card(tmp_path, "dimensionality: 3\nformat: medmnist\nnpz: set.npz\npreprocessing: {normalise: none}\n"
                           "splits: {train: [train], val: [val], test: [test]}")
    report = check_card(load_card(card), root, progress=False)
    assert report.n_files_read == 6 and report.geometry["shape"] == {"6×6": 6}
    assert [(p.where.endswith("and 5 more record(s) of that file"), p.reason) for p in report.problems] == [
        (True, "image is 2D but the card says dimensionality 3")]
