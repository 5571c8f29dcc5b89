"""`medssl evaluate` on data with an official validation split (e.g. MedMNIST cards).

Checked against independent references: a naive loop over the probe grid (fit on train, score
on val, first best), a model refitted by hand on the training rows only, the unchanged
cross-validation path, and the validation loss recomputed from the fine-tuned model.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medssl.eval import probes as P
from medssl.eval.driver import EvalOptions, run_protocol
from medssl.eval.finetune import FinetuneOptions
from medssl.eval.protocols import fewshot_protocol, probe_targets, site_effect


def _feats(seed: int = 0, n: int = 240, d: int = 12) -> tuple[dict, np.ndarray, np.ndarray]:
    """Embeddings with a weak class and age signal; rows 0..119 train, 120..179 val, 180..239 test."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    age = 50 + 10 * x[:, 0] + 8 * rng.normal(size=n)
    label = (x[:, 1] + 0.5 * x[:, 2] + 1.2 * rng.normal(size=n) > 0).astype(int)
    feats = {"features": x.astype(np.float32), "age": age, "label": label, "site": rng.integers(0, 3, n),
             "subject": np.array([f"s{i:03d}" for i in range(n)])}
    split = np.repeat(["train", "val", "test"], [n // 2, n // 4, n - n // 2 - n // 4])
    return feats, split == "train", split == "val"


def _balanced_accuracy(y, pred) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def _naive_choice(x, y, tr, va, grid, make, score) -> float:
    """The grid value with the best validation score (first on ties), each fitted on train only."""
    scores = [score(y[va], make(v).fit(x[tr], y[tr]).predict(x[va])) for v in grid]
    return float(grid[int(np.argmax(scores))])


def _logistic(c):
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))


def _ridge(a):
    return make_pipeline(StandardScaler(), Ridge(alpha=a))


def _neg_mae(y, p) -> float:
    return -float(np.mean(np.abs(y - p)))


def test_chosen_c_and_alpha_equal_a_naive_validation_loop_and_the_fit_never_sees_val_rows():
    feats, tr, va = _feats()
    te = ~tr & ~va
    x, y, age = feats["features"], feats["label"], feats["age"]
    out = probe_targets(feats, tr, ["label", "age"], n_boot=0, val_mask=va)
    c = _naive_choice(x, y, tr, va, P.LOGISTIC_CS, _logistic, _balanced_accuracy)
    alpha = _naive_choice(x, age, tr, va, P.RIDGE_ALPHAS, _ridge, _neg_mae)
    assert out["label"]["C"] == c and out["age"]["alpha"] == alpha
    assert out["label"]["selection"] == out["age"]["selection"] == "official validation split (n=60)"
    # refitted on the training rows alone (val rows in the fit would change the predictions), scored on test only
    ref = _logistic(c).fit(x[tr], y[tr])
    assert len(out["label"]["pred"]) == te.sum()
    np.testing.assert_array_equal(out["label"]["pred"], ref.predict(x[te]))
    assert out["label"]["balanced_accuracy"] == pytest.approx(_balanced_accuracy(y[te], ref.predict(x[te])))
    np.testing.assert_allclose(out["age"]["pred"], _ridge(alpha).fit(x[tr], age[tr]).predict(x[te]), rtol=1e-10)


def test_only_val_labels_move_the_choice_test_rows_never_do():
    feats, tr, va = _feats(1)
    te = ~tr & ~va
    base = probe_targets(feats, tr, ["label", "age"], n_boot=0, val_mask=va)
    # val ages set to the training mean: the most regularised ridge (predicting ≈ that mean) wins
    flat = dict(feats, age=np.where(va, feats["age"][tr].mean(), feats["age"]))
    moved = probe_targets(flat, tr, ["age"], n_boot=0, val_mask=va)["age"]
    assert base["age"]["alpha"] < P.RIDGE_ALPHAS[-1] and moved["alpha"] == P.RIDGE_ALPHAS[-1]
    assert moved["mae"] != base["age"]["mae"]
    flipped = dict(feats, label=np.where(va, 1 - feats["label"], feats["label"]))
    c = _naive_choice(flipped["features"], flipped["label"], tr, va, P.LOGISTIC_CS, _logistic, _balanced_accuracy)
    assert probe_targets(flipped, tr, ["label"], n_boot=0, val_mask=va)["label"]["C"] == c != base["label"]["C"]
    # test rows: new labels, new ages and noise features change the scores, never the choice
    rng = np.random.default_rng(9)
    x2 = feats["features"].copy()
    x2[te] = rng.normal(size=(te.sum(), x2.shape[1]))
    other = dict(feats, features=x2, label=np.where(te, rng.integers(0, 2, len(te)), feats["label"]),
                 age=np.where(te, rng.uniform(20, 80, len(te)), feats["age"]))
    again = probe_targets(other, tr, ["label", "age"], n_boot=0, val_mask=va)
    assert again["label"]["C"] == base["label"]["C"] and again["age"]["alpha"] == base["age"]["alpha"]
    assert again["age"]["mae"] != base["age"]["mae"]


