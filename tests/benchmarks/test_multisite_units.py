"""Units of the multi-site study (``benchmarks/multisite_*.py``) against docs/benchmarks_multisite.md and naive
references: the budgets, the IXI feature views, split, training loop and which rows enter each fit."""

from __future__ import annotations

import argparse
import csv
import math
import re
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from benchmark_module import load_benchmark

DOC = (Path(__file__).resolve().parents[2] / "docs" / "benchmarks_multisite.md").read_text()


def test_ixi_budgets_are_the_documented_ones():
    """Part 2 of the page: MLP 260 → 256 → 128, head 128 → 128 → 32, noise σ 0.2, dropout p 0.2, AdamW lr 10⁻³ /
    weight decay 10⁻⁴, batch 64, 300 epochs, 10 warm-up epochs; the CI run: 3 epochs of a 64-unit MLP."""
    for text in ("260 → 256 → 128", "(128 → 128 → 32)", "σ = 0.2 standard units", "(p = 0.2,", "batch 64, 300 epochs",
                 "AdamW (lr 10⁻³, weight decay 10⁻⁴)", "10 warm-up epochs", "3 epochs of a 64-unit MLP"):
        assert text in DOC, text
    ixi = load_benchmark("multisite_ixi")
    assert ixi.IXI_BUDGETS["full"] == {"hidden": 256, "out_dim": 128, "proj_hidden": 128, "proj_dim": 32, "noise": 0.2,
                                       "dropout": 0.2, "epochs": 300, "batch": 64, "lr": 1e-3, "weight_decay": 1e-4,
                                       "warmup_epochs": 10}
    assert (ixi.IXI_BUDGETS["quick"]["hidden"], ixi.IXI_BUDGETS["quick"]["epochs"]) == (64, 3)
    net = ixi.feature_mlp(260, 256, 128)  # "Linear, BatchNorm, ReLU, twice; the 128-d output is the embedding"
    assert [type(x).__name__ for x in net] == ["Linear", "BatchNorm1d", "ReLU"] * 2
    assert (net[0].in_features, net[0].out_features, net[3].out_features, net.out_dim) == (260, 256, 128, 128)


def test_synthetic_budgets_and_split_sizes_are_the_documented_table(tmp_path):
    """The page's budget table (subjects, grid / views, epochs, pretraining / internal test / external subjects), read
    from the page; batch 32 (the demo recipe) except quick's 8; the split sizes come from write_split_cards."""
    synthetic = load_benchmark("multisite_synthetic")
    rows = re.findall(r"^\| `(\w+)`[^|]*\| (\d+)[^|]*\| (\d+)³ / (\d+)³ \| (\d+)( \(batch (\d+)\))? \| "
                      r"(\d+) / (\d+) / (\d+) \|$", DOC, re.MULTILINE)
    assert [r[0] for r in rows] == ["full", "cpu", "quick"]
    for name, subjects, shape, crop, epochs, _, batch, n_train, n_int, n_ext in rows:
        b = synthetic.SYN_BUDGETS[name]
        assert b == {"per_site": int(subjects) // 5, "shape": int(shape), "crop": int(crop), "epochs": int(epochs),
                     "batch": int(batch or 32)}, name
        cohort = tmp_path / name
        cohort.mkdir()
        with open(cohort / "participants.tsv", "w", newline="") as f:  # subject i at site i mod 5, as the cohort
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["participant_id", "age", "sex", "site", "diagnosis"])
            w.writerows([f"sub-{i:04d}", 50, "M", f"site-{'ABCDE'[i % 5]}", "CN"] for i in range(int(subjects)))
        masks = synthetic.write_split_cards(cohort, cohort, 0, 0.3)[2]  # "test fraction 0.3 of demo.yaml"
        assert [int(masks[k].sum()) for k in ("train", "internal", "external")] == [int(n_train), int(n_int), int(n_ext)]


