"""Each preset's values reach the transforms of its pipeline (probability and strengths, no default slipping in),
and the views of one sample draw their own intensity parameters (mutation testing, third pass)."""

from __future__ import annotations

import pytest
import torch
from aug_helpers import gen

from medssl.transforms.presets import PRESET_DIMS, PRESETS
from medssl.transforms.views import build_view_pipeline, make_views

#: transform name -> (its probability field, {transform attribute: AugmentParams field})
INTENSITY = {
    "bias_field": ("bias_prob", {"coeff": "bias_coeff"}),
    "gamma": ("gamma_prob", {"gamma": "gamma"}),
    "scale_shift": ("scale_shift_prob", {"scale": "intensity_scale", "shift": "intensity_shift"}),
    "gaussian_blur": ("blur_prob", {"sigma": "blur_sigma"}),
    "gaussian_noise": ("noise_prob", {"std": "noise_std"}),
    "rician_noise": ("rician_prob", {"std": "rician_std"}),
}

#: every intensity knob set to a value no preset or default has, and distinct probabilities
DISTINCT = {"bias_prob": 0.11, "bias_coeff": 0.17, "gamma_prob": 0.12, "gamma": (0.6, 1.7), "scale_shift_prob": 0.13,
            "intensity_scale": (0.7, 1.3), "intensity_shift": 0.21, "blur_prob": 0.14, "blur_sigma": (0.3, 0.9),
            "noise_prob": 0.15, "noise_std": (0.01, 0.07), "rician_prob": 0.16, "rician_std": (0.02, 0.04)}


def _check(pipe):
    p = pipe.params
    present = {t.name: t for t in pipe.others}
    for name, (prob, attrs) in INTENSITY.items():
        assert (name in present) == (getattr(p, prob) > 0), (name, prob)
        if name in present:
            t = present[name]
            assert t.prob == getattr(p, prob), name
            for attr, field in attrs.items():
                assert getattr(t, attr) == getattr(p, field), (name, attr)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("overrides", [{}, DISTINCT], ids=["preset", "distinct"])
def test_each_intensity_transform_gets_its_own_preset_values(preset, overrides):
    dims = PRESET_DIMS[preset] or 3
    _check(build_view_pipeline(preset, dims, (8,) * dims, overrides=overrides))


def test_views_of_one_sample_draw_their_own_intensity_parameters():
    """Full-size crop without spatial transforms, gamma only: two views of a sample differ only by their gamma, so
    they must differ (a gamma drawn once per sample and shared by its views would make them equal)."""
    x = torch.rand(3, 1, 6, 7)
    pipe = build_view_pipeline("none", 2, (6, 7), {"gamma_prob": 1.0, "gamma": (0.5, 2.0)})
    v = make_views(pipe, x, 2, gen(0))
    assert all(not torch.allclose(v[b, 0], v[b, 1]) for b in range(3))
    (key,) = [k for k in pipe.sample_params(x.shape, gen(0), n_views=2) if k.endswith("gamma")]
    g = pipe.sample_params(x.shape, gen(0), n_views=2)[key]["gamma"]
    assert g.shape == (6,) and len(set(g.tolist())) == 6


def test_make_views_without_a_generator_differ_between_calls():
    """No generator: a fresh random seed per call (an unseeded torch.Generator repeats the same views)."""
    x = torch.rand(2, 1, 10, 10)
    pipe = build_view_pipeline("none", 2, (5, 5), {"gamma_prob": 1.0, "noise_prob": 1.0})
    assert not torch.equal(make_views(pipe, x, 2), make_views(pipe, x, 2))
