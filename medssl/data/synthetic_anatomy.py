"""Brain-like anatomy of one synthetic subject: latent traits and a noiseless tissue image.

Geometry is a set of ellipsoids in a *template* space (mm, RAS, origin at the head
centre, female size) evaluated through an approximate signed distance, so partial volume
is a linear ramp one voxel wide. A subject's template coordinates are its world
coordinates moved by a rigid pose, divided by its head size (per axis) and displaced by a
smooth random deformation (σ = 2.5 mm). Layers, outside in: scalp (5 mm), skull (6 mm),
subarachnoid CSF, grey-matter shell (with random sulci), white matter, thalami,
hippocampi, temporal horns and lateral ventricles. Every planted effect (age, sex,
diagnosis) is a constant of this module and is tabulated in ``docs/synthetic.md``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from medssl.data.synthetic_sites import AGE_MAX, AGE_MIN, SiteProfile

# Tissue values of the noiseless T1-weighted image (white matter = 1).
T_SCALP, T_SKULL, T_CSF, T_GM, T_WM, T_DEEP_GM, T_HIPPO = 0.70, 0.10, 0.12, 0.60, 1.00, 0.80, 0.62

HEAD_SEMI_AXES_MM = (70.0, 88.0, 78.0)  #: female head (scalp surface) semi-axes along x, y, z
SCALP_MM, SKULL_MM, CSF_GAP_MM = 5.0, 6.0, 2.5  #: layer thicknesses at age 20
MALE_HEAD_SCALE = 1.04                  #: male/female head size ratio (linear; ≈ +12.5 % volume)
HEAD_SCALE_SD = 0.03                    #: between-subject log head size SD (linear)

BRAIN_SHRINK_PER_YEAR = 0.0011          #: linear brain shrinkage per year after 20 (≈ −20 % volume at 85)
GM_THICKNESS_MM = 7.0                   #: cortex thickness at age 20 (×2.5 real, visible at 3–7 mm voxels)
GM_THINNING_PER_YEAR = 0.004            #: relative cortical thinning per year (−26 % at 85)
VENTRICLE_LOG_SLOPE = 0.018             #: d log(ventricle volume) / d age, per year (×3.2 from 20 to 85)
VENTRICLE_LOG_SD = 0.15                 #: between-subject SD of log ventricle volume at fixed age
WARP_SD_MM = 2.5                        #: SD of the smooth random deformation (mm, per axis, 40 mm lattice)
FOLD_AMPLITUDE_MM = 3.0                 #: gyral folding: cortical surface displaced by 3 mm × smooth field
SULCUS_THRESHOLD_20, SULCUS_THRESHOLD_SLOPE = 1.3, 0.012  #: sulci where field > 1.3 − 0.012·(age − 20)
HIPPO_LOSS_PER_YEAR = 0.002             #: relative hippocampal volume loss per year
HORN_LOG_SLOPE = 0.012                  #: d log(temporal-horn volume) / d age

AD_HIPPO_FACTOR = 0.70                  #: hippocampal volume × 0.70 with AD
AD_HORN_FACTOR = 3.0                    #: temporal-horn volume × 3 with AD
AD_VENTRICLE_FACTOR = 1.15              #: ventricle volume × 1.15 with AD
AD_BRAIN_FACTOR = 0.99                  #: brain linear size × 0.99 with AD (≈ −3 % volume)
AD_TEMPORAL_THINNING = 0.5              #: cortex thinner by up to 50 % around the temporal lobes with AD
TEMPORAL_CENTRES_MM = ((-45.0, -10.0, -20.0), (45.0, -10.0, -20.0))
TEMPORAL_SIGMA_MM = 20.0


def ad_probability(age: float) -> float:
    """P(diagnosis = AD | age in years) = ``0.02 + 0.5 / (1 + exp(-(age - 72) / 6))``.

    0.02 at 30 y, 0.27 at 72 y, 0.47 at 85 y.
    """
    return 0.02 + 0.5 / (1.0 + math.exp(-(age - 72.0) / 6.0))


@dataclass(frozen=True)
class SubjectTraits:
    """Latent variables of one subject (the ground truth behind its image).

    Attributes:
        index: 0-based subject index; ``participant_id`` is ``sub-{index+1:04d}``.
        site: index into the cohort's site list (``index % n_sites``).
        age: years, rounded to 0.1 (the generator uses the rounded value).
        sex: ``"F"`` or ``"M"``.
        diagnosis: ``"CN"`` or ``"AD"``.
        head_scale: linear head size relative to the female template (sex × individual).
        head_aspect: extra per-axis (x, y, z) linear scale, log-normal SD 0.025.
        brain_noise, gm_noise, ventricle_noise, ventricle_asymmetry, hippo_noise: individual
            anatomical variability (log or relative units, see the constants).
        pose_shift_mm: head translation (mm), site mean + N(0, 2 mm).
        pose_rotation_deg: rotation about x, y, z (degrees), site mean + N(0, 2°).
    """

    index: int
    site: int
    age: float
    sex: str
    diagnosis: str
    head_scale: float
    head_aspect: tuple[float, float, float]
    brain_noise: float
    gm_noise: float
    ventricle_noise: float
    ventricle_asymmetry: float
    hippo_noise: float
    pose_shift_mm: tuple[float, float, float]
    pose_rotation_deg: tuple[float, float, float]

    def as_dict(self) -> dict:
        return asdict(self)


def sample_traits(index: int, site_index: int, site: SiteProfile, rng: np.random.Generator) -> SubjectTraits:
    """Draw one subject's traits (in a fixed order, so a stream always gives the same subject)."""
    a, b = site.age_beta
    age = round(AGE_MIN + (AGE_MAX - AGE_MIN) * float(rng.beta(a, b)), 1)
    sex = "M" if rng.random() < 0.5 else "F"
    diagnosis = "AD" if rng.random() < ad_probability(age) else "CN"
    head = (MALE_HEAD_SCALE if sex == "M" else 1.0) * math.exp(rng.normal(0.0, HEAD_SCALE_SD))
    aspect = tuple(float(v) for v in np.exp(rng.normal(0.0, 0.025, 3)))
    noises = rng.normal(0.0, 1.0, 5) * np.array([0.015, 0.08, VENTRICLE_LOG_SD, 0.10, 0.08])
    shift = tuple(float(v) for v in np.asarray(site.pose_shift_mm) + rng.normal(0.0, 2.0, 3))
    rot = tuple(float(v) for v in np.asarray(site.pose_rotation_deg) + rng.normal(0.0, 2.0, 3))
    return SubjectTraits(index, site_index, age, sex, diagnosis, float(head), aspect,  # type: ignore[arg-type]
                         *(float(v) for v in noises), shift, rot)  # type: ignore[arg-type]