def test_feature_views_add_noise_then_set_dropped_features_to_the_training_mean():
    """x + N(0, σ²), then each feature 0 (the training mean) with probability p; seeded by the generator."""
    views = load_benchmark("multisite_ixi").FeatureViews(0.2, 0.25)
    x = torch.randn(500, 40)
    v = views.views(x, 2, torch.Generator().manual_seed(0))
    assert v.shape == (500, 2, 40)
    dropped = v == 0
    assert abs(dropped.float().mean().item() - 0.25) < 0.01  # 40,000 draws: SD of the fraction 0.002
    noise = (v - x[:, None])[~dropped]
    assert abs(noise.std().item() - 0.2) < 0.005 and abs(noise.mean().item()) < 0.005
    assert not torch.equal(v[:, 0], v[:, 1])  # two different views of each subject
    assert torch.equal(v, views.views(x, 2, torch.Generator().manual_seed(0)))
    assert not torch.equal(v, views.views(x, 2, torch.Generator().manual_seed(1)))


def test_ixi_split_is_seeded_stratified_by_site_and_keeps_every_iop_subject_external():
    ixi = load_benchmark("multisite_ixi")
    site = np.array(["Guys"] * 100 + ["HH"] * 50 + ["IOP"] * 20)
    d = {"subject": np.array([f"IXI{i:03d}-{s}-{i:04d}-T1" for i, s in enumerate(site)]), "site": site}
    masks = [ixi.ixi_split(d, seed, 0.3) for seed in (0, 1)]
    for m in masks:
        assert m["external"].tolist() == (site == "IOP").tolist() and not (m["train"] & m["internal"]).any()
        assert (m["train"] | m["internal"]).tolist() == (site != "IOP").tolist()
        assert [int((m["internal"] & (site == s)).sum()) for s in ("Guys", "HH")] == [30, 15]  # 0.3 of each site
    assert not np.array_equal(masks[0]["train"], masks[1]["train"])  # each seed redraws the split


