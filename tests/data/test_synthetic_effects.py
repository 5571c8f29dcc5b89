"""Synthetic cohort: the planted effects' direction and size against docs/synthetic.md, one effect at a time.

Volumes come from the renderer's partial-volume maps (the truth table's measures, not the formulas' inputs) of
one controlled subject whose other traits are held fixed; an effect is isolated by switching the others off
through the module's named constants. The trait statistics are checked on thousands of drawn subjects.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import medssl.data.synthetic_anatomy as anatomy
from medssl.data.synthetic import SyntheticCohortSpec, subject_traits

SPEC = SyntheticCohortSpec(n_subjects=1, shape=(48, 48, 48))


def _render(**change) -> tuple[np.ndarray, dict]:
    """Noiseless tissue image and truth of one fixed subject (site A, CN, no pose) with some traits changed."""
    base = anatomy.sample_traits(0, 0, SPEC.sites[0], np.random.default_rng(11))
    base = dataclasses.replace(base, diagnosis="CN", pose_shift_mm=(0.0, 0.0, 0.0), pose_rotation_deg=(0.0, 0.0, 0.0))
    return anatomy.render_tissue(dataclasses.replace(base, **change), SPEC.axes_mm(), 224.0 / 48,
                                 np.random.default_rng(12))


def _truth(**change) -> dict:
    return _render(**change)[1]


def test_age_effects_have_the_documented_direction_and_size(monkeypatch):
    young, old = _truth(age=20.0), _truth(age=85.0)
    assert old["icv_ml"] == pytest.approx(young["icv_ml"])  # the skull does not shrink
    assert 2.6 < old["ventricle_ml"] / young["ventricle_ml"] < 3.8  # documented ×3.2 from 20 to 85 y
    assert 0.78 < old["hippocampus_ml"] / young["hippocampus_ml"] < 0.92  # documented −13 % at 85 y
    monkeypatch.setattr(anatomy, "SULCUS_THRESHOLD_20", 99.0)  # no sulci: the cortical shell alone
    shell_young, shell_old = _truth(age=20.0), _truth(age=85.0)
    # sulcal CSF: ≈ 10 % of the cortical shell at 20 y, ≈ 30 % at 85 y
    assert 0.04 < 1 - young["gm_ml"] / shell_young["gm_ml"] < 0.15
    assert 0.20 < 1 - old["gm_ml"] / shell_old["gm_ml"] < 0.40
    assert 0.75 < shell_old["brain_ml"] / shell_young["brain_ml"] < 0.86  # brain volume ≈ −20 % at 85 y
    for with_sulci, without in ((young, shell_young), (old, shell_old)):  # sulcal CSF is neither brain nor grey matter
        assert without["brain_ml"] - with_sulci["brain_ml"] == pytest.approx(without["gm_ml"] - with_sulci["gm_ml"])
    monkeypatch.setattr(anatomy, "BRAIN_SHRINK_PER_YEAR", 0.0)  # the same brain: only the cortex thins (−26 %)
    same_young, same_old = _truth(age=20.0), _truth(age=85.0)
    assert same_old["brain_ml"] == pytest.approx(same_young["brain_ml"], rel=1e-3)
    assert 0.68 < same_old["gm_ml"] / same_young["gm_ml"] < 0.82


def test_ad_effects_have_the_documented_direction_and_size():
    cn, ad = _truth(age=75.0), _truth(age=75.0, diagnosis="AD")
    assert 0.55 < ad["hippocampus_ml"] / cn["hippocampus_ml"] < 0.75  # × 0.70, and the larger horns take more
    assert 1.10 < ad["ventricle_ml"] / cn["ventricle_ml"] < 1.20  # × 1.15
    assert ad["brain_ml"] < cn["brain_ml"] and ad["icv_ml"] == pytest.approx(cn["icv_ml"])
    assert ad["gm_ml"] / cn["gm_ml"] < 0.95  # the temporal cortex up to 50 % thinner (the brain factor: ≈ 0.97)


def test_truth_thickness_and_the_subject_texture():
    """truth.tsv's thickness is the formula's t (7 mm at 20 y, −26 % at 85 y) × head_scale; the image is multiplied
    by 1 + 0.04·T, so white matter (1.0 before it) is brighter than 1 in about a third of its voxels."""
    assert _truth(age=20.0, gm_noise=0.0, head_scale=1.1)["gm_thickness_mm"] == pytest.approx(7.7)
    assert _truth(age=85.0, gm_noise=0.0, head_scale=1.0)["gm_thickness_mm"] == pytest.approx(7.0 * 0.74)
    img = _render(age=40.0)[0]
    assert 0.15 < (img > 1.03).sum() / (img > 0.9).sum() < 0.45 and img.max() < 1.25


def test_ventricle_asymmetry_is_the_log_ratio_of_left_and_right_volumes():
    """Documented: log(left/right ventricle volume) is the trait (SD 0.10). Measured as in test_synthetic: CSF
    fraction in the deep box per hemisphere, minus the same subject with vanishing ventricles."""
    axes = SPEC.axes_mm()
    sel = [np.abs(axes[0]) < 24, np.abs(axes[1]) < 40, (axes[2] > -6) & (axes[2] < 36)]
    left = axes[0][sel[0]] < 0

    def log_left_right(asymmetry: float) -> float:
        csf = [np.clip((1.0 - _render(age=60.0, ventricle_asymmetry=asymmetry, **kw)[0][np.ix_(*sel)]) / 0.88, 0, 1)
               for kw in ({}, {"ventricle_noise": -9.0})]
        own = csf[0] - csf[1]
        return math.log(own[left].sum() / own[~left].sum())

    assert abs(abs(log_left_right(0.4) - log_left_right(0.0)) - 0.4) < 0.1


def test_head_size_and_scalp_thickness_along_each_axis():
    """Fine 1D profiles (0.25 mm) through the head centre along x, y and z: the scalp ellipsoid spans the documented
    140 × 176 × 156 mm (× head_aspect per axis), and the bright scalp is 5 mm thick (the 2.5 mm warp moves the
    surface a little: within 6 mm and 0.5 mm on average over the six sides)."""
    line, pair = np.arange(-110.0, 110.0, 0.25), np.array([-0.125, 0.125])

    def profile(axis: int, aspect=(1.0, 1.0, 1.0)) -> tuple[float, list[float]]:
        axes = [pair, pair, pair]
        axes[axis] = line
        t = dataclasses.replace(anatomy.sample_traits(0, 0, SPEC.sites[0], np.random.default_rng(11)), head_scale=1.0,
                                head_aspect=aspect, pose_shift_mm=(0.0, 0.0, 0.0), pose_rotation_deg=(0.0, 0.0, 0.0))
        img = anatomy.render_tissue(t, tuple(axes), 0.25, np.random.default_rng(12))[0]
        bright = img.mean(axis=tuple(a for a in range(3) if a != axis)) > 0.35
        first, last = np.nonzero(bright)[0][[0, -1]]
        inner = [np.argmin(bright[first:]), np.argmin(bright[last::-1])]  # scalp → skull, from each side
        return (last - first) * 0.25, [k * 0.25 for k in inner]

    scalp = []
    for axis, size in enumerate((140.0, 176.0, 156.0)):
        extent, thickness = profile(axis)
        assert abs(extent - size) < 6.0, (axis, extent)
        scalp += thickness
        assert abs(profile(axis, (1.1, 1.0, 0.9))[0] - size * (1.1, 1.0, 0.9)[axis]) < 6.0, axis
    assert abs(np.mean(scalp) - 5.0) < 0.5, scalp


def test_pose_shift_moves_the_head_by_that_many_mm():
    axes = SPEC.axes_mm()

    def centre(img: np.ndarray) -> np.ndarray:
        w = img / img.sum()
        return np.array([(w.sum(axis=tuple(j for j in range(3) if j != i)) * axes[i]).sum() for i in range(3)])

    moved = centre(_render(pose_shift_mm=(10.0, 0.0, -6.0))[0]) - centre(_render()[0])
    np.testing.assert_allclose(moved, [10.0, 0.0, -6.0], atol=1.5)


def test_ad_probability_is_the_documented_curve():
    assert anatomy.ad_probability(30.0) == pytest.approx(0.02, abs=0.005)
    assert anatomy.ad_probability(72.0) == pytest.approx(0.27, abs=0.005)
    assert anatomy.ad_probability(85.0) == pytest.approx(0.47, abs=0.01)


def test_trait_statistics_match_the_documented_distributions():
    spec = SyntheticCohortSpec(n_subjects=3000, n_sites=3, shape=(16, 16, 16), seed=4)
    traits = [subject_traits(spec, i) for i in range(spec.n_subjects)]
    age = np.array([t.age for t in traits])
    assert np.all((age >= 20.0) & (age <= 85.0)) and np.array_equal(age, np.round(age, 1))
    assert np.mean(age != np.round(age)) > 0.5  # one decimal, not whole years
    male = np.array([t.sex == "M" for t in traits])
    assert abs(male.mean() - 0.5) < 4 * math.sqrt(0.25 / len(male))  # ≈ 50 % each
    head = np.log([t.head_scale for t in traits])
    assert abs(head[male].mean() - head[~male].mean() - math.log(1.04)) < 0.006  # male heads +4 % (linear)
    for k, site in enumerate(spec.sites):  # pose: the site's mean + N(0, 2) per axis
        mine = [t for t in traits if t.site == k]
        assert len(mine) == 1000
        for attr in ("pose_shift_mm", "pose_rotation_deg"):
            mean = np.mean([getattr(t, attr) for t in mine], axis=0)
            np.testing.assert_allclose(mean, getattr(site, attr), atol=5 * 2.0 / math.sqrt(1000))
        assert np.mean([t.age for t in mine]) == pytest.approx(site.mean_age, abs=1.5)


def test_smooth_field_has_unit_variance_everywhere_and_does_not_depend_on_the_grid():
    axes = tuple(np.array([-60.0, -54.0, -6.0, 0.0, 60.0]) for _ in range(3))  # centre and edges of ±60 mm
    draws = np.stack([anatomy.smooth_field(axes, 12.0, np.random.default_rng(s), 60.0) for s in range(1500)])
    assert np.all(np.abs(draws.mean(0)) < 0.12)  # 4.6 standard errors
    assert np.all((draws.var(0) > 0.85) & (draws.var(0) < 1.15)), draws.var(0)
    # stationary: points 6 mm apart correlate as two Gaussian bumps of width 0.6 × 12 mm, at the centre and edge
    for near, far in ((3, 2), (0, 1)):
        r = np.corrcoef(draws[:, near, 3, 3], draws[:, far, 3, 3])[0, 1]
        assert abs(r - math.exp(-36 / (4 * 7.2**2))) < 0.1, (near, r)
    sub = tuple(a[[0, 4]] for a in axes)  # the same world points on a coarser grid: the same values
    np.testing.assert_allclose(anatomy.smooth_field(sub, 12.0, np.random.default_rng(0), 60.0),
                               draws[0][np.ix_([0, 4], [0, 4], [0, 4])], rtol=1e-5, atol=1e-5)


def test_reference_statistics_of_seed_0_are_those_the_docs_state():
    """docs/synthetic.md's "Reference statistics" first two bullets (seed 0, 300 subjects), recomputed from the
    drawn traits: age mean and SD (ddof 0) per site, AD count and share per site, share of men."""
    import re
    from pathlib import Path

    text = re.sub(r"\s+", " ", (Path(__file__).resolve().parents[2] / "docs" / "synthetic.md").read_text())
    traits = [subject_traits(SyntheticCohortSpec(n_subjects=300, shape=(48, 48, 48), seed=0), i) for i in range(300)]
    site = np.array([t.site for t in traits])
    age = np.array([t.age for t in traits])
    ad = np.array([t.diagnosis == "AD" for t in traits])
    ages = ", ".join(f"{'ABC'[s]} {age[site == s].mean():.1f} ± {age[site == s].std():.1f}" for s in range(3))
    assert f"Age by site (mean ± SD over the site's subjects, ddof 0): {ages} years" in text
    site_mean = np.array([age[site == s].mean() for s in site])
    r2 = 1 - np.sum((age - site_mean) ** 2) / np.sum((age - age.mean()) ** 2)
    assert f"predicting each subject's site-mean age already gives R² = {r2:.2f}." in text
    shares = ", ".join(f"{'ABC'[s]} {100 * ad[site == s].mean():.0f} %" for s in range(3))
    male = 100 * np.mean([t.sex == "M" for t in traits])
    assert f"AD: {ad.sum()} of 300 ({shares}). Male {male:.0f} %." in text


def test_trait_spreads_are_the_documented_standard_deviations():
    """docs/synthetic.md's noise terms, on 3000 drawn subjects (SD estimates within 8 %, ≈ 6 standard errors): head size
    exp(N(0, 0.03)) within sex, aspect exp(N(0, 0.025)) per axis, brain factor 1 + N(0, 0.015), thickness exp(N(0,
    0.08)), ventricle ε N(0, 0.15), log left/right ventricles N(0, 0.10), hippocampus exp(N(0, 0.08)), pose shift
    N(0, 2 mm) and rotation N(0, 2°) per axis around the site's mean."""
    spec = SyntheticCohortSpec(n_subjects=3000, n_sites=3, shape=(16, 16, 16), seed=4)
    traits = [subject_traits(spec, i) for i in range(spec.n_subjects)]
    male = np.array([t.sex == "M" for t in traits])
    head = np.log([t.head_scale for t in traits])
    sd = {"head": np.sqrt((head[male].var() * male.sum() + head[~male].var() * (~male).sum()) / len(traits)),
          **{f"aspect {a}": np.log([t.head_aspect[a] for t in traits]).std() for a in range(3)},
          **{name: np.std([getattr(t, name) for t in traits]) for name in
             ("brain_noise", "gm_noise", "ventricle_noise", "ventricle_asymmetry", "hippo_noise")}}
    for attr in ("pose_shift_mm", "pose_rotation_deg"):
        off = np.array([np.subtract(getattr(t, attr), getattr(spec.sites[t.site], attr)) for t in traits])
        sd |= {f"{attr} {a}": off[:, a].std() for a in range(3)}
    documented = {"head": 0.03, **{f"aspect {a}": 0.025 for a in range(3)}, "brain_noise": 0.015, "gm_noise": 0.08,
                  "ventricle_noise": 0.15, "ventricle_asymmetry": 0.10, "hippo_noise": 0.08,
                  **{f"pose_shift_mm {a}": 2.0 for a in range(3)}, **{f"pose_rotation_deg {a}": 2.0 for a in range(3)}}
    assert {k: round(v / documented[k], 2) for k, v in sd.items() if abs(v / documented[k] - 1) > 0.08} == {}


