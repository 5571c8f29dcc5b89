"""``benchmarks/seed_runs.py``: ``--set`` overrides and ``--merge`` of per-seed result JSONs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from benchmark_module import load_benchmark


@dataclass(frozen=True)
class Toy:
    epochs: int = 4
    lr: float = 1e-3
    augment: bool = True
    methods: str = "simclr,mae"
    fractions: tuple = (0.01, 0.1, 1.0)


def _seed_runs():
    return load_benchmark("seed_runs")


def test_values_parse_with_their_field_type():
    """``augment=false`` turns a flag off (``bool("false")`` would be True); tuples take comma lists."""
    b = _seed_runs().apply_set(Toy(), ["augment=false", "epochs=24", "lr=3e-4", "fractions=0.1,1", "methods="])
    assert b == Toy(epochs=24, lr=3e-4, augment=False, methods="", fractions=(0.1, 1.0))
    assert _seed_runs().apply_set(Toy(augment=False), ["augment=1"]).augment is True


@pytest.mark.parametrize(("pair", "message"), [
    ("augment=yes please", "augment=yes please: not a valid bool"),
    ("epochs=ten", "epochs=ten: not a valid int"),
    ("fractions=0.1,x", "fractions=0.1,x: not a valid tuple"),
    ("epoch=3", "KEY one of epochs, lr, augment, methods, fractions"),
    ("epochs", "expected KEY=VALUE"),
])
def test_bad_pairs_are_refused_by_name(pair, message):
    with pytest.raises(SystemExit, match=message):
        _seed_runs().apply_set(Toy(), [pair])


def _write(path, seeds, budget=None, **extra):
    path.write_text(json.dumps({"budget": budget or {"epochs": 4}, "per_seed": [{"seed": s} for s in seeds], **extra}))
    return str(path)


def test_merge_sorts_seeds_and_refuses_mixed_runs(tmp_path):
    sr = _seed_runs()
    a, b = _write(tmp_path / "a.json", [2]), _write(tmp_path / "b.json", [0, 1])
    per_seed, results = sr.merge_seeds([a, b])
    assert [s["seed"] for s in per_seed] == [0, 1, 2] and len(results) == 2
    with pytest.raises(SystemExit, match="seed\\(s\\) repeated"):
        sr.merge_seeds([a, _write(tmp_path / "c.json", [2])])
    with pytest.raises(SystemExit, match="d.json: budget"):
        sr.merge_seeds([a, _write(tmp_path / "d.json", [3], budget={"epochs": 8})])
    x, y = _write(tmp_path / "x.json", [0], dataset="adrenal"), _write(tmp_path / "y.json", [1], dataset="pneumonia")
    with pytest.raises(SystemExit, match="y.json: dataset"):
        sr.merge_seeds([x, y], same=("budget", "dataset"))


def test_write_result_writes_both_copies_and_the_command_is_the_one_run(tmp_path):
    import numpy as np

    sr = _seed_runs()
    path = sr.write_result({"mae": np.float32(7.5), "seeds": [0, 1]}, tmp_path, str(tmp_path / "also.json"))
    assert path == tmp_path / "result.json"
    assert json.loads(path.read_text()) == json.loads((tmp_path / "also.json").read_text()) == {"mae": 7.5, "seeds": [0, 1]}
    sr.write_result({"x": 1}, tmp_path)  # no --json: only result.json
    assert json.loads(path.read_text()) == {"x": 1} and json.loads((tmp_path / "also.json").read_text())["mae"] == 7.5
    assert sr.command_line("medmnist.py", ["--quick", "--seeds", "0"]) == "python benchmarks/medmnist.py --quick --seeds 0"


def _one_commit_repo(tmp_path):
    """A git checkout with one committed file ``a.txt``; returns (folder, HEAD's hash)."""
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "a.txt").write_text("1")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return repo, head