def test_without_val_rows_the_cross_validation_path_is_unchanged():
    feats, tr, _ = _feats(2)
    te = ~tr  # no validation split: every other row is a test row
    x, y, age, subj = feats["features"], feats["label"], feats["age"], feats["subject"]
    none = probe_targets(feats, tr, ["label", "age"], n_boot=0)
    zeros = probe_targets(feats, tr, ["label", "age"], n_boot=0, val_mask=np.zeros(len(tr), bool))
    direct_c = P.classification_probe(x[tr], y[tr], x[te], y[te], seed=0, groups=subj[tr], n_boot=0, groups_test=subj[te])
    direct_a = P.regression_probe(x[tr], age[tr], x[te], age[te], groups=subj[tr], n_boot=0, bias_correction=True,
                                  groups_test=subj[te])
    for res in (none, zeros):
        assert res["label"]["C"] == direct_c["C"] and res["age"]["alpha"] == direct_a["alpha"]
        np.testing.assert_array_equal(res["label"]["pred"], direct_c["pred"])
        np.testing.assert_array_equal(res["age"]["pred"], direct_a["pred"])
    assert none["label"]["selection"].startswith("cross-validation on train")
    assert none["age"]["selection"] == "leave-one-subject-out CV on train"
    opts = EvalOptions(n_boot=0, map_method="none")
    a = run_protocol(opts, {"e": feats}, tr, {"label": ["no", "yes"]}, 0, ["label", "age"])
    b = run_protocol(opts, {"e": feats}, tr, {"label": ["no", "yes"]}, 0, ["label", "age"], val_mask=np.zeros(len(tr), bool))
    assert a["selection"] == b["selection"] == "cross-validation on train" and a["notes"] == b["notes"]
    assert a["probes"]["e"]["label"]["C"] == b["probes"]["e"]["label"]["C"]
    assert a["baselines"] == b["baselines"]


def test_run_protocol_keeps_val_rows_out_of_test_site_and_fewshot():
    feats, tr, va = _feats(3)
    te = ~tr & ~va
    opts = EvalOptions(n_boot=0, map_method="none")
    res = run_protocol(opts, {"e": feats}, tr, {"label": ["no", "yes"]}, 0, ["label", "age"], val_mask=va)
    assert res["selection"] == "official validation split (n=60)" and any("(60 scans)" in n for n in res["notes"])
    assert len(res["test_age"]) == te.sum() and res["probes"]["e"]["age"]["selection"].startswith("official")
    with pytest.raises(ValueError, match="both"):
        run_protocol(opts, {"e": feats}, tr, {}, 0, ["age"], val_mask=tr)
    # site protocol: the val rows are left out, the rest is exactly the protocol without them
    site = run_protocol(EvalOptions(protocol="site", n_boot=0, map_method="none"), {"e": feats}, tr, {}, 0, ["age"],
                        val_mask=va)
    keep = ~va
    ref = site_effect({k: v[keep] for k, v in feats.items()}, tr[keep], 0, 0, ["age"])
    assert site["site"]["e"]["prediction"]["balanced_accuracy"] == ref["prediction"]["balanced_accuracy"]
    assert site["site"]["e"]["leave_site_out"]["age"]["pooled"] == ref["leave_site_out"]["age"]["pooled"]
    assert "left out" in site["selection"]
    # few-label curve at 100 % = the full probe with the val-chosen C
    curve = fewshot_protocol(feats, tr, ["label"], fractions=(1.0,), seeds=(0,), val_mask=va)["label"]
    full = probe_targets(feats, tr, ["label"], n_boot=0, val_mask=va)["label"]
    assert curve["summary"][0]["mean"] == pytest.approx(full["balanced_accuracy"])


