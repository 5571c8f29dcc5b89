"""The Models Genesis intensity transform (Zhou et al., MedIA 2021) against a naive evaluation of each sample's
drawn cubic Bézier curve: y(v) = B_y(t) where B_x(t) = v, found by bisection in float64."""

from __future__ import annotations

import torch
from aug_helpers import gen

from medssl.transforms.genesis import GenesisCorruption


def _bernstein(t: float, c1: float, c2: float) -> float:
    """One coordinate of B(t) = 3(1-t)^2 t c1 + 3(1-t) t^2 c2 + t^3 (end points 0 and 1)."""
    return 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t**2 * c2 + t**3


def _naive_curve(v: float, p1: list[float], p2: list[float]) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(60):  # B_x is non-decreasing for control points in [0, 1]^2
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _bernstein(mid, p1[0], p2[0]) < v else (lo, mid)
    return _bernstein((lo + hi) / 2, p1[1], p2[1])


def test_the_intensity_transform_is_each_samples_drawn_bezier_curve_reversed_when_flipped():
    """Bézier transform only: every voxel of sample b goes through the curve of that sample's drawn control points
    (p1 first, p2 second: swapping them is another curve), and flipped samples give 1 - y."""
    x = torch.rand(8, 1, 6, 7, generator=gen(0))
    tr = GenesisCorruption(nonlinear_prob=1.0, shuffle_prob=0.0, paint_prob=0.0)
    p = tr.sample_params(x.shape, gen(1))
    y = tr.apply(x, p)
    assert p["flip_curve"].any() and (~p["flip_curve"]).any()
    worst = 0.0
    for b in range(8):
        p1, p2 = p["p1"][b].double().tolist(), p["p2"][b].double().tolist()
        for v, got in zip(x[b].flatten().double().tolist(), y[b].flatten().double().tolist()):
            want = _naive_curve(v, p1, p2)
            worst = max(worst, abs(got - (1 - want if p["flip_curve"][b] else want)))
    assert worst < 1e-4  # the transform interpolates 1025 curve samples linearly (about 1e-6 here)


def test_with_every_probability_zero_the_corrupted_image_is_the_input():
    """Limit: no shuffling, no intensity curve, no painting → corrupted == target == input, bit for bit."""
    x = torch.rand(3, 1, 9, 10, 11, generator=gen(2))
    corrupted, target = GenesisCorruption(nonlinear_prob=0.0, shuffle_prob=0.0, paint_prob=0.0)(x, gen(3))
    assert torch.equal(corrupted, x) and torch.equal(target, x)
