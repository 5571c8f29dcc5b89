"""Probe hyper-parameter choices and kNN / MLP details, each checked against a naive loop or a known limit."""

import numpy as np
import sklearn.linear_model
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medssl.eval import probes as P
from test_probes import _data, _split


def test_c_is_chosen_on_the_balanced_accuracy_of_the_inner_folds():
    """A rare class (20 % of the subjects): the C with the best plain accuracy predicts the majority class (the
    strongest penalty), the documented score is balanced accuracy. C equals a naive loop over the same folds."""
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(1)
    subj = np.repeat(np.arange(80), 2)
    y = (rng.random(80) < 0.2).astype(int)[subj]
    x = rng.normal(size=(160, 10))
    x[:, 0] += 0.8 * y
    folds = P.inner_folds(y, subj, True, 0)
    mean_ba = [np.mean([balanced_accuracy_score(y[va], make_pipeline(StandardScaler(), sklearn.linear_model.LogisticRegression(
        C=c, max_iter=2000)).fit(x[fit], y[fit]).predict(x[va])) for fit, va in folds]) for c in P.LOGISTIC_CS]
    res = P.classification_probe(x, y, x[:4], y[:4], groups=subj, n_boot=0)
    assert res["C"] == P.LOGISTIC_CS[int(np.argmax(mean_ba))] == 1.0


def test_inner_folds_are_seeded_and_stratified_by_subjects():
    """Grouped folds: every row in exactly one validation fold, another seed another partition (GroupKFold alone
    is deterministic). Classes: folds are counted in subjects, so a class of 2 subjects with 3 scans each gives
    2 folds, each validating on both classes (counted in scans it would allow 5, three without that class)."""
    _, _, _, subj = _data(n=60)
    y = np.arange(60, dtype=float)
    partitions = []
    for seed in (0, 1):
        folds = P.inner_folds(y, subj, False, seed)
        assert sorted(np.concatenate([va for _, va in folds]).tolist()) == list(range(60))
        partitions.append(sorted(sorted(va.tolist()) for _, va in folds))
    assert partitions[0] != partitions[1]
    subjects = np.r_[np.repeat([0, 1], 3), np.arange(2, 12)]
    cls = np.r_[np.ones(6, int), np.zeros(10, int)]
    folds = P.inner_folds(cls, subjects, True, 0)
    assert len(folds) == 2 and all(set(cls[va]) == {0, 1} for _, va in folds)


def _naive_cosine_neighbours(x_fit, x_query, k):
    """Indices of the k most cosine-similar fitting rows of each query after standardisation (plain numpy)."""
    mu, sd = x_fit.mean(0), x_fit.std(0)
    a, b = (x_fit - mu) / sd, (x_query - mu) / sd
    a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.array([np.argsort(-(a @ q), kind="stable")[:k] for q in b])


def test_knn_classification_is_an_unweighted_majority_vote_with_k_chosen_on_validation():
    """Each neighbour has one vote (not weighted by its distance), ties to the smallest class; k is the one with
    the best naive validation balanced accuracy (first on ties)."""
    from sklearn.metrics import balanced_accuracy_score

    x, _, cls, _ = _data(n=200, d=6, seed=8)
    x[:, 1:4] *= 0.25  # a weak class signal: neighbourhoods are mixed, so the vote's weighting matters
    fit, val, te = np.arange(200) < 120, (np.arange(200) >= 120) & (np.arange(200) < 160), np.arange(200) >= 160

    def vote(x_query, k):
        return np.array([np.bincount(cls[fit][nb], minlength=3).argmax() for nb in _naive_cosine_neighbours(x[fit], x_query, k)])

    res = P.knn_probe(x[fit], cls[fit], x[te], cls[te], "classification", n_boot=0, val=(x[val], cls[val]))
    val_ba = [balanced_accuracy_score(cls[val], vote(x[val], k)) for k in P.KNN_KS]
    assert res["k"] == P.KNN_KS[int(np.argmax(val_ba))]
    np.testing.assert_array_equal(res["pred"], vote(x[te], res["k"]))


def test_knn_k_grid_reaches_the_number_of_fitting_rows_and_never_exceeds_an_inner_fold():
    """k may equal the number of training rows (with validation rows: all of them; it predicts their mean, the
    best possible when every validation target is that mean), and with cross-validation never exceeds the
    smallest inner training fold (12 rows in 5 folds: 9 or 10 rows, so k = 10 is left out)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 4)), rng.uniform(20, 80, 30)
    res = P.knn_probe(x[:10], y[:10], x[20:], y[20:], "regression", n_boot=0, val=(x[10:20], np.full(10, y[:10].mean())))
    assert res["k"] == 10 and np.allclose(res["pred"], y[:10].mean())
    cv = P.knn_probe(x[:12], y[:12], x[20:], y[20:], "regression", n_boot=0)
    assert min(len(fit) for fit, _ in P.inner_folds(y[:12], None, False, 0)) == 9 and cv["k"] <= 9


def test_the_mlp_probe_is_seeded():
    """Same seed, same predictions; another seed, another initialisation (the few-label curves average seeds)."""
    x, age, _, subj = _data(n=60)
    tr, te = _split(len(x))

    def run(seed):
        return P.mlp_probe(x[tr], age[tr], x[te], age[te], "regression", seed=seed, groups=subj[tr], n_boot=0, hidden=8)["pred"]

    np.testing.assert_array_equal(run(0), run(0))
    assert not np.allclose(run(0), run(1))
