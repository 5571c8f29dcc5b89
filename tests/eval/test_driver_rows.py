"""What the evaluation driver hands to fine-tuning and what it reports beside the probes, checked against
naive formulas on the same rows (fine-tuning itself replaced by a spy that records its arguments)."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.eval import driver as D
from medssl.eval.driver import EvalOptions, run_protocol


def _feats(n: int = 40, seed: int = 0) -> dict:
    """Two scans per subject, fractional ages (years), two sites."""
    rng = np.random.default_rng(seed)
    return {"features": rng.normal(size=(n, 4)).astype(np.float32), "age": rng.uniform(20, 80, n),
            "site": np.arange(n) // 2 % 2, "subject": np.array([f"s{i // 2:03d}" for i in range(n)])}


def test_fine_tuning_gets_the_ages_as_they_are_and_the_subjects_of_its_test_rows(calls):
    """Fractional ages reach fine-tuning unrounded (the fit, validation and test targets are the table's ages of
    those rows), the bootstrap gets the subject of every test row, and no map is drawn of the pretrained embeddings."""
    feats = _feats()
    split = np.repeat(["train", "val", "test"], [20, 8, 12])
    tr, va = split == "train", split == "val"
    out = run_protocol(EvalOptions(protocol="finetune", n_boot=0), {"e": feats}, tr, {}, 0, ["age", "label"],
                       {"e": object()}, {"all": list(range(40))}, val_mask=va)
    (c,), age = calls, feats["age"]
    np.testing.assert_array_equal(c["y_fit"], age[c["fit"]])
    np.testing.assert_array_equal(c["y_val"], age[c["val"]])
    np.testing.assert_array_equal(c["y_test"], age[c["test"]])
    assert c["test"] == np.flatnonzero(split == "test").tolist()
    assert list(c["groups_test"]) == feats["subject"][c["test"]].tolist()
    assert "maps" not in out and out["finetune"]["e"]["age"]["n_fit"] == 20
    assert out["skipped_targets"] == {"label": "the data have no such column"}  # asked for, absent: said, not a crash


def test_multilabel_fine_tuning_names_its_findings_and_three_training_subjects_are_the_minimum(calls):
    """The label vocabulary names the findings of a multi-label target; fine-tuning needs >= 3 training subjects
    (2 are reported as skipped with the reason) and >= 2 test scans."""
    feats = _feats(n=16)
    feats["label"], names = D.multilabel_matrix(["a|b", "b", "", "a"] * 4)
    tr = np.arange(16) < 8  # subjects s000..s003
    run_protocol(EvalOptions(protocol="finetune", n_boot=0), {"e": feats}, tr, {"label": names}, 0, ["label"],
                 {"e": object()}, {"all": list(range(16))})
    (c,) = calls
    assert c["task"] == "multilabel" and c["class_names"] == ["a", "b"]
    calls.clear()
    feats = dict(_feats(n=18), subject=np.array([f"s{i // 3}" for i in range(18)]))  # three scans per subject
    for n_train, runs in ((9, 1), (6, 0)):  # 3 training subjects: fine-tuned; 2 (6 scans): skipped, with the reason
        out = run_protocol(EvalOptions(protocol="finetune", n_boot=0), {"e": feats}, np.arange(18) < n_train, {}, 0,
                           ["age"], {"e": object()}, {"all": list(range(18))})
        assert len(calls) == runs and ("age" in out["skipped_targets"]) == (runs == 0)
        calls.clear()
    assert out["skipped_targets"]["age"].startswith("fewer than 3 training subjects")
    one_test = {k: v[:10] for k, v in feats.items()}  # 3 training subjects, 1 held-out scan: skipped
    out = run_protocol(EvalOptions(protocol="finetune", n_boot=0), {"e": one_test}, np.arange(10) < 9, {}, 0, ["age"],
                       {"e": object()}, {"all": list(range(10))})
    assert calls == [] and out["skipped_targets"]["age"].startswith("1 held-out scan(s)")


def test_the_mean_predictor_baseline_is_the_training_mean_scored_on_the_test_rows_only():
    """baselines.mean_predictor_mae = mean |test age − mean training age|, validation rows on neither side (they are
    given ages far from the rest, so using them anywhere moves the number), and test_age holds the test ages."""
    feats = _feats(n=48)
    split = np.repeat(["train", "val", "test"], [24, 8, 16])
    feats["age"][split == "val"] += 200.0
    tr, va, te = split == "train", split == "val", split == "test"
    out = run_protocol(EvalOptions(n_boot=0, map_method="none"), {"e": feats}, tr, {}, 0, ["age"], val_mask=va)
    age = feats["age"]
    naive = float(np.mean(np.abs(age[te] - age[tr].mean())))
    assert out["baselines"]["mean_predictor_mae"] == pytest.approx(naive, rel=1e-12)
    np.testing.assert_array_equal(out["test_age"], age[te])


def test_openbhb_warns_that_pretraining_saw_the_external_site_only_when_its_training_rows_hold_it():
    """Without pretrain_sites the run's own training rows were pretrained on: the note appears when the external
    site has training rows, and not when all its rows are test rows."""
    rng = np.random.default_rng(1)
    n = 90
    feats = {"features": rng.normal(size=(n, 4)).astype(np.float32), "age": rng.uniform(20, 80, n),
             "site": np.arange(n) % 3, "subject": np.array([f"s{i:03d}" for i in range(n)])}
    note = "pretraining split contained scans of the external site"
    opts = EvalOptions(protocol="openbhb", n_boot=0, map_method="none")
    unseen = (np.arange(n) < 60) & (feats["site"] != 2)  # site 2 (the external one): test rows only
    assert not any(note in x for x in run_protocol(opts, {"e": feats}, unseen, {}, 0, ["age"])["notes"])
    seen = np.arange(n) < 60
    assert any(note in x for x in run_protocol(opts, {"e": feats}, seen, {}, 0, ["age"])["notes"])


def test_fewshot_points_of_the_driver_choose_on_the_official_val_rows(monkeypatch):
    """run_protocol(fewshot) with an official validation split: every probe of every curve point is handed exactly
    the validation rows to choose its hyper-parameter on (not the training rows' cross-validation)."""
    from medssl.eval import protocols as PR

    feats = _feats(n=60)
    feats["label"] = (feats["features"][:, 0] > 0).astype(int)
    split = np.repeat(["train", "val", "test"], [30, 14, 16])
    tr, va = split == "train", split == "val"
    seen, real = [], PR._probe
    monkeypatch.setattr(PR, "_probe", lambda *a, **kw: seen.append(kw["va"]) or real(*a, **kw))
    opts = EvalOptions(protocol="fewshot", n_boot=0, map_method="none", fractions=(0.5, 1.0), seeds=(0, 1))
    run_protocol(opts, {"e": feats}, tr, {}, 0, ["age", "label"], val_mask=va)
    assert len(seen) == 6 and all(v is not None and np.array_equal(v, va) for v in seen)


def test_the_default_protocol_draws_a_pca_map_and_the_others_t_sne():
    feats = _feats(n=40)
    tr = np.arange(40) < 24
    for protocol, method in (("default", "pca"), ("linear", "tsne")):
        out = run_protocol(EvalOptions(protocol=protocol, n_boot=0), {"e": feats}, tr, {}, 0, ["age"])
        assert out["maps"]["e"]["method"] == method and out["maps"]["e"]["xy"].shape == (40, 2)


def test_fine_tuning_curves_keep_every_class_and_run_each_point_with_its_own_seed(calls):
    """Few-label fine-tuning of a class: each subset keeps max(2, ceil(f · n_c)) training subjects of every class (a
    rare class is never left out), and the point of seed s fine-tunes with seed s."""
    import math

    feats = _feats(n=80)
    feats["label"] = (np.arange(80) // 2 % 10 == 0).astype(int)  # class 1: 4 of the 40 subjects
    split = np.repeat(["train", "val", "test"], [48, 16, 16])
    tr, va = split == "train", split == "val"
    opts = EvalOptions(protocol="fewshot", n_boot=0, map_method="none", fewshot_finetune=True, fractions=(0.1,),
                       seeds=(3, 4))
    out = run_protocol(opts, {"e": feats}, tr, {}, 0, ["label"], {"e": object()}, {"all": list(range(80))}, val_mask=va)
    assert [c["seed"] for c in calls] == [3, 4]
    assert [p["seed"] for p in out["fewshot"]["e fine-tuned"]["label"]["points"]] == [3, 4]
    n_class = [len(set(feats["subject"][tr & (feats["label"] == k)])) for k in (0, 1)]
    for c in calls:
        kept = [len(set(feats["subject"][c["fit"]][c["y_fit"] == k])) for k in (0, 1)]
        assert kept == [max(2, math.ceil(0.1 * n)) for n in n_class]


def test_fewshot_selection_notes_and_skips_say_what_was_run(calls):
    """Few-label curves: probes alone choose by cross-validation (no fine-tuning split is named); with fine-tuning
    curves and an official validation split the notes say that fine-tuning early-stops on it; a multi-label target
    is skipped with its reason."""
    feats = _feats(n=60)
    feats["label"], _ = D.multilabel_matrix(["a|b", "b", "a", "none"] * 15)
    split = np.repeat(["train", "val", "test"], [30, 14, 16])
    tr, va = split == "train", split == "val"
    opts = EvalOptions(protocol="fewshot", n_boot=0, map_method="none", fractions=(1.0,), seeds=(0,))
    probes_only = run_protocol(opts, {"e": feats}, tr, {}, 0, ["age", "label"])
    assert probes_only["selection"] == "cross-validation on train"
    assert probes_only["skipped_targets"] == {"label": "few-label curves cover single-label targets only"}
    with_ft = run_protocol(EvalOptions(protocol="fewshot", n_boot=0, map_method="none", fractions=(1.0,), seeds=(0,),
                                       fewshot_finetune=True), {"e": feats}, tr, {}, 0, ["age"], {"e": object()},
                           {"all": list(range(60))}, val_mask=va)
    assert D.NOTES["val_finetune"].format(n=14) in with_ft["notes"] and len(calls) == 1
