"""Scanner ("site") signatures of the synthetic cohort and how they are applied to an image.

Each site has a fixed :class:`SiteProfile`: an age distribution (so site and age are
confounded, as in real multi-site data), an intensity scale/offset, a contrast gamma, a
Rician noise level, a smooth multiplicative bias field, a Gaussian blur (resolution /
slice thickness) and a typical head pose. The first four sites are hand-written presets
(:data:`SITE_PRESETS`); sites beyond them are drawn from fixed ranges with a generator
seeded only by the site index, so ``site-E`` is the same in every cohort. The full table
with formulas is in ``docs/synthetic.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

#: Ages are drawn on this range (years).
AGE_MIN, AGE_MAX = 20.0, 85.0


@dataclass(frozen=True)
class SiteProfile:
    """Acquisition signature of one site.

    Attributes:
        name: BIDS-like site label, e.g. ``"site-A"``.
        age_beta: ``(a, b)`` of the Beta distribution of ``(age - 20) / 65``.
        intensity_scale: output value (uint8 units) of white matter (tissue value 1.0).
        intensity_offset: constant added after noise (uint8 units); sets the background level.
        gamma: contrast exponent applied to tissue values in [0, 1] (``< 1`` lowers contrast).
        noise_sigma: Rician noise σ as a fraction of the white-matter signal.
        bias_linear: log-bias gradient per 100 mm along (x, y, z) world axes.
        bias_quadratic: radial log-bias per (100 mm)²; negative = darker periphery.
        blur_sigma_mm: Gaussian blur σ (mm) along (x, y, z); a large z σ mimics thick slices.
        pose_shift_mm: mean head translation (mm) along (x, y, z).
        pose_rotation_deg: mean head rotation (degrees) about the (x, y, z) axes.
    """

    name: str
    age_beta: tuple[float, float]
    intensity_scale: float
    intensity_offset: float
    gamma: float
    noise_sigma: float
    bias_linear: tuple[float, float, float]
    bias_quadratic: float
    blur_sigma_mm: tuple[float, float, float]
    pose_shift_mm: tuple[float, float, float]
    pose_rotation_deg: tuple[float, float, float]

    @property
    def mean_age(self) -> float:
        """Expected age (years) of this site's participants."""
        a, b = self.age_beta
        return AGE_MIN + (AGE_MAX - AGE_MIN) * a / (a + b)