def test_ixi_training_loop_batches_schedule_gradients_and_seed(monkeypatch):
    """train_feature_method: ⌊n_train / batch⌋ steps per epoch, each on a fresh permutation of the training rows with
    their own ages and site codes (sorted site names); lr per step as docs/training.md states (lr·(k+1)/w during the
    w warm-up steps, then cosine towards 0.01·lr); each step's gradient alone; the same seed, the same run."""
    from medssl import api
    from medssl.train import optim

    ixi = load_benchmark("multisite_ixi")
    rng = np.random.default_rng(0)
    site = np.array(["HH", "Guys"] * 20 + ["IOP"] * 4)
    d = {"age": rng.uniform(20, 80, 44), "site": site}
    z = rng.normal(size=(44, 6))
    train = np.arange(44) < 36  # 36 training rows, batch 8: 4 steps per epoch
    m = {"train": train, "internal": ~train & (site != "IOP"), "external": site == "IOP"}
    b = {**ixi.IXI_BUDGETS["quick"], "batch": 8, "epochs": 3, "warmup_epochs": 1, "lr": 1e-2}
    steps, lrs = [], []
    real_method, real_opt = api.build_method, optim.build_optimizer

    def build_method(cfg):
        method = real_method(cfg)
        step = method.training_step

        def spy(batch, generator):
            assert method.training and method.encoder.training
            out = step(batch, generator)
            params = [p for p in method.parameters() if p.requires_grad]
            steps.append((batch, params, torch.autograd.grad(out.loss, params, retain_graph=True, allow_unused=True)))
            return out
        method.training_step = spy
        return method

    def build_optimizer(model, *args, **kwargs):
        assert args == ("adamw", b["lr"], b["weight_decay"]) and not kwargs
        assert model.projector(torch.zeros(2, b["out_dim"])).shape == (2, b["proj_dim"])
        opt = real_opt(model, *args, **kwargs)
        step = opt.step

        def spy(self, *a, **k):
            lrs.append(self.param_groups[0]["lr"])
            _, params, grads = steps[-1]
            for p, g in zip(params, grads):
                assert (p.grad is None or not p.grad.any()) if g is None else torch.allclose(p.grad, g, atol=1e-6)
            return step(*a, **k)
        opt.step = types.MethodType(spy, opt)  # a bound method, as the lr scheduler wraps it
        return opt

    monkeypatch.setattr(api, "build_method", build_method)
    monkeypatch.setattr(optim, "build_optimizer", build_optimizer)
    encoder, loss = ixi.train_feature_method("FairKL", ixi.study_variants(None)["eps-SupInfoNCE + FairKL(site)"],
                                             z, d, m, b, 5)
    assert len(steps) == len(lrs) == 12
    w, total = 4, 12
    expected = [1e-2 * (k + 1) / w if k < w else 1e-2 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (k - w) / (total - w))))
                for k in range(total)]
    assert lrs == pytest.approx(expected, rel=1e-6)
    x_tr, age_tr, site_tr = torch.as_tensor(z[train], dtype=torch.float32), d["age"][train], site[train]
    orders = []
    for batch, _, _ in steps:
        rows = [int(np.flatnonzero((x_tr == r).all(1))[0]) for r in batch["image"]]
        assert len(rows) == 8 and batch["age"].tolist() == pytest.approx(age_tr[rows].tolist())
        assert batch["site"].tolist() == [["Guys", "HH"].index(s) for s in site_tr[rows]]
        orders.append(rows)
    for e in range(3):
        assert len({r for rows in orders[4 * e:4 * e + 4] for r in rows}) == 32  # no row twice in an epoch
    assert orders[0:4] != orders[4:8]  # a new permutation each epoch
    steps.clear(), lrs.clear()
    again, loss_again = ixi.train_feature_method("FairKL", ixi.study_variants(None)["eps-SupInfoNCE + FairKL(site)"],
                                                 z, d, m, b, 5)
    assert loss_again == loss and all(torch.equal(p, q) for p, q in zip(encoder.parameters(), again.parameters()))
    first = [int(np.flatnonzero((x_tr == r).all(1))[0]) for r in steps[0][0]["image"]]
    steps.clear(), lrs.clear()
    ixi.train_feature_method("FairKL", ixi.study_variants(None)["eps-SupInfoNCE + FairKL(site)"], z, d, m, b, 6)
    assert [int(np.flatnonzero((x_tr == r).all(1))[0]) for r in steps[0][0]["image"]] != first  # another seed's order
    z[3, 2] = np.nan  # a training row: the loss turns NaN and the run stops saying so
    with pytest.raises(FloatingPointError, match="seed 5: loss became nan"):
        ixi.train_feature_method("SimCLR", ixi.study_variants(["SimCLR"])["SimCLR"], z, d, m, b, 5)


def test_an_embedding_is_the_subjects_own_not_its_batchs():
    """_embed runs the encoder in eval mode: a subject's embedding does not depend on the others embedded with it,
    even for the untrained twin (a fresh module, in training mode)."""
    ixi = load_benchmark("multisite_ixi")
    torch.manual_seed(0)
    net = ixi.feature_mlp(5, 16, 8)
    z = np.random.default_rng(0).normal(size=(10, 5))
    np.testing.assert_allclose(ixi._embed(net, z)[:3], ixi._embed(net, z[:3]), atol=1e-6)


