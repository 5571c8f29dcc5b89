"""Subject-level, seeded, stratified splits (never the same subject on both sides)."""

from __future__ import annotations

import numpy as np

from medssl.data.manifest import Record


def subject_split(records: list[Record], test_fraction: float, seed: int, stratify: str = "site") -> list[str]:
    """Assign "train" or "test" to every record, whole subjects at a time.

    Subjects are grouped by the ``stratify`` attribute of their first record (e.g. site) and
    ``round(test_fraction · n)`` subjects of each group go to test, so every site keeps its
    share on both sides. Returns one split name per record (same order).
    """
    rng = np.random.default_rng(seed)
    first: dict[str, Record] = {}
    for r in records:
        first.setdefault(r.subject, r)
    strata: dict[str, list[str]] = {}
    for subject, r in first.items():
        strata.setdefault(str(getattr(r, stratify, "")), []).append(subject)
    test_subjects: set[str] = set()
    for key in sorted(strata):
        subjects = sorted(strata[key])
        rng.shuffle(subjects)
        n_test = int(round(test_fraction * len(subjects)))
        if len(subjects) > 1:
            n_test = min(max(n_test, 1), len(subjects) - 1)
        test_subjects.update(subjects[:n_test])
    return ["test" if r.subject in test_subjects else "train" for r in records]
