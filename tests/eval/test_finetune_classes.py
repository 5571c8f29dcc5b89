"""Fine-tuned classifiers report as the linear probe does when a class code is absent from the training rows
(a class seen only in the test rows, or a code no training scan has): the head's output for such a code was never
trained towards, so it is no choice; chance is 1 / #training classes; ``classes`` and ``confusion`` are given."""

import numpy as np
import pytest
from eval_helpers import make_image_dataset, make_tiny_encoder
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from medssl.eval.driver import EvalOptions, run_protocol
from medssl.eval.features import extract_features
from medssl.eval.finetune import FinetuneOptions, finetune, finetune_and_score, predict
from medssl.eval.report import summary_rows


@pytest.fixture(scope="module")
def data():
    """Age tertiles as classes 0, 1, 2; the training and validation rows hold no class 1 (the test rows do)."""
    ds, age = make_image_dataset(60, seed=1)
    y = np.digitize(age, np.quantile(age, [1 / 3, 2 / 3]))
    keep = [i for i in range(48) if y[i] != 1]
    tr, va = [i for i in keep if i < 36], [i for i in keep if i >= 36]
    return [ds[i] for i in tr], y[tr], [ds[i] for i in va], y[va], ds[48:], y[48:]


def test_a_code_absent_from_training_is_no_prediction_and_chance_counts_the_training_classes(data):
    """Naive recomputation from the same (deterministic) fine-tuned model: probabilities of the training classes
    (0, 2) renormalised, the prediction their argmax; balanced accuracy (scikit-learn), binary AUC of class 2 against
    every other test row, chance 1/2, classes [0, 2, 1] and the confusion matrix as the probe orders them."""
    tr, ytr, va, yva, te, yte = data
    assert set(ytr) == set(yva) == {0, 2} and 1 in yte
    opts = FinetuneOptions(task="classification", mode="head", epochs=2, lr_head=1e-2, batch_size=8, seed=2)
    out = finetune_and_score(make_tiny_encoder(), tr, ytr, va, yva, te, yte, opts, n_boot=50)
    proba = predict(finetune(make_tiny_encoder(), tr, ytr, va, yva, opts), te)[:, [0, 2]]
    proba = proba / proba.sum(1, keepdims=True)
    pred = np.array([0, 2])[proba.argmax(1)]
    np.testing.assert_array_equal(out["pred"], pred)
    assert out["chance"] == 0.5 and out["classes"] == [0, 2, 1]
    assert out["confusion"] == [[int(np.sum((yte == a) & (pred == b))) for b in (0, 2, 1)] for a in (0, 2, 1)]
    assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(yte, pred))
    assert out["auc"] == pytest.approx(roc_auc_score(yte == 2, proba[:, 1]))
    assert {"balanced_accuracy_ci", "f1_macro_ci", "auc_ci"} <= set(out)


def test_the_probe_and_the_fine_tuned_model_state_the_same_chance_for_the_same_split(data):
    """Through the driver (``medssl evaluate``'s path): on one split whose training rows lack class 1, the probe's
    and the fine-tuned model's balanced-accuracy rows name the same chance (1/2), and both give the test-only class
    its row in the confusion matrix (every test scan counted once)."""
    ds, age = make_image_dataset(48)
    y = np.where(age > 50, 2, 0)
    y[30:36] = 1  # class 1: test rows only
    enc = make_tiny_encoder()
    feats = {"features": extract_features(enc, ds)["features"], "age": age, "label": y,
             "site": np.zeros(48, int), "subject": np.array([f"s{i:02d}" for i in range(48)])}
    tr, vocab = np.arange(48) < 30, {"label": ["a", "b", "c"], "site": ["x"]}
    rows, confusion = {}, {}
    for protocol, section in (("default", "probes"), ("finetune", "finetune")):
        opts = EvalOptions(protocol=protocol, n_boot=0, map_method="none",
                           finetune=FinetuneOptions(mode="head", epochs=2, lr_head=1e-2, batch_size=8))
        res = run_protocol(opts, {"pretrained": feats}, tr, vocab, 0, ["label"], {"pretrained": enc}, {"all": ds})
        rows[protocol] = [m for _, m, _ in summary_rows(res) if "balanced acc." in m]
        confusion[protocol] = res[section]["pretrained"]["label"].get("confusion")
    assert rows["default"] == ["label balanced acc. (chance 0.50) ↑"]
    assert rows["finetune"] == ["label balanced acc. (chance 0.50) ↑ (fine-tuned)"]
    for cm in map(np.asarray, confusion.values()):
        assert cm.shape == (3, 3) and cm.sum() == 18 and cm[2].sum() == 6 and cm[:, 2].sum() == 0