def _plain_subject(monkeypatch):
    """A plain subject (20 y, CN, head size 1, no individual noise, no pose) with every random field switched off
    (no deformation, folding, sulci or texture)."""
    monkeypatch.setattr(anatomy, "smooth_field",
                        lambda axes, lattice, rng, half: np.zeros([len(a) for a in axes], np.float32))
    return dataclasses.replace(anatomy.sample_traits(0, 0, SPEC.sites[0], np.random.default_rng(11)), age=20.0,
                               diagnosis="CN", head_scale=1.0, head_aspect=(1.0, 1.0, 1.0), brain_noise=0.0,
                               gm_noise=0.0, ventricle_noise=0.0, ventricle_asymmetry=0.0, hippo_noise=0.0,
                               pose_shift_mm=(0.0, 0.0, 0.0), pose_rotation_deg=(0.0, 0.0, 0.0))


def _phantom(monkeypatch, point, line=None, axis=1, voxel_mm=0.25, **change):
    """Noiseless tissue of a plain subject (20 y, CN, head size 1, no individual noise, no pose) with every random
    field switched off (no deformation, folding, sulci or texture): the documented geometry table, exactly. At a
    world point (mean of a 0.25 mm cube around it), or along a line of values on ``axis`` through that point."""
    t = _plain_subject(monkeypatch)
    pair = np.array([-0.125, 0.125])
    axes = [c + pair for c in point]
    if line is not None:
        axes[axis] = line
    img = anatomy.render_tissue(dataclasses.replace(t, **change), tuple(axes), voxel_mm, np.random.default_rng(12))[0]
    return img.mean(axis=tuple(a for a in range(3) if a != axis)) if line is not None else float(img.mean())


