"""Which rows the driver's fine-tuning runs fit on, early-stop on and score (fine-tuning itself replaced by a spy)."""

from __future__ import annotations

import numpy as np

from medssl.eval import driver as D
from medssl.eval.driver import EvalOptions, run_protocol


def _feats(n: int = 80, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"features": rng.normal(size=(n, 4)).astype(np.float32), "age": rng.uniform(20, 80, n),
            "site": np.arange(n) % 2, "subject": np.array([f"s{i // 2:03d}" for i in range(n)])}


def test_fewshot_fine_tuning_curves_early_stop_on_the_official_val_rows(calls):
    """With an official validation split every point of the fine-tuning curve early-stops on all of it (as the
    notes and docs/evaluation.md say) and fits on a subset of the training rows only."""
    feats = _feats()
    split = np.repeat(["train", "val", "test"], [40, 20, 20])
    tr, va = split == "train", split == "val"
    opts = EvalOptions(protocol="fewshot", n_boot=0, map_method="none", fewshot_finetune=True, fractions=(0.5, 1.0),
                       seeds=(0, 1))
    run_protocol(opts, {"e": feats}, tr, {}, 0, ["age"], {"e": object()}, {"all": list(range(80))}, val_mask=va)
    assert len(calls) == 3
    for fit, val, test in ((c["fit"], c["val"], c["test"]) for c in calls):
        assert set(fit) <= set(np.flatnonzero(tr)) and val == np.flatnonzero(va).tolist()
        assert test == np.flatnonzero(~tr & ~va).tolist()


def test_an_inner_split_without_a_validation_subject_keeps_one(calls):
    """4 training subjects in 4 sites at val_fraction 0.1: the stratified split holds none out (round(0.4) = 0),
    so the last subject becomes the validation subject (early stopping on no rows would fail)."""
    feats = _feats(n=12)
    feats["site"] = np.arange(12) // 2 % 4 + np.where(np.arange(12) < 8, 0, 4)
    tr = np.arange(12) < 8
    opts = EvalOptions(protocol="finetune", n_boot=0, val_fraction=0.1)
    D._finetune_rows(opts, object(), feats, "age", np.flatnonzero(tr), np.flatnonzero(~tr), list(range(12)), 0, "cpu",
                     None, 0)
    (c,) = calls
    fit, val = c["fit"], c["val"]
    assert val == [6, 7] and fit == list(range(6))


def test_fine_tuning_curves_need_the_test_scans_the_finetune_protocol_needs(calls):
    """--fewshot-finetune on a label with 0 or 1 labelled test scans: the probe curve is left out with the reason;
    the fine-tuning curve ran anyway (0 scans: a torch.cat error; 1 scan: 'balanced acc. 0.000' from one scan, the
    reason dropped). It is now left out as the finetune protocol leaves it, the probes' reason given, nothing run."""
    from medssl.eval.report import summary_rows

    feats = _feats(n=48)
    tr = np.arange(48) < 30
    opts = EvalOptions(protocol="fewshot", n_boot=0, map_method="none", fewshot_finetune=True, seeds=(0,),
                       fractions=(1.0,))
    for n_test in (0, 1):
        feats["label"] = np.where(tr, np.arange(48) % 2, np.where(np.arange(48) < 30 + n_test, 1, -1))
        res = run_protocol(opts, {"e": feats}, tr, {"label": ["a", "b"]}, 0, ["label"], {"e": object()},
                           {"all": list(range(48))})
        assert res["skipped_targets"]["label"].startswith(f"{n_test} held-out scan(s) have a value")
        assert summary_rows(res) == [] and calls == []
