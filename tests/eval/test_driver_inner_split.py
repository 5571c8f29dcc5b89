"""The fine-tuning validation split the driver carves without an official one (docs/evaluation.md: "a
subject-level validation split (20 % of the training subjects, stratified by site)"), checked by counting
(fine-tuning itself replaced by the ``calls`` spy)."""

from __future__ import annotations

import numpy as np

from medssl.eval.driver import EvalOptions, run_protocol


def test_the_inner_split_holds_out_20_percent_of_the_training_subjects_of_each_site(calls):
    """30 training subjects (10 per site, 2 scans each), 10 test subjects: 2 validation subjects per site, whole
    subjects, carved from the training rows only; every other training row is fitted on, no test row is. The draw
    follows the evaluation seed."""
    n = 80
    subjects = np.array([f"s{i // 2:03d}" for i in range(n)])
    feats = {"features": np.zeros((n, 2), np.float32), "age": np.linspace(20, 80, n),
             "site": np.arange(n) // 2 % 3, "subject": subjects}
    tr = np.arange(n) < 60
    assert EvalOptions().val_fraction == 0.2
    out = run_protocol(EvalOptions(protocol="finetune", n_boot=0), {"e": feats}, tr, {}, 0, ["age"], {"e": object()},
                       {"all": list(range(n))})
    (c,) = calls
    fit, val = np.array(c["fit"]), np.array(c["val"])
    assert sorted(fit.tolist() + val.tolist()) == np.flatnonzero(tr).tolist()  # train rows split, nothing else
    assert not set(subjects[fit]) & set(subjects[val])  # no subject on both sides
    assert c["test"] == np.flatnonzero(~tr).tolist()
    val_sites = feats["site"][val][::2]  # one per validation subject (its two scans are adjacent)
    assert len(set(subjects[val])) == 6 and np.bincount(val_sites, minlength=3).tolist() == [2, 2, 2]
    r = out["finetune"]["e"]["age"]
    assert (r["n_fit"], r["n_val"], r["early_stopping"]) == (48, 12, "20% inner subject split of train")
    run_protocol(EvalOptions(protocol="finetune", n_boot=0), {"e": feats}, tr, {}, 4, ["age"], {"e": object()},
                 {"all": list(range(n))})
    other = np.array(calls[1]["val"])  # another evaluation seed: other validation subjects, as many per site
    assert set(other) != set(val) and np.bincount(feats["site"][other][::2], minlength=3).tolist() == [2, 2, 2]