@pytest.mark.parametrize("point, value, change", [
    ((0, 85.5, 0), 0.70, {}), ((0, 80, 0), 0.10, {}), ((0, 75.75, 0), 0.12, {}),  # scalp 83-88, skull 77-83, CSF gap
    ((0, 76.5, 0), 0.12, {}), ((0, 74, 0), 0.60, {}),  # 0.5 mm from the skull (77) and from the brain (74.5)
    ((0, 71, 0), 0.60, {}), ((0, 66, 0), 1.00, {}), ((0, 95, 0), 0.0, {}),  # grey matter 7 mm inside 74.5, white
    ((0, 66, 0), 0.60, {"age": 85.0}), ((0, 71, 0), 0.12, {"age": 85.0}),  # 85 y: brain × 0.9285, cortex 5.18 mm
    ((11, -10, 0), 0.80, {}), ((-11, -23, 0), 0.80, {}),  # thalami (±11, −10, 0), semi-axes (9, 15, 9)
    ((27, -18, -16), 0.62, {}), ((-27, -33, -16), 0.62, {}),  # hippocampi (±27, −18, −16), (6, 17, 6)
    ((33, -16, -11), 0.12, {}), ((-33, -5, -11), 0.12, {}),  # temporal horns (±33, −16, −11), (3, 12, 3)
    ((8, 0, 12), 0.12, {}), ((-8, -22, 12 - 0.012 * 22**2), 0.12, {}),  # ventricles (±8, 0, 12), (6, 24, 9), bent
    ((8, 22, 12), 1.00, {}),  # the bend lowers the ventricle 5.8 mm at y = 22: white matter above it
    ((10.86, 20, 12 - 0.012 / 1.477 * 400), 0.12, {"age": 85.0}),  # v = exp(0.018·65 / 3) = 1.477 at 85 y
])
def test_tissue_values_and_geometry_are_those_of_the_documented_table(monkeypatch, point, value, change):
    assert _phantom(monkeypatch, point, **change) == pytest.approx(value, abs=1e-3)


