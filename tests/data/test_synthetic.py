"""Synthetic cohort: files, determinism, and planted effects recovered from the images.

The effect tests segment the written images with simple thresholds defined here (never
the generator's masks or truth table), so they check what an encoder could see.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage, stats

from medssl.data.synthetic import SyntheticCohortSpec, generate_subject, subject_traits, write_synthetic_cohort
from medssl.data.synthetic_anatomy import ad_probability, render_tissue, sample_traits
from medssl.io import read_nifti

N, SHAPE, SEED = 60, (40, 40, 40), 3


def _read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _load(out: Path) -> tuple[list[dict], np.ndarray, list]:
    rows = _read_tsv(out / "participants.tsv")
    vols = [read_nifti(out / r["participant_id"] / "anat" / f"{r['participant_id']}_T1w.nii.gz") for r in rows]
    return rows, np.stack([v.array[0] for v in vols]), vols


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = write_synthetic_cohort(tmp_path_factory.mktemp("synth") / "cohort", n_subjects=N, n_sites=3,
                                 shape=SHAPE, seed=SEED, workers=1, progress=False)
    rows, images, vols = _load(out)
    return out, rows, images, vols


# ---------------------------------------------------------------- simple image measures
def _world_axes(affine: np.ndarray, shape) -> list[np.ndarray]:
    return [affine[i, 3] + affine[i, i] * np.arange(shape[i]) for i in range(3)]


def _levels(img: np.ndarray, affine: np.ndarray) -> tuple[float, float]:
    """(background, white matter) intensity: corner median and upper quartile of a deep box."""
    c = 4
    corners = [img[sx, sy, sz] for sx in (slice(0, c), slice(-c, None)) for sy in (slice(0, c), slice(-c, None))
               for sz in (slice(0, c), slice(-c, None))]
    bg = float(np.median(np.concatenate([k.ravel() for k in corners])))
    return bg, float(np.percentile(img[_box(affine, img.shape)], 75))


def _box(affine, shape, x=24.0, y=(-40.0, 40.0), z=(-6.0, 36.0)):
    """Deep central box (world mm) holding the lateral ventricles, thalami and white matter."""
    ax = _world_axes(affine, shape)
    sel = [(ax[0] > -x) & (ax[0] < x), (ax[1] > y[0]) & (ax[1] < y[1]), (ax[2] > z[0]) & (ax[2] < z[1])]
    return np.ix_(*sel)


def ventricle_ml(img: np.ndarray, affine: np.ndarray) -> float:
    """Dark (CSF-like) voxels in the deep central box, in mL (half-way threshold)."""
    bg, wm = _levels(img, affine)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    return float((img[_box(affine, img.shape)] < bg + 0.5 * (wm - bg)).sum()) * voxel_ml


def head_ml(img: np.ndarray, affine: np.ndarray) -> float:
    """Head volume in mL: the largest bright component (above 15 % of the background→WM
    range), filled along every axis line between its first and last voxel (the dark skull
    and CSF inside count, leaks in a thin scalp do not matter)."""
    bg, wm = _levels(img, affine)
    labels, n = ndimage.label(img > bg + 0.15 * (wm - bg))
    mask = labels == (1 + int(np.argmax(ndimage.sum_labels(np.ones_like(img), labels, range(1, n + 1)))))
    filled = np.ones_like(mask)
    for axis in range(3):
        filled &= (np.cumsum(mask, axis=axis) > 0) & (np.flip(np.cumsum(np.flip(mask, axis), axis=axis), axis) > 0)
    return float(filled.sum()) * abs(np.linalg.det(affine[:3, :3])) / 1000.0


# ---------------------------------------------------------------- files and determinism
def test_files_read_back_with_affine_shape_and_participants_match(cohort):
    out, rows, images, vols = cohort
    assert list(rows[0]) == ["participant_id", "age", "sex", "site", "diagnosis"]
    ids = [f"sub-{i:04d}" for i in range(1, N + 1)]
    assert [r["participant_id"] for r in rows] == ids
    assert sorted(p.name for p in out.glob("sub-*/anat/*_T1w.nii.gz")) == [f"{i}_T1w.nii.gz" for i in ids]
    spacing = 224.0 / 40
    expected = np.diag([spacing, spacing, spacing, 1.0])
    expected[:3, 3] = -19.5 * spacing
    for v in vols:
        assert v.spatial_shape == SHAPE
        np.testing.assert_allclose(v.affine, expected, atol=1e-4)
        assert v.orientation == "RAS"
    assert images.min() >= 0 and images.max() <= 255 and np.array_equal(images, np.round(images))
    for i, r in enumerate(rows):
        assert r["age"] == f"{float(r['age']):.1f}" and 20.0 <= float(r["age"]) <= 85.0
        assert r["sex"] in {"F", "M"} and r["diagnosis"] in {"CN", "AD"}
        assert r["site"] == "site-" + "ABC"[i % 3]
    assert {r["sex"] for r in rows} == {"F", "M"} and {r["diagnosis"] for r in rows} == {"CN", "AD"}
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["Name"] and desc["BIDSVersion"]
    assert desc["GeneratedBy"][0]["Parameters"]["seed"] == SEED
    assert desc["GeneratedBy"][0]["Parameters"]["shape"] == list(SHAPE)


def test_same_seed_same_data_for_any_workers_other_seed_differs(tmp_path):
    kw = dict(n_subjects=6, n_sites=3, shape=(24, 24, 24), progress=False)
    a = write_synthetic_cohort(tmp_path / "a", seed=5, workers=1, **kw)
    b = write_synthetic_cohort(tmp_path / "b", seed=5, workers=2, **kw)
    c = write_synthetic_cohort(tmp_path / "c", seed=6, workers=1, **kw)
    (ra, ia, _), (_, ib, _), (rc, ic, _) = _load(a), _load(b), _load(c)
    assert (a / "participants.tsv").read_bytes() == (b / "participants.tsv").read_bytes()
    assert ia.tobytes() == ib.tobytes()
    assert [r["age"] for r in ra] != [r["age"] for r in rc]
    for x, y in zip(ia, ic):  # every subject differs, not just some
        assert np.abs(x - y).mean() > 1.0


def test_subjects_do_not_depend_on_cohort_size_and_match_the_files(cohort):
    out, rows, images, _ = cohort
    small = SyntheticCohortSpec(n_subjects=3, n_sites=3, shape=SHAPE, seed=SEED)
    for i in range(3):
        s = generate_subject(small, i)
        assert np.array_equal(s.image.astype(np.float32), images[i])
        assert f"{s.traits.age:.1f}" == rows[i]["age"] and s.participant_id == rows[i]["participant_id"]


def test_a_subject_is_the_same_anatomy_at_any_resolution():
    def image(shape, index):
        return generate_subject(SyntheticCohortSpec(n_subjects=5, shape=shape, seed=2), index).image.astype(float)

    pooled = image((64, 64, 64), 1).reshape(32, 2, 32, 2, 32, 2).mean(axis=(1, 3, 5))  # 3.5 → 7 mm
    same, other = image((32, 32, 32), 1), image((32, 32, 32), 4)  # subject 4: same site, other person
    r_same, r_other = (np.corrcoef(pooled.ravel(), x.ravel())[0, 1] for x in (same, other))
    assert r_same > 0.95 and r_same > r_other + 0.05, (r_same, r_other)


# ---------------------------------------------------------------- planted effects
def test_ventricle_volume_measured_from_images_tracks_age(cohort):
    _, rows, images, vols = cohort
    age = np.array([float(r["age"]) for r in rows])
    vent = np.array([ventricle_ml(im, v.affine) for im, v in zip(images, vols)])
    assert stats.pearsonr(age, vent)[0] > 0.5
    # not only through the site confound: the correlation holds after removing site means
    site = np.array([r["site"] for r in rows])
    resid = [x - np.array([x[site == s].mean() for s in site]) for x in (age, vent)]
    assert stats.pearsonr(*resid)[0] > 0.4


def _controlled_renderer():
    """Render one fixed subject (noiseless tissue, 64³, no pose) with some traits changed."""
    spec = SyntheticCohortSpec(n_subjects=1, shape=(64, 64, 64))
    base = sample_traits(0, 0, spec.sites[0], np.random.default_rng(11))
    base = dataclasses.replace(base, diagnosis="CN", ventricle_noise=0.0, pose_shift_mm=(0.0, 0.0, 0.0),
                               pose_rotation_deg=(0.0, 0.0, 0.0))

    def render(**change) -> np.ndarray:
        img, _ = render_tissue(dataclasses.replace(base, **change), spec.axes_mm(), 3.5, np.random.default_rng(12))
        return img

    return spec, render


def test_ventricle_growth_with_age_matches_the_documented_rate():
    spec, render = _controlled_renderer()
    box = _box(spec.affine, spec.shape)

    def ventricle_voxels(age: float) -> float:
        # partial-volume CSF fraction (white matter 1.0, CSF 0.12) minus the same subject
        # with vanishing ventricles: what remains is the ventricles' own volume
        csf = [np.clip((1.0 - render(age=age, **kw)[box]) / 0.88, 0, 1).sum()
               for kw in ({}, {"ventricle_noise": -9.0})]
        return float(csf[0] - csf[1])

    log_ratio = math.log(ventricle_voxels(80.0) / ventricle_voxels(30.0))
    assert abs(log_ratio - 0.018 * 50) < 0.1, log_ratio  # documented: volume × exp(0.018 / year)


def test_ad_atrophy_is_localised_in_the_medial_temporal_lobes():
    spec, render = _controlled_renderer()
    cn, ad = render(age=75.0), render(age=75.0, diagnosis="AD")
    ax = _world_axes(spec.affine, spec.shape)
    mtl = [np.array([side * 30.0, -16.0, -13.0]) for side in (-1, 1)]  # hippocampus / temporal horn
    roi = [np.ix_(*[np.abs(a - ci) < 12.0 for a, ci in zip(ax, c)]) for c in mtl]
    assert np.mean([(cn[r] - ad[r]).mean() for r in roi]) > 0.03  # tissue signal lost there
    drop = ndimage.gaussian_filter(cn - ad, 6.0 / 3.5)  # σ = 6 mm
    peak = np.array([a[i] for a, i in zip(ax, np.unravel_index(np.argmax(drop), drop.shape))])
    assert min(np.linalg.norm(peak - c) for c in mtl) < 20.0, peak  # the largest loss is there


def test_site_is_predictable_from_downsampled_intensities(cohort):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, rows, images, _ = cohort
    x = images.reshape(len(images), 8, 5, 8, 5, 8, 5).mean(axis=(2, 4, 6)).reshape(len(images), -1)
    y = np.array([r["site"] for r in rows])
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    acc = cross_val_score(probe, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0)).mean()
    assert acc > 0.8  # chance is 1/3


def test_sites_have_different_age_distributions(cohort):
    _, rows, _, _ = cohort
    by_site = {s: [float(r["age"]) for r in rows if r["site"] == s] for s in ("site-A", "site-B", "site-C")}
    assert np.mean(by_site["site-B"]) - np.mean(by_site["site-A"]) > 15.0
    assert stats.kruskal(*by_site.values()).pvalue < 1e-3
    assert np.std(by_site["site-C"]) > np.std(by_site["site-A"])


def test_male_heads_are_larger_in_the_images(cohort):
    _, rows, images, vols = cohort
    vol = np.array([head_ml(im, v.affine) for im, v in zip(images, vols)])
    male = np.array([r["sex"] == "M" for r in rows])
    site = np.array([r["site"] for r in rows])
    # log volume ~ male + site (sites differ in blur, pose and intensity, which move the mask edge)
    x = np.column_stack([male] + [site == s for s in ("site-A", "site-B", "site-C")]).astype(float)
    beta, res, *_ = np.linalg.lstsq(x, np.log(vol), rcond=None)
    se = math.sqrt(res[0] / (len(vol) - x.shape[1]) * np.linalg.inv(x.T @ x)[0, 0])
    # documented: male head 4 % larger (linear) → log volume ratio 3·log(1.04) = 0.118
    assert 0.07 < beta[0] < 0.25 and beta[0] / se > 3.0, (beta[0], se)
    assert stats.mannwhitneyu(vol[male], vol[~male], alternative="greater").pvalue < 0.01


def test_older_subjects_are_more_often_ad():
    spec = SyntheticCohortSpec(n_subjects=2000, n_sites=3, shape=(16, 16, 16), seed=1)
    traits = [subject_traits(spec, i) for i in range(spec.n_subjects)]
    age = np.array([t.age for t in traits])
    ad = np.array([t.diagnosis == "AD" for t in traits])
    assert ad[age >= 70].mean() > 3 * ad[age < 50].mean()
    expected = np.mean([ad_probability(a) for a in age])
    assert abs(ad.mean() - expected) < 4 * math.sqrt(expected * (1 - expected) / 2000)


# ---------------------------------------------------------------- folder handling and errors
def test_existing_folder_rules(tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a medssl synthetic cohort"):
        write_synthetic_cohort(foreign, n_subjects=2, shape=(16, 16, 16), progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(FileExistsError, match="is a file"):
        write_synthetic_cohort(foreign / "notes.txt", n_subjects=2, shape=(16, 16, 16), progress=False)

    out = write_synthetic_cohort(tmp_path / "c", n_subjects=3, shape=(16, 16, 16), progress=True)
    assert "synthetic cohort" in capsys.readouterr().err  # the tqdm bar
    nii = out / "sub-0001" / "anat" / "sub-0001_T1w.nii.gz"
    mtime = nii.stat().st_mtime_ns
    write_synthetic_cohort(out, n_subjects=3, shape=(16, 16, 16), progress=False)  # same cohort: no work
    assert nii.stat().st_mtime_ns == mtime
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_synthetic_cohort(out, n_subjects=2, shape=(16, 16, 16), progress=False)
    write_synthetic_cohort(out, n_subjects=2, shape=(16, 16, 16), progress=False, overwrite=True)
    assert sorted(p.name for p in out.glob("sub-*")) == ["sub-0001", "sub-0002"]
    assert len(_read_tsv(out / "participants.tsv")) == 2
    # an interrupted run (no participants.tsv yet) is simply regenerated
    (out / "participants.tsv").unlink()
    write_synthetic_cohort(out, n_subjects=3, shape=(16, 16, 16), progress=False)
    assert len(_read_tsv(out / "participants.tsv")) == 3


def test_a_participants_table_cut_short_is_not_taken_for_a_complete_cohort(tmp_path, monkeypatch):
    """participants.tsv marks a cohort complete: a write that failed half-way (disk full) left a
    short table that the next call (and `medssl demo`) reused as the whole cohort."""
    real = csv.DictWriter.writerows

    def disk_full(self, rows):
        if self.fieldnames != ["participant_id", "age", "sex", "site", "diagnosis"]:
            return real(self, rows)
        real(self, list(rows)[:1])
        raise OSError(28, "No space left on device")

    kw = dict(n_subjects=3, shape=(16, 16, 16), progress=False)
    monkeypatch.setattr(csv.DictWriter, "writerows", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_synthetic_cohort(tmp_path / "c", **kw)
    monkeypatch.undo()
    assert not (tmp_path / "c" / "participants.tsv").exists()  # never half a table
    out = write_synthetic_cohort(tmp_path / "c", **kw)  # an interrupted cohort: regenerated
    assert [r["participant_id"] for r in _read_tsv(out / "participants.tsv")] == ["sub-0001", "sub-0002", "sub-0003"]
    assert sorted(p.name for p in out.iterdir()) == ["dataset_description.json", "derivatives", "participants.json",
                                                     "participants.tsv", "sub-0001", "sub-0002", "sub-0003"]


@pytest.mark.parametrize("kwargs, name", [
    ({"shape": (8, 8, 8)}, "shape"), ({"shape": (32, 32)}, "shape"), ({"n_sites": 0}, "n_sites"),
    ({"n_subjects": 0}, "n_subjects"), ({"workers": 0}, "workers"), ({"seed": -1}, "seed"),
])
def test_invalid_parameters_are_named(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        write_synthetic_cohort(tmp_path / "x", progress=False, **{"n_subjects": 2, **kwargs})
    assert not (tmp_path / "x").exists()


def test_whole_number_parameters_are_cast_and_fractions_or_bools_refused(tmp_path):
    """Integral floats (10.0, as JSON or arithmetic gives them) and numpy integers give the same spec as
    ints (same parameters, so the same cohort); 2.5, True or a string is refused naming the field (before,
    2.5 became 2 through write_synthetic_cohort, or a float spec failed later in range())."""
    ints = SyntheticCohortSpec(n_subjects=10, n_sites=3, shape=(16, 16, 16), seed=5)
    cast = SyntheticCohortSpec(n_subjects=10.0, n_sites=np.int64(3), shape=(16.0, 16, 16), seed=5.0)
    assert cast == ints and json.dumps(cast.parameters()) == json.dumps(ints.parameters())
    assert all(type(v) is int for v in (cast.n_subjects, cast.n_sites, cast.seed, *cast.shape))
    for name, bad in [("n_subjects", 2.5), ("n_subjects", True), ("n_sites", 1.5), ("seed", 0.5), ("seed", False),
                      ("seed", "5"), ("shape", (16, 16.5, 16))]:
        shown = re.escape(repr(bad[1] if name == "shape" else bad))
        with pytest.raises(ValueError, match=f"{name} must be .*whole.*got {shown}"):
            SyntheticCohortSpec(**{"n_subjects": 10, name: bad})
    with pytest.raises(ValueError, match="n_subjects must be .*whole"):
        write_synthetic_cohort(tmp_path / "x", n_subjects=2.5, shape=(16, 16, 16), progress=False)
    assert not (tmp_path / "x").exists()


def test_a_script_without_a_main_guard_stops_with_the_fix(tmp_path):
    """write_synthetic_cohort(..., workers=2) at a script's top level (no `if __name__ == "__main__":`): each spawned
    worker re-ran the script, deleted and rewrote the dataset_description.json its parent had just written, and died;
    the parent ended on a bare BrokenProcessPool. The workers now stop before touching the folder, and the parent's
    error says what to do."""
    import os
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "synth_script.py"
    script.write_text(textwrap.dedent(f"""
        from medssl.data.synthetic import write_synthetic_cohort
        write_synthetic_cohort({str(tmp_path / 'cohort')!r}, n_subjects=4, n_sites=2, shape=(16, 16, 16), workers=2,
                               progress=False)
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: a cohort writer process ended abruptly")
    assert 'put the script\'s code under `if __name__ == "__main__":` (or write with workers=1)' in last
    assert not (tmp_path / "cohort" / "participants.tsv").exists()