class _TinyEncoder(torch.nn.Module):
    spatial_dims, in_channels, out_dim = 2, 1, 4

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU())

    def forward(self, x):
        return self.net(x).mean(dim=(2, 3))


def test_finetuning_early_stops_on_the_val_rows(monkeypatch):
    import medssl.eval.finetune as F

    feats, tr, va = _feats(4, n=64)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(64, 1, 6, 6, generator=g) + torch.as_tensor((feats["age"] - 50) / 10, dtype=torch.float32).view(-1, 1, 1, 1)
    dataset = [{"image": images[i]} for i in range(64)]
    seen = []
    real = F.finetune

    def spy(encoder, train, y_train, val, y_val, options=None, augment=None):
        result = real(encoder, train, y_train, val, y_val, options, augment)
        seen.append((list(train.indices), list(val.indices), np.asarray(y_val), result))
        return result

    monkeypatch.setattr(F, "finetune", spy)
    opts = EvalOptions(protocol="finetune", n_boot=0, finetune=FinetuneOptions(epochs=3, batch_size=8, lr_head=1e-2))
    out = run_protocol(opts, {"e": feats}, tr, {}, 0, ["age"], {"e": _TinyEncoder()}, {"all": dataset}, val_mask=va)
    ft = out["finetune"]["e"]["age"]
    (fit_idx, val_idx, y_val, result), = seen
    assert fit_idx == np.flatnonzero(tr).tolist() and val_idx == np.flatnonzero(va).tolist()
    assert ft["n_val"] == va.sum() == 16 and ft["n_fit"] == tr.sum() and len(ft["pred"]) == (~tr & ~va).sum()
    assert ft["early_stopping"] == out["selection"] == "official validation split (n=16)"
    # the best epoch's validation loss is the Huber loss of the kept model on exactly the val rows
    with torch.no_grad():
        z = result.model(images[va]).squeeze(1)
    t = torch.as_tensor((y_val - result.target_mean) / result.target_std, dtype=torch.float32)
    assert float(torch.nn.functional.huber_loss(z, t)) == pytest.approx(result.history[result.best_epoch - 1]["val_loss"],
                                                                          rel=1e-5)
    # without val rows: the 20 % inner split of the training rows, as before
    seen.clear()
    out = run_protocol(opts, {"e": feats}, tr, {}, 0, ["age"], {"e": _TinyEncoder()}, {"all": dataset})
    (fit_idx, val_idx, _, _), = seen
    assert set(fit_idx) | set(val_idx) == set(np.flatnonzero(tr)) and not set(fit_idx) & set(val_idx)
    assert out["finetune"]["e"]["age"]["early_stopping"] == "20% inner subject split of train"


def _export(out: Path, spatial_dims: int, shape: list[int], **options) -> Path:
    from medssl.encoders import build_encoder
    from medssl.export import save_encoder

    torch.manual_seed(0)
    enc = build_encoder("resnet18", spatial_dims, 1, **options)
    args = {"spatial_dims": spatial_dims, "in_channels": 1, **options}
    return save_encoder(enc, out, "resnet18", args, {"spatial_dims": spatial_dims, "in_channels": 1, "shape": shape})


