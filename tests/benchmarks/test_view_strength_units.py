"""Unit tests of ``benchmarks/view_strength.py``'s pure parts (no data, no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from benchmark_module import BENCHMARKS, load_benchmark


def _vs():
    import sys

    if str(BENCHMARKS) not in sys.path:  # view_strength imports seed_runs etc. from its own folder
        sys.path.insert(0, str(BENCHMARKS))
    return load_benchmark("view_strength", "bench_view_strength_units")


def _naive_retrieval(f: np.ndarray) -> dict:
    """Written out with loops: centre over all 2N views, L2-normalise, nearest other view by cosine."""
    n = f.shape[0]
    z = f.reshape(2 * n, -1).astype(np.float64)
    z = z - z.mean(0)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    hits, pos, neg = 0, [], []
    for i in range(2 * n):
        partner = i + 1 if i % 2 == 0 else i - 1
        cos = [float(z[i] @ z[j]) if j != i else -math.inf for j in range(2 * n)]
        hits += int(np.argmax(cos) == partner)
        pos.append(cos[partner])
        neg += [cos[j] for j in range(2 * n) if j not in (i, partner)]
    return {"retrieval": hits / (2 * n), "pos_cos": float(np.mean(pos)), "neg_cos": float(np.mean(neg)),
            "chance_retrieval": 1 / (2 * n - 1)}


@pytest.mark.parametrize("spread", [0.3, 1.0])
def test_pair_retrieval_matches_a_naive_loop(spread):
    """Views = scan code + noise + a large common offset (so centring matters); both noise levels."""
    g = np.random.default_rng(0)
    scans = g.normal(size=(7, 1, 5))
    f = 10.0 + scans + spread * g.normal(size=(7, 2, 5))
    got = _vs().pair_retrieval(torch.from_numpy(f).float())
    want = _naive_retrieval(f)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-5), k


def test_pair_retrieval_known_limits():
    """Identical partners far apart: retrieval 1, pos_cos 1; chance 1 / (2N − 1)."""
    base = torch.eye(4) * 5
    f = torch.stack([base, base], 1)  # (4, 2, 4): both views of scan i equal
    r = _vs().pair_retrieval(f)
    assert r["retrieval"] == 1.0 and r["pos_cos"] == pytest.approx(1.0) and r["chance_retrieval"] == pytest.approx(1 / 7)
    assert r["neg_cos"] < 0  # centred one-hot codes point away from each other


def test_summarise_row_is_the_mean_over_seeds_and_the_table_divides_by_chance():
    vs = _vs()
    per_seed = [{"first10": 4.0, "last10": 3.0, "steps": 5,
                 "agreement": {"encoder": {"retrieval": 0.2}, "voxels": {"retrieval": 0.6}}},
                {"first10": 5.0, "last10": 2.0, "steps": 5,
                 "agreement": {"encoder": {"retrieval": 0.4}, "voxels": {"retrieval": 0.8}}}]
    s = vs.summarise_row(per_seed)
    assert s["first10"] == pytest.approx(4.5) and s["last10"] == pytest.approx(2.5)
    assert s["last10_per_seed"] == [3.0, 2.0] and s["steps"] == 5
    assert s["retrieval_encoder"] == pytest.approx(0.3) and s["retrieval_voxels"] == pytest.approx(0.7)
    chance = math.log(2 * 8 - 1)
    table = vs.format_table({"chance_ntxent": chance, "summary": {"none": s}, "spacing_mm": 6.0, "batch": 8,
                             "seeds": [0, 1]})
    row = table.splitlines()[-1]
    assert f"| {2.5 / chance:.2f} |" in row and "| 0.300 | 0.700 |" in row and "| 4.50 | 2.50 (3.00 / 2.00) |" in row
    assert "B=8, 2 seed(s)" in table and "5 steps" in table


def test_variant_pipelines_switch_off_what_they_say():
    """crop_flip keeps only crop + flips; no_noise drops both noises; physical (only) rescales to the spacing."""
    vs = _vs()
    probs = [k for k in vars(vs.make_pipeline("brain_mri", 20, 6.0).params) if k.endswith("_prob")]
    crop_flip = vs.make_pipeline("crop_flip", 20, 6.0)
    assert {k for k in probs if getattr(crop_flip.params, k) > 0} == {"flip_prob"}
    assert not crop_flip.others and all(type(t).__name__ == "RandomFlip" for t in crop_flip.spatial)
    no_noise = vs.make_pipeline("no_noise", 20, 6.0).params
    assert no_noise.noise_prob == 0 and no_noise.rician_prob == 0 and no_noise.gamma_prob > 0
    scales = {key: {getattr(t, "voxel_scale", None) for t in vs.make_pipeline(key, 20, 6.0).others}
              for key in ("brain_mri", "physical")}
    ref = vs.make_pipeline("physical", 20, 6.0).params.reference_spacing_mm
    assert scales["brain_mri"] == {None} and (ref / 6.0,) * 3 in scales["physical"]


class _TwoViews:
    """Deterministic stand-in for a view pipeline: view 0 = the scan, view 1 = its left-right mirror + 0.1 × scan²."""

    def views(self, x, n, g):
        assert n == 2
        return torch.stack([x, x.flip(-1) + 0.1 * x ** 2], 1)


def test_view_agreement_pairs_the_two_views_of_each_scan_across_batches():
    """7 scans in batches of 3; encoder = flatten (eval mode is set); voxels 4× average-pooled, written naively."""
    vs = _vs()
    images = np.random.default_rng(1).normal(size=(7, 1, 8, 8, 8)).astype(np.float32)
    encoder = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Flatten())
    got = vs.view_agreement(encoder, images, _TwoViews(), seed=0, batch=3, pool=4)
    assert not encoder.training
    views = np.stack([images, images[..., ::-1] + 0.1 * images ** 2], 1)  # (7, 2, 1, 8, 8, 8)
    pooled = views.reshape(7, 2, 1, 2, 4, 2, 4, 2, 4).mean(axis=(4, 6, 8))
    for key, f in (("encoder", views), ("voxels", pooled)):
        want = _naive_retrieval(f.reshape(7, 2, -1))
        for k in want:
            assert got[key][k] == pytest.approx(want[k], abs=1e-5), (key, k)


def test_only_the_physical_row_rescales_to_the_data_spacing():
    assert [k for k, v in _vs().VARIANTS.items() if v[3]] == ["physical"]


def test_train_variant_rounds_steps_up_to_epochs_and_averages_the_first_and_last_ten_losses(tmp_path, monkeypatch):
    """Trainer faked: 50 scans, batch 8 = 6 steps per epoch, so 20 steps = 4 epochs; first/last 10 written naively."""
    vs, seen = _vs(), {}
    losses = [float(v) for v in np.linspace(5.0, 1.0, 24) ** 1.5]

    class FakeTrainer:
        def __init__(self, method, data, run_dir, opts, device):
            seen.update(opts=opts, scans=len(data))
            self.run_dir = run_dir

        def fit(self):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "metrics.jsonl").write_text("".join(f'{{"step": {i}, "loss": {v}}}\n'
                                                                for i, v in enumerate(losses)))
            return {"stopped_early": seen.get("stop", False)}

    monkeypatch.setattr(vs, "Trainer", FakeTrainer)
    monkeypatch.setattr(vs, "CachedScans", lambda images, records, rows, coder: list(rows))
    b = vs.Budget(crop=20, width=4)
    data = {"records": list(range(50)), "images": None, "coder": None}
    row = vs.train_variant("none", data, b, 20, 8, 3, tmp_path / "run")
    assert seen["opts"].epochs == 4 and seen["opts"].batch_size == 8 and seen["opts"].seed == 3
    assert seen["opts"].lr == b.ssl_lr and seen["scans"] == 50
    assert row["steps"] == 24 and row["first10"] == pytest.approx(sum(losses[:10]) / 10)
    assert row["last10"] == pytest.approx(sum(losses[-10:]) / 10)
    seen["stop"] = True  # a SIGTERM mid-row ends the study rather than reporting a cut-short row
    with pytest.raises(SystemExit, match="SIGTERM during row none"):
        vs.train_variant("none", data, b, 20, 8, 3, tmp_path / "run2")


def test_main_runs_every_row_for_every_seed_with_that_seeds_encoder_and_views(tmp_path, monkeypatch):
    """Data, agreement and training faked: rows keep seed order; agreement and training get each seed."""
    vs, calls = _vs(), []
    monkeypatch.setattr(vs, "load_ixi", lambda root, b, cache: {"records": [0] * 12, "images": None, "shape": (4, 4, 4)})
    monkeypatch.setattr(vs, "cnn", lambda b, seed: ("cnn", seed))
    monkeypatch.setattr(vs, "view_agreement", lambda enc, images, pipe, seed: calls.append(("agree", enc, seed)) or
                        {k: {"retrieval": 0.5} for k in ("encoder", "voxels")})
    monkeypatch.setattr(vs, "train_variant", lambda key, data, b, steps, batch, seed, run_dir: calls.append(
        ("train", key, seed, steps, batch)) or {"losses": [3.0, 2.0], "first10": 3.0 + seed, "last10": 2.0,
                                                "steps": 2, "seconds": 0.0})
    monkeypatch.setattr(vs, "plot", lambda result, path: None)
    res = vs.main(["--data-root", str(tmp_path), "--out", str(tmp_path / "o"), "--variants", "none", "physical",
                   "--seeds", "5", "7", "--steps", "9", "--batch", "4"])
    assert calls == [c for s in (5, 7) for k in ("none", "physical")
                     for c in (("agree", ("cnn", s), s), ("train", k, s, 9, 4))]
    assert [r["seed"] for r in res["rows"]["physical"]] == [5, 7] and res["chance_ntxent"] == pytest.approx(math.log(7))
    assert res["summary"]["none"]["first10"] == pytest.approx(9.0)
