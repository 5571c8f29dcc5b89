"""``--merge`` states the merged runs' wall time (it recorded the merge's own ``wall_seconds: 0.0`` and
brain_age_ixi printed "wall time 0 s"): small hand-made result JSONs with known wall times, no training."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from benchmark_module import load_benchmark

MACHINE = {"device": "cpu", "torch_threads": 1, "platform": "test", "torch": "0"}


def _brain_age_run(path, seed: int, wall: float, seed_wall: float) -> str:
    budget = asdict(load_benchmark("brain_age_data").Budget())
    age = [30.0, 40.0, 50.0, 60.0]
    pred = {"mean": [45.0] * 4, "voxels": [32.0, 41.0, 47.0, 62.0], "random_cnn_probe": [35.0, 38.0, 52.0, 55.0]}
    mae = {k: sum(abs(p - a) for p, a in zip(v, age)) / 4 for k, v in pred.items()}
    path.write_text(json.dumps({"benchmark": "brain_age_ixi", "budget": budget, "quick": False, "machine": MACHINE,
                                "command": f"python benchmarks/brain_age_ixi.py --seeds {seed}",
                                "wall_seconds": wall, "per_seed": [{"seed": seed, "mae": mae, "pred": pred, "age": age,
                                                                    "wall_seconds": seed_wall}]}))
    return str(path)


def test_brain_age_merge_carries_the_runs_wall_times(tmp_path, capsys):
    paths = [_brain_age_run(tmp_path / "s1.json", 1, 1603.0, 1598.0), _brain_age_run(tmp_path / "s0.json", 0, 808.0, 803.0)]
    res = load_benchmark("brain_age_ixi").main(["--merge", *paths, "--out", str(tmp_path / "m"),
                                                 "--figure", str(tmp_path / "m.png")])
    on_disk = json.loads((tmp_path / "m" / "result.json").read_text())
    assert on_disk["seeds"] == [0, 1] and on_disk["merged_from"] == paths
    assert on_disk["wall_seconds"] == 1603.0 and on_disk["wall_seconds_sum"] == 2411.0  # longest run; sum of both
    assert on_disk["wall_seconds_per_run"] == dict(zip(paths, (1603.0, 808.0)))
    assert on_disk["wall_seconds_per_seed"] == {"0": 803.0, "1": 1598.0} and res["wall_seconds"] == 1603.0
    assert on_disk["commands_per_run"] == {p: f"python benchmarks/brain_age_ixi.py --seeds {s}" for p, s in zip(paths, (1, 0))}
    assert on_disk["machine_per_run"] == {p: MACHINE for p in paths}  # the merge's own command is not what trained
    printed = capsys.readouterr().out
    assert ("wall time of the 2 merged run(s) 1603 s, 808 s: longest 1603 s (the elapsed time if they ran in "
            "parallel), sum 2411 s (process time) on cpu") in printed and "wall time 0 s" not in printed
    # a merge of a merge counts the earlier merge's runs with their sum, not only its longest one
    again = load_benchmark("brain_age_ixi").main(["--merge", str(tmp_path / "m" / "result.json"),
                                                   _brain_age_run(tmp_path / "s2.json", 2, 900.0, 890.0),
                                                   "--out", str(tmp_path / "m2"), "--figure", str(tmp_path / "m2.png")])
    assert again["wall_seconds"] == 1603.0 and again["wall_seconds_sum"] == 2411.0 + 900.0


def _medmnist_run(path, seed: int, wall: float, seed_wall: float) -> str:
    budget = {**asdict(load_benchmark("medmnist_data").DEFAULTS["pneumonia"]), "fractions": [1.0]}
    point = {"n_train": 100, **{k: {"auc": 0.9 + 0.01 * seed, "acc": 0.8} for k in
                                ("ssl_probe", "ssl_finetune", "random_probe", "scratch")}}
    path.write_text(json.dumps({"dataset": "pneumonia", "budget": budget, "quick": False, "machine": MACHINE,
                                "wall_seconds": wall, "per_seed": [{"seed": seed, "few_label": {"1.0": point},
                                                                    "seconds": seed_wall}]}))
    return str(path)


def test_medmnist_merge_carries_the_runs_wall_times(tmp_path, capsys):
    paths = [_medmnist_run(tmp_path / "a.json", 0, 1420.0, 1418.0), _medmnist_run(tmp_path / "b.json", 1, 1436.0, 1433.0)]
    load_benchmark("medmnist").main(["--dataset", "pneumonia", "--merge", *paths, "--out", str(tmp_path / "m"),
                                     "--figure", str(tmp_path / "m.png")])
    on_disk = json.loads((tmp_path / "m" / "result.json").read_text())
    assert on_disk["wall_seconds"] == 1436.0 and on_disk["wall_seconds_sum"] == 2856.0
    assert on_disk["wall_seconds_per_seed"] == {"0": 1418.0, "1": 1433.0} and on_disk["merged_from"] == paths
    assert "wall time of the 2 merged run(s) 1420 s, 1436 s: longest 1436 s" in capsys.readouterr().out



def test_merge_never_overwrites_one_of_its_inputs(tmp_path):
    """A merge into the --out folder of one of the merged runs replaced that run's result.json with the merge."""
    (tmp_path / "s0").mkdir()
    mine = _medmnist_run(tmp_path / "s0" / "result.json", 0, 1420.0, 1418.0)
    other = _medmnist_run(tmp_path / "b.json", 1, 1436.0, 1433.0)
    before = (tmp_path / "s0" / "result.json").read_text()
    with pytest.raises(SystemExit, match="s0/result.json is one of the merged results"):
        load_benchmark("medmnist").main(["--dataset", "pneumonia", "--merge", mine, other, "--out", str(tmp_path / "s0"),
                                         "--figure", str(tmp_path / "m.png")])
    assert (tmp_path / "s0" / "result.json").read_text() == before
    (tmp_path / "ixi").mkdir()
    mine = _brain_age_run(tmp_path / "ixi" / "result.json", 0, 808.0, 803.0)
    with pytest.raises(SystemExit, match="ixi/result.json is one of the merged results"):
        load_benchmark("brain_age_ixi").main(["--merge", _brain_age_run(tmp_path / "s1.json", 1, 1603.0, 1598.0), mine,
                                              "--out", str(tmp_path / "ixi"), "--figure", str(tmp_path / "m.png")])