def _fake_ixi(folder: Path, scale_internal: float = 1.0, age_shift: float = 0.0, internal=()) -> None:
    """An IXI-like table: Guys 20, HH 14, IOP 6 subjects, 5 ROIs; rows in ``internal`` scaled / aged as asked."""
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    ids = [f"IXI{i:03d}-{s}-{i:04d}-T1" for i, s in enumerate(["Guys"] * 20 + ["HH"] * 14 + ["IOP"] * 6)]
    with open(folder / "IXI_DLMUSE.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "11", "12", "13", "14", "15"])
        for s in ids:
            vol = rng.uniform(1e3, 5e3, 5) * (1.0 + 0.2 * ("HH" in s))
            w.writerow([s, *(vol * (scale_internal if s in internal else 1.0))])
    with open(folder / "IXI_demog.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "Age", "Sex"])
        w.writerows([s, 20 + 2 * i + (age_shift if s in internal or "IOP" in s else 0), "MF"[i % 2]]
                    for i, s in enumerate(ids))


def _run_ixi(ixi, folder: Path, monkeypatch) -> tuple[dict, dict]:
    from medssl.eval import openbhb

    calls = {}

    def record(x_tr, a_tr, s_tr, x_int, a_int, s_int, x_ext, a_ext):
        calls[len(calls)] = {"x_train": x_tr, "age_train": a_tr, "site_train": s_tr, "x_internal": x_int,
                             "age_internal": a_int, "site_internal": s_int, "x_external": x_ext, "age_external": a_ext}
        return {"pred_ext": np.zeros(len(x_ext)), "mae_age": 1.0, "ext_mae_age": 1.0, "bacc_site": 0.5,
                "challenge_metric": 1.0, "n_train": len(x_tr), "n_internal": len(x_int), "n_external": len(x_ext),
                "selected_age_alpha": 1.0, "selected_site_C": 1.0}

    monkeypatch.setattr(openbhb, "run_openbhb", record)
    a = argparse.Namespace(threads=1, quick=False, variants=["SimCLR"], ixi_dir=str(folder), seeds=[0],
                           test_fraction=0.3)
    res = ixi.run_ixi(a)  # the full budget: 24 training rows, fewer than a batch of 64, so no training step
    return {r["label"]: calls[i] for i, r in enumerate(_in_call_order(res["rows"]))}, res


def _in_call_order(rows):
    order = ["Ridge on log ROI volumes (no encoder)", "Ridge after ComBat (IOP unharmonised)",
             "Ridge after ComBat incl. IOP features", "MLP SimCLR", "MLP random init (same encoder)"]
    return sorted((r for r in rows if r["label"] in order), key=lambda r: order.index(r["label"]))


def test_ixi_fits_see_only_their_rows_and_no_test_age(tmp_path, monkeypatch):
    """run_ixi: features are log volumes standardised with the training rows' mean and SD (ddof 0); codes are the
    sorted site names; no fit sees a test age; the internal test rows enter no fit (ComBat included), the IOP
    rows only the transductive ComBat; with no training step (fewer rows than a batch) the MLP is its untrained twin."""
    ixi = load_benchmark("multisite_ixi")
    _fake_ixi(tmp_path / "a")
    d = ixi.load_ixi(tmp_path / "a")
    assert d["site"].tolist() == ["Guys"] * 20 + ["HH"] * 14 + ["IOP"] * 6 and d["sex"][:2].tolist() == [1.0, 0.0]
    m = ixi.ixi_split(d, 0, 0.3)
    calls, res = _run_ixi(ixi, tmp_path / "a", monkeypatch)
    assert [r["label"] for r in res["rows"]][:2] == ["MLP SimCLR", "MLP random init (same encoder)"]
    assert res["budget"]["hidden"] == 256 and calls["MLP SimCLR"]["x_train"].shape == (24, 128)
    logv = np.log(d["x"])
    mu = logv[m["train"]].mean(0)
    z = (logv - mu) / np.sqrt(((logv[m["train"]] - mu) ** 2).mean(0))
    raw = calls["Ridge on log ROI volumes (no encoder)"]
    for k in ("train", "internal", "external"):
        np.testing.assert_allclose(raw[f"x_{k}"], z[m[k]], atol=1e-12)
        if k != "external":
            assert raw[f"site_{k}"].tolist() == [["Guys", "HH"].index(s) for s in d["site"][m[k]]]
        assert raw[f"age_{k}"].tolist() == d["age"][m[k]].tolist()
    np.testing.assert_allclose(calls["MLP SimCLR"]["x_train"], calls["MLP random init (same encoder)"]["x_train"])
    internal = set(d["subject"][m["internal"]])
    _fake_ixi(tmp_path / "b", scale_internal=1.7, age_shift=9.0, internal=internal)
    changed, _ = _run_ixi(ixi, tmp_path / "b", monkeypatch)
    for label, before in calls.items():
        after = changed[label]
        np.testing.assert_allclose(after["x_train"], before["x_train"], atol=1e-9, err_msg=label)
        np.testing.assert_allclose(after["x_external"], before["x_external"], atol=1e-9, err_msg=label)
        assert not np.allclose(after["x_internal"], before["x_internal"]), label


def _fake_cohort(cohort, n_subjects, n_sites, shape, seed, workers, progress):
    """participants.tsv of the synthetic cohort's layout (subject i at site i mod n_sites, 2 AD per site), no scans."""
    cohort.mkdir(parents=True, exist_ok=True)
    with open(cohort / "participants.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["participant_id", "age", "sex", "site", "diagnosis"])
        w.writerows([f"sub-{i:04d}", 20 + i % 60, "MF"[i % 2], f"site-{'ABCDEFG'[i % n_sites]}",
                     "AD" if i < 2 * n_sites else "CN"] for i in range(n_subjects))


def test_synthetic_jobs_give_every_method_the_same_budget_and_subjects(tmp_path, monkeypatch):
    """run_synthetic: per seed, one job per variant with the budget's grid, crop, epochs and batch, the seed's
    pretraining card, the variant's overrides after --common and the seed last; the random-init twin once per seed;
    peers and their min-max control on the evaluation card with the same budget; chance = 1/3; the random rows,
    then the mean predictor, last. The split: stratified by site and diagnosis, redrawn by each seed."""
    import medssl.data.synthetic as generator

    synthetic = load_benchmark("multisite_synthetic")
    rows_mod = load_benchmark("multisite_rows")
    jobs = []

    def job(j):
        jobs.append(j)
        label = synthetic.PEER_LABELS[j["peer"] + ("_yaware" if j["yaware"] else "")] if "peer" in j else j["label"]
        seed = int([o for o in j["overrides"] if o.startswith("seed=")][-1][5:])
        return [{"label": label, "seed": seed}] + ([{"label": rows_mod.RANDOM, "seed": seed}]
                                                   if j.get("random_init") else [])

    monkeypatch.setattr(generator, "write_synthetic_cohort", _fake_cohort)
    monkeypatch.setattr(synthetic, "_job", job)
    a = argparse.Namespace(quick=False, budget="cpu", variants=None, out=str(tmp_path), validation=True,
                           cohort_seed=3, jobs=1, threads=1, common="train.lr=0.002", reuse_runs=False,
                           seeds=[4, 7], peers=["nidl"])
    res = synthetic.run_synthetic(a)
    variants = rows_mod.study_variants(None)
    b = synthetic.SYN_BUDGETS["cpu"]
    own = [j for j in jobs if "peer" not in j]
    assert len(own) == 2 * len(variants) and [j["random_init"] for j in own] == ([True] + [False] * 4) * 2
    for j in own:
        seed = int(j["overrides"][-1][5:])
        spec = rows_mod.split_overrides(variants[j["label"]])
        assert j["overrides"][-len(spec) - 2:] == ["train.lr=0.002", *spec, f"seed={seed}"]
        for o in (f"data.shape=[{b['shape']},{b['shape']},{b['shape']}]", f"train.epochs={b['epochs']}",
                  f"augment.crop_size=[{b['crop']},{b['crop']},{b['crop']}]", f"train.batch_size={b['batch']}",
                  f"data.card={tmp_path / 'splits' / f'card-pretrain-seed{seed}.yaml'}"):
            assert o in j["overrides"], o
        assert j["external"] == ["site-F", "site-G"] and j["eval_card"].endswith(f"card-eval-seed{seed}.yaml")
    peers = [j for j in jobs if "peer" in j]
    assert sorted((j["peer"], j["yaware"]) for j in peers) == sorted([("nidl", False), ("nidl", True), ("", False)] * 2)
    for j in peers:
        seed = int(next(o for o in j["overrides"] if o.startswith("seed="))[5:])
        assert (j["epochs"], j["batch"], j["crop"]) == (b["epochs"], b["batch"], b["crop"])
        assert f"data.card={tmp_path / 'splits' / f'card-eval-seed{seed}.yaml'}" in j["overrides"]
    assert res["chance"] == pytest.approx(1 / 3) and res["budget"]["subjects"] == 5 * b["per_site"]
    labels = [r["label"] for r in res["rows"]]
    assert labels[-6:] == [rows_mod.RANDOM] * 2 + [synthetic.PEER_LABELS[""]] * 2 + ["training-mean predictor"] * 2
    with open(next(tmp_path.glob("cohort-seed3-50x7-32")) / "participants.tsv", newline="") as f:
        assert len(list(csv.DictReader(f, delimiter="\t"))) == 7 * 50
    splits = []
    for seed in (4, 7):
        with open(tmp_path / "splits" / f"participants-seed{seed}.tsv", newline="") as f:
            kept = list(csv.DictReader(f, delimiter="\t"))
        for s in synthetic.SYN_INTERNAL:  # each site's 2 AD subjects: one on each side
            assert sorted(r["split"] for r in kept if r["site"] == s and r["diagnosis"] == "AD") == ["test", "train"]
        splits.append([r["split"] for r in kept])
    assert splits[0] != splits[1]


def test_a_synthetic_run_is_reused_only_when_asked_and_identical(tmp_path, monkeypatch):
    """_synthetic_run: an earlier run in the folder is retrained and deleted first unless --reuse-runs is given and its
    resolved config is the same; the evaluation gets the job's card, root, external sites and random-init flag."""
    from medssl import api
    from medssl.config import load_config, save_config

    synthetic = load_benchmark("multisite_synthetic")
    run_dir = tmp_path / "run0-seed0"
    calls = []

    def pretrain(cfg, progress):
        calls.append("pretrain")
        run_dir.mkdir()
        save_config(cfg, run_dir / "config.yaml")
        (run_dir / "train_summary.json").write_text('{"seconds": 1, "steps": 2, "final_loss": 3.0}')

    def evaluate(run, progress, protocol, data, root, options):
        calls.append((protocol, data, root, options.external_sites, options.random_init))
        o = {"pred_ext": [1.0, 2.0], "age_ext": [1.0, 3.0], "mae_age": 1.0, "ext_mae_age": 0.5, "bacc_site": 0.5,
             "challenge_metric": 0.4, "n_train": 1, "n_internal": 1, "n_external": 2, "selected_age_alpha": 1.0,
             "selected_site_C": 1.0}
        return {"openbhb": {"pretrained": o, **({"random init": o} if options.random_init else {})}}

    monkeypatch.setattr(api, "pretrain", pretrain)
    monkeypatch.setattr(api, "evaluate", evaluate)
    job = {"threads": 1, "reuse": False, "external": ["site-D", "site-E"], "random_init": True, "label": "SimCLR",
           "eval_card": "eval.yaml", "cohort": "cohort", "overrides": [f"output_dir={run_dir}", "seed=0"]}
    rows = synthetic._synthetic_run(job)
    assert calls == ["pretrain", ("openbhb", "eval.yaml", "cohort", ("site-D", "site-E"), True)]
    assert [r["label"] for r in rows] == ["SimCLR", load_benchmark("multisite_rows").RANDOM]
    (run_dir / "stale.ckpt").write_text("")
    for reuse, overrides, trained in ((False, [], True), (True, [], False), (True, ["train.lr=0.5"], True)):
        calls.clear()
        (run_dir / "stale.ckpt").write_text("")
        rows = synthetic._synthetic_run({**job, "reuse": reuse, "random_init": False,
                                         "overrides": [*job["overrides"], *overrides]})
        assert (calls[0] == "pretrain") == trained and rows[0]["reused_run"] == (not trained) and len(rows) == 1
        assert (run_dir / "stale.ckpt").exists() == (not trained)  # a retrained folder starts empty
        assert load_config(run_dir / "config.yaml").train.lr == (0.5 if overrides else load_config(
            load_benchmark("multisite_rows").DEMO_CONFIG).train.lr)


def test_a_metric_missing_on_one_seed_is_left_out_of_the_summary():
    """summarise: a metric is summarised only when every seed's row has it (no KeyError, no mean over fewer seeds)."""
    rows = [{"label": "a", "seed": 0, "mae_int": 1.0, "bacc_site": 0.5}, {"label": "a", "seed": 1, "mae_int": 3.0}]
    s, = load_benchmark("multisite_report").summarise(rows)
    assert "bacc_site" not in s and s["mae_int"]["mean"] == 2.0 and s["n"] == 2
