"""Smoke test of ``benchmarks/brain_age_ixi.py --quick`` on real IXI scans, plus its fold logic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from benchmark_module import load_benchmark
from shared_data import SHARED, shared_path


def _bench():
    return load_benchmark("brain_age_ixi", "bench_brain_age_ixi")


def _part(name: str):
    """``benchmarks/brain_age_<name>.py``: the benchmark's data, encoders, rows or report module."""
    return load_benchmark(f"brain_age_{name}")


def test_folds_partition_the_subjects_and_balance_ages():
    """Every subject is tested exactly once; each fold's age distribution resembles the whole cohort's."""
    ages = np.random.default_rng(0).uniform(20, 85, 138)
    folds = _part("data").age_folds(ages, 5, seed=3)
    rows = np.concatenate(folds)
    assert sorted(rows.tolist()) == list(range(138)) and [len(f) for f in folds] in ([28, 28, 28, 27, 27],)
    assert all(abs(np.median(ages[f]) - np.median(ages)) < 8 for f in folds)


def test_quick_run_end_to_end_without_label_leakage(tmp_path):
    """--quick runs every row on real scans; y-aware never sees its fold's test subjects; MAEs are the
    pooled out-of-fold errors (recomputed here from the stored predictions)."""
    shared_path("data", "ixi_t1_hh_2mm", "participants.tsv")
    out = tmp_path / "run"
    res = _bench().main(["--quick", "--threads", "2", "--data-root", str(SHARED / "data"), "--out", str(out),
                         "--json", str(tmp_path / "r.json")])
    on_disk = json.loads((tmp_path / "r.json").read_text())
    assert Path(res["figure"]).is_file() and Path(res["figure"]).stat().st_size > 10_000
    seed = on_disk["per_seed"][0]
    age = np.array(seed["age"])
    assert len(age) == 24 and np.all((age > 15) & (age < 95))
    tested = [s for f in seed["folds"] for s in f["test_subjects"]]
    assert sorted(tested) == sorted(seed["subjects"])  # each subject in exactly one test fold
    for fold in seed["folds"]:  # y-aware reads ages: trained on the fold's training subjects only
        assert not set(fold["yaware_pretrained_on"]) & set(fold["test_subjects"])
        assert len(fold["yaware_pretrained_on"]) + len(fold["test_subjects"]) == 24
    for key, pred in seed["pred"].items():
        pred = np.array(pred)
        assert np.all(np.isfinite(pred)), key
        assert math.isclose(seed["mae"][key], np.abs(pred - age).mean(), abs_tol=2e-3), key
    # the training-fold mean baseline, recomputed independently from the ages and the folds
    index = {s: i for i, s in enumerate(seed["subjects"])}
    mean_pred = np.empty(24)
    for fold in seed["folds"]:
        te = [index[s] for s in fold["test_subjects"]]
        mean_pred[te] = np.delete(age, te).mean()
    assert math.isclose(seed["mae"]["mean"], np.abs(mean_pred - age).mean(), abs_tol=2e-3)
    assert (out / "seed0_simclr" / "metrics.jsonl").is_file() and (out / "seed0_yaware_fold2" / "metrics.jsonl").is_file()
    quick = _part("data").Budget(**{**_part("data").QUICK, "limit": 24})  # the folders the up-front check looks at
    assert sorted(p.name for p in out.glob("seed*")) == sorted(_bench().pretrain_folders(quick, [0]))
    assert math.isnan(on_disk["summary"]["mean"]["mae_sd"])  # one seed: no SD, never a fake 0


def test_write_copy_never_writes_into_the_data_set():
    """--write-copy refuses a destination that is (or is inside, or contains) the original folder."""
    import pytest

    src = shared_path("data", "ixi_t1_hh_2mm")
    data = _part("data")
    for dst in (src, src / "images", src.parent):
        with pytest.raises(SystemExit, match="outside the data set"):
            data.write_resampled_copy(src.parent, dst, 3.0)


