"""Units of the multi-site study's site swap (``benchmarks/multisite_site_swap.py``), command line
(``multisite_study.py``) and peer runs (``multisite_synthetic.py``) against the site profile's fields, the docs and
naive references (the whole scripts run in tests/benchmarks/test_multisite_quick.py)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_module import load_benchmark


def _swap():
    return load_benchmark("multisite_site_swap", "bench_site_swap")


def test_the_swaps_split_the_scanner_parameters_between_them():
    """Every scanner parameter of a site profile (all but its name and age distribution) is in exactly one swap."""
    from medssl.data.synthetic_sites import SiteProfile

    swaps = _swap().SWAPS
    scanner = {f.name for f in dataclasses.fields(SiteProfile)} - {"name", "age_beta"}
    named = [f for fields in swaps.values() for f in fields]
    assert sorted(named) == sorted(scanner) and swaps["none"] == ()


def test_a_swap_names_a_site_of_the_cohort_and_a_known_donor(tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    params = {"n_subjects": 10, "n_sites": 5, "shape": [16, 20, 24], "seed": 3, "fov_mm": 200.0}
    (cohort / "dataset_description.json").write_text(json.dumps({"GeneratedBy": [{"Parameters": params}]}))
    swap = _swap()
    spec = swap.cohort_spec(cohort)
    assert (spec.n_subjects, spec.n_sites, spec.shape, spec.seed, spec.fov_mm) == (10, 5, (16, 20, 24), 3, 200.0)
    with pytest.raises(SystemExit, match="--site site-F: the cohort has sites"):
        swap.write_swapped_cohort(cohort, tmp_path / "out", "site-F", "site-A", ("gamma",))
    with pytest.raises(SystemExit, match="--donor site-ZZ"):
        swap.write_swapped_cohort(cohort, tmp_path / "out", "site-E", "site-ZZ", ("gamma",))
    assert not (tmp_path / "out").exists()


def test_a_swap_regenerates_every_scan_of_the_site_and_no_other(tmp_path):
    from medssl.data.synthetic import write_synthetic_cohort

    cohort = tmp_path / "cohort"
    write_synthetic_cohort(cohort, n_subjects=15, n_sites=5, shape=(16, 16, 16), seed=0, workers=1, progress=False)
    out = _swap().write_swapped_cohort(cohort, tmp_path / "swapped", "site-E", "site-F", ("intensity_scale",))
    scans = sorted(p.relative_to(cohort) for p in cohort.rglob("*.nii.gz"))
    changed = [p.parts[0] for p in scans if (cohort / p).read_bytes() != (out / p).read_bytes()]
    assert len(scans) == 15 and changed == ["sub-0005", "sub-0010", "sub-0015"]  # subject i + 1 at site i mod 5


def test_site_errors_are_the_signed_and_absolute_errors_of_a_probe_fitted_on_internal_training_rows(tmp_path):
    """Features that are the age on sites 0-2 and the age minus 10 or 20 y on site 4: the age probe (fitted on the
    internal training rows only) reads site 4 as 15 y too young on average, MAE 15 y (its RMSE would be 15.8)."""
    rng = np.random.default_rng(0)
    site = np.repeat([0, 1, 2, 3, 4], 40)
    age = rng.uniform(20, 80, len(site))
    shift = np.where(site == 4, np.where(np.arange(len(site)) % 2 == 0, -10.0, -20.0), 0.0)
    shift[site == 3] = 30.0
    features = np.stack([age + shift, rng.normal(size=len(site)) * 1e-3], 1)
    subject = np.array([f"sub-{i:03d}" for i in range(len(site))])
    split = np.where((site < 3) & (np.arange(len(site)) % 4 != 0), "train", "test")
    eval_dir = tmp_path / "eval"
    (eval_dir / "features").mkdir(parents=True)
    np.savez(eval_dir / "features" / "pretrained-x.npz", features=features, age=age, site=site, subject=subject)
    with open(eval_dir / "manifest.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["subject", "split"])
        w.writerows(zip(subject, split))
    bias, mae = _swap().site_errors(eval_dir, "pretrained", 4, [0, 1, 2])
    assert bias == pytest.approx(-15.0, abs=0.05) and mae == pytest.approx(15.0, abs=0.05)


def test_the_summary_is_the_mean_over_seeds_and_the_random_init_comes_from_the_first_run_only(tmp_path, monkeypatch):
    """main: per swap and label, the mean over the seeds' runs of the site's signed error and MAE, with each seed's
    values; the site's code is its index among the sorted evaluated sites; the random-init twin of run0 only."""
    from medssl import api

    swap = _swap()
    study = tmp_path / "study"
    (study / "cohort-x").mkdir(parents=True)
    rows = [{"label": lab, "seed": s, "run_dir": str(study / f"run{i}-seed{s}")}
            for s in (0, 1, 2) for i, lab in enumerate(("SimCLR", "y-aware"))]
    rows += [{"label": swap.RANDOM, "seed": s, "run_dir": str(study / f"run0-seed{s}")} for s in (0, 1, 2)]
    budget = {"internal_sites": ["site-A", "site-B", "site-C"], "external_sites": ["site-D", "site-E"]}
    (study / "result.json").write_text(json.dumps({"rows": rows, "budget": budget}))
    for r in rows:
        Path(r["run_dir"]).mkdir(exist_ok=True)
    errors = {("none", "run0-seed0", "pretrained"): (-4.0, 6.0), ("none", "run0-seed1", "pretrained"): (-2.0, 5.0),
              ("none", "run0-seed0", "random_init"): (1.0, 3.0), ("none", "run0-seed1", "random_init"): (3.0, 4.0),
              ("none", "run1-seed0", "pretrained"): (-8.0, 9.0), ("none", "run1-seed1", "pretrained"): (-9.0, 11.0),
              ("none", "run0-seed2", "pretrained"): (-9.0, 10.0), ("none", "run0-seed2", "random_init"): (8.0, 9.5),
              ("none", "run1-seed2", "pretrained"): (-8.5, 10.0)}
    evaluated = []

    def evaluate(run, progress, protocol, data, root, options):
        evaluated.append((Path(run).name, Path(data).name, options.random_init))
        return {"info": {"output directory": str(run)}}

    def site_errors(eval_dir, kind, code, internal_codes):
        assert (code, internal_codes) == (4, [0, 1, 2])
        return errors[(Path(eval_dir).name.split("-", 1)[0], Path(eval_dir).name.split("-", 1)[1], kind)]

    monkeypatch.setattr(api, "evaluate", evaluate)
    monkeypatch.setattr(swap, "site_errors", site_errors)
    monkeypatch.setattr(swap, "write_swapped_cohort", lambda cohort, out, *a: out)
    monkeypatch.setattr(swap, "plot", lambda res, path: None)
    res = swap.main([str(study), "--site", "site-E", "--swaps", "none", "--out", str(tmp_path / "out")])
    assert sorted(evaluated) == [(f"none-run{i}-seed{s}", f"card-eval-seed{s}.yaml", i == 0) for i in (0, 1) for s in (0, 1, 2)]
    got = res["summary"]["none"]  # means over 3 seeds (a median would give -4 / 6 and 3 / 4)
    assert got["SimCLR"] == {"bias": -5.0, "mae": 7.0, "n": 3, "bias_per_seed": [-4.0, -2.0, -9.0],
                             "mae_per_seed": [6.0, 5.0, 10.0]}
    assert got["random init"] == {"bias": 4.0, "mae": 5.5, "n": 3, "bias_per_seed": [1.0, 3.0, 8.0],
                                  "mae_per_seed": [3.0, 4.0, 9.5]}
    assert got["y-aware"]["bias"] == pytest.approx(-8.5) and got["y-aware"]["mae"] == pytest.approx(10.0)
    assert set(got) == {"SimCLR", "y-aware", "random init"}
    with pytest.raises(SystemExit, match="not an unseen site"):
        swap.main([str(study), "--site", "site-B", "--swaps", "none", "--out", str(tmp_path / "out")])