def test_a_rigid_pose_moves_the_template_to_world_as_R_p_plus_shift(monkeypatch):
    """docs/synthetic.md: p = Rᵀ(x_world − shift) / size, R the rotation about x, then y, then z (extrinsic, as scipy's
    from_euler('xyz')): the thalamus edge point (−11, −23, 0) of the template is found at R p + shift."""
    from scipy.spatial.transform import Rotation

    deg, shift = (25.0, -15.0, 40.0), np.array([3.0, -2.0, 5.0])
    np.testing.assert_allclose(anatomy._rotation(deg), Rotation.from_euler("xyz", deg, degrees=True).as_matrix())
    world = Rotation.from_euler("xyz", deg, degrees=True).apply([-11.0, -23.0, 0.0]) + shift
    assert _phantom(monkeypatch, world, pose_rotation_deg=deg, pose_shift_mm=tuple(shift)) == pytest.approx(0.80)


def test_partial_volume_ramps_are_one_voxel_wide_in_world_mm_whatever_the_head_size(monkeypatch):
    """The scalp's outer edge of a head 1.25 × the template, rendered for 4 mm voxels on a 0.05 mm line: the linear
    ramp spans 4 world mm (10 %→90 % of the scalp value over 3.2 mm), centred on the surface at 88 × 1.25 = 110 mm."""
    y = np.arange(100.0, 120.0, 0.05)
    profile = _phantom(monkeypatch, (0, 0, 0), line=y, voxel_mm=4.0, head_scale=1.25)
    outer = y > 107.0
    ten, ninety = (y[outer][np.argmin(np.abs(profile[outer] - f * 0.70))] for f in (0.1, 0.9))
    assert ten - ninety == pytest.approx(3.2, abs=0.1) and (ten + ninety) / 2 == pytest.approx(110.0, abs=0.1)


