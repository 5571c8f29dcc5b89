"""Subject-level splits: stratification by site and label, official splits kept, leave-site-out folds."""

from __future__ import annotations

from collections import Counter

import pytest

from medssl.data.manifest import Record
from medssl.data.splits import assign_splits, leave_site_out_folds, subject_split


def _records(n_per=(12, 8, 5), labels="AB", sessions=2):
    recs = []
    for s, n in zip("XYZ", n_per):
        for i in range(n):
            for ses in range(sessions if i % 3 == 0 else 1):
                recs.append(Record(f"/d/{s}{i}_{ses}.nii.gz", f"{s}{i}", f"ses-{ses}", f"site-{s}",
                                   label=labels[i % len(labels)]))
    return recs


def _per_subject(recs, split):
    out: dict[str, set] = {}
    for r, s in zip(recs, split):
        out.setdefault(r.subject, set()).add(s)
    return out


def test_stratified_by_site_and_label_with_exact_total():
    recs = _records()
    split = subject_split(recs, 0.25, seed=0, stratify=("site", "label"))
    per_subject = _per_subject(recs, split)
    assert all(len(v) == 1 for v in per_subject.values())  # subject level
    n_test = sum(v == {"test"} for v in per_subject.values())
    assert n_test == round(0.25 * 25)  # largest remainder keeps the overall fraction
    strata = Counter((r.site, r.label) for r in {r.subject: r for r in recs}.values())
    test_strata = Counter((r.site, r.label) for r in {r.subject: r for r, s in zip(recs, split) if s == "test"}.values())
    for key, n in strata.items():  # every stratum with >= 2 subjects is on both sides
        assert 1 <= test_strata[key] <= n - 1
        assert abs(test_strata[key] - 0.25 * n) < 1 + 1e-9
    assert split == subject_split(recs, 0.25, seed=0, stratify=("site", "label"))
    assert split != subject_split(recs, 0.25, seed=1, stratify=("site", "label"))
    assert set(subject_split(recs, 0.0, seed=0)) == {"train"}
    with pytest.raises(ValueError, match="test_fraction"):
        subject_split(recs, 1.0, seed=0)


def test_assign_splits_keeps_official_splits_and_fills_the_rest():
    recs = _records(sessions=1)
    for r in recs:
        if r.site == "site-Z":
            r.split = "test"  # an official external test site
    split = assign_splits(recs, 0.25, seed=3)
    assert all(s == "test" for r, s in zip(recs, split) if r.site == "site-Z")
    drawn = [s for r, s in zip(recs, split) if r.site != "site-Z"]
    assert Counter(drawn)["test"] == round(0.25 * 20)
    recs[0].split, recs[1].split = "train", ""
    recs.append(Record("/d/again.nii.gz", recs[0].subject, "ses-9", recs[0].site, split="test"))
    with pytest.raises(ValueError, match="both 'train' and 'test'"):
        assign_splits(recs, 0.25, seed=3)


def test_assign_splits_gives_official_split_to_other_sessions_of_the_subject():
    recs = [Record("/a1", "a", split="test"), Record("/a2", "a"), Record("/b1", "b"), Record("/c1", "c")]
    split = assign_splits(recs, 0.5, seed=0, stratify="site")
    assert split[:2] == ["test", "test"]


def test_leave_site_out_folds():
    recs = _records(sessions=1)
    recs.append(Record("/d/X0_other.nii.gz", "X0", "ses-9", "site-Y"))  # X0 also scanned at site Y
    folds = leave_site_out_folds(recs)
    assert len(folds) == 3
    for (train, test), site in zip(folds, ["site-X", "site-Y", "site-Z"]):
        assert {recs[i].site for i in test} == {site}
        assert len(test) == sum(r.site == site for r in recs)
        assert site not in {recs[i].site for i in train}
        assert not {recs[i].subject for i in train} & {recs[i].subject for i in test}
    # the X0 scan at site Y is tested in fold Y and dropped from training in fold X
    assert len(folds[0][0]) == len(recs) - 12 - 1 and len(folds[2][0]) == 20 + 1
    with pytest.raises(ValueError, match="needs a site for every record"):
        leave_site_out_folds(recs + [Record("/d/n.nii.gz", "n")])
    with pytest.raises(ValueError, match="at least two sites"):
        leave_site_out_folds([r for r in recs if r.site == "site-X"])