def smooth_field(axes_mm: tuple[np.ndarray, ...], lattice_mm: float, rng: np.random.Generator,
                 half_extent_mm: float) -> np.ndarray:
    """Stationary smooth Gaussian random field with unit variance, evaluated on a grid.

    ``f(x) = Σ c_ijk φ_i(x) φ_j(y) φ_k(z)``, ``c ~ N(0, 1)``, Gaussian bumps φ every
    ``lattice_mm`` (width 0.6 × lattice) over ``±half_extent_mm``; each axis basis is
    normalised so ``Var f(x) = 1`` at every point. The coefficients depend only on the
    lattice (``half_extent_mm``), not on the voxel grid, so the field at a world point is
    the same at any resolution.
    """
    n_c = int(math.ceil(half_extent_mm / lattice_mm)) + 1
    centres = lattice_mm * np.arange(-n_c, n_c + 1, dtype=np.float64)
    coef = rng.standard_normal((centres.size,) * 3)
    bases = []
    for ax in axes_mm:
        phi = np.exp(-0.5 * ((ax[:, None] - centres[None, :]) / (0.6 * lattice_mm)) ** 2)
        bases.append(phi / np.sqrt((phi**2).sum(axis=1, keepdims=True)))
    f = np.tensordot(bases[0], coef, axes=(1, 0))           # (X, Ky, Kz)
    f = np.tensordot(f, bases[1], axes=(1, 1))               # (X, Kz, Y)
    f = np.tensordot(f, bases[2], axes=(1, 1))               # (X, Y, Z)
    return f.astype(np.float32)


def _ellipsoid_sdf(p: tuple[np.ndarray, np.ndarray, np.ndarray], centre, semi, bend: float = 0.0) -> np.ndarray:
    """Approximate signed distance (template mm, < 0 inside) to an axis-aligned ellipsoid.

    First-order estimate ``(f - 1) / |∇f|`` with ``f = |(p - c) / a|``; ``bend`` lowers the
    z centre by ``bend · (y - c_y)²`` (a banana shape for the lateral ventricles).
    """
    ux = (p[0] - np.float32(centre[0])) / np.float32(semi[0])
    uy = (p[1] - np.float32(centre[1])) / np.float32(semi[1])
    cz = np.float32(centre[2])
    if bend:
        cz = cz - np.float32(bend) * (p[1] - np.float32(centre[1])) ** 2
    uz = (p[2] - cz) / np.float32(semi[2])
    f = np.sqrt(ux * ux + uy * uy + uz * uz)
    g = np.sqrt((ux / semi[0]) ** 2 + (uy / semi[1]) ** 2 + (uz / semi[2]) ** 2) + np.float32(1e-6)
    return (f - np.float32(1.0)) * f / g


