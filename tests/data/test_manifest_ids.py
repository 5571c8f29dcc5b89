"""Which table row a scan gets: ids and cells with stray spaces, path_regex groups against table columns."""

from __future__ import annotations

from medssl.data.card import DataCard
from medssl.data.manifest import scan_manifest


def test_a_glob_scan_gets_its_subjects_row_whatever_the_spaces_and_leading_zeros(tmp_path):
    """Per-subject table of a `files` card: the id cell '002 ' (a trailing space) is subject 002's row, and two rows
    of subject 7 that differ only by spaces around a cell are one subject, not a disagreement. A path_regex group
    that matched nothing (no session in the file name) leaves the row's session."""
    (tmp_path / "p.tsv").write_text("id\tage\tsite\tses\n002 \t30\tA\tses-1\n7\t40\tB\tses-2\n7\t 40\tB\tses-2\n")
    for sid in ("002", "7"):
        (tmp_path / f"sub-{sid}.nii.gz").write_bytes(b"x")
    card = DataCard(name="g", modality="MR", dimensionality=3, files="sub-*.nii.gz", manifest="p.tsv",
                    path_regex=r"sub-(?P<subject>\d+)_?(?P<session>[^.]*)\.nii\.gz$",
                    columns={"subject": "id", "age": "age", "site": "site", "session": "ses"})
    scan = scan_manifest(card, tmp_path)
    assert [str(p) for p in scan.problems] == []
    assert [(r.subject, r.age, r.site, r.session) for r in scan.records] == [("002", 30.0, "A", "ses-1"),
                                                                             ("7", 40.0, "B", "ses-2")]


def test_table_cells_win_over_path_regex_groups_which_fill_only_empty_cells(tmp_path):
    """A table card with path_regex: subject s1's site cell 'A' stays (its folder X is not read over it); s2's empty
    site cell is filled from its folder; the session cell ' ses-1 ' is stripped like the other cells."""
    (tmp_path / "t.tsv").write_text("id\tses\tsite\tfolder\ns1\t ses-1 \tA\tX\ns2\tses-1\t\tY\n")
    for folder, sid in (("X", "s1"), ("Y", "s2")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{sid}.nii.gz").write_bytes(b"x")
    card = DataCard(name="t", modality="MR", dimensionality=3, manifest="t.tsv", path_template="{folder}/{id}.nii.gz",
                    path_regex=r"^(?P<site>[^/]+)/", columns={"subject": "id", "session": "ses", "site": "site"})
    scan = scan_manifest(card, tmp_path)
    assert [str(p) for p in scan.problems] == []
    assert [(r.subject, r.session, r.site) for r in scan.records] == [("s1", "ses-1", "A"), ("s2", "ses-1", "Y")]
