"""`data check` summary lines: how many files a warning names and how many it counts as "more"."""

from __future__ import annotations

from medssl.data.check import MAX_LISTED, NO_SPACING, _note_warnings, _warnings
from medssl.data.manifest import Record


def test_a_spacing_warning_names_ten_files_and_counts_the_rest():
    keys = [f"f{i:02d}" for i in range(MAX_LISTED + 2)]
    (line,) = _note_warnings({"spacing": keys})
    assert line.startswith(f"{MAX_LISTED + 2} file(s) with {NO_SPACING}: f00, f01,")
    assert ", f09, … (2 more);" in line and "f10" not in line and "f11" not in line
    (exact,) = _note_warnings({"spacing": keys[:MAX_LISTED]})  # exactly ten: all named, no "more"
    assert "f09;" in exact and "more" not in exact


def test_series_folders_with_ignored_files_are_listed_up_to_ten_then_counted():
    lines = [f"d{i:02d}: 1 file(s) ignored, not slices: x" for i in range(MAX_LISTED + 1)]
    assert _note_warnings({"ignored": lines}) == [*lines[:MAX_LISTED], "… and 1 more series folder(s) with ignored files"]
    assert _note_warnings({"ignored": lines[:MAX_LISTED]}) == lines[:MAX_LISTED]


def test_sites_with_a_single_scan_are_named_up_to_five():
    def warning(n_sites):
        recs = [Record(f"/d/{i}.nii.gz", f"s{i}", site=f"site-{i}") for i in range(n_sites)]
        return _warnings(recs)

    assert warning(5) == ["site(s) with a single scan: site-0, site-1, site-2, site-3, site-4"]
    assert warning(6) == ["site(s) with a single scan: site-0, site-1, site-2, site-3, site-4 …"]


def test_a_count_line_lists_twelve_values_then_counts_the_rest():
    from collections import Counter

    from medssl.data.check import _counter_line

    twelve = Counter({f"v{i:02d}": 20 - i for i in range(12)})
    assert _counter_line(twelve) == ", ".join(f"v{i:02d}: {20 - i}" for i in range(12))
    assert _counter_line(twelve + Counter({"v12": 1})).endswith("v11: 9, … (1 more)")


def test_the_report_says_more_only_when_problems_were_left_out():
    from medssl.data.check import CheckReport, format_report
    from medssl.data.manifest import Problem

    report = CheckReport(card="c", root="/r", problems=[Problem(f"row {i}", "bad") for i in (1, 2, 3)])
    assert "more" not in format_report(report, max_problems=3)
    text = format_report(report, max_problems=2)
    assert "  row 2: bad\n  … and 1 more\n" in text and "row 3" not in text


def test_two_reasons_for_one_medmnist_file_stay_two_lines(tmp_path):
    """Records of one .npz are merged per (file, reason): the train and the test split failing for their own
    reasons give two lines, each with its own count."""
    import numpy as np

    from medssl.data.card import load_card
    from medssl.data.check import check_card

    root = tmp_path / "data"
    root.mkdir()
    sizes = {"train": 4, "val": 2, "test": 3}
    arrays = {f"{s}_images": np.zeros((n, 6, 6), np.uint8) for s, n in sizes.items()}
    arrays["train_images"] = arrays["train_images"].astype(np.float32)
    arrays["test_images"] = arrays["test_images"].astype(np.int16)
    arrays.update({f"{s}_labels": np.zeros((n, 1), np.uint8) for s, n in sizes.items()})
    np.savez(root / "set.npz", **arrays)
    (tmp_path / "card.yaml").write_text("name: t\nmodality: X\ndimensionality: 2\nformat: medmnist\nnpz: set.npz\n"
                                        "preprocessing: {normalise: none}\nsplits: {train: [train], val: [val], "
                                        "test: [test]}\n")
    report = check_card(load_card(tmp_path / "card.yaml"), root, progress=False)
    assert [(p.where.split("::")[1], p.reason.split(" has")[0]) for p in report.problems] == [
        ("train[0] and 3 more record(s) of that file", "'train_images'"),
        ("test[0] and 2 more record(s) of that file", "'test_images'")]


def test_a_card_whose_npy_geometry_is_unusable_is_one_problem_not_a_crash(tmp_path):
    import numpy as np

    from medssl.data.card import DataCard
    from medssl.data.check import check_card

    np.save(tmp_path / "a.npy", np.zeros((1, 4, 4, 4), np.float32))
    (tmp_path / "t.tsv").write_text("id\na\n")
    card = DataCard(name="n", modality="MR", dimensionality=3, format="npy", manifest="t.tsv",
                    columns={"subject": "id"}, path_template="{id}.npy", geometry={"spacing": [1.0, 1.0]})
    report = check_card(card, tmp_path, progress=False)
    assert [(p.where, p.reason) for p in report.problems] == [
        ("geometry", "geometry.spacing must have 3 values (mm), got [1.0, 1.0]")]


def test_the_report_counts_records_per_sex_label_and_split(tmp_path):
    from medssl.data.card import DataCard
    from medssl.data.check import check_card, format_report

    rows = [("a", "F", "AD", "train"), ("b", "M", "CN", "train"), ("c", "F", "CN", "test"), ("d", "", "CN", "train")]
    (tmp_path / "t.tsv").write_text("id\tsex\tdx\tsplit\n" + "".join("\t".join(r) + "\n" for r in rows))
    for sid, *_ in rows:
        (tmp_path / f"{sid}.nii.gz").write_bytes(b"x")
    card = DataCard(name="c", modality="MR", dimensionality=3, manifest="t.tsv", path_template="{id}.nii.gz",
                    columns={"subject": "id", "sex": "sex", "label": "dx", "split": "split"})
    report = check_card(card, tmp_path, read_files=False, progress=False)
    assert report.counts["sex"] == {"F": 2, "M": 1, "(empty)": 1}
    assert report.counts["label"] == {"CN": 3, "AD": 1} and report.counts["split"] == {"train": 3, "test": 1}
    assert "\nsex:     F: 2, M: 1, (empty): 1\n" in format_report(report)