#: Hand-written sites: A young-ish and sharp, B old-ish with thick slices and more noise,
#: C broad ages with a strong bias field, D middle-aged with low contrast.
SITE_PRESETS: tuple[SiteProfile, ...] = (
    SiteProfile("site-A", (2.0, 5.0), 180.0, 0.0, 1.00, 0.020, (0.15, 0.0, 0.0), -0.05,
                (0.5, 0.5, 0.5), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    SiteProfile("site-B", (5.0, 2.0), 150.0, 12.0, 0.80, 0.050, (0.0, 0.20, -0.10), -0.15,
                (1.0, 1.0, 3.0), (0.0, 5.0, -4.0), (5.0, 0.0, 0.0)),
    SiteProfile("site-C", (1.3, 1.3), 190.0, 4.0, 1.25, 0.035, (-0.10, 0.0, 0.25), 0.10,
                (1.8, 1.8, 1.8), (3.0, -3.0, 3.0), (0.0, -4.0, 3.0)),
    SiteProfile("site-D", (3.0, 3.0), 165.0, 8.0, 0.90, 0.030, (0.0, -0.15, 0.15), -0.10,
                (1.2, 1.2, 0.8), (-3.0, 2.0, 0.0), (-3.0, 3.0, -3.0)),
)


def _site_letter(k: int) -> str:
    """0 → A, 25 → Z, 26 → AA, … (spreadsheet-style)."""
    s = ""
    k += 1
    while k:
        k, r = divmod(k - 1, 26)
        s = chr(ord("A") + r) + s
    return s


def site_profiles(n_sites: int) -> list[SiteProfile]:
    """The profiles of sites ``0 … n_sites-1`` (presets first, then fixed random draws)."""
    if n_sites < 1:
        raise ValueError(f"n_sites must be >= 1, got {n_sites}")
    out = list(SITE_PRESETS[:n_sites])
    for k in range(len(out), n_sites):
        r = np.random.default_rng([7919, k])
        out.append(SiteProfile(
            name=f"site-{_site_letter(k)}",
            age_beta=(float(r.uniform(1.2, 5.0)), float(r.uniform(1.2, 5.0))),
            intensity_scale=float(r.uniform(140.0, 205.0)),
            intensity_offset=float(r.uniform(0.0, 15.0)),
            gamma=float(r.uniform(0.75, 1.3)),
            noise_sigma=float(r.uniform(0.015, 0.06)),
            bias_linear=tuple(float(v) for v in r.uniform(-0.25, 0.25, 3)),
            bias_quadratic=float(r.uniform(-0.15, 0.15)),
            blur_sigma_mm=tuple(float(v) for v in r.uniform(0.3, 2.5, 3)),
            pose_shift_mm=tuple(float(v) for v in r.uniform(-5.0, 5.0, 3)),
            pose_rotation_deg=tuple(float(v) for v in r.uniform(-5.0, 5.0, 3)),
        ))
    return out


def apply_scanner(tissue: np.ndarray, world: tuple[np.ndarray, np.ndarray, np.ndarray],
                  spacing_mm: tuple[float, float, float], site: SiteProfile,
                  rng: np.random.Generator) -> np.ndarray:
    """Turn a noiseless tissue image into this site's acquisition, as uint8.

    Steps, in order (``T`` = tissue value, white matter = 1):
    ``T**gamma`` → × bias field ``exp(b·x/100 + q·(|x|²/100² − 1))`` → Gaussian blur →
    × ``scale`` → Rician noise ``|S + σ·scale·(n1 + i·n2)|`` → ``+ offset`` → round, clip to 0…255.
    Per subject the site values are jittered: scale × N(1, 0.03), σ × U(0.85, 1.15),
    bias gradient + N(0, 0.03) per axis.

    Args:
        tissue: float32 ``(X, Y, Z)`` tissue values in [0, ~1.1].
        world: world coordinates (mm, RAS) of every voxel, three arrays broadcastable to
            ``tissue``.
        spacing_mm: voxel size along the array axes (mm), used to convert the blur σ.
        site: the site profile.
        rng: the subject's scanner random stream.

    Returns:
        uint8 ``(X, Y, Z)`` image.
    """
    scale = site.intensity_scale * float(rng.normal(1.0, 0.03))
    sigma = site.noise_sigma * float(rng.uniform(0.85, 1.15))
    b = np.asarray(site.bias_linear) + rng.normal(0.0, 0.03, 3)
    img = np.power(np.clip(tissue, 0.0, None), np.float32(site.gamma), dtype=np.float32)
    x, y, z = (w / np.float32(100.0) for w in world)
    log_bias = (np.float32(b[0]) * x + np.float32(b[1]) * y + np.float32(b[2]) * z
                + np.float32(site.bias_quadratic) * (x * x + y * y + z * z - np.float32(1.0)))
    img *= np.exp(log_bias, dtype=np.float32)
    for axis in range(3):
        s = site.blur_sigma_mm[axis] / spacing_mm[axis]
        if s > 0.05:
            img = gaussian_filter1d(img, s, axis=axis, mode="nearest", truncate=3.0)
    img *= np.float32(scale)
    noise = np.float32(sigma * scale)
    re = img + noise * rng.standard_normal(img.shape, dtype=np.float32)
    im = noise * rng.standard_normal(img.shape, dtype=np.float32)
    out = np.sqrt(re * re + im * im) + np.float32(site.intensity_offset)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
