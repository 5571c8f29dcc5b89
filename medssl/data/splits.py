"""Subject-level, seeded, stratified splits (never the same subject on both sides).

* :func:`subject_split` — hold out a fraction of subjects, stratified by site and/or label.
* :func:`assign_splits` — keep official splits, fill the rest with :func:`subject_split`.
* :func:`leave_site_out_folds` — one fold per site: train on the others, test on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medssl.data.manifest import Record, natural_order


def _strata(records: list[Record], stratify: str | Sequence[str]) -> dict[tuple, list[str]]:
    """Subjects per stratum; a subject's stratum is that of its earliest record (smallest session, then
    path), so re-sorting the table never moves a subject whose label or site changes between sessions."""
    keys = (stratify,) if isinstance(stratify, str) else tuple(stratify)
    def earliest(r: Record) -> tuple:  # session with its numbers by value (ses-2 before ses-10), then path
        return natural_order(r.session), r.key

    first: dict[str, Record] = {}
    for r in records:
        if r.subject not in first or earliest(r) < earliest(first[r.subject]):
            first[r.subject] = r
    strata: dict[tuple, list[str]] = {}
    for subject, r in first.items():
        strata.setdefault(tuple(str(getattr(r, k, "")) for k in keys), []).append(subject)
    return strata


def _drop_raised(n_test: np.ndarray, ideal: np.ndarray, excess: int, rng: np.random.Generator) -> None:
    """Undo ``excess`` of the raises to one test subject, in the groups with the smallest ideal count.

    With many rare strata, one test subject per group would exceed the requested total (40 groups
    of 2–3 subjects at test_fraction 0.1: 40 test subjects instead of 10); the total wins, and the
    groups that would hold the smallest share of a test subject stay train-only (ties: random).
    """
    if excess <= 0:
        return
    raised = [j for j in range(len(n_test)) if n_test[j] > np.floor(ideal[j])]
    for j in sorted(raised, key=lambda j: (ideal[j], rng.random()))[:excess]:
        n_test[j] -= 1


def subject_split(records: list[Record], test_fraction: float, seed: int,
                  stratify: str | Sequence[str] = "site") -> list[str]:
    """Assign "train" or "test" to every record, whole subjects at a time.

    Subjects are grouped by the ``stratify`` attribute(s) (e.g. ``"site"`` or ``("site",
    "label")``) of their earliest record: smallest ``session``, then path, whatever the row
    order. The number of test subjects per group is ``floor(test_fraction · n_group)``,
    raised to at least one (and kept below ``n_group``) for every group with two or more
    subjects so that each group is on both sides; the subjects still missing to reach
    ``round(test_fraction · n_subjects)`` go to the groups with the largest remainders. When
    the raises alone would exceed that total (many rare strata), the total wins (but at least
    one test subject remains): the groups with the smallest ``test_fraction · n_group`` stay
    train-only. Seeded: same seed and records → same split, in any row order.

    Args:
        records: scans (several per subject allowed).
        test_fraction: in [0, 1).
        seed: NumPy seed for the shuffles.
        stratify: record attribute name(s).

    Returns:
        One split name per record, same order.
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    strata = _strata(records, stratify)
    keys = sorted(strata)
    groups = {k: sorted(strata[k]) for k in keys}
    for k in keys:
        rng.shuffle(groups[k])
    sizes = np.array([len(groups[k]) for k in keys])
    ideal = test_fraction * sizes
    n_test = np.floor(ideal).astype(int)
    if test_fraction > 0:  # every group with >= 2 subjects keeps one subject on each side
        two = sizes > 1
        n_test[two] = np.clip(n_test[two], 1, sizes[two] - 1)
    # the total wins over the raises, but never empties the test split they filled (2 subjects at 0.25)
    target = max(int(round(test_fraction * sizes.sum())), min(int(n_test.sum()), 1))
    _drop_raised(n_test, ideal, int(n_test.sum()) - target, rng)
    left = target - int(n_test.sum())
    order = sorted(range(len(keys)), key=lambda j: (-(ideal[j] - n_test[j]), rng.random()))
    for j in [j for j in order if n_test[j] < max(sizes[j] - 1, 1 if sizes[j] == 1 else 0)][: max(left, 0)]:
        n_test[j] += 1
    test_subjects: set[str] = set()
    for j, k in enumerate(keys):
        test_subjects.update(groups[k][: n_test[j]])
    return ["test" if r.subject in test_subjects else "train" for r in records]


def assign_splits(records: list[Record], test_fraction: float, seed: int,
                  stratify: str | Sequence[str] = ("site", "label")) -> list[str]:
    """Splits for a run: official ones are kept, the others drawn by :func:`subject_split`.

    A subject with an official split on any record takes it for all its records; subjects
    without one are split among themselves (stratified, seeded).

    Returns:
        One of "train" / "val" / "test" per record.
    """
    official: dict[str, str] = {}
    for r in records:
        if r.split:
            if official.setdefault(r.subject, r.split) != r.split:
                raise ValueError(f"subject {r.subject!r} has records in both {official[r.subject]!r} and {r.split!r} "
                                 "official splits; splits must be per subject")
    rest = [i for i, r in enumerate(records) if r.subject not in official]
    drawn = subject_split([records[i] for i in rest], test_fraction, seed, stratify) if rest else []
    out = [official.get(r.subject, "") for r in records]
    for i, s in zip(rest, drawn):
        out[i] = s
    return out


def leave_site_out_folds(records: list[Record]) -> list[tuple[list[int], list[int]]]:
    """One ``(train, test)`` pair of record indices per site, sites in sorted order.

    Fold *k* tests on every record of site *k* and trains on the records of the other
    sites, minus any record whose subject was also scanned at site *k* (so no subject is on
    both sides).

    Raises:
        ValueError: a record has no site, or there are fewer than two sites.
    """
    no_site = [r.path for r in records if not r.site]
    if no_site:
        raise ValueError(f"leave-site-out needs a site for every record; {len(no_site)} have none (first: {no_site[0]}); "
                         "set columns.site in the card")
    sites = sorted({r.site for r in records})
    if len(sites) < 2:
        raise ValueError(f"leave-site-out needs at least two sites, found {sites}")
    folds = []
    for site in sites:
        test = [i for i, r in enumerate(records) if r.site == site]
        held = {records[i].subject for i in test}
        train = [i for i, r in enumerate(records) if r.site != site and r.subject not in held]
        folds.append((train, test))
    return folds
