"""Smoke tests of ``benchmarks/multisite_study.py --quick`` (both parts) and of its mean ± sd summary."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from benchmark_module import load_benchmark
from shared_data import shared_path


def _bench():
    return load_benchmark("multisite_study", "bench_multisite")


def _part(name: str):
    """``benchmarks/multisite_<name>.py``: the study's rows, report, synthetic or ixi module."""
    return load_benchmark(f"multisite_{name}")




def _check_scores(row: dict) -> None:
    for key in ("mae_int", "mae_ext", "bacc_site", "score", "mae_ext_se"):
        assert math.isfinite(row[key]), (row["label"], key, row[key])
    assert 0.0 <= row["bacc_site"] <= 1.0 and row["mae_int"] > 0 and row["mae_ext"] > 0
    assert row["score"] == pytest.approx(row["mae_ext"] * row["bacc_site"] ** 0.3)  # L_c of the OpenBHB kit


def test_summary_is_mean_and_sample_sd():
    """Mean ± SD (ddof=1) per method, written naively here; one seed gives a NaN SD, never a fake 0."""
    rows = [{"label": "a", "seed": s, "mae_int": v, "mae_ext": 2 * v, "bacc_site": 0.5, "score": v}
            for s, v in enumerate([3.0, 5.0, 10.0])] + [{"label": "b", "seed": 0, "mae_int": 1.0, "mae_ext": 1.0}]
    a, b = _part("report").summarise(rows)
    vals = [3.0, 5.0, 10.0]
    mean = sum(vals) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / 2)
    assert a["mae_int"]["mean"] == pytest.approx(mean) and a["mae_int"]["sd"] == pytest.approx(sd)
    assert a["mae_ext"]["sd"] == pytest.approx(2 * sd) and a["bacc_site"]["sd"] == 0.0
    assert b["n"] == 1 and math.isnan(b["mae_int"]["sd"]) and "bacc_site" not in b


def test_ixi_quick(tmp_path):
    """Real IXI ROI table: the ROI Ridge beats the training mean on internal subjects; IOP is the external set."""
    folder = shared_path("data", "ixi_dlmuse_roi_multisite")
    bench, ixi = _bench(), _part("ixi")
    bench.main(["ixi", "--quick", "--seeds", "0", "--variants", "eps-SupInfoNCE + FairKL(site)",
                      "--ixi-dir", str(folder), "--out", str(tmp_path), "--json", str(tmp_path / "r.json")])
    on_disk = json.loads((tmp_path / "r.json").read_text())
    assert Path(on_disk["figure"]).stat().st_size > 10_000 and on_disk["wall_seconds"] > 0
    assert on_disk["seeds"] == [0] and on_disk["machine"]["cpu"] and on_disk["machine"]["medssl_commit"]
    rows = {r["label"]: r for r in on_disk["rows"]}
    assert set(rows) == {"MLP eps-SupInfoNCE + FairKL(site)", f"MLP {_part('rows').RANDOM}",
                         "Ridge on log ROI volumes (no encoder)", "Ridge after ComBat (IOP unharmonised)",
                         "Ridge after ComBat incl. IOP features", "training-mean predictor"}
    for label, row in rows.items():
        if label != "training-mean predictor":
            _check_scores(row)
            assert row["n_external"] == 24 and row["n_train"] + row["n_internal"] == 172 + 95  # IOP: 24 subjects
    # the mean predictor, recomputed here from the CSV files and the split
    with open(folder / "IXI_demog.csv", newline="") as f:
        age_of = {r["ID"]: float(r["Age"]) for r in csv.DictReader(f)}
    d = ixi.load_ixi(folder)
    assert np.allclose(d["age"], [age_of[s] for s in d["subject"]])
    m = ixi.ixi_split(d, 0, 0.3)
    mean_mae = np.abs(d["age"][m["internal"]] - d["age"][m["train"]].mean()).mean()
    assert rows["training-mean predictor"]["mae_int"] == pytest.approx(mean_mae)
    assert rows["Ridge on log ROI volumes (no encoder)"]["mae_int"] < 0.7 * mean_mae  # real age signal in ROI volumes
    # ComBat removes site information from the internal test rows
    raw, combat = rows["Ridge on log ROI volumes (no encoder)"], rows["Ridge after ComBat (IOP unharmonised)"]
    assert combat["bacc_site"] < raw["bacc_site"]
    assert math.isfinite(rows["MLP eps-SupInfoNCE + FairKL(site)"]["final_loss"])  # contrastive + FairKL(site) trained