def test_evaluate_uses_the_split_column_of_a_card(tmp_path):
    """End to end: a card whose table has a split column with val rows (synthetic cohort)."""
    from medssl.api import evaluate
    from medssl.data.synthetic import write_synthetic_cohort

    cohort = write_synthetic_cohort(tmp_path / "cohort", n_subjects=30, n_sites=2, shape=(16, 16, 16), seed=1,
                                    progress=False)
    table = cohort / "participants.tsv"
    rows = list(csv.DictReader(table.open(), delimiter="\t"))
    for i, r in enumerate(rows):
        r["split"] = ("train", "train", "val", "test", "train")[i % 5]
    with table.open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    card = (Path(__file__).resolve().parents[2] / "data_cards" / "synthetic.yaml").read_text()
    (tmp_path / "with_val.yaml").write_text(card.replace("name: synthetic", "name: with_val").replace(
        "  label: diagnosis", "  label: diagnosis\n  split: split"))
    export = _export(tmp_path / "export", 3, [16, 16, 16], width=4)
    kw = {"progress": False, "data": str(tmp_path / "with_val.yaml"), "root": str(cohort)}
    res = evaluate(export, options=EvalOptions(n_boot=0, map_method="none", random_init=False), **kw)
    info = res["info"]
    assert info["validation subjects"] == 6 and info["hyper-parameter selection"] == "official validation split (n=6)"
    assert res["probes"]["pretrained"]["age"]["selection"] == "official validation split (n=6)"
    assert len(res["probes"]["pretrained"]["age"]["pred"]) == 6 == info["test subjects"]
    assert "official validation split (n=6)" in (tmp_path / "export-eval-default-with_val" / "report.md").read_text()
    ft = evaluate(export, protocol="finetune", options=EvalOptions(
        n_boot=0, targets=("age",), random_init=False, finetune=FinetuneOptions(epochs=1, batch_size=8)), **kw)
    assert ft["finetune"]["pretrained"]["age"]["n_val"] == 6 and ft["finetune"]["pretrained"]["age"]["n_fit"] == 18


@pytest.mark.slow
def test_pneumoniamnist_card_probe_c_is_chosen_on_the_official_val_split(tmp_path):
    """Real PneumoniaMNIST (train 4708 / val 524 / test 624) through `evaluate` (≈ 10 s on 2 cores)."""
    from shared_data import shared_path

    from medssl.api import evaluate
    from medssl.data.manifest import read_manifest

    shared_path("data", "medmnist_pneumoniamnist_reconstructed", "pneumoniamnist.npz")
    export = _export(tmp_path / "export", 2, [28, 28], width=4)
    res = evaluate(export, progress=False, data="shared_pneumoniamnist",
                   options=EvalOptions(targets=("label",), n_boot=0, map_method="none", random_init=False))
    assert res["info"]["hyper-parameter selection"] == "official validation split (n=524)"
    assert res["info"]["validation subjects"] == 524 and res["info"]["test subjects"] == 624
    out_dir = tmp_path / "export-eval-default-shared_pneumoniamnist"  # beside the export, never in it
    split = np.array([r.split for r in read_manifest(out_dir / "manifest.tsv")])
    (cache,) = (out_dir / "features").glob("pretrained-*.npz")
    with np.load(cache) as z:
        x, y, rows = z["features"], z["label"], split[z["index"]]
    probe = res["probes"]["pretrained"]["label"]
    c = _naive_choice(x, y, rows == "train", rows == "val", P.LOGISTIC_CS, _logistic, _balanced_accuracy)
    assert probe["C"] == c and len(probe["pred"]) == 624
    np.testing.assert_array_equal(probe["pred"], _logistic(c).fit(x[rows == "train"], y[rows == "train"]).predict(x[rows == "test"]))


def test_targets_that_cannot_be_evaluated_are_reported_with_the_reason_never_dropped_silently():
    from medssl.eval.report import format_table

    feats, tr, va = _feats(3)
    feats["age"] = feats["age"].copy()
    feats["age"][~tr & ~va] = np.nan  # no test scan has an age
    feats["age"][np.flatnonzero(~tr & ~va)[0]] = 60.0  # … but one
    feats["sex"] = np.where(tr, 0, 1)  # the training scans are all one class
    res = run_protocol(EvalOptions(n_boot=0, map_method="none"), {"e": feats}, tr, {"label": ["no", "yes"]}, 0,
                       ["label", "age", "sex", "site"], val_mask=va)
    assert set(res["probes"]["e"]) == {"label", "site"}
    assert res["skipped_targets"] == {"age": "1 held-out scan(s) have a value, at least 2 are needed (a larger "
                                             "data.test_fraction; a card's official test split is kept as it is, "
                                             "and data.limit keeps only the card's first N scans)",
                                      "sex": "the training scans hold a single class"}
    assert any(n.startswith("Target 'age' was not evaluated: 1 held-out scan(s)") for n in res["notes"])
    res["info"] = {}
    assert "not evaluated: sex (the training scans hold a single class)" in format_table(res)
    ft = run_protocol(EvalOptions(protocol="fewshot", n_boot=0, map_method="none", seeds=(0,), fractions=(1.0,)),
                      {"e": feats}, tr, {}, 0, ["label", "nothing"], val_mask=va)
    assert ft["skipped_targets"] == {"nothing": "the data have no such column"}