def test_study_defaults_and_a_strict_json(tmp_path, monkeypatch):
    """multisite_study.py: by default 3 seeds (0 1 2), test fraction 0.3, cohort seed 0, the full budget, IXI from
    ../shared; the JSON is strict (a one-seed SD is null, never NaN) and NumPy numbers are plain numbers."""
    bench = load_benchmark("multisite_study", "bench_multisite")
    seen = []

    def part(a):
        seen.append(a)
        return {"rows": [{"label": "x", "seed": np.int64(0), "mae_int": np.float64(2.0), "mae_ext": 3.0}],
                "chance": 0.5, "budget": {"n": np.int64(7)}}

    monkeypatch.setattr(bench, "run_ixi", part)
    monkeypatch.setattr(bench, "run_synthetic", part)
    monkeypatch.setattr(bench, "plot", lambda *a: None)
    bench.main(["ixi", "--out", str(tmp_path)])
    bench.main(["synthetic", "--out", str(tmp_path)])
    ixi, syn = seen
    assert (ixi.seeds, ixi.test_fraction, ixi.quick) == ([0, 1, 2], 0.3, False)
    assert Path(ixi.ixi_dir).parts[-3:] == ("shared", "data", "ixi_dlmuse_roi_multisite")
    assert (syn.seeds, syn.budget, syn.cohort_seed, syn.validation, list(syn.peers)) == ([0, 1, 2], "full", 0, False, [])
    text = (tmp_path / "result.json").read_text()
    res = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert res["summary"][0]["mae_int"] == {"mean": 2.0, "sd": None, "per_seed": [2.0]} and res["budget"]["n"] == 7
    with pytest.raises(SystemExit):
        bench.main(["ixi", "--validation", "--out", str(tmp_path)])