def test_synthetic_quick(tmp_path):
    """Synthetic images: external sites never enter pretraining; every metric is a valid one."""
    bench, synthetic, random_init = _bench(), _part("synthetic"), _part("rows").RANDOM
    res = bench.main(["synthetic", "--quick", "--seeds", "0", "--variants", "y-aware", "--out", str(tmp_path)])
    rows = {r["label"]: r for r in res["rows"]}
    assert set(rows) == {"y-aware", random_init, "training-mean predictor"}
    n_site = res["budget"]["per_site"]
    for label in ("y-aware", random_init):
        _check_scores(rows[label])
        r = rows[label]
        assert r["n_external"] == 2 * n_site and r["n_train"] + r["n_internal"] == 3 * n_site
    assert math.isfinite(rows["y-aware"]["final_loss"])
    # the docs' quick row: 21 / 9 / 20 subjects, 1 epoch at batch 8 of ⌊21 / 8⌋ = 2 steps (the last partial batch dropped)
    assert [rows["y-aware"][k] for k in ("n_train", "n_internal", "n_external")] == [21, 9, 20]
    assert rows["y-aware"]["steps"] == 2
    with open(Path(rows["y-aware"]["run_dir"]) / "manifest.tsv", newline="") as f:  # what pretraining read
        seen = list(csv.DictReader(f, delimiter="\t"))
    assert {r["site"] for r in seen} == set(synthetic.SYN_INTERNAL) and len(seen) == 3 * n_site
    assert {r["site"] for r in seen if r["split"] == "train"} == set(synthetic.SYN_INTERNAL)
    assert json.loads((tmp_path / "result.json").read_text())["summary"][0]["label"] == "y-aware"


