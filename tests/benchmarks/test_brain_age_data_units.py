"""``benchmarks/brain_age_data.py``: the folds and early-stopping split against their documented properties, the
grid, the budget of docs/benchmarks_brain_age.md, and (with ../shared) what :func:`load_ixi` and --write-copy read."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from benchmark_module import load_benchmark
from shared_data import shared_path


def _data():
    return load_benchmark("brain_age_data")


def _quintile(ages):
    """Age quintile of each subject by rank (ties broken by position)."""
    return np.argsort(np.argsort(ages, kind="stable"), kind="stable") * 5 // len(ages)


def test_folds_balance_every_age_quintile_and_are_redrawn_per_seed():
    """Each age quintile is spread over the five folds as evenly as counts allow; a seed gives the same folds
    again, another seed other folds."""
    ages = np.random.default_rng(1).uniform(20, 82, 140)  # 140: quintiles of 28 subjects, whatever the rounding
    folds = _data().age_folds(ages, 5, seed=0)
    q = _quintile(ages)
    for k in range(5):
        n = int(np.sum(q == k))
        assert all(np.sum(q[f] == k) in (n // 5, -(-n // 5)) for f in folds), k
    again, other = _data().age_folds(ages, 5, seed=0), _data().age_folds(ages, 5, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other))


def test_inner_split_holds_out_20_percent_balanced_on_age_tertiles():
    ages = np.random.default_rng(2).uniform(20, 82, 110)
    fit, val = _data().inner_split(ages, seed=0)
    assert len(val) == 22 and len(fit) == 88 and sorted(np.concatenate([fit, val]).tolist()) == list(range(110))
    tertile = np.argsort(np.argsort(ages)) * 3 // 110
    assert sorted(np.bincount(tertile[val], minlength=3).tolist()) in ([7, 7, 8], [7, 8, 7])
    assert not np.array_equal(np.sort(val), np.sort(_data().inner_split(ages, seed=1)[1]))
    # 15 training subjects (a quick run's fold, 3 held out): still one per tertile
    small = np.arange(15.0) + 20
    for seed in range(10):
        assert sorted(np.bincount(np.arange(15)[_data().inner_split(small, seed)[1]] // 5, minlength=3)) == [1, 1, 1]
    assert len(_data().inner_split(np.arange(10.0), 0)[1]) == 2  # too few to stratify: a plain split


def test_grid_keeps_the_field_of_view():
    """docs: the 2 mm 96×120×120 grid is 32×40×40 at 6 mm (24×30×30 at the --quick 8 mm); at any spacing the
    grid covers the 192×240×240 mm field of view to within half a voxel."""
    from medssl.data.card import load_card

    card = load_card("shared_ixi")
    assert _data().grid_shape(card, 6.0) == [32, 40, 40] and _data().grid_shape(card, 8.0) == [24, 30, 30]
    for spacing in (2.5, 4.5, 7.0, 9.0):
        got = _data().grid_shape(card, spacing)
        assert all(abs(n * spacing - fov) <= spacing / 2 for n, fov in zip(got, (192, 240, 240))), (spacing, got)


def test_budget_defaults_are_budget_a_of_the_docs():
    """docs/benchmarks_brain_age.md, "Budget A (the defaults)" and "Protocol"."""
    b = _data().Budget()
    assert (b.spacing, b.width, b.vit, b.patch, b.crop, b.preset) == (6.0, 16, "vit_tiny", 8, 28, "brain_mri")
    assert (b.ssl_epochs, b.ssl_batch, b.sigma, b.folds, b.voxel_pool) == (40, 32, 5.0, 5, 2)
    assert (b.ft_epochs, b.ft_lr_encoder, b.ft_lr_head, b.ft_augment, b.ft_head_init) == (20, 3e-4, 1e-3, "affine", "random")
    assert (b.methods, b.scratch, b.finetune, b.limit, b.ft_freeze_bn) == ("simclr,genesis,mae,yaware", True, True, 0, False)
    assert _data().QUICK["limit"] == 24 and _data().QUICK["spacing"] == 8.0 and _data().QUICK["folds"] == 3


def _small_root(tmp_path, n: int = 4):
    """ixi_t1_hh_2mm/ with its first unlabelled scan followed by ``n - 1`` labelled ones (links to ../shared)."""
    src = shared_path("data", "ixi_t1_hh_2mm", "participants.tsv").parent
    with open(src / "participants.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    chosen = [next(r for r in rows if not r["age"])] + [r for r in rows if r["age"]][: n - 1]
    root = tmp_path / "data" / "ixi_t1_hh_2mm"
    (root / "images").mkdir(parents=True)
    with open(root / "participants.tsv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(chosen)
    for r in chosen:
        (root / r["filename"]).symlink_to(src / r["filename"])
    return root, chosen


def test_load_ixi_reads_ages_z_scores_and_limits_to_labelled_scans(tmp_path):
    """``limit`` (--quick) takes the first N *labelled* scans; ages are the table's; each scan is z-scored (before
    padding, so the whole grid's mean and SD are near 0 and 1, not the file's uint8 scale) on the budget's grid."""
    root, chosen = _small_root(tmp_path)
    data = _data()
    b = data.Budget(spacing=8.0)
    whole = data.load_ixi(root.parent, b, tmp_path / "cache_all")
    assert [r.subject for r in whole["records"]] == [r["subject_id"] for r in chosen]
    assert whole["labelled"].tolist() == [1, 2, 3] and math.isnan(whole["ages"][0])
    assert np.allclose(whole["ages"][1:], [float(r["age"]) for r in chosen[1:]])
    assert whole["images"].shape == (4, 1, 24, 30, 30)
    for v in whole["images"][:, 0].astype(np.float64):
        assert abs(v.mean()) < 0.1 and 0.85 < v.std() < 1.05
    limited = data.load_ixi(root.parent, data.Budget(spacing=8.0, limit=2), tmp_path / "cache_2")
    assert [r.subject for r in limited["records"]] == [r["subject_id"] for r in chosen[1:3]]
    assert limited["labelled"].tolist() == [0, 1]


def test_write_copy_round_trip(tmp_path):
    """The copy is uint8 on a plain RAS grid of the spacing, and the benchmark reads nearly the same scans from it."""
    import nibabel as nib

    root, chosen = _small_root(tmp_path, 3)
    data = _data()
    data.write_resampled_copy(root.parent, tmp_path / "copy" / "ixi_t1_hh_2mm", 8.0)
    img = nib.load(tmp_path / "copy" / "ixi_t1_hh_2mm" / chosen[1]["filename"])
    assert img.get_data_dtype() == np.uint8 and img.shape == (24, 30, 30)
    assert np.allclose(img.affine, np.diag([8.0, 8.0, 8.0, 1.0]))
    b = data.Budget(spacing=8.0)
    a = data.load_ixi(root.parent, b, tmp_path / "c1")["images"]
    c = data.load_ixi(tmp_path / "copy", b, tmp_path / "c2")["images"]
    for x, y in zip(a, c):
        assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.999 and np.abs(x - y).mean() < 0.05


@pytest.mark.parametrize("n_folds", [3, 5])
def test_folds_are_subject_level_partitions(n_folds):
    ages = np.random.default_rng(n_folds).uniform(20, 82, 24 if n_folds == 3 else 138)
    folds = _data().age_folds(ages, n_folds, seed=2)
    assert len(folds) == n_folds and sorted(np.concatenate(folds).tolist()) == list(range(len(ages)))
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
