"""Inner CV folds of a classification probe when a class has a single training subject.

Such a class can be in one validation fold only (no splitter can do better), and the fold that holds it out
cannot fit it. With two classes every other fold then validates on one class (scikit-learn warns "A single
label was found") and C is chosen on that class alone: an inherent limit, left as it is. With three or more
classes the folds were unstratified (GroupKFold), so validation folds also missed classes that have several
subjects; they are now stratified, as many folds as those classes allow (the single subject keeps its own
stratum: counted with the largest class it could leave a fold without that class).
"""

import warnings

import numpy as np
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from medssl.eval import probes as P


def _classes(counts, scans_per_subject=1):
    y = np.concatenate([np.full(c, i) for i, c in enumerate(counts)])
    return np.repeat(y, scans_per_subject), np.repeat(np.arange(len(y)), scans_per_subject)


@pytest.mark.parametrize("counts", [(40, 5, 1), (30, 3, 1), (60, 6, 6, 1), (20, 10, 1, 1)])
@pytest.mark.parametrize("scans", [1, 2])
def test_every_validation_fold_holds_every_class_of_several_subjects(counts, scans):
    y, subjects = _classes(counts, scans)
    several = [c for c, n in enumerate(counts) if n >= 2]
    for seed in range(10):
        folds = P.inner_folds(y, subjects, True, seed)
        assert len(folds) >= 2
        for fit, val in folds:
            assert set(several) <= set(y[val]), (seed, sorted(set(y[val])))
            assert len(np.unique(y[fit])) >= 2 and not set(subjects[fit]) & set(subjects[val])


@pytest.mark.parametrize("counts", [(40, 5), (30, 3, 2), (8, 8, 8)])
def test_folds_where_every_class_has_several_subjects_are_unchanged(counts):
    """The stratified folds as before: scikit-learn's StratifiedGroupKFold on the classes themselves."""
    y, subjects = _classes(counts, 2)
    k = min(5, min(counts))
    for seed in (0, 3):
        expected = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(y, y, subjects)
        got = P.inner_folds(y, subjects, True, seed)
        assert [(a.tolist(), b.tolist()) for a, b in got] == [(a.tolist(), b.tolist()) for a, b in expected]


def test_a_multiclass_probe_with_a_rare_class_validates_on_every_other_class():
    """No validation fold of one class only (scikit-learn's "A single label was found") with 3 classes."""
    rng = np.random.default_rng(0)
    y, subjects = _classes((40, 5, 1))
    x = rng.normal(size=(len(y), 4)) + y[:, None]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = P.classification_probe(x, y, x[:6], y[:6], groups=subjects, n_boot=0)
    assert not [w for w in caught if "single label" in str(w.message)]
    assert res["classes"] == [0, 1, 2]


@pytest.mark.parametrize("counts", [(3, 3, 1), (4, 4, 1), (5, 5, 1), (4, 4, 4, 1), (3, 3, 3, 1), (6, 4, 1)])
def test_a_largest_class_of_as_many_subjects_as_folds_is_in_every_validation_fold(counts):
    """The single-subject class was stratified as one more subject of the largest class. When that class has as
    many subjects as there are folds (balanced groups, (3, 3, 1): 3 folds), the extra one could take a fold's
    place: for about half of the seeds a validation fold held no subject of the largest class. The single
    subject now keeps its own stratum; no "least populated class" warning leaks out of inner_folds."""
    y, subjects = _classes(counts)
    several = {c for c, n in enumerate(counts) if n >= 2}
    for seed in range(20):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            folds = P.inner_folds(y, subjects, True, seed)
        assert len(folds) == min(5, min(n for n in counts if n >= 2))
        for _, val in folds:
            assert several <= set(y[val].tolist()), (seed, sorted(set(y[val].tolist())))