def test_rare_strata_do_not_inflate_the_test_fraction():
    """40 site × label strata of 2–3 subjects and test_fraction 0.1: raising every stratum to one test
    subject would hold out 40 of 100 subjects (40 %); the total stays round(0.1 × 100) = 10."""
    recs = []
    for k in range(40):
        for i in range(2 + k % 2):
            recs.append(Record(f"/d/{k}_{i}.nii.gz", f"s{k}_{i}", site=f"site-{k // 4}", label="ABCD"[k % 4]))
    assert len({r.subject for r in recs}) == 100
    for seed in range(3):
        split = subject_split(recs, 0.1, seed=seed, stratify=("site", "label"))
        assert Counter(split)["test"] == 10
        test_strata = {(r.site, r.label) for r, s in zip(recs, split) if s == "test"}
        assert len(test_strata) == 10  # one subject from each of 10 strata, never two from one
        assert split == subject_split(recs, 0.1, seed=seed, stratify=("site", "label"))


def test_split_does_not_depend_on_the_row_order_of_the_table():
    """Longitudinal data whose label changes between sessions (MCI at ses-1, AD at ses-2 for half the
    subjects): re-sorting the table must not move subjects between train and test."""
    recs = []
    for i in range(40):
        recs.append(Record(f"/d/{i}_1.nii.gz", f"S{i:02d}", "ses-1", "site-A", label="MCI"))
        recs.append(Record(f"/d/{i}_2.nii.gz", f"S{i:02d}", "ses-2", "site-A", label="AD" if i % 2 else "MCI"))
    by_session = sorted(recs, key=lambda r: (r.session, r.subject))  # the same table sorted by session, then reversed
    tests = []
    for table in (recs, by_session, by_session[::-1]):
        split = subject_split(table, 0.25, seed=0, stratify=("site", "label"))
        tests.append({r.subject for r, s in zip(table, split) if s == "test"})
        assert not tests[-1] & {r.subject for r, s in zip(table, split) if s == "train"}
    assert tests[0] == tests[1] == tests[2] and len(tests[0]) == 10


def test_the_earliest_session_is_chosen_by_number_not_text():
    """ses-2 comes before ses-10 (as text, "ses-10" < "ses-2"): the subject is placed by its ses-2 label."""
    from medssl.data.splits import _strata

    recs = [Record("/d/a10.nii.gz", "S1", "ses-10", "site-A", label="AD"),
            Record("/d/a2.nii.gz", "S1", "ses-2", "site-A", label="MCI")]
    assert _strata(recs, "label") == {("MCI",): ["S1"]}


def test_a_small_cohort_keeps_one_test_subject():
    """When test_fraction · n_subjects rounds to 0 (data.limit=2 at the default 0.25, or 8 subjects at 0.05),
    the cap on the total must not empty the test split: one subject stays held out, as before the cap."""
    for n, n_sites, fraction in ((2, 1, 0.25), (8, 2, 0.05), (4, 2, 0.1)):
        recs = [Record(f"/d/{i}.nii.gz", f"s{i}", site=f"site-{i % n_sites}") for i in range(n)]
        for seed in range(3):
            assert Counter(subject_split(recs, fraction, seed=seed))["test"] == 1
    singles = [Record(f"/d/{i}.nii.gz", f"s{i}", site=f"site-{i}") for i in range(3)]  # no group of two: as before
    assert set(subject_split(singles, 0.1, seed=0)) == {"train"}


def test_test_subjects_per_stratum_follow_the_documented_largest_remainder_rule():
    """Naive formula of the docstring: floor(f · n_group) per stratum (at least 1), then the subjects missing to
    round(f · n_subjects) go to the strata with the largest remainders f · n_group − count; when the raises exceed
    that total, the strata with the smallest f · n_group stay train-only."""
    def split_counts(sizes, fraction, seed=0):
        recs = [Record(f"/d/{g}_{i}.nii.gz", f"s{g}_{i}", site=f"site-{g}") for g, n in enumerate(sizes) for i in range(n)]
        split = subject_split(recs, fraction, seed=seed)
        return [sum(s == "test" for r, s in zip(recs, split) if r.site == f"site-{g}") for g in range(len(sizes))]

    # ideal 1.75, 1.25, 2.5 → floors 1, 1, 2; round(5.5) = 6: the 2 missing go to remainders 0.75 and 0.5
    assert split_counts((7, 5, 10), 0.25) == [2, 1, 3]
    # one stratum: round(0.29 · 20) = round(5.8) = 6 test subjects (not the floor, 5)
    assert split_counts((20,), 0.29) == [6]
    # ideal 0.2 (2 subjects) and 0.3 (3 subjects), raised to 1 each: 4 raises, total round(0.1 · 10) = 1 → one
    # of the two 3-subject strata keeps its test subject, the 2-subject strata stay train-only
    for seed in range(3):
        counts = split_counts((2, 3, 2, 3), 0.1, seed)
        assert sum(counts) == 1 and counts[0] == counts[2] == 0