def _rotation(deg: tuple[float, float, float]) -> np.ndarray:
    ax, ay, az = (math.radians(d) for d in deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _template_coordinates(t: SubjectTraits, axes: tuple[np.ndarray, ...], rng: np.random.Generator,
                          half: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template coordinates of every voxel: ``p = R^T (world − shift) / size + deformation``."""
    size = t.head_scale * np.asarray(t.head_aspect)
    rot = _rotation(t.pose_rotation_deg)
    w = [a - np.float32(s) for a, s in zip(axes, t.pose_shift_mm)]
    w = [w[0][:, None, None], w[1][None, :, None], w[2][None, None, :]]
    warp = [smooth_field(axes, 40.0, rng, half) * np.float32(WARP_SD_MM) for _ in range(3)]
    p = tuple(sum(np.float32(rot[j, i] / size[i]) * w[j] for j in range(3)) + warp[i] for i in range(3))
    return p  # type: ignore[return-value]


def render_tissue(t: SubjectTraits, axes_mm: tuple[np.ndarray, np.ndarray, np.ndarray],
                  voxel_mm: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Noiseless tissue image (white matter = 1) and ground-truth measures of one subject.

    Args:
        t: the subject's traits.
        axes_mm: world coordinates (mm, RAS) of the voxel centres along x, y and z.
        voxel_mm: mean voxel size (mm); partial-volume ramps are one voxel wide.
        rng: the subject's anatomy stream (deformation, folding, sulci, texture, in that order).

    Returns:
        ``(tissue (X, Y, Z) float32, truth)`` where truth holds volumes in mL (from the
        partial-volume maps, before scanner effects) and the cortical thickness in mm.
    """
    axes = tuple(np.asarray(a, dtype=np.float32) for a in axes_mm)
    # lattice extent from the field of view (not the voxel count), so the random fields
    # and hence the subject are the same at every resolution
    half = float(max(np.abs(a).max() + abs(a[1] - a[0]) / 2 for a in axes)) + 10.0
    p = _template_coordinates(t, axes, rng, half)
    w = np.float32(voxel_mm / t.head_scale)  # one voxel, in template mm

    def ramp(d: np.ndarray) -> np.ndarray:  # partial volume from a signed distance
        return np.clip(np.float32(0.5) - d / w, 0.0, 1.0)

    def paint(img: np.ndarray, alpha: np.ndarray, value: float) -> None:
        img += alpha * (np.float32(value) - img)

    years = t.age - AGE_MIN
    ad = t.diagnosis == "AD"
    img = np.zeros(p[0].shape, dtype=np.float32)
    d_head = _ellipsoid_sdf(p, (0, 0, 0), HEAD_SEMI_AXES_MM)
    paint(img, ramp(d_head), T_SCALP)
    paint(img, ramp(d_head + SCALP_MM), T_SKULL)
    a_ic = ramp(d_head + SCALP_MM + SKULL_MM)
    paint(img, a_ic, T_CSF)
    brain_f = (1.0 - BRAIN_SHRINK_PER_YEAR * years) * (1.0 + t.brain_noise) * (AD_BRAIN_FACTOR if ad else 1.0)
    semi_b = [(s - SCALP_MM - SKULL_MM - CSF_GAP_MM) * brain_f for s in HEAD_SEMI_AXES_MM]
    d_brain = _ellipsoid_sdf(p, (0, 0, 0), semi_b)
    d_brain += np.float32(FOLD_AMPLITUDE_MM) * smooth_field(axes, 12.0, rng, half)
    a_brain = ramp(d_brain)
    paint(img, a_brain, T_GM)
    thick = GM_THICKNESS_MM * (1.0 - GM_THINNING_PER_YEAR * years) * math.exp(t.gm_noise)
    t_eff = np.float32(thick)
    if ad:
        temporal = sum(np.exp(-((p[0] - c[0]) ** 2 + (p[1] - c[1]) ** 2 + (p[2] - c[2]) ** 2)
                              / np.float32(2 * TEMPORAL_SIGMA_MM**2)) for c in TEMPORAL_CENTRES_MM)
        t_eff = t_eff * (np.float32(1.0) - np.float32(AD_TEMPORAL_THINNING) * np.minimum(temporal, 1.0))
    a_wm = ramp(d_brain + t_eff)
    paint(img, a_wm, T_WM)
    theta = SULCUS_THRESHOLD_20 - SULCUS_THRESHOLD_SLOPE * years
    a_sulc = np.clip((smooth_field(axes, 8.0, rng, half) - np.float32(theta)) / np.float32(0.25), 0.0, 1.0)
    a_sulc *= a_brain * (np.float32(1.0) - a_wm)
    paint(img, a_sulc, T_CSF)
    a_hip, a_vent = _paint_deep(img, p, t, axes, ramp, paint)
    img *= np.float32(1.0) + np.float32(0.04) * smooth_field(axes, 20.0, rng, half)

    ml = float(np.prod([abs(a[1] - a[0]) for a in axes])) / 1000.0
    truth = {
        "icv_ml": float(a_ic.sum(dtype=np.float64)) * ml,
        "brain_ml": float((a_brain - a_sulc).sum(dtype=np.float64)) * ml,
        "gm_ml": float((a_brain * (1 - a_wm) - a_sulc).sum(dtype=np.float64)) * ml,
        "ventricle_ml": float(a_vent.sum(dtype=np.float64)) * ml,
        "hippocampus_ml": float(sum(a.sum(dtype=np.float64) for a in a_hip)) * ml,
        "gm_thickness_mm": thick * t.head_scale,
    }
    return img, truth


def _paint_deep(img, p, t: SubjectTraits, axes, ramp, paint) -> tuple[list[np.ndarray], np.ndarray]:
    """Paint thalami, hippocampi, temporal horns and lateral ventricles (in that order).

    Each bilateral pair is evaluated only inside a grid box around it, which keeps the
    cost of these small structures low. Returns the hippocampus and ventricle
    partial-volume maps (for the truth table).
    """
    years = t.age - AGE_MIN
    ad = t.diagnosis == "AD"
    v_lin = math.exp((VENTRICLE_LOG_SLOPE * years + (math.log(AD_VENTRICLE_FACTOR) if ad else 0.0)
                      + t.ventricle_noise) / 3.0)
    h_vol = (1.0 - HIPPO_LOSS_PER_YEAR * years) * (AD_HIPPO_FACTOR if ad else 1.0) * math.exp(t.hippo_noise)
    h_lin = h_vol ** (1 / 3)
    horn_lin = math.exp((HORN_LOG_SLOPE * years + (math.log(AD_HORN_FACTOR) if ad else 0.0)) / 3.0)
    size = t.head_scale * np.asarray(t.head_aspect)
    rot = _rotation(t.pose_rotation_deg)
    margin = 4 * WARP_SD_MM * float(size.max()) + 2 * float(np.mean([abs(a[1] - a[0]) for a in axes]))

    def box(*balls: tuple[tuple[float, float, float], float]) -> tuple[slice, slice, slice]:
        """Grid slices covering template balls (centre, radius), plus the deformation (< 4 SD)."""
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
        for c, r in balls:
            cw = rot @ (np.asarray(c) * size) + np.asarray(t.pose_shift_mm)
            lo = np.minimum(lo, cw - r * size.max() - margin)
            hi = np.maximum(hi, cw + r * size.max() + margin)
        return tuple(slice(int(np.searchsorted(a, l)), int(np.searchsorted(a, h, side="right")))
                     for a, l, h in zip(axes, lo, hi))  # type: ignore[return-value]

    def sdf(b, centre, semi, bend=0.0):
        return _ellipsoid_sdf((p[0][b], p[1][b], p[2][b]), centre, semi, bend)

    sides = (-1.0, 1.0)
    b = box(*(((s * 11, -10, 0), 15.0) for s in sides))
    for side in sides:
        paint(img[b], ramp(sdf(b, (side * 11, -10, 0), (9, 15, 9))), T_DEEP_GM)
    hip = [((s * 27, -18, -16), (6 * h_lin, 17 * h_lin, 6 * h_lin)) for s in sides]
    horn = [((s * 33, -16, -11), (3 * horn_lin, 12 * horn_lin, 3 * horn_lin)) for s in sides]
    b = box(*((c, max(a)) for c, a in hip + horn))
    a_hip = [ramp(sdf(b, c, a)) for c, a in hip]
    for ah in a_hip:
        paint(img[b], ah, T_HIPPO)
    for ah, (c, a) in zip(a_hip, horn):
        a_horn = ramp(sdf(b, c, a))
        paint(img[b], a_horn, T_CSF)
        ah *= np.float32(1.0) - a_horn
    vent = []
    for side in sides:
        v_side = v_lin * math.exp(side * t.ventricle_asymmetry / 6.0)
        semi_v = (6 * v_side, 24 * v_side, 9 * v_side)
        vent.append(((side * (2 + semi_v[0]), 0, 12), semi_v, 0.012 / v_side))
    b = box(*((c, max(a) + bend * a[1] ** 2) for c, a, bend in vent))
    a_vent = np.zeros(img[b].shape, dtype=np.float32)
    for c, a, bend in vent:
        av = ramp(sdf(b, c, a, bend))
        paint(img[b], av, T_CSF)
        np.maximum(a_vent, av, out=a_vent)
    return a_hip, a_vent
