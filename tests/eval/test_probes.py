"""Probes: they learn what is there, and they never see test rows while fitting."""

import numpy as np
import pytest
import sklearn.linear_model
import sklearn.pipeline
import sklearn.preprocessing
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medssl.eval import probes as P


def _data(n=120, d=12, seed=0, classes=3):
    """Embeddings with age along one direction and class along another; 2 scans per subject."""
    rng = np.random.default_rng(seed)
    subjects = np.repeat(np.arange(n // 2), 2)
    age = rng.uniform(20, 80, n // 2)[subjects]
    cls = rng.integers(0, classes, n // 2)[subjects]
    x = rng.normal(0, 1, (n, d))
    x[:, 0] += (age - 50) / 10
    x[np.arange(n), 1 + cls] += 3.0  # one direction per class
    return x, age, cls, subjects


def _split(n, seed=0):
    """Subject-level split: the last quarter of subjects is the test set."""
    tr = np.arange(n) < int(0.75 * n) // 2 * 2
    return tr, ~tr


def test_regression_probe_learns_age_and_equals_an_independent_pipeline():
    x, age, _, subj = _data()
    tr, te = _split(len(x))
    res = P.regression_probe(x[tr], age[tr], x[te], age[te], n_boot=100)
    assert res["mae"] < 0.5 * P.mean_predictor_mae(age[tr], age[te])
    assert res["mae_ci"][0] < res["mae"] < res["mae_ci"][1]
    ref = make_pipeline(StandardScaler(), sklearn.linear_model.RidgeCV(alphas=P.RIDGE_ALPHAS)).fit(x[tr], age[tr])
    np.testing.assert_allclose(res["pred"], ref.predict(x[te]), rtol=1e-10)
    grouped = P.regression_probe(x[tr], age[tr], x[te], age[te], groups=subj[tr], n_boot=0, bias_correction=True)
    assert grouped["mae"] < 0.5 * P.mean_predictor_mae(age[tr], age[te]) and grouped["alpha"] in P.RIDGE_ALPHAS
    assert "corrected_gap_std" in grouped["brain_age_gap"]


@pytest.mark.parametrize("probe", ["logistic", "knn", "mlp"])
def test_classification_probes_learn_the_class(probe):
    x, _, cls, subj = _data()
    tr, te = _split(len(x))
    args = (x[tr], cls[tr], x[te], cls[te])
    res = {"logistic": lambda: P.classification_probe(*args, groups=subj[tr], n_boot=50),
           "knn": lambda: P.knn_probe(*args, "classification", groups=subj[tr], n_boot=50),
           "mlp": lambda: P.mlp_probe(*args, "classification", groups=subj[tr], n_boot=0, hidden=16)}[probe]()
    assert res["balanced_accuracy"] > 0.7 and res["chance"] == pytest.approx(1 / 3)
    assert np.sum(res["confusion"]) == te.sum()


@pytest.mark.parametrize("probe", ["logistic", "knn"])
def test_a_class_only_in_the_test_rows_has_its_confusion_row(probe):
    """Test rows of a class the probe never trained on (a small site whose subjects all fell into the test split)
    count in balanced accuracy, so they are rows of the confusion matrix too: its sum is the number of test rows,
    and its per-row recalls average to the balanced accuracy (sklearn's confusion matrix over all labels)."""
    from sklearn import metrics as skm

    x, _, cls, subj = _data()
    tr, te = _split(len(x))
    codes = np.array(["site-A", "site-B", "site-C"])[cls]
    tr = tr & (codes != "site-C")  # site-C: test rows only
    args = (x[tr], codes[tr], x[te], codes[te])
    res = (P.classification_probe(*args, groups=subj[tr], n_boot=0) if probe == "logistic"
           else P.knn_probe(*args, "classification", groups=subj[tr], n_boot=0))
    assert res["classes"] == ["site-A", "site-B", "site-C"] and res["chance"] == pytest.approx(1 / 2)
    cm = np.asarray(res["confusion"])
    assert cm.sum() == te.sum() and cm[2].sum() == np.sum(codes[te] == "site-C") > 0 and cm[:, 2].sum() == 0
    assert cm.tolist() == skm.confusion_matrix(codes[te], res["pred"], labels=res["classes"]).tolist()
    assert res["balanced_accuracy"] == pytest.approx(np.mean(np.diag(cm) / cm.sum(1)))


def test_inner_folds_never_split_a_subject():
    _, _, cls, subj = _data()
    for classification in (False, True):
        for fit, val in P.inner_folds(cls, subj, classification, seed=1):
            assert not set(subj[fit]) & set(subj[val])


class _FitSpy:
    """Records the rows that reach fit() of every pipeline and of the scaler (the first step of every
    probe, so it sees raw rows): wraps fit on the classes themselves, so clones made by
    GridSearchCV / cross_val_predict are spied on too."""

    CLASSES = (sklearn.pipeline.Pipeline, sklearn.preprocessing.StandardScaler)

    def __init__(self, monkeypatch):
        self.seen: list[np.ndarray] = []
        for cls in self.CLASSES:
            original = cls.fit

            def fit(est, X, *a, _orig=original, **k):
                self.seen.append(np.asarray(X).copy())
                return _orig(est, X, *a, **k)

            monkeypatch.setattr(cls, "fit", fit)


@pytest.mark.parametrize("probe", ["ridge", "ridge_grouped", "logistic", "knn_reg", "knn_cls", "mlp_reg", "multilabel"])
def test_fit_only_ever_receives_training_rows(monkeypatch, probe):
    x, age, cls, subj = _data(n=60)
    tr, te = _split(len(x))
    spy = _FitSpy(monkeypatch)
    ml = np.c_[cls == 1, cls == 2].astype(int)
    run = {"ridge": lambda: P.regression_probe(x[tr], age[tr], x[te], age[te], n_boot=0, bias_correction=True),
           "ridge_grouped": lambda: P.regression_probe(x[tr], age[tr], x[te], age[te], groups=subj[tr], n_boot=0),
           "logistic": lambda: P.classification_probe(x[tr], cls[tr], x[te], cls[te], groups=subj[tr], n_boot=0),
           "knn_reg": lambda: P.knn_probe(x[tr], age[tr], x[te], age[te], "regression", n_boot=0),
           "knn_cls": lambda: P.knn_probe(x[tr], cls[tr], x[te], cls[te], "classification", n_boot=0),
           "mlp_reg": lambda: P.mlp_probe(x[tr], age[tr], x[te], age[te], "regression", n_boot=0, hidden=8),
           "multilabel": lambda: P.multilabel_probe(x[tr], ml[tr], x[te], ml[te], n_boot=0)}[probe]
    run()
    assert spy.seen, "the spy saw no fit call"
    train_rows = {r.tobytes() for r in x[tr]}
    test_rows = {r.tobytes() for r in x[te]}
    for X in spy.seen:
        if X.ndim == 1 or X.shape[1] != x.shape[1]:  # the target scaler of the MLP regressor sees y, not x
            continue
        rows = {r.tobytes() for r in X}
        assert not rows & test_rows, "a test row reached fit()"
        assert rows <= train_rows


def test_shuffled_test_labels_give_chance_and_a_leaky_probe_would_not():
    """With test labels shuffled, an honest probe scores at chance; one fitted on test rows does not."""
    x, age, cls, _ = _data(n=400, seed=3)
    tr, te = _split(len(x))
    rng = np.random.default_rng(0)
    cls_shuf, age_shuf = cls[te].copy(), age[te].copy()
    rng.shuffle(cls_shuf)
    rng.shuffle(age_shuf)
    honest = P.classification_probe(x[tr], cls[tr], x[te], cls_shuf, n_boot=0)["balanced_accuracy"]
    assert abs(honest - 1 / 3) < 0.12
    reg = P.regression_probe(x[tr], age[tr], x[te], age_shuf, n_boot=0)
    assert reg["r2"] < 0.05 and abs(reg["pearson_r"]) < 0.25
    leaky = P.classification_probe(x[te], cls_shuf, x[te], cls_shuf, n_boot=0)["balanced_accuracy"]
    assert leaky > honest + 0.1  # the detector would catch a probe that fits on test rows


def test_shuffled_training_ages_give_no_skill():
    """Ages shuffled among training subjects carry no signal: the probe must not beat the mean predictor."""
    x, age, _, subj = _data(n=400, seed=4)
    tr, te = _split(len(x))
    rng = np.random.default_rng(1)
    perm = rng.permutation(np.unique(subj[tr]))  # shuffle whole subjects: both scans keep one (wrong) age
    shuffled = age[tr].copy()
    for s_old, s_new in zip(np.unique(subj[tr]), perm):
        shuffled[subj[tr] == s_old] = age[subj == s_new][0]
    res = P.regression_probe(x[tr], shuffled, x[te], age[te], groups=subj[tr], n_boot=0)
    assert res["r2"] < 0.05 and res["mae"] > 0.9 * P.mean_predictor_mae(shuffled, age[te])


def test_multilabel_findings_from_label_strings_are_probed_per_finding():
    from medssl.eval.driver import multilabel_matrix
    from medssl.eval.protocols import probe_targets

    y, names = multilabel_matrix(["Effusion|Mass", "No Finding", "", "Mass"])
    assert names == ["Effusion", "Mass"] and y.tolist() == [[1, 1], [0, 0], [-1, -1], [0, 1]]
    x, _, cls, subj = _data(n=120, seed=5)
    labels = ["|".join(n for n, on in (("Effusion", c == 1), ("Mass", c == 2)) if on) or "No Finding" for c in cls]
    y, names = multilabel_matrix(labels)
    tr, _ = _split(len(x))
    res = probe_targets({"features": x, "label": y, "subject": subj}, tr, ["label"], n_boot=0,
                        names={"label": names})["label"]
    assert set(res["per_class"]) == {"Effusion", "Mass"} and res["auc_macro"] > 0.9


def test_a_class_with_one_training_subject_still_gets_a_logistic_probe():
    """A rare diagnosis (or a small site) with a single training subject: the inner fold that holds it
    out leaves one class to fit, which logistic regression refuses. Such folds are not used, so the
    other folds choose C; every fold that is used trains on both classes."""
    x, _, _, subj = _data(n=80, classes=2)
    y = np.zeros(len(x), int)
    y[subj == 3] = 1  # both scans of one subject
    x[:, 1] += 3.0 * y
    tr, te = _split(len(x))
    y[te & (subj % 7 == 0)] = 1
    folds = P.inner_folds(y[tr], subj[tr], True)
    assert folds and all(len(np.unique(y[tr][fit])) == 2 for fit, _ in folds)
    res = P.classification_probe(x[tr], y[tr], x[te], y[te], groups=subj[tr], n_boot=0)
    assert res["classes"] == [0, 1] and 0.0 <= res["balanced_accuracy"] <= 1.0
    with pytest.raises(ValueError, match="single class"):
        P.inner_folds(np.r_[0, 0, 1, 1], np.r_[0, 0, 1, 1], True)


def test_a_rare_finding_does_not_void_the_choice_of_c():
    """Chest X-ray findings are often rare (Hernia: ~0.2 %). An inner fold without a positive of one
    finding cannot score that finding; the fold's macro AUC is then the mean over the findings it can
    score (as :func:`medssl.eval.metrics.multilabel_metrics`), not undefined for every C — which left
    the first C of the grid (the strongest penalty) chosen by default. Checked against a naive loop."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    n, n_train = 200, 150
    x = rng.normal(size=(n, 10))
    y = np.zeros((n, 3), int)
    y[:, 0] = x[:, 0] + rng.normal(0, 0.5, n) > 0
    y[:, 1] = x[:, 1] + x[:, 3] * 0.5 + rng.normal(0, 0.5, n) > 0
    y[[3, 50], 2] = 1  # two positives of the rare finding among the training rows
    x[[3, 50], 2] += 3
    xt, yt = x[:n_train], y[:n_train]
    folds = P.inner_folds(yt[:, 0], None, False, 0)
    assert any(len(np.unique(yt[va, 2])) < 2 for _, va in folds)  # the situation under test
    mean_auc = []
    for c in P.LOGISTIC_CS:
        per_fold = []
        for fit, va in folds:
            proba = np.column_stack([make_pipeline(StandardScaler(), sklearn.linear_model.LogisticRegression(C=c, max_iter=2000))
                                     .fit(xt[fit], yt[fit, k]).predict_proba(xt[va])[:, 1] for k in range(3)])
            per_fold.append(np.mean([roc_auc_score(yt[va, k], proba[:, k]) for k in range(3)
                                     if len(np.unique(yt[va, k])) == 2]))
        mean_auc.append(np.mean(per_fold))
    res = P.multilabel_probe(xt, yt, x[n_train:], y[n_train:], n_boot=0)
    assert res["C"] == P.LOGISTIC_CS[int(np.argmax(mean_auc))] != P.LOGISTIC_CS[0]


def test_a_single_finding_is_scored_on_its_own_probability():
    """With one finding column, scikit-learn's one-vs-rest returns (N, 2) probabilities (absent, present);
    the AUC must use 'present' (it used 'absent': AUC 1 − AUC), in the choice of C and on the test rows."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5))
    y = (x[:, 0] + rng.normal(0, 0.5, 120) > 0).astype(int)[:, None]
    res = P.multilabel_probe(x[:90], y[:90], x[90:], y[90:], n_boot=0)
    assert res["pred"].shape == (30, 1)
    assert res["auc_macro"] == pytest.approx(roc_auc_score(y[90:, 0], res["pred"][:, 0])) and res["auc_macro"] > 0.8


def test_two_findings_choose_c_on_their_macro_auc():
    """With exactly two findings, the one-vs-rest classes are [0, 1], which scikit-learn's scorer took
    for a binary task and cut the (N, 2) probabilities to one column: every fold scored NaN and the
    first C of the grid (the strongest penalty) won by default. Checked against a naive loop."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    n, n_train = 160, 120
    x = rng.normal(size=(n, 8))
    y = np.stack([x[:, 0] + x[:, 2] + rng.normal(0, 1, n) > 0,
                  x[:, 1] - x[:, 3] + rng.normal(0, 1, n) > 0], axis=1).astype(int)
    xt, yt = x[:n_train], y[:n_train]
    folds = P.inner_folds(yt[:, 0], None, False, 0)
    mean_auc = []
    for c in P.LOGISTIC_CS:
        per_fold = []
        for fit, va in folds:
            proba = np.column_stack([make_pipeline(StandardScaler(), sklearn.linear_model.LogisticRegression(C=c, max_iter=2000))
                                     .fit(xt[fit], yt[fit, k]).predict_proba(xt[va])[:, 1] for k in range(2)])
            per_fold.append(np.mean([roc_auc_score(yt[va, k], proba[:, k]) for k in range(2)]))
        mean_auc.append(np.mean(per_fold))
    res = P.multilabel_probe(xt, yt, x[n_train:], y[n_train:], n_boot=0)
    assert res["C"] == P.LOGISTIC_CS[int(np.argmax(mean_auc))] != P.LOGISTIC_CS[0]
    assert res["pred"].shape == (n - n_train, 2)


def _naive_cosine_knn(x_fit, y_fit, x_query, k):
    """Standardise with the fitting rows' statistics, project onto the unit sphere, average the k
    most cosine-similar fitting rows' targets (a plain numpy loop, no scikit-learn)."""
    mu, sd = x_fit.mean(0), x_fit.std(0)
    a, b = (x_fit - mu) / sd, (x_query - mu) / sd
    a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.array([y_fit[np.argsort(-(a @ q), kind="stable")[:k]].mean() for q in b])


def test_knn_regression_is_a_cosine_neighbourhood_mean_with_k_chosen_on_validation():
    """Predictions equal the naive cosine k-NN mean of the training ages, and k is the one with the
    lowest naive validation MAE (a scale along one feature would move Euclidean, not cosine, neighbours)."""
    x, age, _, _ = _data(n=200, d=6, seed=7)
    x[:, 3] *= 40.0  # a loud, uninformative feature: only standardisation keeps it from dominating
    fit, val, te = np.arange(200) < 120, (np.arange(200) >= 120) & (np.arange(200) < 160), np.arange(200) >= 160
    res = P.knn_probe(x[fit], age[fit], x[te], age[te], "regression", n_boot=0, val=(x[val], age[val]))
    val_mae = {k: np.abs(_naive_cosine_knn(x[fit], age[fit], x[val], k) - age[val]).mean() for k in P.KNN_KS}
    assert res["k"] == min(val_mae, key=val_mae.get)
    np.testing.assert_allclose(res["pred"], _naive_cosine_knn(x[fit], age[fit], x[te], res["k"]), rtol=1e-12)


def _naive_percentiles(values):
    values = np.asarray(values, float)
    return list(np.percentile(values[np.isfinite(values)], [2.5, 97.5]))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # sklearn, on resamples
def test_classification_report_equals_an_independent_logistic_fit_and_naive_bootstrap():
    """Class codes that are not 0..K-1, a test split without one training class: predictions, confusion,
    chance (1 / #training classes), F1 / BAcc intervals and the binary AUC interval from plain loops."""
    from sklearn import metrics as skm

    x, _, cls, subj = _data()
    tr, te = _split(len(x))
    codes = np.array([2, 5, 9])[cls]
    te = te & (codes != 9)  # class 9 is trained on but absent from the test rows
    res = P.classification_probe(x[tr], codes[tr], x[te], codes[te], groups=subj[tr], n_boot=60, seed=3)
    ref = make_pipeline(StandardScaler(), sklearn.linear_model.LogisticRegression(C=res["C"], max_iter=2000))
    pred = ref.fit(x[tr], codes[tr]).predict(x[te])
    np.testing.assert_array_equal(res["pred"], pred)
    assert res["classes"] == [2, 5, 9] and res["chance"] == pytest.approx(1 / 3)
    assert res["confusion"] == skm.confusion_matrix(codes[te], pred, labels=[2, 5, 9]).tolist()  # rows: true
    draws = np.random.default_rng(3).integers(0, te.sum(), size=(60, te.sum()))
    y = codes[te]
    assert res["balanced_accuracy_ci"] == pytest.approx(_naive_percentiles(
        [skm.balanced_accuracy_score(y[d], pred[d]) for d in draws]))
    assert res["f1_macro_ci"] == pytest.approx(_naive_percentiles(
        [skm.f1_score(y[d], pred[d], average="macro") for d in draws]))
    knn = P.knn_probe(x[tr], codes[tr], x[te], codes[te], "classification", groups=subj[tr], n_boot=0)
    assert set(knn["pred"]) <= {2, 5, 9}  # class codes, not column indices
    assert knn["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, knn["pred"]))

    binary = P.classification_probe(x[tr], codes[tr] == 5, x[te], codes[te] == 5, groups=subj[tr], n_boot=60, seed=3)
    score = ref.set_params(logisticregression__C=binary["C"]).fit(x[tr], codes[tr] == 5).predict_proba(x[te])[:, 1]
    assert binary["auc"] == pytest.approx(skm.roc_auc_score(y == 5, score))
    assert binary["auc_ci"] == pytest.approx(_naive_percentiles(
        [skm.roc_auc_score(y[d] == 5, score[d]) if len(set(y[d])) == 2 else np.nan for d in draws]))


def test_regression_report_intervals_bias_fit_and_mean_floor_from_plain_formulas():
    """RMSE / MAE intervals from a naive bootstrap loop; the brain-age bias (α, β) fitted on out-of-fold
    predictions of the training rows (not the refitted model's in-sample ones); the mean-predictor floor."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_predict

    x, age, _, subj = _data()
    tr, te = _split(len(x))
    res = P.regression_probe(x[tr], age[tr], x[te], age[te], groups=subj[tr], n_boot=60, seed=4, bias_correction=True)
    pred, y = res["pred"], age[te]
    draws = np.random.default_rng(4).integers(0, len(y), size=(60, len(y)))
    assert res["rmse_ci"] == pytest.approx(_naive_percentiles([np.sqrt(np.mean((y[d] - pred[d]) ** 2)) for d in draws]))
    assert res["mae_ci"] == pytest.approx(_naive_percentiles([np.mean(np.abs(y[d] - pred[d])) for d in draws]))
    oof = cross_val_predict(make_pipeline(StandardScaler(), RidgeCV(alphas=P.RIDGE_ALPHAS)), x[tr], age[tr],
                            cv=P.inner_folds(age[tr], subj[tr], False, 4))
    slope, intercept = np.polyfit(age[tr], oof, 1)
    gap = res["brain_age_gap"]
    assert (gap["bias_slope"], gap["bias_intercept"]) == pytest.approx((slope, intercept))
    np.testing.assert_allclose(gap["corrected_gap"], pred - (slope * y + intercept))
    assert P.mean_predictor_mae([1.0, 2.0, 9.0], [4.0, 4.0]) == 0.0  # the mean (4), not the median (2)