def test_a_peer_run_pretrains_on_the_internal_training_scans_and_is_probed_on_the_same_rows(tmp_path, monkeypatch):
    """_synthetic_peer_run: the peer gets the internal training scans, each min-max rescaled to [0, 1], the job's
    epochs and crop, its batch (at most the training subjects), the recipe's lr and seed; nidl's y-aware gets the
    training ages and the demo kernel's bandwidth σ² = 4 (docs: σ = 2 y, bandwidth 4); the probes get the training
    rows, the internal sites' test rows and the external sites' test rows, sites coded by sorted name."""
    import types

    from medssl import api
    from medssl.eval import openbhb

    synthetic = load_benchmark("multisite_synthetic")
    rng = np.random.default_rng(0)
    sites = [f"site-{c}" for c in "ABCDEFG"] * 4
    records = [types.SimpleNamespace(site=s, age=20.0 + i) for i, s in enumerate(sites)]
    images = rng.normal(size=(len(sites), 1, 4, 4, 4)) * 3 + 1
    train = [i for i, s in enumerate(sites) if s in ("site-A", "site-B", "site-C") and i < 14]
    test = [i for i in range(len(sites)) if i not in train and sites[i] not in ("site-F", "site-G")]
    monkeypatch.setattr(api, "prepare_data", lambda cfg, run_dir, progress: types.SimpleNamespace(
        records=records, images=images, train=train, test=test))
    seen = {}

    def pretrain(x, dims, epochs, batch, lr, seed, device, crop, history, encoder_kwargs, **extra):
        seen.update(x=x, args=(dims, epochs, batch, lr, seed, device, crop), extra=extra)
        history.append({"steps": 3, "loss": 1.5})
        return lambda t: t.flatten(1)[:, :5]

    def probes(*args):
        seen["probes"] = args
        return {"pred_ext": np.zeros(len(args[6])), "mae_age": 1.0, "ext_mae_age": 1.0, "bacc_site": 0.5,
                "challenge_metric": 1.0, "n_train": 1, "n_internal": 1, "n_external": 1, "selected_age_alpha": 1.0,
                "selected_site_C": 1.0}

    monkeypatch.setitem(synthetic.PEERS, "nidl", types.SimpleNamespace(pretrain=pretrain))
    monkeypatch.setattr(openbhb, "run_openbhb", probes)
    job = {"peer": "nidl", "yaware": True, "external": ["site-D", "site-E"], "threads": 1, "epochs": 7, "batch": 32,
           "crop": 20, "overrides": ["seed=5", f"output_dir={tmp_path / 'peer'}"]}
    row, = synthetic._synthetic_peer_run(job)
    lo = images.reshape(len(sites), -1).min(1)[:, None, None, None, None]
    hi = images.reshape(len(sites), -1).max(1)[:, None, None, None, None]
    unit = (images - lo) / (hi - lo)
    np.testing.assert_allclose(seen["x"], unit[train], atol=1e-6)
    assert seen["args"] == (3, 7, len(train), 1e-3, 5, "cpu", 20)
    assert seen["extra"]["aux"].tolist() == [20.0 + i for i in train] and seen["extra"]["bandwidth"] == 4.0
    x_tr, age_tr, site_tr, x_int, age_int, site_int, x_ext, age_ext = seen["probes"]
    internal = [i for i in test if sites[i] in ("site-A", "site-B", "site-C")]
    external = [i for i in test if sites[i] in ("site-D", "site-E")]
    code = {s: k for k, s in enumerate(sorted(set(sites)))}
    np.testing.assert_allclose(x_int, unit[internal].reshape(len(internal), -1)[:, :5], atol=1e-6)
    np.testing.assert_allclose(x_ext, unit[external].reshape(len(external), -1)[:, :5], atol=1e-6)
    assert age_tr.tolist() == [20.0 + i for i in train] and age_ext.tolist() == [20.0 + i for i in external]
    assert site_tr.tolist() == [code[sites[i]] for i in train] and site_int.tolist() == [code[sites[i]] for i in internal]
    assert (row["label"], row["steps"], row["final_loss"]) == ("nidl y-aware (peer)", 3, 1.5)
    np.testing.assert_allclose(x_tr, unit[train].reshape(len(train), -1)[:, :5], atol=1e-6)
    assert age_int.tolist() == [20.0 + i for i in internal]
    synthetic._synthetic_peer_run({**job, "peer": "", "yaware": False})  # the control: the random row's weights
    from medssl.api import build_method
    from medssl.config import load_config
    from peers.common import monai_resnet18, resnet_kwargs_of

    import torch

    kwargs = resnet_kwargs_of(build_method(load_config(synthetic.DEMO_CONFIG)).encoder)
    torch.manual_seed(5)  # evaluate()'s random-init twin of a seed-5 run
    net = monai_resnet18(3, kwargs).eval()
    with torch.no_grad():
        np.testing.assert_allclose(seen["probes"][0], net(torch.from_numpy(unit[train]).float()).numpy(), atol=1e-5)
