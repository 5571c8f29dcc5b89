"""The hyper-parameter grids of the probes are those docs/evaluation.md states, written out here (not read from
medssl), and the ridge grid's ends are reached in their known limits."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from medssl.eval import probes as P
from test_probes import _data, _split

DOCS_RIDGE = 10.0 ** np.linspace(-2, 5, 15)  # "α ∈ 10^-2 … 10^5 (15 values)"
DOCS_C = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]  # "C ∈ 10^-3 … 10^2"
DOCS_K = [1, 3, 5, 10, 20, 50]  # "k ∈ {1, 3, 5, 10, 20, 50}"
DOCS_MLP = [1e-3, 1e-1, 10.0]  # "L2 penalty ∈ {10^-3, 10^-1, 10}"


@pytest.fixture
def grids(monkeypatch):
    """Every grid the probes hand to GridSearchCV, by parameter name."""
    seen = {}

    class Spy(GridSearchCV):
        def fit(self, x, y=None, **kw):
            for name, values in self.param_grid.items():
                seen[name.rsplit("__", 1)[-1]] = [float(v) for v in values]
            return super().fit(x, y, **kw)

    monkeypatch.setattr(P, "GridSearchCV", Spy)
    return seen


def test_each_probe_searches_the_documented_grid(grids):
    x, age, cls, subj = _data(n=160, d=6)
    tr, te = _split(len(x))
    args = dict(groups=subj[tr], n_boot=0)
    P.regression_probe(x[tr], age[tr], x[te], age[te], **args)  # two scans per subject: the grouped search
    P.classification_probe(x[tr], cls[tr], x[te], cls[te], **args)
    P.knn_probe(x[tr], cls[tr], x[te], cls[te], "classification", **args)  # inner folds of 96 rows: every k
    P.mlp_probe(x[:40], age[:40], x[te], age[te], "regression", hidden=2, **{**args, "groups": subj[:40]})
    np.testing.assert_allclose(grids["alpha"], DOCS_MLP)  # the MLP's, searched last
    np.testing.assert_allclose(grids["C"], DOCS_C)
    assert grids["n_neighbors"] == DOCS_K
    grids.clear()
    P.regression_probe(x[tr], age[tr], x[te], age[te], **args)
    np.testing.assert_allclose(grids["alpha"], DOCS_RIDGE, rtol=1e-12)


def test_the_ridge_grid_reaches_its_documented_ends():
    """One scan per subject (leave-one-out path): a noise-free linear target takes the smallest α, 10^-2, and its
    test MAE is ~0 (test rows = training rows); a target independent of the features takes the largest, 10^5."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 5))
    y = 40 + x @ np.array([3.0, -2.0, 1.0, 0.5, 4.0])
    res = P.regression_probe(x, y, x, y, n_boot=0)
    assert res["alpha"] == pytest.approx(1e-2) and res["mae"] < 0.05
    noise = P.regression_probe(x, rng.normal(50, 10, 60), x, y, n_boot=0)
    assert noise["alpha"] == pytest.approx(1e5)



def test_knn_takes_k_1_when_each_validation_row_repeats_a_training_row():
    """Validation rows = training rows + tiny noise: the single nearest neighbour is exact, any k > 1 is not."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(40, 5)), rng.uniform(20, 80, 40)
    res = P.knn_probe(x, y, x[:5], y[:5], "regression", n_boot=0, val=(x + 1e-6 * rng.normal(size=x.shape), y))
    assert res["k"] == 1 and np.allclose(res["pred"], y[:5])


def test_ridge_alpha_with_repeated_scans_is_chosen_on_subject_grouped_folds():
    """Two near-identical scans per subject and more features than subjects: row-wise leave-one-out would find each
    scan's twin in the fit and choose a small α; the probe chooses α on subject-grouped folds, as a naive loop over
    the documented grid (MAE) does."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from eval_helpers import twin_scan_cohort

    x, age, _, subj = twin_scan_cohort(30, 80, seed=1)
    folds = P.inner_folds(age, subj, False, 0)
    assert all(not set(subj[f]) & set(subj[v]) for f, v in folds)
    mae = [np.mean([np.abs(make_pipeline(StandardScaler(), Ridge(alpha=a)).fit(x[f], age[f]).predict(x[v]) - age[v]).mean()
                    for f, v in folds]) for a in DOCS_RIDGE]
    res = P.regression_probe(x, age, x[:4], age[:4], groups=subj, n_boot=0)
    assert res["alpha"] == pytest.approx(DOCS_RIDGE[int(np.argmin(mae))])
    assert res["selection"] == f"cross-validation on train ({len(folds)} folds)"
    rowwise = P.regression_probe(x, age, x[:4], age[:4], n_boot=0)  # what ignoring the subjects would choose
    assert rowwise["alpha"] != pytest.approx(res["alpha"])


def test_the_mlp_regression_probe_is_the_documented_network_on_standardised_ages():
    """256 ReLU units, Adam, 300 epochs, seeded, features and ages standardised with training statistics: the
    probe's test predictions equal scikit-learn's network of that description refitted with the chosen penalty."""
    import warnings

    from sklearn.compose import TransformedTargetRegressor
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, age, _, _ = _data(n=60, d=5, seed=2)
    fit, val, te = slice(0, 30), slice(30, 45), slice(45, 60)
    res = P.mlp_probe(x[fit], age[fit], x[te], age[te], "regression", seed=3, n_boot=0, val=(x[val], age[val]))
    ref = TransformedTargetRegressor(make_pipeline(StandardScaler(), MLPRegressor(
        hidden_layer_sizes=(256,), activation="relu", solver="adam", max_iter=300, alpha=res["alpha"], random_state=3)),
        transformer=StandardScaler())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(x[fit], age[fit])
    np.testing.assert_allclose(res["pred"], ref.predict(x[te]), rtol=1e-10)


def test_the_mlp_classification_probe_is_the_documented_network_on_standardised_features():
    """Features on scales from 1 to 1000: the probe's test AUC and classes equal those of scikit-learn's standardised
    256-unit network refitted with the chosen penalty (unstandardised, the network would see other inputs)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import roc_auc_score
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(5)
    cls = rng.integers(0, 2, 60)
    x = rng.normal(size=(60, 5))
    x[:, 0] += 0.8 * cls
    x = 300 + x * np.array([1.0, 10.0, 100.0, 1000.0, 50.0])  # features on very different scales
    fit, val, te = slice(0, 30), slice(30, 45), slice(45, 60)
    res = P.mlp_probe(x[fit], cls[fit], x[te], cls[te], "classification", seed=1, n_boot=0, val=(x[val], cls[val]))
    ref = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(256,), max_iter=300, alpha=res["alpha"],
                                                        random_state=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(x[fit], cls[fit])
    np.testing.assert_array_equal(res["pred"], ref.predict(x[te]))
    assert res["auc"] == pytest.approx(roc_auc_score(cls[te], ref.predict_proba(x[te])[:, 1]), rel=1e-12)