def test_validation_cards_leave_the_test_sites_out(tmp_path):
    """--validation: F and G are the unseen sites; D and E (the test sites) are in neither card."""
    import yaml

    synthetic = _part("synthetic")
    n_sites, unseen = synthetic.synthetic_sites(validation=True)
    assert (n_sites, unseen) == (7, ["site-F", "site-G"])
    assert synthetic.synthetic_sites(False) == (5, synthetic.SYN_EXTERNAL)
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    with open(cohort / "participants.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["participant_id", "age", "sex", "site", "diagnosis"])
        w.writerows([f"sub-{i:03d}", 30 + i, "MF"[i % 2], f"site-{'ABCDEFG'[i % 7]}", "CN"] for i in range(70))
    pre, ev, masks = synthetic.write_split_cards(cohort, tmp_path, 0, 0.3, unseen)
    assert len(masks["age"]) == 50 and masks["external"].sum() == 20 and masks["train"].sum() + masks["internal"].sum() == 30
    with open(yaml.safe_load(ev.read_text())["manifest"], newline="") as f:
        kept = list(csv.DictReader(f, delimiter="\t"))
    assert {r["site"] for r in kept} == {"site-A", "site-B", "site-C", "site-F", "site-G"}
    assert {r["split"] for r in kept if r["site"] in unseen} == {"test"}
    assert yaml.safe_load(pre.read_text())["select"] == {"site": synthetic.SYN_INTERNAL}


def test_site_swap_reproduces_the_study_and_alters_only_the_swapped_site(tmp_path):
    """multisite_site_swap.py: 'none' regenerates the site unchanged (the study's errors come back);
    a real swap changes the swapped site's scans and nothing else (site-D's errors stay)."""
    study = tmp_path / "study"
    _bench().main(["synthetic", "--quick", "--seeds", "0", "--variants", "SimCLR", "--out", str(study)])
    swap = load_benchmark("multisite_site_swap", "bench_site_swap")
    res = swap.main([str(study), "--site", "site-E", "--donor", "site-F", "--swaps", "none", "intensity",
                     "--out", str(tmp_path / "swap")])
    original = next(study.glob("run0-seed0/eval-openbhb-*"))
    codes = {"site-D": 3, "site-E": 4}
    for label, kind in (("SimCLR", "pretrained"), ("random init", "random_init")):
        bias, mae = swap.site_errors(original, kind, codes["site-E"], [0, 1, 2])
        assert res["summary"]["none"][label]["bias"] == pytest.approx(bias, abs=1e-9)
        assert res["summary"]["none"][label]["mae"] == pytest.approx(mae, abs=1e-9)
        assert res["summary"]["intensity"][label]["mae"] != pytest.approx(mae, abs=1e-6)
        swapped = next((tmp_path / "swap").glob("intensity-run0-seed0/eval-openbhb-*"))
        assert swap.site_errors(swapped, kind, codes["site-D"], [0, 1, 2]) == pytest.approx(
            swap.site_errors(original, kind, codes["site-D"], [0, 1, 2]), abs=1e-9)
        assert res["summary"]["none"][label]["bias_per_seed"] == pytest.approx([bias], abs=1e-9)
    assert Path(res["figure"]) == tmp_path / "swap" / "figure.png" and Path(res["figure"]).stat().st_size > 10_000
    assert res["machine"]["medssl_commit"] and res["command"].startswith("python benchmarks/multisite_site_swap.py")
    again = swap.main(["--from-json", str(tmp_path / "swap" / "result.json"), "--figure", str(tmp_path / "f.png")])
    assert again["summary"] == res["summary"] and (tmp_path / "f.png").stat().st_size > 10_000


def test_site_swap_redraws_the_published_figure_from_its_json(tmp_path, capsys):
    """--from-json: no study folder, no computation; the table printed is the JSON's (docs/results) and the
    figure is written; without a study folder or --from-json the script says what to give."""
    swap = load_benchmark("multisite_site_swap", "bench_site_swap")
    path = Path(__file__).resolve().parents[2] / "docs" / "results" / "multisite_site_swap_E.json"
    res = swap.main(["--from-json", str(path), "--figure", str(tmp_path / "swap.png")])
    assert res == json.loads(path.read_text()) and (tmp_path / "swap.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert f"{res['summary']['intensity']['SimCLR']['bias']:.2f}" in printed  # -7.57, the docs' −7.6
    with pytest.raises(SystemExit):
        swap.main([])
    assert "--from-json" in capsys.readouterr().err


def test_synthetic_quick_with_peers(tmp_path):
    """--peers adds '(peer)' rows probed on the same subjects as the SimCLR row; the peers pretrain only on the
    internal training subjects, from the recipe's network and initial weights; ``ixi`` refuses --peers."""
    import torch

    bench, synthetic, study_rows = _bench(), _part("synthetic"), _part("rows")
    res = bench.main(["synthetic", "--quick", "--seeds", "0", "--variants", "SimCLR", "--out", str(tmp_path),
                      "--peers", "monai_stock", "nidl"])
    rows = {r["label"]: r for r in res["rows"]}
    from peers import PEERS  # benchmarks/peers, on sys.path once the study is loaded

    nidl_here = PEERS["nidl"].available(3)[0]
    peers = ["stock MONAI SimCLR recipe (peer)"] + (["nidl SimCLR (peer)", "nidl y-aware (peer)"] if nidl_here else [])
    control = synthetic.PEER_LABELS[""]
    expected = ["SimCLR", *peers, study_rows.RANDOM, control, "training-mean predictor"]
    assert [s["label"] for s in res["summary"]] == expected
    assert nidl_here or "nidl" in res["peers_skipped"]
    for label in [*peers, control]:
        _check_scores(rows[label])
        assert all(rows[label][k] == rows["SimCLR"][k] for k in ("n_train", "n_internal", "n_external"))
        if label == control:  # untrained
            assert rows[label]["history"] == [] and "final_loss" not in rows[label]
            continue
        assert len(rows[label]["history"]) == res["budget"]["epochs"] and math.isfinite(rows[label]["final_loss"])
        with open(Path(rows[label]["run_dir"]) / "manifest.tsv", newline="") as f:
            seen = list(csv.DictReader(f, delimiter="\t"))
        assert {r["site"] for r in seen if r["split"] == "train"} == set(synthetic.SYN_INTERNAL)
        assert sum(r["split"] == "train" for r in seen) == rows[label]["n_train"]
    from medssl.api import build_method
    from medssl.config import load_config
    from peers.common import monai_resnet18, resnet_kwargs_of

    torch.manual_seed(3)
    ours = build_method(load_config(study_rows.DEMO_CONFIG)).encoder.eval()
    torch.manual_seed(3)
    theirs = monai_resnet18(3, resnet_kwargs_of(ours)).eval()
    assert all(torch.equal(v, theirs.state_dict()[k]) for k, v in ours.net.state_dict().items())
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():  # the same function, not only the same weights (MONAI's default stem stride is 1)
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)
    with pytest.raises(SystemExit, match="ROI volumes"):
        bench.main(["ixi", "--quick", "--peers", "monai_stock", "--out", str(tmp_path / "ixi")])