def test_when_no_requested_target_can_be_evaluated_the_ones_that_can_are_named():
    """`medssl evaluate RUN --protocol knn` of a supinfonce run on shared_adrenalmnist3d (the config's default
    eval.targets age, site; the card has labels only) printed an empty table, 'not evaluated: age (0 training
    scan(s) have a value …)' and the same for site, with exit status 0: nothing said that --targets label works."""
    from medssl.eval.report import format_table

    feats, tr, va = _feats(3)
    feats["age"] = np.full(len(tr), np.nan)  # MedMNIST: no age, no site, a label on every scan
    feats["site"] = np.full(len(tr), -1)
    for protocol in ("knn", "linear"):
        res = run_protocol(EvalOptions(protocol=protocol, n_boot=0, map_method="none"), {"e": feats}, tr,
                           {"label": ["no", "yes"]}, 0, ["age", "site"], val_mask=va)
        assert res["probes"]["e"] == {}
        res["info"] = {}
        table = format_table(res)
        assert "not evaluated: age (0 training scan(s) have a value" in table
        assert "these data can be evaluated with --targets label" in table
    both = run_protocol(EvalOptions(protocol="knn", n_boot=0, map_method="none"), {"e": feats}, tr,
                        {"label": ["no", "yes"]}, 0, ["age", "label"], val_mask=va)
    assert "--targets" not in both["skipped_targets"]["age"]  # something was evaluated: no hint


def test_fewshot_points_choose_on_the_val_rows_with_their_own_seed_on_stratified_subsets(monkeypatch):
    """Every point of a curve chooses its hyper-parameter on the full validation split, fits with the curve's
    seed, and (classes) on a subset with max(2, ceil(f · n_c)) training subjects of each class."""
    import math

    from medssl.eval import protocols as PR

    feats, tr, va = _feats(5)
    feats["label"] = (feats["features"][:, 1] > 1.0).astype(int)  # a rare class (~16 %)
    calls = []
    real = PR._probe

    def spy(*args, **kw):
        calls.append((args[5], args[2], args[7], kw["va"]))
        return real(*args, **kw)

    monkeypatch.setattr(PR, "_probe", spy)
    fewshot_protocol(feats, tr, ["label", "age"], fractions=(0.1, 1.0), seeds=(0, 1), val_mask=va)
    assert [(task, seed) for task, _, seed, _ in calls] == [("classification", 0), ("classification", 1),
                                                             ("classification", 0), ("regression", 0),
                                                             ("regression", 1), ("regression", 0)]
    assert all(np.array_equal(v, va) for *_, v in calls)
    n_class = np.bincount(feats["label"][tr])
    for _, rows, _, _ in calls[:2]:
        assert np.bincount(feats["label"][rows], minlength=2).tolist() == [max(2, math.ceil(0.1 * n)) for n in n_class]


def test_probes_get_the_subjects_of_their_rows_and_a_one_class_val_split_is_not_used(monkeypatch):
    """Two scans per subject: the probe's inner CV and bootstrap get the subjects of the training / test rows.
    Validation rows of a single class cannot score balanced accuracy: C falls back to cross-validation."""
    feats, tr, va = _feats(6)
    feats["subject"] = np.array([f"s{i // 2:03d}" for i in range(len(tr))])
    seen = {}

    def spy(name, real):
        def probe(*args, **kw):
            seen[name] = kw
            return real(*args, **kw)
        return probe

    for name in ("classification_probe", "regression_probe"):
        monkeypatch.setattr(P, name, spy(name, getattr(P, name)))
    probe_targets(feats, tr, ["label", "age"], n_boot=0, val_mask=va)
    te = ~tr & ~va
    for kw in seen.values():
        assert kw["groups"].tolist() == feats["subject"][tr].tolist()
        assert kw["groups_test"].tolist() == feats["subject"][te].tolist()
    one_class = dict(feats, label=np.where(va, 0, feats["label"]))
    res = probe_targets(one_class, tr, ["label"], n_boot=0, val_mask=va)["label"]
    assert res["selection"].startswith("cross-validation on train")
