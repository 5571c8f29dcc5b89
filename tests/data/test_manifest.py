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