def test_machine_names_the_cpu_and_the_commit_that_ran(tmp_path):
    """A result must say which medssl code produced it: the checked-out commit, ``+dirty`` with uncommitted
    changes to tracked files, ``unknown`` outside a checkout; and the CPU model next to the thread count."""
    sr = _seed_runs()
    repo, head = _one_commit_repo(tmp_path)
    assert sr.git_commit(repo) == head and len(head) == 40
    (repo / "untracked.txt").write_text("x")  # untracked files (run folders) do not make the code dirty
    assert sr.git_commit(repo) == head
    (repo / "a.txt").write_text("2")
    assert sr.git_commit(repo) == head + "+dirty"
    assert sr.git_commit(tmp_path / "nowhere") == "unknown"
    m = sr.machine("cpu")
    assert m["device"] == "cpu" and m["cpu"] and m["torch_threads"] >= 1 and m["medssl_commit"] == sr.git_commit()


def test_git_commit_never_writes_the_checkouts_index(tmp_path):
    """Every benchmark result (and every test that builds one) asks git for the commit; a plain `git status`
    refreshes stale stat data by rewriting .git/index under index.lock, so a benchmark could make the user's
    own `git add` / `git commit` in that checkout fail on the lock. The index must be left byte for byte."""
    import os

    repo, _ = _one_commit_repo(tmp_path)
    later = (repo / "a.txt").stat().st_mtime + 60
    os.utime(repo / "a.txt", (later, later))  # same content, newer time: the index's stat data is stale
    index = (repo / ".git" / "index").read_bytes()
    assert not _seed_runs().git_commit(repo).endswith("+dirty")  # content unchanged: not dirty
    assert (repo / ".git" / "index").read_bytes() == index


def test_write_result_keeps_the_earlier_result_of_its_folder(tmp_path, capsys):
    """A second run into the same --out (e.g. --resume with other fine-tuning settings on the same checkpoints)
    replaced the earlier result.json: its numbers were lost. The earlier one is now kept as result.<k>.json."""
    sr = _seed_runs()
    sr.write_result({"run": 1}, tmp_path)
    sr.write_result({"run": 2}, tmp_path)
    sr.write_result({"run": 3}, tmp_path)
    assert json.loads((tmp_path / "result.json").read_text()) == {"run": 3}
    assert json.loads((tmp_path / "result.1.json").read_text()) == {"run": 1}
    assert json.loads((tmp_path / "result.2.json").read_text()) == {"run": 2}
    assert f"the earlier {tmp_path / 'result.json'} is kept as {tmp_path / 'result.2.json'}" in capsys.readouterr().out


def test_a_quick_run_empties_only_a_default_folder_an_earlier_quick_run_made(tmp_path, capsys):
    """`--quick` without --out emptied its default folder whatever it held (a user's file there was deleted).
    It now empties only a folder that a quick run made (its mark file); any other stays as it was, named."""
    sr = _seed_runs()
    default = tmp_path / "runs" / "x_quick"
    default.mkdir(parents=True)
    (default / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match=r"x_quick holds notes.txt but not the mark a --quick run leaves.*nothing was "
                                         r"deleted") as stop:
        sr.run_folder("", default, replace_default=True)
    assert (default / "notes.txt").read_text() == "mine"
    # a folder of a quick run made before the mark existed is not said to be no quick run's: the message names the
    # mark file that lets the next quick run replace it (it said 'was not made by a --quick run', 'delete the folder',
    # which also deletes the scan cache that a quick run keeps)
    assert "quick runs before 2026-11-25 left none" in str(stop.value)
    assert f"create {default / '.medssl-quick-run'} (an empty file) and run again" in str(stop.value)
    older = tmp_path / "runs" / "z_quick"  # an earlier quick run's, made before the mark: what the message says works
    (older / "simclr_seed0").mkdir(parents=True)
    (older / ".medssl-quick-run").write_text("")
    assert sr.run_folder("", older, replace_default=True) == older and not (older / "simclr_seed0").exists()
    fresh = tmp_path / "runs" / "y_quick"
    assert sr.run_folder("", fresh, replace_default=True) == fresh  # made here: marked
    (fresh / "simclr_seed0").mkdir()
    (fresh / "result.json").write_text("{}")
    sr.run_folder("", fresh, replace_default=True)  # an earlier quick run's folder: emptied
    assert sorted(p.name for p in fresh.iterdir()) == [sr.QUICK_MARK]
    assert sr.run_folder(str(default), default, replace_default=True) == default  # --out: never emptied
    assert (default / "notes.txt").read_text() == "mine"