def test_rows_follow_methods_and_scratch_switch():
    """``methods=`` plus ``scratch=false`` leaves only the baselines that train nothing."""
    import pytest

    rows = lambda *a: [key for key, _, _ in _part("rows").active_rows(*a)]
    assert rows("", False) == ["mean", "voxels", "random_cnn_probe"]
    assert rows("") == ["mean", "voxels", "random_cnn_probe", "scratch_ft"]
    assert rows("mae,yaware", False) == ["mean", "voxels", "random_cnn_probe", "random_vit_probe", "mae_probe",
                                         "yaware_probe", "mae_ft", "yaware_ft"]
    assert rows("simclr,yaware", True, False) == ["mean", "voxels", "random_cnn_probe", "simclr_probe", "yaware_probe"]
    with pytest.raises(SystemExit, match="simclrr"):
        rows("simclrr")
    peers = lambda *a: [key for key, _, _ in _part("rows").peer_rows(*a)]
    assert peers(("monai_stock", "nidl"), "simclr") == ["monai_stock_probe", "nidl_probe"]
    assert peers(("nidl", "monai_stock"), "simclr,yaware") == ["monai_stock_probe", "nidl_probe", "nidl_yaware_probe"]


def test_peers_start_from_the_benchmark_cnn_and_see_unit_range_scans():
    """``peer_encoder_kwargs`` rebuilds :func:`cnn` with MONAI's factory weight for weight, and a peer's probe
    features are its network applied to each scan min-max rescaled to [0, 1] (what it was pretrained on)."""
    import torch

    encoders = _part("encoders")  # puts benchmarks/ on sys.path, so its `peers` package imports
    from peers.common import monai_resnet18, unit_range

    b = _part("data").Budget(width=8)
    ours = encoders.cnn(b, 5).net.state_dict()
    torch.manual_seed(5)
    peer = monai_resnet18(3, encoders.peer_encoder_kwargs(b))
    theirs = peer.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    x = np.random.default_rng(0).normal(3.0, 2.0, (2, 1, 12, 12, 12)).astype(np.float32)
    with torch.no_grad():  # the same function too, not only the same weights (MONAI's default stem stride is 1)
        assert torch.allclose(encoders.cnn(b, 5).eval()(torch.from_numpy(x)), peer.eval()(torch.from_numpy(x)), atol=1e-5)
    assert encoders.peer_encoder_kwargs(b)["conv1_t_stride"] == 2
    unit = unit_range(x)  # benchmarks/peers/common.py
    assert np.allclose(unit.reshape(2, -1).min(1), 0) and np.allclose(unit.reshape(2, -1).max(1), 1)
    assert np.allclose(unit[1], (x[1] - x[1].min()) / (x[1].max() - x[1].min()), atol=1e-6)
    peer.eval()
    with torch.no_grad():
        assert torch.allclose(encoders.MinMaxInput(peer)(torch.from_numpy(x)), peer(torch.from_numpy(unit)), atol=1e-5)


def test_quick_run_with_peers_and_probes_only(tmp_path):
    """--peers adds '<peer> + Ridge probe' rows (a peer that cannot run here is skipped with its reason);
    ``finetune=false`` leaves out every fine-tuned row and the verdict's fine-tuning line."""
    shared_path("data", "ixi_t1_hh_2mm", "participants.tsv")
    bench = _bench()
    res = bench.main(["--quick", "--threads", "2", "--data-root", str(SHARED / "data"), "--out", str(tmp_path / "run"),
                      "--figure", str(tmp_path / "f.png"), "--set", "methods=simclr,yaware", "finetune=false",
                      "--peers", "monai_stock", "nidl"])
    from peers import PEERS  # benchmarks/peers, on sys.path once the benchmark is loaded

    nidl_here = PEERS["nidl"].available(3)[0]
    assert res["peers"] == ["monai_stock", "nidl"] if nidl_here else (res["peers"] == ["monai_stock"]
                                                                      and "nidl" in res["peers_skipped"])
    expected = ["mean", "voxels", "random_cnn_probe", "simclr_probe", "yaware_probe", "monai_stock_probe"]
    expected += ["nidl_probe", "nidl_yaware_probe"] if nidl_here else []
    assert list(res["summary"]) == expected
    assert not any(k.endswith("_ft") for k in res["per_seed"][0]["pred"]) and len(res["verdict"]) == 2
    seed = res["per_seed"][0]
    history = seed["peer_pretrain"]["monai_stock"]["history"]
    assert len(history) == res["budget"]["ssl_epochs"] and history[0]["steps"] == 24 // res["budget"]["ssl_batch"]
    assert np.all(np.isfinite(seed["pred"]["monai_stock_probe"])) and "monai" in res["machine"]["peer_packages"]
    if nidl_here:  # in-fold, like medssl's y-aware: one run per fold on the fold's training subjects
        assert len(seed["peer_pretrain"]["nidl_yaware_folds"]) == res["budget"]["folds"]


