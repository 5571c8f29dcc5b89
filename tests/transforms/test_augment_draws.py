"""The random values are drawn as docs/augmentations.md ("How each random value is drawn") says: each row's
distribution (uniform, log-uniform, normal, uniform integer) is checked against the transform's own draws with a
Kolmogorov–Smirnov test (a chi-square test for integers), on ranges wide enough that uniform and log-uniform differ
plainly; the rows are every random AugmentParams key, and the per-sample probability is a Bernoulli draw."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from medssl.transforms.artefacts import RandomCutout, RandomGhosting, RandomLowResolution, RandomMotion
from medssl.transforms.intensity import (RandomBiasField, RandomGamma, RandomGaussianBlur, RandomGaussianNoise,
                                         RandomRicianNoise, RandomScaleShift)
from medssl.transforms.presets import AugmentParams
from medssl.transforms.spatial import RandomAffine, RandomElastic, RandomFlip, RandomResizedCrop

DOC = (Path(__file__).resolve().parents[2] / "docs" / "augmentations.md").read_text()
N = 20000
FIXED = {"flip_axes", "elastic_grid", "motion_segments", "dropout_holes", "dropout_fill", "reference_spacing_mm",
         "interpolation", "padding_mode"}


def _draws(t, spatial=(16, 16, 16), n=N) -> dict:
    return t.sample_params((n, 1, *spatial), torch.Generator().manual_seed(0))


def _bias(n: int) -> np.ndarray:
    c = _draws(RandomBiasField(1.0, coeff=0.5), n=n // 20)["coeffs"].numpy()
    i, j, k = np.meshgrid(*[np.arange(4)] * 3, indexing="ij")
    return c[:, i + j + k <= 3].ravel()  # the Legendre terms of total degree <= 3 (the others are 0)


#: key -> (the transform's raw draws, the range or SD they are drawn with)
DRAWS = {
    "crop_scale": (lambda: (_draws(RandomResizedCrop((8, 8), scale=(0.25, 1.0)), (64, 64))["region"][:, 0] / 8),
                   (0.25, 1.0)),
    "crop_ratio": (lambda: _draws(RandomResizedCrop((8, 8), ratio=(0.25, 4.0)), (64, 64))["region"], (0.25, 4.0)),
    "rotate": (lambda: _draws(RandomAffine(1.0, rotate=30.0, scale=(1, 1)))["angles"] * 180 / math.pi, (-30, 30)),
    "scale": (lambda: _draws(RandomAffine(1.0, rotate=0.0, scale=(0.25, 4.0)))["zoom"], (0.25, 4.0)),
    "translate": (lambda: _draws(RandomAffine(1.0, rotate=0.0, scale=(1, 1), translate=0.2))["shift"], (-0.2, 0.2)),
    "elastic_magnitude": (lambda: _draws(RandomElastic(1.0, magnitude=3.0), n=N // 50)["control"], 3.0),
    "bias_coeff": (lambda: _bias(N), (-0.5, 0.5)),
    "gamma": (lambda: _draws(RandomGamma(1.0, (0.25, 4.0)))["gamma"], (0.25, 4.0)),
    "intensity_scale": (lambda: _draws(RandomScaleShift(1.0, (0.25, 4.0), 0.5))["scale"], (0.25, 4.0)),
    "intensity_shift": (lambda: _draws(RandomScaleShift(1.0, (0.25, 4.0), 0.5))["shift"], (-0.5, 0.5)),
    "blur_sigma": (lambda: _draws(RandomGaussianBlur(1.0, (0.25, 4.0)))["sigma"], (0.25, 4.0)),
    "lowres_factor": (lambda: _draws(RandomLowResolution(1.0, (1.5, 6.0)))["factor"], (1.5, 6.0)),
    "motion_shift": (lambda: _draws(RandomMotion(1.0, shift=3.0))["shifts"], (-3.0, 3.0)),
    "ghosting_count": (lambda: _draws(RandomGhosting(1.0, (2, 6)))["count"], (2, 6)),
    "ghosting_intensity": (lambda: _draws(RandomGhosting(1.0, (2, 6), (0.1, 0.9)))["intensity"], (0.1, 0.9)),
    "noise_std": (lambda: _draws(RandomGaussianNoise(1.0, (0.25, 4.0)))["std"], (0.25, 4.0)),
    "rician_std": (lambda: _draws(RandomRicianNoise(1.0, (0.25, 4.0)))["std"], (0.25, 4.0)),
    "dropout_size": (lambda: _draws(RandomCutout(1.0, 4, (0.1, 0.9)), (10000, 10000), n=N // 4)["size"] / 10000,
                     (0.1, 0.9)),
}


def _documented() -> dict[str, str]:
    lines = DOC.splitlines()
    start = lines.index("| key | drawn | what, per sample |")
    rows = {}
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0]] = cells[1]
    return rows


def test_the_table_lists_every_random_key_and_the_fixed_ones_are_named():
    fixed = DOC.split("Fixed, not drawn:")[1].split(".\n")[0]
    assert all(f"`{k}`" in fixed for k in FIXED)
    drawn = {f.name for f in fields(AugmentParams)} - FIXED - {f.name for f in fields(AugmentParams)
                                                                if f.name.endswith("_prob")}
    assert set(_documented()) == drawn == set(DRAWS)


def _ks(x: np.ndarray, dist: str, rng) -> float:
    """KS p-value of ``x`` against ``dist`` on ``rng`` ((lo, hi), or the SD of a normal)."""
    if dist == "uniform":
        return stats.kstest(x, "uniform", args=(rng[0], rng[1] - rng[0])).pvalue
    if dist == "log-uniform":
        if x.min() <= 0:
            return 0.0
        lo, hi = math.log(rng[0]), math.log(rng[1])
        return stats.kstest(np.log(x), "uniform", args=(lo, hi - lo)).pvalue
    assert dist == "normal", dist
    return stats.kstest(x, "norm", args=(0.0, rng)).pvalue


@pytest.mark.parametrize("key", sorted(DRAWS))
def test_each_value_is_drawn_as_documented(key):
    dist = _documented()[key]
    draw, rng = DRAWS[key]
    x = np.asarray(draw(), dtype=np.float64)
    if key == "crop_ratio":  # one factor per axis, divided by their geometric mean: the ratio of two axes is r0 / r1
        x = x[:, 0] / x[:, 1]
        assert dist == "log-uniform"
        w = math.log(rng[1]) - math.log(rng[0])  # log r0 - log r1 of two uniform logs: triangular on [-w, w]
        assert stats.kstest(np.log(x), "triang", args=(0.5, -w, 2 * w)).pvalue > 1e-3
        return
    if key == "scale":  # one zoom for all axes
        assert (x == x[:, :1]).all()
    x = x.ravel()
    if dist == "uniform integer":
        values, counts = np.unique(x, return_counts=True)
        assert list(values) == list(range(rng[0], rng[1] + 1))
        assert stats.chisquare(counts).pvalue > 1e-3
        return
    assert _ks(x, dist, rng) > 1e-3, (key, dist)
    if isinstance(rng, tuple) and rng[0] > 0 and rng[1] / rng[0] >= 4:  # the other candidate is plainly refused
        other = {"uniform": "log-uniform", "log-uniform": "uniform"}[dist]
        assert _ks(x, other, rng) < 1e-6, (key, other)


def test_each_transform_touches_a_sample_with_its_probability_and_a_flip_each_axis():
    """A Bernoulli draw per sample (per allowed axis for flips): the frequencies match 0.3 within 4 binomial SDs."""
    sd = 4 * math.sqrt(0.3 * 0.7 / N)
    for t in (RandomAffine(0.3), RandomGamma(0.3), RandomGaussianNoise(0.3), RandomCutout(0.3), RandomMotion(0.3)):
        assert abs(float(_draws(t)["apply"].float().mean()) - 0.3) < sd, t
    flips = _draws(RandomFlip(0.3, axes=(0, 2)))["flip"].float()
    assert abs(float(flips[:, 0].mean()) - 0.3) < sd and abs(float(flips[:, 2].mean()) - 0.3) < sd
    assert float(flips[:, 1].sum()) == 0