def test_fine_tuning_few_label_curves_state_the_probes_chance_and_the_figure_keeps_its_line(tmp_path, monkeypatch):
    """--fewshot-finetune: the fine-tuned curve of a class target states chance (1 / #training classes, as the probe
    curve) in its rows, and the figure, which took the chance line from the last curve drawn (the fine-tuned one),
    still draws it at 1/3."""
    from matplotlib.figure import Figure

    from medssl.eval import driver as D
    from medssl.eval.report import write_report

    monkeypatch.setattr(D, "finetune_and_score", lambda *a, **k: {"balanced_accuracy": 0.5})
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    feats = {"features": rng.normal(size=(60, 4)) + y[:, None], "label": y, "site": np.zeros(60, int),
             "subject": np.array([f"s{i:02d}" for i in range(60)])}
    tr = np.arange(60) < 40
    opts = EvalOptions(protocol="fewshot", n_boot=0, map_method="none", fewshot_finetune=True, fractions=(0.5, 1.0),
                       seeds=(0,))
    res = run_protocol(opts, {"e": feats}, tr, {"label": ["a", "b", "c"]}, 0, ["label"], {"e": object()},
                       {"all": list(range(60))})
    assert res["fewshot"]["e fine-tuned"]["label"]["chance"] == res["fewshot"]["e"]["label"]["chance"] == 1 / 3
    assert all("(chance 0.33)" in m for enc, m, _ in summary_rows(res) if enc == "e fine-tuned")
    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, *a, **k: (saved.append(fig), open(path, "wb").close()))
    write_report(tmp_path, res)
    (ax,) = [ax for fig in saved for ax in fig.axes if ax.get_xlabel().startswith("labelled training")]
    assert [tuple(line.get_ydata()) for line in ax.get_lines() if line.get_label() == "chance"] == [(1 / 3, 1 / 3)]


def test_a_target_whose_training_rows_hold_one_class_is_not_fine_tuned_and_the_reason_is_given(monkeypatch):
    """The training scans hold class 0 only (the test scans 0 and 1): the probe leaves the target out with the reason;
    fine-tuning (also its few-label curves) did run, a one-output head, and reported 'balanced acc. (chance 1.00)
    0.500'. It is now left out as the probe leaves it, with the same reason, and no fine-tuning run is made."""
    from medssl.eval import driver as D

    runs = []
    monkeypatch.setattr(D, "finetune_and_score", lambda *a, **k: runs.append(1) or {"balanced_accuracy": 0.5})
    y = (np.arange(48) >= 40).astype(int)
    feats = {"features": np.random.default_rng(0).normal(size=(48, 4)), "label": y, "site": np.zeros(48, int),
             "subject": np.array([f"s{i:02d}" for i in range(48)])}
    tr, why = np.arange(48) < 30, "the training scans hold a single class"
    for protocol in ("default", "finetune", "fewshot"):
        opts = EvalOptions(protocol=protocol, n_boot=0, map_method="none", fewshot_finetune=True, seeds=(0,))
        res = run_protocol(opts, {"e": feats}, tr, {"label": ["a", "b"]}, 0, ["label"], {"e": object()},
                           {"all": list(range(48))})
        assert res["skipped_targets"]["label"].startswith(why) and summary_rows(res) == []
    assert runs == []