def test_baselines_only_run_trains_nothing(tmp_path, capsys):
    """A probe-baselines run (the resolution/width study in docs/benchmarks_brain_age.md) writes no training
    run folder and still gives a table, a figure and an empty verdict."""
    shared_path("data", "ixi_t1_hh_2mm", "participants.tsv")
    out = tmp_path / "run"
    res = _bench().main(["--quick", "--threads", "2", "--data-root", str(SHARED / "data"), "--out", str(out),
                         "--set", "methods=", "scratch=false"])
    assert list(res["summary"]) == ["mean", "voxels", "random_cnn_probe"] and res["verdict"] == {}
    assert not list(out.glob("seed*")) and Path(res["figure"]).is_file()
    assert res["machine"]["cpu"] and res["machine"]["medssl_commit"] and res["budget"]["limit"] == 24
    assert "| method (IXI T1, 1 seed(s), 3-fold CV MAE in years) |" in capsys.readouterr().out  # --quick: 3 folds
    # --merge of two processes' seeds (here the same run relabelled seed 3): one table over both, no training
    twin = json.loads((out / "result.json").read_text())
    twin["per_seed"] = [{**twin["per_seed"][0], "seed": 3}]
    (tmp_path / "twin.json").write_text(json.dumps(twin))
    merged = _bench().main(["--merge", str(out / "result.json"), str(tmp_path / "twin.json"),
                            "--out", str(tmp_path / "merged"), "--figure", str(tmp_path / "merged.png")])
    assert merged["seeds"] == [0, 3] and merged["summary"]["voxels"]["mae_sd"] == 0
    assert merged["summary"]["voxels"]["mae_mean"] == res["summary"]["voxels"]["mae_mean"]
    assert merged["quick"] is True  # merged quick runs stay marked quick (was recorded as a full run)
    (tmp_path / "twin.json").write_text(json.dumps({**twin, "peers": ["monai_stock"]}))
    with pytest.raises(SystemExit, match=r"twin.json: peers \['monai_stock'\] differs from None"):
        _bench().main(["--merge", str(out / "result.json"), str(tmp_path / "twin.json"), "--out", str(tmp_path / "m2")])
    # a full-budget merge without --figure draws into its own --out, never over the published docs/img figure
    for path, run in ((out / "result.json", json.loads((out / "result.json").read_text())), (tmp_path / "twin.json", twin)):
        path.write_text(json.dumps({**run, "quick": False}))
    full = _bench().main(["--merge", str(out / "result.json"), str(tmp_path / "twin.json"), "--out", str(tmp_path / "m3")])
    assert Path(full["figure"]) == tmp_path / "m3" / "brain_age_ixi.png" and Path(full["figure"]).is_file()


def test_verdict_needs_a_win_on_every_seed():
    """A lower mean MAE carried by one seed is not "beats the random-init encoder"."""
    def row(*maes):
        return {"mae_mean": sum(maes) / len(maes), "mae_per_seed": list(maes)}

    summary = {"random_cnn_probe": row(11.2, 11.2, 10.0), "simclr_probe": row(13.7, 9.0, 9.4), "simclr_ft": row(9.8, 9.0, 10.8)}
    v = _part("report").verdict(summary)["every SSL probe beats its random-init encoder"]
    assert v.endswith("(lower on 2/3 seeds): False") and summary["simclr_probe"]["mae_mean"] < summary["random_cnn_probe"]["mae_mean"]
    summary["simclr_probe"] = row(10.9, 9.0, 9.4)
    assert _part("report").verdict(summary)["every SSL probe beats its random-init encoder"].endswith("3/3 seeds): True")