def test_medmnist_merge_says_which_peer_rows_some_seeds_lack(tmp_path, capsys):
    """Seeds run on machines with different peer packages: the peer scored in one seed only had no row in the
    merged table and nothing said so. The merge now names it, with the seeds that have it, in the printout and JSON."""
    paths = [_medmnist_run(tmp_path / "a.json", 0, 1420.0, 1418.0), _medmnist_run(tmp_path / "b.json", 1, 1436.0, 1433.0)]
    run = json.loads((tmp_path / "b.json").read_text())  # seed 1 also ran the peer lightly
    run["per_seed"][0]["peer_pretrain"] = {"lightly": {"seconds": 1.0, "history": []}}
    run["per_seed"][0]["few_label"]["1.0"]["lightly_probe"] = {"auc": 0.7, "acc": 0.6}
    (tmp_path / "b.json").write_text(json.dumps(run))
    res = load_benchmark("medmnist").main(["--dataset", "pneumonia", "--merge", *paths, "--out", str(tmp_path / "m"),
                                           "--figure", str(tmp_path / "m.png")])
    assert "lightly_probe" not in res["summary"]  # a row needs every seed (mean ± SD over the same seeds)
    on_disk = json.loads((tmp_path / "m" / "result.json").read_text())
    assert on_disk["peers_left_out"] == {"lightly": {"scored_in_seeds": [1], "missing_in_seeds": [0]}}
    assert ("peer row(s) left out of the table (not scored in every merged seed): lightly (scored in seed(s) [1], "
            "missing in [0])") in capsys.readouterr().out