@pytest.mark.parametrize("age, diagnosis", [(20.0, "CN"), (85.0, "CN"), (75.0, "AD")])
def test_deep_structures_grow_and_shrink_with_age_and_ad_at_the_documented_rates(monkeypatch, age, diagnosis):
    """Lengths on 0.02 mm lines of the plain subject: both ventricles along x through (0, 0, 12) span 2 × 12v mm,
    v³ = exp(0.018·Δ) (× 1.15 with AD); a hippocampus along y through (27, ·, −16) 34h mm, h³ = (1 − 0.002·Δ) (× 0.70
    with AD); a temporal horn along y through (33, ·, −11) 24k mm, k³ = exp(0.012·Δ) (× 3 with AD)."""
    years, ad = age - 20.0, diagnosis == "AD"
    v = math.exp(0.018 * years) * (1.15 if ad else 1.0)
    h = (1 - 0.002 * years) * (0.70 if ad else 1.0)
    k = math.exp(0.012 * years) * (3.0 if ad else 1.0)
    line = np.arange(-45.0, 45.0, 0.02)
    for through, axis, value, length in (((0, 0, 12), 0, 0.12, 24 * v ** (1 / 3)),
                                         ((27, 0, -16), 1, 0.62, 34 * h ** (1 / 3)),
                                         ((33, 0, -11), 1, 0.12, 24 * k ** (1 / 3))):
        profile = _phantom(monkeypatch, through, line=line, axis=axis, voxel_mm=0.02, age=age, diagnosis=diagnosis)
        assert np.sum(np.abs(profile - value) < 0.005) * 0.02 == pytest.approx(length, abs=0.1), (through, length)