def test_resume_reuses_the_fold_encoders_and_lpft_keeps_the_probe_rows(tmp_path):
    """--resume on finished y-aware fold runs trains no step (same probe predictions, same logs); with
    ``ft_head_init=probe`` fine-tuning starts from the in-fold probe (LP-FT); a typo is refused before any work."""
    shared_path("data", "ixi_t1_hh_2mm", "participants.tsv")
    common = ["--quick", "--threads", "2", "--data-root", str(SHARED / "data"), "--out", str(tmp_path / "run"),
              "--figure", str(tmp_path / "f.png")]
    first = _bench().main([*common, "--set", "methods=yaware", "scratch=false"])["per_seed"][0]
    logs = {p: p.read_text() for p in (tmp_path / "run").glob("seed0_yaware_fold*/metrics.jsonl")}
    again = _bench().main([*common, "--resume", "--set", "methods=yaware", "scratch=false",
                           "ft_head_init=probe"])["per_seed"][0]
    assert len(logs) == 3 and all(p.read_text() == text for p, text in logs.items())  # no further step
    assert again["pred"]["yaware_probe"] == first["pred"]["yaware_probe"]
    assert np.all(np.isfinite(again["pred"]["yaware_ft"]))
    for fold in again["folds"]:  # epoch 0 (the probe) + at least one fine-tuning epoch, in years
        assert len(fold["finetune_val_mae"]["yaware_ft"]) >= 2 and 0 <= fold["finetune_best_epoch"]["yaware_ft"]
    with pytest.raises(SystemExit, match="benchmark.sigma=5.0; this run has benchmark.sigma=3.0"):  # another budget
        _bench().main([*common, "--resume", "--set", "methods=yaware", "scratch=false", "sigma=3"])
    with pytest.raises(SystemExit, match="ft_head_init=zeros"):
        _bench().main([*common, "--set", "ft_head_init=zeros"])
    with pytest.raises(SystemExit, match="ft_augment=rotate"):
        _bench().main([*common, "--set", "ft_augment=rotate"])


def test_flip_augmentation_moves_voxels_without_interpolating():
    """ft_augment=flip returns each scan or its left-right mirror exactly; "affine" interpolates; "none" is None."""
    import torch

    x = torch.rand(16, 1, 6, 7, 8)
    flip = _part("encoders").ft_augment((6, 7, 8), "flip")(x, torch.Generator().manual_seed(0))
    same = [torch.equal(a, b) for a, b in zip(flip, x)]
    mirrored = [torch.equal(a, b.flip(1)) for a, b in zip(flip, x)]
    assert all(s != m for s, m in zip(same, mirrored)) and 0 < sum(mirrored) < 16
    affine = _part("encoders").ft_augment((6, 7, 8), "affine")(x, torch.Generator().manual_seed(0))
    assert sum(not (torch.equal(a, b) or torch.equal(a, b.flip(1))) for a, b in zip(affine, x)) >= 8
    assert _part("encoders").ft_augment((6, 7, 8), "none") is None


