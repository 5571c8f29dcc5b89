"""The predicted-vs-true age figure pairs each prediction with the age of its own scan, whatever rows a target,
an encoder or fine-tuning keeps (scans without age but with a label, validation rows, several targets and encoders)."""

import numpy as np
import pytest
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medssl.eval import driver as D
from medssl.eval import metrics as M
from medssl.eval import plots
from medssl.eval.driver import EvalOptions, run_protocol
from medssl.eval.probes import RIDGE_ALPHAS
from medssl.eval.report import write_report


def _feats(n: int = 60, seed: int = 0) -> tuple[dict, dict]:
    """Two encoders' embeddings of the same scans (age readable from both); some scans lack age, others a label."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 80, n)
    label = (age > 50).astype(int)
    age[[3, 40, 44, 51]] = np.nan  # a training and three test scans without age (but with a label)
    label[[42, 47]] = -1  # two test scans without a label (but with an age)
    meta = {"age": age, "label": label, "site": np.zeros(n, int), "subject": np.array([f"s{i:02d}" for i in range(n)])}
    known = np.nan_to_num(age, nan=50.0)
    x = {name: np.c_[known * w, rng.normal(size=(n, 3))].astype(float) for name, w in (("pretrained", 1.0),
                                                                                           ("random init", -0.5))}
    return {name: {"features": f, **meta} for name, f in x.items()}, meta


@pytest.fixture
def panels(monkeypatch):
    seen = []
    monkeypatch.setattr(plots, "plot_pred_vs_true", lambda p, path, unit="years": seen.extend(p))
    return seen


def test_each_probe_panel_pairs_its_predictions_with_the_ages_of_the_same_test_scans(tmp_path, panels):
    """Naive recomputation: ridge (the probe's RidgeCV) fitted on the training scans with an age, predicting the test
    scans with an age; the figure's truth and prediction of each encoder equal it row for row."""
    feats, meta = _feats()
    tr, age = np.arange(60) < 40, meta["age"]
    res = run_protocol(EvalOptions(n_boot=0, map_method="none"), feats, tr, {"label": ["no", "yes"]}, 0,
                       ["label", "age"])
    write_report(tmp_path, res)
    fit, test = tr & ~np.isnan(age), ~tr & ~np.isnan(age)
    assert [title for title, _, _ in panels] == ["pretrained", "random init"]
    for (title, truth, pred) in panels:
        x = feats[title]["features"]
        naive = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS)).fit(x[fit], age[fit]).predict(x[test])
        np.testing.assert_array_equal(truth, age[test])
        np.testing.assert_allclose(pred, naive, rtol=1e-9, atol=1e-9)
        assert M.mae(truth, pred) == pytest.approx(res["probes"][title]["age"]["mae"])
        assert res["probes"][title]["age"]["mae"] < 1.0  # age is read off the embedding: a row shift costs years


def test_fine_tuned_panels_pair_each_prediction_with_the_age_fine_tuning_scored(tmp_path, panels, monkeypatch):
    """Fine-tuning (a spy predicting the scored age + the test row's index) keeps other rows per target (label: the
    scans with a label; age: those with an age) and validation rows are neither: each panel's prediction − truth is
    exactly the index of that scan among the rows with an age, so a shifted or mixed-up row would show."""
    feats, meta = _feats()
    split = np.repeat(["train", "val", "test"], [34, 6, 20])
    tr, va, age = split == "train", split == "val", meta["age"]

    def spy(encoder, train, y_train, val, y_val, test, y_test, options, groups_test, n_boot, class_names):
        rows = np.asarray(test.indices)
        if options.task == "regression":
            return {**M.regression_metrics(y_test, y_test + rows), "pred": y_test + rows}
        return {**M.classification_metrics(y_test, y_test), "chance": 0.5, "pred": np.asarray(y_test)}

    monkeypatch.setattr(D, "finetune_and_score", spy)
    res = run_protocol(EvalOptions(protocol="finetune", n_boot=0), {"pretrained": feats["pretrained"]}, tr,
                       {"label": ["no", "yes"]}, 0, ["age", "label"], {"pretrained": object()}, {"all": list(range(60))},
                       val_mask=va)
    write_report(tmp_path, res)
    test = (split == "test") & ~np.isnan(age)
    ((title, truth, pred),) = panels
    assert title == "pretrained fine-tuned"
    np.testing.assert_array_equal(truth, age[test])
    np.testing.assert_allclose(pred - truth, np.flatnonzero(test), atol=1e-9)
