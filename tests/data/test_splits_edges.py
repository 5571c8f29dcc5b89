"""Subject-level splits, edge cases found by mutation testing: single-subject strata, official splits."""

from __future__ import annotations

from collections import Counter

from medssl.data.manifest import Record
from medssl.data.splits import assign_splits, subject_split


def _test_subjects(recs, split):
    return {r.subject for r, s in zip(recs, split) if s == "test"}


def test_singleton_strata_never_take_back_test_subjects_of_the_capped_total():
    """Strata of one subject are never raised, so the cap on the total must not count them as raised: with strata of
    1, 1, 2, 2, 2, 2 subjects at 0.1, round(0.1 · 10) = 1 subject is held out (naive count), from a two-subject stratum."""
    sizes = (1, 1, 2, 2, 2, 2)
    recs = [Record(f"/d/{g}_{i}.nii.gz", f"s{g}_{i}", site=f"site-{g}") for g, n in enumerate(sizes) for i in range(n)]
    for seed in range(4):
        held = _test_subjects(recs, subject_split(recs, 0.1, seed=seed))
        assert len(held) == round(0.1 * len(recs)) == 1
        assert not held & {"s0_0", "s1_0"}


def test_subjects_missing_from_the_total_can_come_from_single_subject_strata():
    """Four sites of one subject each at 0.5: no stratum is raised, round(0.5 · 4) = 2 subjects are missing and the
    largest remainders (0.5 each) are those of the single-subject strata, so two of them are held out."""
    recs = [Record(f"/d/{i}.nii.gz", f"s{i}", site=f"site-{i}") for i in range(4)]
    for seed in range(3):
        assert Counter(subject_split(recs, 0.5, seed=seed))["test"] == 2


def test_a_subject_with_an_official_split_on_one_session_is_never_drawn_on_the_other_side():
    """Official "test" on a subject's first session only: its other sessions follow it, whatever the seed
    (naive check: no subject among both the train and the test records)."""
    recs = [Record("/a1", "a", "ses-1", "site-A", split="test")]
    recs += [Record(f"/a{k}", "a", f"ses-{k}", "site-A") for k in (2, 3)]
    recs += [Record(f"/{i}", f"s{i}", "ses-1", "site-A") for i in range(12)]
    for seed in range(10):
        split = assign_splits(recs, 0.25, seed=seed, stratify="site")
        assert split[:3] == ["test"] * 3
        sides = {s: {r.subject for r, t in zip(recs, split) if t == s} for s in ("train", "test")}
        assert not sides["train"] & sides["test"]
        assert len(sides["test"] - {"a"}) == round(0.25 * 12)  # the others are drawn among themselves