def test_encoder_lr_grid_keeps_the_run_with_the_lowest_validation_loss(tmp_path):
    """With ``ft_lr_encoders`` each fold keeps the lr of the grid whose run had the lowest validation loss;
    the losses and test predictions are exactly those of runs with each lr alone (replayed here)."""
    shared_path("data", "ixi_t1_hh_2mm", "participants.tsv")

    def run(*pairs):
        return _bench().main(["--quick", "--threads", "2", "--data-root", str(SHARED / "data"), "--out",
                              str(tmp_path / "run"), "--figure", str(tmp_path / "f.png"),
                              "--set", "methods=", "ft_epochs=2", "ft_patience=2", *pairs])["per_seed"][0]

    grid = run("ft_lr_encoders=1e-2,1e-6")
    alone = {lr: run(f"ft_lr_encoder={lr}") for lr in (1e-2, 1e-6)}
    assert all(f["finetune_lr_encoder"]["scratch_ft"] == 1e-2 for f in alone[1e-2]["folds"])
    chosen = [f["finetune_lr_encoder"]["scratch_ft"] for f in grid["folds"]]
    for k, fold in enumerate(grid["folds"]):
        losses = fold["finetune_val_loss_by_lr"]["scratch_ft"]
        assert losses == {str(lr): alone[lr]["folds"][k]["finetune_val_loss_by_lr"]["scratch_ft"][str(lr)]
                          for lr in (1e-2, 1e-6)}
        assert chosen[k] == float(min(losses, key=losses.get))
    fold_of = {s: k for k, f in enumerate(grid["folds"]) for s in f["test_subjects"]}
    expected = [alone[chosen[fold_of[s]]]["pred"]["scratch_ft"][i] for i, s in enumerate(grid["subjects"])]
    assert grid["pred"]["scratch_ft"] == expected
    assert alone[1e-2]["pred"]["scratch_ft"] != alone[1e-6]["pred"]["scratch_ft"]


def test_fresh_run_names_every_folder_with_checkpoints_before_training(tmp_path):
    """Without --resume, checkpoints in a later pretraining folder (here fold 1 of y-aware, and seed 1's SimCLR)
    stop the run before the first folder trains, naming each such folder; they were refused only when reached,
    after SimCLR and y-aware fold 0 had trained under a message saying nothing was trained."""
    shared_path("data", "ixi_t1_hh_2mm", "participants.tsv")
    out = tmp_path / "run"
    for folder in ("seed0_yaware_fold1", "seed1_simclr"):
        (out / folder / "checkpoints").mkdir(parents=True)
        (out / folder / "checkpoints" / "step-00000003.pt").write_bytes(b"")
    with pytest.raises(SystemExit, match=r"2 pretraining folder\(s\).*seed0_yaware_fold1 \(latest step-00000003.pt\); "
                                         r".*seed1_simclr \(latest .*nothing was trained"):
        _bench().main(["--quick", "--seeds", "0", "1", "--data-root", str(SHARED / "data"), "--out", str(out),
                       "--set", "methods=simclr,yaware"])
    assert sorted(p.name for p in out.iterdir()) == ["seed0_yaware_fold1", "seed1_simclr"]  # nothing trained, no cache


def test_quick_without_out_replaces_its_default_folder_but_keeps_the_cache(tmp_path, monkeypatch):
    """`--quick` without --out starts its default folder afresh (an earlier quick run's checkpoints there were
    refused), keeping the scan cache; the same folder given as --out is still refused."""
    shared_path("data", "ixi_t1_hh_2mm", "participants.tsv")
    bench = _bench()
    monkeypatch.setattr(bench, "REPO", tmp_path)  # default folder: tmp_path/runs/brain_age_ixi_quick
    default = tmp_path / "runs" / "brain_age_ixi_quick"
    (default / "seed0_simclr" / "checkpoints").mkdir(parents=True)  # an earlier quick run's (its mark file below)
    (default / ".medssl-quick-run").write_text("")
    (default / "seed0_simclr" / "checkpoints" / "step-00000099.pt").write_bytes(b"")
    (default / "cache").mkdir()
    (default / "cache" / "marker").write_text("kept")
    smoke = ["--quick", "--data-root", str(SHARED / "data"), "--set", "methods=simclr", "scratch=false", "finetune=false"]
    with pytest.raises(SystemExit, match="seed0_simclr \\(latest step-00000099.pt\\)"):
        bench.main([*smoke, "--out", str(default)])
    res = bench.main(smoke)
    assert (default / "cache" / "marker").read_text() == "kept" and "resumed_at_step" not in res["per_seed"][0]["pretrain"]["simclr"]
    assert [p.name for p in (default / "seed0_simclr" / "checkpoints").iterdir()] == ["step-00000003.pt"]  # 24 scans / 8