def test_smooth_field_correlation_is_that_of_its_gaussian_bumps_at_the_documented_width():
    """Var-normalised bumps exp(−½((x − c)/(0.6 × 12 mm))²) every 12 mm: two points 12 mm apart (lattice nodes, at the
    centre and at the edge of ±60 mm) correlate as the normalised bumps' dot product, 0.445 (width 0.5 × 12: 0.26)."""
    centres = 12.0 * np.arange(-6, 7)

    def naive(x1: float, x2: float) -> float:
        a, b = (np.exp(-0.5 * ((x - centres) / 7.2) ** 2) for x in (x1, x2))
        return float(a @ b / np.sqrt((a @ a) * (b @ b)))

    axes = (np.array([-60.0, -48.0, 0.0, 12.0]), np.zeros(1), np.zeros(1))
    draws = np.stack([anatomy.smooth_field(axes, 12.0, np.random.default_rng(s), 60.0)[:, 0, 0] for s in range(1500)])
    for i, j in ((2, 3), (0, 1)):
        r = np.corrcoef(draws[:, i], draws[:, j])[0, 1]
        assert abs(r - naive(axes[0][i], axes[0][j])) < 0.06, (i, j, r)


def test_truth_volumes_of_the_phantom_are_its_ellipsoids_volumes(monkeypatch):
    """truth.tsv's volumes are partial-volume sums: on the phantom (2 mm grid) the intracranial volume is the
    ellipsoid inside the skull, semi-axes (70, 88, 78) − 11 mm; the brain (56.5, 74.5, 64.5); the ventricles two
    (6, 24, 9) ellipsoids (bending shears, keeping the volume); the hippocampi two (6, 17, 6) ellipsoids."""
    t = _plain_subject(monkeypatch)
    grid = np.arange(-99.0, 100.0, 2.0)
    truth = anatomy.render_tissue(t, (grid, grid, grid), 2.0, np.random.default_rng(12))[1]
    ml = {name: 4 / 3 * math.pi * math.prod(semi) * n / 1000 for name, semi, n in (
        ("icv_ml", (59, 77, 67), 1), ("brain_ml", (56.5, 74.5, 64.5), 1), ("ventricle_ml", (6, 24, 9), 2),
        ("hippocampus_ml", (6, 17, 6), 2))}
    assert truth["icv_ml"] == pytest.approx(ml["icv_ml"], rel=0.005)
    assert truth["brain_ml"] == pytest.approx(ml["brain_ml"], rel=0.005)
    assert truth["ventricle_ml"] == pytest.approx(ml["ventricle_ml"], rel=0.02)
    assert truth["hippocampus_ml"] == pytest.approx(ml["hippocampus_ml"], rel=0.02)


def test_the_subject_texture_is_a_4_percent_field_on_a_20_mm_lattice(monkeypatch):
    """docs/synthetic.md: the image is multiplied by 1 + 0.04·T(x), T a unit-variance random field on a 20 mm lattice.
    The phantom with the texture alone, at two white-matter points 20 mm apart over 1500 anatomy streams: SD 0.04 at
    each, and the correlation of the bumps exp(−½((x − c)/(0.6 × 20 mm))²) every 20 mm (0.56; a 10 mm lattice: 0.22)."""
    field = anatomy.smooth_field
    monkeypatch.setattr(anatomy, "smooth_field", lambda axes, lattice, rng, half: field(axes, lattice, rng, half)
                        if lattice == 20.0 else np.zeros([len(a) for a in axes], np.float32))
    t = dataclasses.replace(anatomy.sample_traits(0, 0, SPEC.sites[0], np.random.default_rng(11)), age=20.0,
                            diagnosis="CN", head_scale=1.0, head_aspect=(1.0, 1.0, 1.0), brain_noise=0.0, gm_noise=0.0,
                            ventricle_noise=0.0, ventricle_asymmetry=0.0, hippo_noise=0.0,
                            pose_shift_mm=(0.0, 0.0, 0.0), pose_rotation_deg=(0.0, 0.0, 0.0))
    pair = np.array([-0.125, 0.125])
    axes = (pair, np.array([30.0, 50.0]), pair)
    values = np.array([anatomy.render_tissue(t, axes, 0.25, np.random.default_rng(s))[0][0, :, 0] for s in range(1500)])
    centres = 20.0 * np.arange(-20, 21)
    a, b = (np.exp(-0.5 * ((y - centres) / 12.0) ** 2) for y in (30.0, 50.0))
    assert np.all(np.abs(values.std(axis=0) / 0.04 - 1) < 0.08) and np.abs(values.mean(axis=0) - 1).max() < 0.004
    assert abs(np.corrcoef(values.T)[0, 1] - a @ b / np.sqrt((a @ a) * (b @ b))) < 0.06
