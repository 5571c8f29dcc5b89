"""The numbers of the MedMNIST tables (``benchmarks/medmnist_scoring.py``, ``medmnist_report.py``), checked against
naive recomputations: the probe's C chosen on validation only, mean ± sample SD over seeds, AUC and ACC kept apart."""

from __future__ import annotations

import math

import numpy as np
import pytest
from benchmark_module import load_benchmark


def _part(name: str):
    return load_benchmark(f"medmnist_{name}")


def _split(rng, n: int, shift: float):
    """Two-class features whose informative direction depends on ``shift`` (val and test disagree on the best C)."""
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 6))
    x[:, 0] += 1.2 * y
    x[:, 1] += shift * y + 0.8 * x[:, 0]
    return x.astype(np.float32), y


def test_linear_probe_chooses_c_on_validation_and_scores_test_once():
    """C is the first of the documented grid 10⁻⁴…10² with the best validation AUC, fitted on ``rows`` of train
    only; AUC / ACC are the test scores of that model (recomputed here with scikit-learn)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(4)
    feats = {"train": _split(rng, 80, 0.0), "val": _split(rng, 40, -1.5), "test": _split(rng, 60, 1.5)}
    rows = np.arange(7, 37)  # a subset of the training rows (a label fraction)
    grid = [10.0 ** k for k in range(-4, 3)]  # docs/benchmarks_medmnist.md: "the grid 10⁻⁴…10² (PROBE_CS)"
    assert list(_part("scoring").PROBE_CS) == pytest.approx(grid)
    (xt, yt), (xv, yv), (xs, ys) = feats["train"], feats["val"], feats["test"]
    models = [make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, random_state=0)).fit(xt[rows], yt[rows])
              for c in grid]
    val = [roc_auc_score(yv, m.predict_proba(xv)[:, 1]) for m in models]
    test = [roc_auc_score(ys, m.predict_proba(xs)[:, 1]) for m in models]
    best = int(np.argmax(val))  # the first of equal maxima
    assert best != int(np.argmax(test)) and best != len(grid) - 1  # the data can tell a test-split choice apart
    out = _part("scoring").linear_probe(feats, rows, seed=0, n_boot=20)
    assert out["C"] == grid[best] and out["val_auc"] == pytest.approx(val[best], abs=1e-12)
    assert out["auc"] == pytest.approx(test[best], abs=1e-12) and out["n_train"] == 30 and out["n_test"] == 60
    assert out["acc"] == pytest.approx(accuracy_score(ys, models[best].predict_proba(xs)[:, 1] >= 0.5), abs=1e-12)


def test_a_tie_on_validation_keeps_the_smallest_c():
    """One feature: every C ranks the validation images alike (same AUC); the first C of the grid, the strongest
    regularisation, is kept, not the last one tried."""
    rng = np.random.default_rng(0)
    feats = {part: (np.c_[rng.normal(size=n) + np.arange(n) % 2].astype(np.float32), np.arange(n) % 2)
             for part, n in (("train", 40), ("val", 30), ("test", 30))}
    out = _part("scoring").linear_probe(feats, np.arange(40), seed=0, n_boot=10)
    assert out["C"] == 1e-4


def test_each_interval_is_the_bootstrap_of_its_own_metric():
    """``acc_ci`` resamples the accuracy of the 0.5-thresholded predictions and ``auc_ci`` the AUC of the scores
    (same seed, same replicates); the intervals are not interchangeable."""
    from medssl.eval import metrics as M

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    p = np.clip(0.25 * y + rng.uniform(0, 0.75, 120), 0, 1)
    s = _part("scoring").score(y, p, seed=5, n_boot=100)
    acc = lambda t, q: float(np.mean(t == q))
    assert s["acc_ci"] == pytest.approx(list(M.bootstrap_ci(acc, y, (p >= 0.5).astype(int), n_boot=100, seed=5)))
    assert s["auc_ci"] == pytest.approx(list(M.bootstrap_ci(M.binary_auc, y, p, n_boot=100, seed=5)))
    assert s["n_test"] == 120


@pytest.mark.parametrize(("ft_epochs", "fraction", "epochs"), [(8, 1.0, 8), (8, 0.25, 16), (8, 0.1, 25), (8, 0.01, 30),
                                                                 (15, 0.5, 21)])
def test_few_label_epochs_follow_the_documented_formula(ft_epochs, fraction, epochs):
    """docs/benchmarks_medmnist.md: ``min(30, round(ft_epochs / √fraction))``."""
    b = _part("data").Budget(ft_epochs=ft_epochs)
    assert _part("scoring").few_label_epochs(b, fraction) == epochs == min(30, round(ft_epochs / math.sqrt(fraction)))


def _seeds(aucs: dict, accs: dict, fractions=("0.1", "1.0")) -> list[dict]:
    """Per-seed results with the given test AUC / ACC per row at 100 % labels (other fractions: other values)."""
    per_seed = []
    for i, seed in enumerate((4, 7, 9)[:len(next(iter(aucs.values())))]):
        few = {}
        for f in fractions:
            shift = 0.0 if f == "1.0" else -0.2
            few[f] = {"n_train": 100 if f == "1.0" else 10,
                      **{k: {"auc": aucs[k][i] + shift, "acc": accs[k][i] + shift} for k in aucs}}
        per_seed.append({"seed": seed, "few_label": few})
    return per_seed


def _naive(values):
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def test_summary_is_the_mean_and_sample_sd_of_each_metric_at_100_percent_labels():
    aucs = {"ssl_probe": [0.91, 0.95, 0.80], "scratch": [0.70, 0.75, 0.72]}
    accs = {"ssl_probe": [0.81, 0.83, 0.90], "scratch": [0.60, 0.66, 0.61]}
    s = _part("report").summarise(_seeds(aucs, accs))
    for key in aucs:
        for m, vals in (("auc", aucs[key]), ("acc", accs[key])):
            mean, sd = _naive(vals)
            assert s[key][f"{m}_mean"] == pytest.approx(mean) and s[key][f"{m}_sd"] == pytest.approx(sd)
            assert s[key][f"{m}_per_seed"] == vals
    one = _part("report").summarise(_seeds({"ssl_probe": [0.9]}, {"ssl_probe": [0.8]}))["ssl_probe"]
    assert math.isnan(one["auc_sd"]) and math.isnan(one["acc_sd"])  # one seed: no spread, never a fake 0
    kept = _part("report").summarise(_seeds({"ssl_probe": [0.912345, 0.9]}, {"ssl_probe": [0.8, 0.8]}))["ssl_probe"]
    assert kept["auc_per_seed"] == [0.9123, 0.9]  # stored to 4 decimals


def test_table_prints_auc_then_acc_with_sample_sd_and_the_published_numbers():
    report = _part("report")
    aucs, accs = {"ssl_probe": [0.91, 0.95, 0.80]}, {"ssl_probe": [0.81, 0.83, 0.90]}
    per_seed = _seeds(aucs, accs)
    table = report.format_table("pneumonia", report.summarise(per_seed), 3, report.table_rows(per_seed))
    (am, asd), (cm, csd) = _naive(aucs["ssl_probe"]), _naive(accs["ssl_probe"])
    assert table.splitlines()[0] == "| method (pneumonia, test split, 3 seed(s)) | AUC | ACC |"
    assert f"| SimCLR + linear probe | {am:.3f} ± {asd:.3f} | {cm:.3f} ± {csd:.3f} |" in table.splitlines()
    # Yang et al., Sci Data 2023, Table 3 (as docs/benchmarks_medmnist.md lists them): AUC then ACC
    assert "| MedMNIST v2 ResNet-18 (28) (published) | 0.944 | 0.854 |" in table
    assert "| MedMNIST v2 ResNet-50 (224) (published) | 0.962 | 0.884 |" in table
    adrenal = report.format_table("adrenal", report.summarise(per_seed), 3, report.table_rows(per_seed))
    assert "| MedMNIST v2 ResNet-18+3D (published) | 0.827 | 0.721 |" in adrenal
    assert "| MedMNIST v2 ResNet-50+3D (published) | 0.828 | 0.745 |" in adrenal
    single = _seeds({"ssl_probe": [0.9]}, {"ssl_probe": [0.8]})
    one = report.format_table("pneumonia", report.summarise(single), 1, report.table_rows(single))
    assert "| SimCLR + linear probe | 0.900 | 0.800 |" in one  # one seed: the value alone, no ± nan


def test_few_label_curve_gives_each_fractions_auc_and_training_size():
    report = _part("report")
    aucs, accs = {"ssl_probe": [0.91, 0.95, 0.80]}, {"ssl_probe": [0.61, 0.63, 0.60]}
    curve = report.format_curve(_seeds(aucs, accs), (0.1, 1.0)).splitlines()
    am, asd = _naive(aucs["ssl_probe"])
    lm, lsd = _naive([a - 0.2 for a in aucs["ssl_probe"]])
    assert curve[2] == f"| 10% | 10 | {lm:.3f} ± {lsd:.3f} |" and curve[3] == f"| 100% | 100 | {am:.3f} ± {asd:.3f} |"


def test_a_peer_row_needs_every_seed_and_its_label_names_the_peer():
    report = _part("report")
    per_seed = _seeds({"ssl_probe": [0.9, 0.8], "lightly_probe": [0.7, 0.6], "monai_stock_probe": [0.5, 0.6]},
                      {"ssl_probe": [0.8, 0.8], "lightly_probe": [0.6, 0.6], "monai_stock_probe": [0.5, 0.5]})
    per_seed[0]["peer_pretrain"] = {"lightly": {}, "monai_stock": {}}
    per_seed[1]["peer_pretrain"] = {"monai_stock": {}}
    assert report.table_rows(per_seed)[-1] == ("monai_stock_probe", "monai_stock + linear probe")
    assert "lightly_probe" not in report.summarise(per_seed)
    assert report.peers_left_out(per_seed) == {"lightly": {"scored_in_seeds": [4], "missing_in_seeds": [7]}}


def test_figure_error_bars_are_the_sample_sd_over_seeds(monkeypatch):
    """The few-label curve's bars span mean ± sample SD of each fraction's test AUC (as the tables)."""
    report = _part("report")
    drawn = []
    monkeypatch.setattr(report, "save_figure", lambda fig, path: drawn.append(fig))
    aucs = {"ssl_probe": [0.91, 0.95, 0.80]}
    per_seed = _seeds(aucs, aucs)
    report.plot({"dataset": "pneumonia", "summary": report.summarise(per_seed), "per_seed": per_seed,
                 "budget": {"fractions": [0.1, 1.0]}}, "unused.png")
    curve = drawn[0].axes[1].containers[0]
    (low, high), = [seg[:, 1] for seg in curve.lines[2][0].get_segments()[1:]]  # the 100 % point
    mean, sd = _naive(aucs["ssl_probe"])
    assert (low, high) == pytest.approx((mean - sd, mean + sd))


def test_finetuning_keeps_the_encoder_lr_best_on_validation_and_scores_it_on_test(monkeypatch):
    """Training is replaced by fixed scores per encoder lr: 1e-4 ranks the validation images best, 1e-3 the test
    images. The kept run is 1e-4 (the test split never enters the choice), scored once on test."""
    import medssl.eval.finetune as F
    from sklearn.metrics import roc_auc_score

    scoring = _part("scoring")
    rng = np.random.default_rng(0)
    yv, ys = np.arange(20) % 2, np.arange(30) % 2
    good = lambda y: np.clip(0.35 * y + rng.uniform(0, 0.65, len(y)), 0, 1)
    scores = {(1e-3, 20): rng.uniform(0, 1, 20), (1e-3, 30): good(ys), (1e-4, 20): good(yv), (1e-4, 30): rng.uniform(0, 1, 30)}
    fitted = []

    def fake_finetune(encoder, train, y_train, val, y_val, options, augment=None):
        fitted.append((len(train), len(val), options.lr_encoder))
        return F.FinetuneResult(model=None, history=[{"epoch": 1}], best_epoch=1, options=options)

    monkeypatch.setattr(F, "finetune", fake_finetune)
    monkeypatch.setattr(scoring, "predict", lambda r, images: np.c_[1 - scores[r.options.lr_encoder, len(images)],
                                                                    scores[r.options.lr_encoder, len(images)]])
    img = lambda n: np.zeros((n, 1, 28, 28), np.float32)
    data = {"train": (img(40), np.arange(40) % 2), "val": (img(20), yv), "test": (img(30), ys)}
    b = _part("data").Budget(ft_augment=False)
    out = scoring.finetune_score(None, data, np.arange(12), b, 1.0, 0, "cpu", 20, encoder_lrs=(1e-3, 1e-4))
    val = {lr: roc_auc_score(yv, scores[lr, 20]) for lr in (1e-3, 1e-4)}
    assert val[1e-4] > val[1e-3] and roc_auc_score(ys, scores[1e-3, 30]) > roc_auc_score(ys, scores[1e-4, 30])
    assert fitted == [(12, 20, 1e-3), (12, 20, 1e-4)]  # the label fraction's rows; the whole official val split
    assert out["lr_encoder"] == 1e-4 and out["val_auc"] == pytest.approx(val[1e-4])
    assert out["val_auc_per_encoder_lr"] == {str(k): pytest.approx(v) for k, v in val.items()}
    assert out["auc"] == pytest.approx(roc_auc_score(ys, scores[1e-4, 30])) and out["n_train"] == 12
