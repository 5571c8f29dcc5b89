"""Smoke test of ``benchmarks/medmnist.py --quick`` on the real PneumoniaMNIST file, plus its scoring."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from benchmark_module import load_benchmark
from shared_data import SHARED, shared_path


def _bench():
    return load_benchmark("medmnist", "bench_medmnist")


def _part(name: str):
    """``benchmarks/medmnist_<name>.py``: the benchmark's data, pretrain, scoring or report module."""
    return load_benchmark(f"medmnist_{name}")


def _data_root() -> Path:
    shared_path("data", "medmnist_pneumoniamnist_reconstructed", "pneumoniamnist.npz")
    return SHARED / "data"


def test_score_matches_sklearn():
    """AUC / ACC of the benchmark equal scikit-learn's on random scores, with intervals around them."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    scoring = _part("scoring")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0, 1)
    s = scoring.score(y, p, seed=0, n_boot=200)
    assert s["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert s["acc"] == pytest.approx(accuracy_score(y, p >= 0.5), abs=1e-12)
    assert s["auc_ci"][0] < s["auc"] < s["auc_ci"][1] and s["acc_ci"][0] < s["acc"] < s["acc_ci"][1]


def test_official_splits_loaded():
    """Split sizes and class counts of the shared card are those of the official file (README of ../shared)."""
    data = _part("data").load_splits("pneumonia", _data_root())
    counts = {k: (len(y), int((y == 0).sum()), int((y == 1).sum())) for k, (x, y) in data.items()}
    assert counts == {"train": (4708, 1214, 3494), "val": (524, 135, 389), "test": (624, 234, 390)}
    x = data["train"][0]
    assert x.shape[1:] == (1, 28, 28) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0


def test_quick_run_end_to_end(tmp_path):
    """--quick pretrains (SimCLR and MAE), probes, fine-tunes, writes JSON + figure and a table; every score is valid."""
    out = tmp_path / "run"
    res = _bench().main(["--dataset", "pneumonia", "--quick", "--seeds", "0", "--threads", "2", "--n-boot", "50",
                         "--data-root", str(_data_root()), "--out", str(out), "--json", str(tmp_path / "r.json"),
                         "--set", "methods=simclr,mae"])
    on_disk = json.loads((tmp_path / "r.json").read_text())
    assert on_disk["dataset"] == "pneumonia" and on_disk["quick"] and on_disk["seeds"] == [0]
    assert Path(res["figure"]).is_file() and Path(res["figure"]).stat().st_size > 10_000
    assert (out / "simclr_seed0" / "metrics.jsonl").is_file()  # the SimCLR trainer really ran
    assert (out / "mae_seed0" / "metrics.jsonl").is_file() and on_disk["per_seed"][0]["mae_pretrain"]["steps"] >= 1
    assert res["figure"].endswith("medmnist_pneumonia_mae.png")  # never overwrites the SimCLR-only figure
    assert on_disk["per_seed"][0]["ssl_pretrain"]["steps"] >= 1
    assert math.isfinite(on_disk["per_seed"][0]["ssl_pretrain"]["final_loss"])
    for fraction, point in on_disk["per_seed"][0]["few_label"].items():
        for key in ("ssl_probe", "random_probe", "ssl_finetune", "scratch", "mae_probe", "mae_finetune",
                    "random_vit_probe", "vit_scratch"):
            r = point[key]
            assert 0.0 <= r["auc"] <= 1.0 and 0.0 <= r["acc"] <= 1.0, (fraction, key, r)
            assert r["n_test"] == 256 and r["n_train"] == point["n_train"]
    assert on_disk["per_seed"][0]["few_label"]["0.1"]["n_train"] < on_disk["per_seed"][0]["few_label"]["1.0"]["n_train"]
    s = on_disk["summary"]["ssl_probe"]
    assert s["auc_mean"] == on_disk["per_seed"][0]["few_label"]["1.0"]["ssl_probe"]["auc"]
    assert s["auc_sd"] is None or math.isnan(s["auc_sd"])  # one seed: no SD, never a fake 0
    assert on_disk["budget"]["ssl_epochs"] == 1 and on_disk["wall_seconds"] > 0
    one_fraction = {**on_disk, "budget": {**on_disk["budget"], "fractions": [1.0]}}  # no curve: a per-seed panel
    _part("report").plot(one_fraction, tmp_path / "one.png")
    assert (tmp_path / "one.png").stat().st_size > 10_000
    # --merge: a second process's seed (here the same result relabelled seed 1) joins the table
    twin = {**on_disk, "seeds": [1], "per_seed": [{**on_disk["per_seed"][0], "seed": 1}]}
    (tmp_path / "twin.json").write_text(json.dumps(twin))
    merged = _bench().main(["--dataset", "pneumonia", "--merge", str(tmp_path / "twin.json"), str(tmp_path / "r.json"),
                            "--out", str(tmp_path / "merged"), "--figure", str(tmp_path / "merged.png")])
    assert merged["seeds"] == [0, 1] and merged["quick"] and json.loads(json.dumps(merged["budget"])) == on_disk["budget"]
    assert merged["summary"]["ssl_probe"]["auc_mean"] == s["auc_mean"] and merged["summary"]["ssl_probe"]["auc_sd"] == 0
    assert merged["machine"]["note"] == "merged from separate runs" and len(merged["wall_seconds_per_run"]) == 2
    with pytest.raises(SystemExit, match="dataset 'pneumonia', not --dataset 'adrenal'"):
        _bench().main(["--dataset", "adrenal", "--merge", str(tmp_path / "r.json"), "--out", str(tmp_path / "bad")])


def test_resume_reuses_the_encoder_and_encoder_lr_is_chosen_on_validation(tmp_path):
    """--resume on a finished run trains no step and gives the same probe; with two encoder learning rates the
    fine-tuning keeps the one with the best validation AUC, and the run at the default rate is the first run's."""
    common = ["--dataset", "pneumonia", "--quick", "--seeds", "0", "--threads", "2", "--n-boot", "20",
              "--data-root", str(_data_root()), "--out", str(tmp_path / "run")]
    first = _bench().main([*common, "--set", "fractions=1.0", "--figure", str(tmp_path / "a.png")])["per_seed"][0]
    again = _bench().main([*common, "--resume", "--set", "fractions=1.0", "ft_encoder_lrs=1e-5,1e-3",
                           "--figure", str(tmp_path / "b.png")])["per_seed"][0]
    steps = first["ssl_pretrain"]["steps"]
    assert again["ssl_pretrain"]["resumed_at_step"] == steps == again["ssl_pretrain"]["steps"] >= 1
    assert again["ssl_pretrain"]["final_loss"] == first["ssl_pretrain"]["final_loss"]
    a, b = first["few_label"]["1.0"], again["few_label"]["1.0"]
    assert b["ssl_probe"]["auc"] == a["ssl_probe"]["auc"]  # the same encoder weights
    for key in ("ssl_finetune", "scratch"):
        per_lr = b[key]["val_auc_per_encoder_lr"]
        assert set(per_lr) == {"0.001", "1e-05"} and a[key]["lr_encoder"] == 0.001
        assert per_lr["0.001"] == pytest.approx(a[key]["val_auc"], abs=1e-12)  # the second rate starts from the same weights
        assert b[key]["val_auc"] == max(per_lr.values()) == per_lr[str(b[key]["lr_encoder"])]
    with pytest.raises(SystemExit, match="ft_encoder_lrs=fast"):
        _bench().main([*common, "--set", "ft_encoder_lrs=fast"])
    # LP-FT without the from-scratch row: fine-tuning starts from the probe (its "epoch 0")
    lpft = _bench().main([*common, "--resume", "--set", "fractions=1.0", "ft_head_init=probe", "scratch=false",
                          "--figure", str(tmp_path / "c.png")])["per_seed"][0]["few_label"]["1.0"]
    assert "scratch" not in lpft and lpft["ssl_probe"]["auc"] == a["ssl_probe"]["auc"]
    assert lpft["ssl_finetune"]["history"][0]["epoch"] == 0 and lpft["ssl_finetune"]["best_epoch"] >= 0
    # only the from-scratch row (added to a finished run): the same row as in the first run
    only = _bench().main([*common, "--resume", "--set", "fractions=1.0", "ssl_finetune=false",
                          "--figure", str(tmp_path / "d.png")])["per_seed"][0]["few_label"]["1.0"]
    assert "ssl_finetune" not in only and only["ssl_probe"]["auc"] == a["ssl_probe"]["auc"]
    assert only["scratch"]["val_auc"] == pytest.approx(a["scratch"]["val_auc"], abs=1e-12)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_finetune_augmentation_keeps_size_and_changes_images(spatial_dims):
    """The fine-tuning views keep the input size, move the pixels, and flip only 3D volumes."""
    import torch

    pipe = _part("scoring").ft_augment(spatial_dims, 28)
    x = torch.rand((4, 1) + (28,) * spatial_dims)
    y = pipe(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.allclose(x, y)
    assert (pipe.params.flip_prob > 0) == (spatial_dims == 3)


def test_rows_follow_the_methods_run():
    """Table rows are those a run scored: a MAE-only run has the four ViT rows and no CNN rows; typos fail."""
    report, pretrain, data = _part("report"), _part("pretrain"), _part("data")
    point = {k: {"auc": 0.5, "acc": 0.5} for k in ("mae_probe", "mae_finetune", "random_vit_probe", "vit_scratch")}
    rows = report.table_rows([{"few_label": {"1.0": {"n_train": 10, **point}}}])
    assert [k for k, _ in rows] == ["mae_probe", "mae_finetune", "random_vit_probe", "vit_scratch"]
    assert pretrain.method_names(data.Budget(methods="simclr, mae")) == ("simclr", "mae")
    with pytest.raises(SystemExit, match="expected simclr, mae"):
        pretrain.method_names(data.Budget(methods="simclr,byol"))


@pytest.mark.parametrize("fractions", ["0.1", "0.1,1.5"])
def test_fractions_without_the_full_training_set_are_refused_before_any_work(tmp_path, fractions):
    """The table is read at 100 % labels: a run without 1.0 (or with a fraction outside (0, 1]) stops at once
    with the fix in the message, instead of training every seed and then losing the result."""
    with pytest.raises(SystemExit, match=f"fractions={fractions}: .*include 1.0"):
        _bench().main(["--dataset", "pneumonia", "--quick", "--seeds", "0", "--data-root", str(_data_root()),
                       "--out", str(tmp_path / "run"), "--set", f"fractions={fractions}"])
    assert not list((tmp_path / "run").glob("*_seed0"))  # nothing was pretrained


def test_resume_refuses_a_checkpoint_of_another_budget(tmp_path):
    """--resume into a run folder of other pretraining settings used to continue (or, with fewer epochs, reuse)
    that run's weights under this budget's name; now it stops naming the settings, and still continues a run of
    the same settings with more epochs."""
    pre, data = _part("pretrain"), _part("data")
    x = np.random.default_rng(0).random((16, 1, 12, 12), dtype=np.float32)
    b = data.Budget(width=4, ssl_epochs=2, ssl_batch=8, crop=12, preset="none")
    run = tmp_path / "simclr_seed0"
    first = pre.pretrain_simclr(x, 2, b, 0, run, "cpu")["summary"]
    assert first["steps"] == 4
    for change, named in ((dict(crop=8), "benchmark.crop=12"), (dict(ssl_lr=1e-2), "train.lr=0.002"),
                          (dict(width=8), "benchmark.width=4"), (dict(ssl_epochs=1), "step 4, past the 2 steps")):
        with pytest.raises(SystemExit, match=named):
            pre.pretrain_simclr(x, 2, data.Budget(**{**b.__dict__, **change}), 0, run, "cpu", resume=True)
    with pytest.raises(SystemExit, match="benchmark.images=\\[16, 1, 12, 12\\]"):  # other images (dataset or limit)
        pre.pretrain_simclr(x[:8], 2, b, 0, run, "cpu", resume=True)
    longer = pre.pretrain_simclr(x, 2, data.Budget(**{**b.__dict__, "ssl_epochs": 3}), 0, run, "cpu", resume=True)
    assert longer["summary"]["resumed_at_step"] == 4 and longer["summary"]["steps"] == 6
    # a fresh run (no --resume) into the folder would leave the earlier run's later checkpoint next to its own log
    log = (run / "metrics.jsonl").read_text()
    with pytest.raises(SystemExit, match="already hold checkpoints of an earlier run: .*simclr_seed0 \\(latest step-00000006"):
        pre.pretrain_simclr(x, 2, data.Budget(**{**b.__dict__, "ssl_epochs": 1}), 0, run, "cpu")
    assert (run / "metrics.jsonl").read_text() == log and [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000006.pt"]


def test_fresh_run_names_every_folder_with_checkpoints_before_training(tmp_path):
    """Without --resume, checkpoints in MAE's folder stop the run before SimCLR (the first method) trains, naming
    the folder; they were refused only once SimCLR had trained."""
    out = tmp_path / "run"
    (out / "mae_seed0" / "checkpoints").mkdir(parents=True)
    (out / "mae_seed0" / "checkpoints" / "step-00000002.pt").write_bytes(b"")
    with pytest.raises(SystemExit, match=r"1 pretraining folder\(s\).*mae_seed0 \(latest step-00000002.pt\).*nothing was trained"):
        _bench().main(["--dataset", "pneumonia", "--quick", "--seeds", "0", "--data-root", str(_data_root()),
                       "--out", str(out), "--set", "methods=simclr,mae"])
    assert [p.name for p in out.iterdir()] == ["mae_seed0"]


def test_quick_without_out_replaces_its_default_folder_and_out_still_refuses(tmp_path, monkeypatch):
    """The documented smoke command (`--quick`, no --out) can run twice in a row: the second run replaces the
    default quick folder (it was refused: the first run's checkpoints were there); an explicit --out holding
    checkpoints is still refused, and --resume keeps the default folder's run."""
    bench = _bench()
    monkeypatch.setattr(bench, "REPO", tmp_path)  # default folder: tmp_path/runs/medmnist_pneumonia_quick
    smoke = ["--dataset", "pneumonia", "--quick", "--seeds", "0", "--n-boot", "5", "--data-root", str(_data_root()),
             "--set", "fractions=1.0", "ssl_finetune=false", "scratch=false"]
    default = tmp_path / "runs" / "medmnist_pneumonia_quick"
    bench.main(smoke)
    (default / "mae_seed0").mkdir()  # a folder the second run does not write: an earlier run's, it goes too
    log = (default / "simclr_seed0" / "metrics.jsonl").read_text()
    again = bench.main(smoke)
    assert sorted(p.name for p in default.iterdir()) == [".medssl-quick-run", "medmnist_pneumonia.png", "result.json",
                                                         "simclr_seed0"]
    assert "resumed_at_step" not in again["per_seed"][0]["ssl_pretrain"]  # a fresh run, not the first one's weights
    assert (default / "simclr_seed0" / "metrics.jsonl").read_text().count("\n") == log.count("\n")
    resumed = bench.main([*smoke, "--resume"])
    assert resumed["per_seed"][0]["ssl_pretrain"]["resumed_at_step"] == again["per_seed"][0]["ssl_pretrain"]["steps"]
    with pytest.raises(SystemExit, match="simclr_seed0 \\(latest step-.*pass --resume"):
        bench.main([*smoke, "--out", str(default)])