def test_the_probes_auc_with_a_test_only_class_is_as_docs_evaluation_md_says():
    """Two training classes (0, 2): the binary AUC of class 2 against every other test scan, class 1's included;
    three (0, 1, 2) and a test-only class 3: the mean of the one-vs-rest AUCs of the training classes (scikit-learn,
    from a logistic regression refitted with the probe's C); chance 1 / #training classes either way."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from medssl.eval.probes import classification_probe

    rng = np.random.default_rng(3)
    for train_classes, test_only in (((0, 2), 1), ((0, 1, 2), 3)):
        y_tr, y_te = np.repeat(train_classes, 12), np.r_[np.repeat(train_classes, 4), [test_only] * 4]
        x_tr, x_te = (rng.normal(size=(len(y), 3)) + 0.7 * y[:, None] for y in (y_tr, y_te))
        out = classification_probe(x_tr, y_tr, x_te, y_te, n_boot=0)
        proba = make_pipeline(StandardScaler(), LogisticRegression(C=out["C"], max_iter=2000)).fit(x_tr, y_tr) \
            .predict_proba(x_te)
        aucs = [roc_auc_score(y_te == c, proba[:, k]) for k, c in enumerate(train_classes)]
        assert out["auc"] == pytest.approx(aucs[1] if len(train_classes) == 2 else np.mean(aucs))
        assert out["chance"] == 1 / len(train_classes) and out["classes"] == [*train_classes, test_only]


def test_the_validation_metric_chooses_among_the_training_classes_as_the_test_report_does(data):
    """Classes 0 and 2 in the training rows, a 3-output head: with the head still at its (seeded) initialisation
    the untrained output 1 wins the argmax on validation rows. The history's val_metric (early stopping, encoder lr)
    is the balanced accuracy of the argmax over the training classes (naive, scikit-learn), the metric the test
    report gives when the validation rows are scored as test rows; over all three outputs it would be 0."""
    tr, ytr, va, yva, _, _ = data
    opts = FinetuneOptions(task="classification", mode="head", epochs=1, lr_head=1e-7, batch_size=8, seed=4)
    result = finetune(make_tiny_encoder(), tr, ytr, va, yva, opts)
    proba, classes = predict(result, va), np.array([0, 2])
    assert (proba.argmax(1) == 1).any()  # the case: an output no training row has wins on a validation row
    naive = balanced_accuracy_score(yva, classes[proba[:, classes].argmax(1)])
    assert naive > 0.5 > np.mean([np.mean(proba.argmax(1)[yva == c] == c) for c in classes])
    assert result.history[result.best_epoch - 1]["val_metric"] == pytest.approx(naive)
    report = finetune_and_score(make_tiny_encoder(), tr, ytr, va, yva, va, yva, opts, n_boot=0)
    assert report["balanced_accuracy"] == pytest.approx(naive)


def test_the_validation_metric_is_unchanged_when_every_class_has_training_rows():
    """Classes 0, 1, 2 (age tertiles) all in the training rows (every published run): val_metric is the balanced
    accuracy of the argmax over all the head's outputs, as before (naive, from the kept model's outputs, which
    here choose each of the three classes on some validation row)."""
    ds, age = make_image_dataset(48, seed=2)
    y = np.digitize(age, np.quantile(age, [1 / 3, 2 / 3]))
    opts = FinetuneOptions(task="classification", mode="head", epochs=1, lr_head=1e-7, batch_size=8, seed=9)
    result = finetune(make_tiny_encoder(2), ds[:32], y[:32], ds[32:], y[32:], opts)
    pred = predict(result, ds[32:]).argmax(1)
    assert set(y[:32]) == set(pred) == {0, 1, 2}
    naive = np.mean([np.mean(pred[y[32:] == c] == c) for c in (0, 1, 2)])
    assert result.history[0]["val_metric"] == pytest.approx(naive)


def test_a_class_in_the_validation_rows_only_is_no_choice_of_the_validation_metric():
    """Class 1 in validation rows but no training row: the history's val_metric still chooses among the training
    classes 0 and 2 (class 1's rows count, with recall 0), as scikit-learn's balanced accuracy of that argmax."""
    ds, age = make_image_dataset(60, seed=1)
    y = np.digitize(age, np.quantile(age, [1 / 3, 2 / 3]))
    tr = [i for i in range(36) if y[i] != 1]
    opts = FinetuneOptions(task="classification", mode="head", epochs=1, lr_head=1e-7, batch_size=8, seed=4)
    result = finetune(make_tiny_encoder(), [ds[i] for i in tr], y[tr], ds[36:48], y[36:48], opts)
    proba, classes = predict(result, ds[36:48]), np.array([0, 2])
    assert 1 in y[36:48] and (proba.argmax(1) == 1).any()  # the case: the untrained output 1 wins on some rows
    naive = balanced_accuracy_score(y[36:48], classes[proba[:, classes].argmax(1)])
    assert result.history[0]["val_metric"] == pytest.approx(naive)
