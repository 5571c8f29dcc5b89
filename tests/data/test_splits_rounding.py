"""How many subjects a split tests (the docstring's rounding) and what assign_splits stratifies by default."""

from __future__ import annotations

import pytest

from medssl.data.manifest import Record
from medssl.data.splits import assign_splits, subject_split


@pytest.mark.parametrize("n, fraction", [(10, 0.25), (6, 0.25), (14, 0.25), (7, 0.5), (9, 0.5)])
def test_one_stratum_tests_python_round_of_the_fraction_of_its_subjects(n, fraction):
    """One site of n subjects (two scans each): round(fraction * n) test subjects, as subject_split's docstring says
    and Python's round() gives (halves to even: 10 x 0.25 = 2.5 -> 2, 6 x 0.25 = 1.5 -> 2, 7 x 0.5 = 3.5 -> 4)."""
    records = [Record(f"s{i}/{k}.nii.gz", f"s{i}", site="A") for i in range(n) for k in (1, 2)]
    split = subject_split(records, fraction, seed=0)
    assert len({r.subject for r, s in zip(records, split) if s == "test"}) == round(fraction * n)


def test_assign_splits_stratifies_by_site_and_label_by_default():
    """One site, 4 subjects of label x and 4 of label y, a quarter tested: each label has one test subject for
    every seed (site and label strata); by site alone a seed can draw both test subjects from one label."""
    records = [Record(f"{lab}{i}.nii.gz", f"{lab}{i}", site="A", label=lab) for lab in "xy" for i in range(4)]
    for seed in range(12):
        split = assign_splits(records, 0.25, seed)
        assert sorted(r.label for r, s in zip(records, split) if s == "test") == ["x", "y"], seed
