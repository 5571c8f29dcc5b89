"""Synthetic cohort: the scanner model of docs/synthetic.md on phantom tissue images, the site table, and the
written files' geometry and truth table.

``apply_scanner`` is checked with hand-made site profiles that switch on one effect at a time, against
textbook values (Rayleigh statistics of the background, a Gaussian edge's width, the bias formula).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest

from medssl.data.synthetic import SyntheticCohortSpec, generate_subject, write_synthetic_cohort
from medssl.data.synthetic_sites import SITE_PRESETS, SiteProfile, _site_letter, apply_scanner, site_profiles
from medssl.io import read_nifti

PLAIN = SiteProfile("site-T", (2.0, 2.0), 100.0, 0.0, 1.0, 0.001, (0.0, 0.0, 0.0), 0.0, (0.0, 0.0, 0.0),
                    (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))


def _scan(tissue, world=(0.0, 0.0, 0.0), spacing=(2.0, 2.0, 2.0), seed=0, **change) -> np.ndarray:
    world = tuple(np.asarray(w, dtype=np.float32) for w in world)
    site = dataclasses.replace(PLAIN, **change)
    return apply_scanner(np.asarray(tissue, np.float32), world, spacing, site, np.random.default_rng(seed)).astype(float)


def test_background_is_rician_noise_of_the_site_level_plus_offset():
    """Zero signal: |σ·scale·(n1 + i n2)| is Rayleigh, mean σ·scale·√(π/2), SD/mean = √(4/π − 1) = 0.523."""
    out = _scan(np.zeros((64, 64, 16)), noise_sigma=0.2)
    level = 0.2 * 100 * math.sqrt(math.pi / 2)  # σ × U(0.85, 1.15) and scale × N(1, 0.03) per subject
    assert 0.8 * level < out.mean() < 1.2 * level
    assert out.std() / out.mean() == pytest.approx(math.sqrt(4 / math.pi - 1), abs=0.02)
    assert np.all(_scan(np.zeros((8, 8, 8)), intensity_offset=30.0) == 30.0)
    assert np.all(_scan(np.full((8, 8, 8), 5.0)) == 255)  # clipped to uint8


def test_contrast_gamma_and_intensity_scale():
    """Tissue 0.5 with γ = 2 becomes scale · 0.5² (scale jittered by N(1, 0.03))."""
    out = _scan(np.full((8, 8, 8), 0.5), gamma=2.0, intensity_scale=120.0)
    assert 120 * 0.25 * 0.9 < out.mean() < 120 * 0.25 * 1.1 and out.std() < 1.0


def test_values_are_rounded_to_the_nearest_grey_level():
    """A ramp of tissue values without noise: scale·T rounded (not truncated) to uint8, so the fitted line through
    the output has no offset (truncation would shift it by −0.5)."""
    tissue = np.linspace(0.1, 1.0, 20000).reshape(20, 20, 50)
    out = _scan(tissue, noise_sigma=1e-4, intensity_scale=200.0)
    slope, intercept = np.polyfit(tissue.ravel(), out.ravel(), 1)
    assert 200 * 0.88 < slope < 200 * 1.12 and abs(intercept) < 0.1, (slope, intercept)


def test_bias_field_follows_the_formula_along_each_world_axis():
    """exp(b·x/100 + q(|x|²/100² − 1)): b = (0.3, 0, 0) brightens +x by e^0.6 relative to −x and leaves y and z
    flat (per-subject jitter N(0, 0.03) per axis); q = 0.2 brightens the periphery by e^0.2 over the centre."""
    line = np.array([-100.0, 0.0, 100.0], np.float32)
    for axis in range(3):
        world = [np.zeros(1, np.float32)] * 3
        world[axis] = line.reshape([-1 if a == axis else 1 for a in range(3)])
        shape = [3 if a == axis else 1 for a in range(3)]
        out = _scan(np.full(shape, 0.8), world, bias_linear=(0.3, 0.0, 0.0)).ravel()
        ratio = out[2] / out[0]
        assert (1.5 < ratio < 2.2) if axis == 0 else (0.8 < ratio < 1.25), (axis, ratio)
    quad = _scan(np.full((1, 1, 3), 0.8), [np.zeros(1)] * 2 + [line.reshape(1, 1, 3)], bias_quadratic=0.2).ravel()
    assert quad[0] / quad[1] == pytest.approx(math.exp(0.2), rel=0.08) and quad[2] / quad[1] == pytest.approx(
        math.exp(0.2), rel=0.08)
    assert quad[1] == pytest.approx(100 * 0.8 * math.exp(-0.2), rel=0.09)  # at the centre: exp(−q)


def test_blur_sigma_is_in_mm_along_its_own_axis():
    """A step edge along z blurred by σ_z = 4 mm at 2 mm voxels: the edge's derivative is a Gaussian of SD 2 voxels;
    an edge along x with σ_x = 0 stays sharp (thick slices blur z only)."""
    n = 40
    edge = (np.arange(n) >= n // 2).astype(np.float32)
    along_z = _scan(np.broadcast_to(edge[None, None, :], (8, 8, n)), blur_sigma_mm=(0.0, 0.0, 4.0)).mean((0, 1))
    along_x = _scan(np.broadcast_to(edge[:, None, None], (n, 8, 8)), blur_sigma_mm=(0.0, 0.0, 4.0)).mean((1, 2))
    d = np.diff(along_z)
    centre = (d * np.arange(n - 1)).sum() / d.sum()
    assert math.sqrt((d * (np.arange(n - 1) - centre) ** 2).sum() / d.sum()) == pytest.approx(2.0, abs=0.2)
    assert np.count_nonzero(np.diff(along_x) > 1.0) == 1


def test_each_subject_is_scanned_with_its_own_sites_signature():
    """Subjects 0, 1, 2 are at sites A, B, C: the background outside the head (the corners) is each site's
    offset + Rayleigh mean σ·scale·√(π/2) (σ × U(0.85, 1.15) per subject): 4.5, 21.4 and 12.3 grey levels."""
    spec = SyntheticCohortSpec(n_subjects=3, n_sites=3, shape=(24, 24, 24), seed=2)
    for i, site in enumerate(SITE_PRESETS[:3]):
        img = generate_subject(spec, i).image.astype(float)
        corners = np.concatenate([img[x, y, z].ravel() for x in (slice(0, 4), slice(-4, None))
                                  for y in (slice(0, 4), slice(-4, None)) for z in (slice(0, 4), slice(-4, None))])
        rayleigh = site.noise_sigma * site.intensity_scale * math.sqrt(math.pi / 2)
        assert abs(corners.mean() - site.intensity_offset - rayleigh) < 0.2 * rayleigh + 0.5, (site.name, corners.mean())


def test_site_table():
    assert [_site_letter(k) for k in (0, 3, 25, 26, 27, 51, 701, 702)] == ["A", "D", "Z", "AA", "AB", "AZ", "ZZ", "AAA"]
    assert site_profiles(3) == list(SITE_PRESETS[:3]) and site_profiles(1) == [SITE_PRESETS[0]]
    many = site_profiles(30)
    assert [s.name for s in many[:6]] == [f"site-{c}" for c in "ABCDEF"] and many[26].name == "site-AA"
    assert site_profiles(6)[4:] == many[4:6]  # sites beyond D depend only on their index
    assert len({s.intensity_scale for s in many}) == 30
    for s in many[4:]:  # the documented ranges
        assert all(1.2 <= v <= 5.0 for v in s.age_beta) and 140 <= s.intensity_scale <= 205
        assert 0 <= s.intensity_offset <= 15 and 0.75 <= s.gamma <= 1.3 and 0.015 <= s.noise_sigma <= 0.06
        assert all(0.3 <= v <= 2.5 for v in s.blur_sigma_mm) and all(abs(v) <= 5 for v in s.pose_shift_mm)
    assert [round(s.mean_age, 1) for s in SITE_PRESETS] == [38.6, 66.4, 52.5, 52.5]
    with pytest.raises(ValueError, match="n_sites"):
        site_profiles(0)


def test_anisotropic_grid_files_truth_table_and_field_of_view(tmp_path):
    out = write_synthetic_cohort(tmp_path / "c", n_subjects=4, n_sites=2, shape=(16, 20, 24), seed=1, fov_mm=200.0,
                                 progress=False)
    spacing = [200.0 / 16, 200.0 / 20, 200.0 / 24]
    vol = read_nifti(out / "sub-0004" / "anat" / "sub-0004_T1w.nii.gz")
    assert vol.spatial_shape == (16, 20, 24)
    expected = np.diag([*spacing, 1.0])
    expected[:3, 3] = [-(n - 1) / 2 * d for n, d in zip((16, 20, 24), spacing)]
    np.testing.assert_allclose(vol.affine, expected, atol=1e-4)
    with open(out / "participants.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    with open(out / "derivatives" / "medssl-synthetic" / "truth.tsv", newline="") as f:
        truth = list(csv.DictReader(f, delimiter="\t"))
    assert [r["site"] for r in rows] == ["site-A", "site-B", "site-A", "site-B"]
    assert list(truth[0]) == ["participant_id", "age", "sex", "site", "diagnosis", "head_scale",
                              *(f"pose_shift_{a}_mm" for a in "xyz"), *(f"pose_rot_{a}_deg" for a in "xyz"),
                              "icv_ml", "brain_ml", "gm_ml", "ventricle_ml", "hippocampus_ml", "gm_thickness_mm"]
    for r, t in zip(rows, truth):
        assert {k: t[k] for k in r} == r
        icv, brain, gm, vent = (float(t[k]) for k in ("icv_ml", "brain_ml", "gm_ml", "ventricle_ml"))
        assert 900 < icv < 2500 and gm < brain < icv and 0 < vent < brain  # a head's volumes, nested
    params = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]["Parameters"]
    assert params["fov_mm"] == 200.0 and params["spacing_mm"] == [round(s, 6) for s in spacing]
    with pytest.raises(FileExistsError, match="overwrite=True"):  # another field of view is another cohort
        write_synthetic_cohort(out, n_subjects=4, n_sites=2, shape=(16, 20, 24), seed=1, fov_mm=210.0, progress=False)
    for fov in (100.0, 500.0):
        with pytest.raises(ValueError, match="fov_mm"):
            SyntheticCohortSpec(fov_mm=fov)


def test_site_presets_and_drawn_sites_are_those_of_the_docs_table():
    """docs/synthetic.md's site table, row by row: every number of site-A…D (ages Beta(a, b) → mean, scale, offset, γ,
    σ, bias b and q, blur, pose) is its preset's; site-E, … draw a, b first from default_rng([7919, k]), and every
    drawn value lies in its documented range."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "synthetic.md").read_text().replace("−", "-")
    for s in SITE_PRESETS:
        row = next(line for line in text.splitlines() if line.startswith(f"| {s.name} |"))
        documented = [float(v) for v in re.findall(r"[-+]?\d+(?:\.\d+)?", row.split("|", 2)[2])]
        preset = [*s.age_beta, round(s.mean_age, 1), s.intensity_scale, s.intensity_offset, s.gamma, s.noise_sigma,
                  *s.bias_linear, s.bias_quadratic, *s.blur_sigma_mm, *s.pose_shift_mm, *s.pose_rotation_deg]
        assert documented == preset, s.name
    drawn = site_profiles(40)[4:]
    for k, s in enumerate(drawn, start=4):
        r = np.random.default_rng([7919, k])
        assert s.age_beta == (r.uniform(1.2, 5.0), r.uniform(1.2, 5.0))
        assert all(abs(v) <= 0.25 for v in s.bias_linear) and abs(s.bias_quadratic) <= 0.15
        assert all(abs(v) <= 5.0 for v in s.pose_rotation_deg)
    assert max(abs(s.bias_quadratic) for s in drawn) > 0.1 and max(abs(v) for s in drawn for v in s.bias_linear) > 0.2
    assert max(abs(v) for s in drawn for v in s.pose_rotation_deg) > 4.0


def test_per_subject_jitter_of_scale_noise_and_bias_is_the_documented_one():
    """docs/synthetic.md: per subject, scale × N(1, 0.03), σ × U(0.85, 1.15), b + N(0, 0.03) per axis. Over 300
    subjects (scanner streams): white matter without noise gives the scale (SD 0.03 within 15 %); the background's
    Rayleigh mean gives σ·scale (between 0.85 and 1.15 of the site's, near both ends); a bias along x gives b_x as half
    the log ratio of x = +100 mm over x = −100 mm (SD 0.03 within 15 %)."""
    scale, sigma, b = [], [], []
    x = np.array([-100.0, 100.0], np.float32).reshape(2, 1, 1)
    for seed in range(300):
        scale.append(_scan(np.ones((2, 2, 2)), noise_sigma=1e-5, intensity_scale=200.0, seed=seed).mean() / 200.0)
        dark = _scan(np.zeros((24, 24, 24)), noise_sigma=0.1, intensity_scale=200.0, seed=seed)
        sigma.append(dark.mean() / (0.1 * 200.0 * math.sqrt(math.pi / 2)) / scale[-1])
        out = _scan(np.full((2, 1, 1), 0.8), (x, 0.0, 0.0), noise_sigma=1e-5, intensity_scale=200.0, seed=seed)
        b.append(math.log(out[1, 0, 0] / out[0, 0, 0]) / 2)
    assert np.std(scale) == pytest.approx(0.03, rel=0.15) and np.mean(scale) == pytest.approx(1.0, abs=0.01)
    assert 0.83 < min(sigma) < 0.88 and 1.12 < max(sigma) < 1.17
    assert np.std(b) == pytest.approx(0.03, rel=0.15) and abs(np.mean(b)) < 0.01


def test_a_blur_of_under_a_third_of_a_voxel_is_applied():
    """docs/synthetic.md: every site blurs by its σ (mm). σ = 0.58 mm at 2 mm voxels (0.29 voxel): the voxel beside a
    step from 0 to 250 gets the kernel's neighbour weight e^(−0.5/0.29²) / (1 + 2e^(−0.5/0.29²)) ≈ 0.0026 of it,
    0.65, which rounds to 1 grey level; unblurred it stays 0."""
    edge = np.broadcast_to((np.arange(12) >= 6).astype(np.float32)[:, None, None], (12, 4, 4))
    out = _scan(edge, noise_sigma=1e-5, intensity_scale=250.0, blur_sigma_mm=(0.58, 0.0, 0.0)).mean((1, 2))
    assert out[5] == 1.0 and out[4] == 0.0, out
