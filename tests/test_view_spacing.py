"""Augmentation strengths in millimetres: ``build_view_pipeline(..., spacing=...)`` and ``augment.physical_units``.

References: at the preset's reference spacing the views are bit-identical to the voxel-unit
pipeline; elsewhere the drawn voxel strengths are the reference draws times reference /
spacing per axis; the blur of a delta image equals a naive separable Gaussian whose sigma
is the preset's sigma converted from mm to the data's voxels by hand.
"""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest
import torch

from medssl.config import ConfigError, load_config
from medssl.transforms.artefacts import RandomLowResolution
from medssl.transforms.presets import PRESETS, AugmentParams, get_preset
from medssl.transforms.spatial import rotation_matrix
from medssl.transforms.views import build_view_pipeline, voxel_scale_for

CROP = (12, 14, 16)
#: every voxel-unit transform on for every sample (so the draws are actually used)
ALL_ON = {"elastic_prob": 1.0, "blur_prob": 1.0, "lowres_prob": 1.0, "motion_prob": 1.0}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _by_name(params: dict, name: str) -> dict:
    (key,) = [k for k in params if k.split(":")[-1] == name]
    return params[key]


@pytest.mark.parametrize("preset", ["brain_mri", "ct"])
def test_reference_spacing_gives_identical_views(preset):
    """At the preset's reference spacing the rescaled pipeline is the voxel-unit pipeline, view for view."""
    ref = PRESETS[preset].reference_spacing_mm
    x = torch.randn(3, 1, 16, 18, 20)
    plain = build_view_pipeline(preset, 3, CROP, ALL_ON)
    scaled = build_view_pipeline(preset, 3, CROP, ALL_ON, spacing=(ref, ref, ref))
    assert torch.equal(plain.views(x, 2, _gen(5)), scaled.views(x, 2, _gen(5)))


def test_double_spacing_halves_the_voxel_strengths_per_axis():
    """2x the reference spacing: blur sigma, elastic offsets and motion shifts drawn are half the
    reference draws (same generator); an anisotropic spacing scales each axis by its own ratio."""
    shape = (4, 1, 16, 18, 20)
    ref = build_view_pipeline("brain_mri", 3, CROP, ALL_ON).sample_params(shape, _gen(1), n_views=2)
    for spacing in [(2.0, 2.0, 2.0), (2.0, 0.5, 4.0)]:
        ratio = torch.tensor([1.0 / s for s in spacing])
        got = build_view_pipeline("brain_mri", 3, CROP, ALL_ON, spacing=spacing).sample_params(shape, _gen(1), n_views=2)
        torch.testing.assert_close(_by_name(got, "gaussian_blur")["sigma"], _by_name(ref, "gaussian_blur")["sigma"] * ratio)
        torch.testing.assert_close(_by_name(got, "elastic")["control"],
                                   _by_name(ref, "elastic")["control"] * ratio.reshape(1, 3, 1, 1, 1))
        torch.testing.assert_close(_by_name(got, "motion")["shifts"], _by_name(ref, "motion")["shifts"] * ratio)
        for name in ("crop", "affine", "gamma", "cutout", "ghosting"):  # unit-free parameters are untouched
            for k, v in _by_name(ref, name).items():
                assert torch.equal(_by_name(got, name)[k], v), (name, k)


def _naive_gaussian(sigma: float, n: int, centre: int, radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (r / sigma) ** 2)
    out = np.zeros(n)
    out[centre - radius: centre + radius + 1] = k / k.sum()
    return out


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (0.5, 1.0, 2.0)])
def test_blur_of_a_delta_has_the_same_width_in_mm(spacing):
    """A blur of 1.5 mm (brain_mri, reference 1 mm) on a delta image equals the naive separable
    Gaussian with sigma = 1.5 mm / spacing voxels along each axis (radius ceil(3 max sigma))."""
    n = 25
    x = torch.zeros(1, 1, n, n, n)
    x[0, 0, 12, 12, 12] = 1.0
    off = {k: 0.0 for k in ("flip_prob", "affine_prob", "elastic_prob", "bias_prob", "gamma_prob", "scale_shift_prob",
                            "lowres_prob", "motion_prob", "ghosting_prob", "noise_prob", "rician_prob", "dropout_prob")}
    pipe = build_view_pipeline("brain_mri", 3, (n, n, n), {**off, "crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0),
                                                           "blur_prob": 1.0, "blur_sigma": (1.5, 1.5)}, spacing=spacing)
    got = pipe(x, _gen()).numpy()[0, 0]
    sigmas = [1.5 / s for s in spacing]  # mm -> voxels of this grid
    radius = math.ceil(3 * max(sigmas))
    k = [_naive_gaussian(s, n, 12, radius) for s in sigmas]
    np.testing.assert_allclose(got, np.einsum("i,j,k->ijk", *k), atol=1e-6)
    # the same width in mm: second moment of the profile along each axis, in mm^2
    for a, s in enumerate(spacing):
        prof = got.sum(axis=tuple(i for i in range(3) if i != a))
        var_mm = float(((np.arange(n) - 12) ** 2 * prof).sum()) * s**2
        assert abs(math.sqrt(var_mm) - 1.5) < 0.15 * 1.5


def test_low_resolution_factor_is_a_target_resolution_never_below_one():
    """brain_mri's factor 1.5-3 at 1 mm is a 1.5-3 mm target: 2x the factor at 0.5 mm, clamped to 1
    (no truncation) at 6 mm, and per axis for an anisotropic grid."""
    shape = (64, 1, 8, 8, 8)
    draw = lambda sp: _by_name(build_view_pipeline("brain_mri", 3, (8, 8, 8), ALL_ON, spacing=sp)
                               .sample_params(shape, _gen(2)), "low_resolution")["factor"]
    ref = draw(None)
    assert float(ref.min()) >= 1.5 and float(ref.max()) <= 3.0
    torch.testing.assert_close(draw((0.5, 0.5, 0.5)), ref * 2)
    assert torch.equal(draw((6.0, 6.0, 6.0)), torch.ones_like(ref))
    aniso = draw((0.5, 1.0, 6.0))
    torch.testing.assert_close(aniso[:, :2], ref[:, :2] * torch.tensor([2.0, 1.0]))
    assert torch.equal(aniso[:, 2], torch.ones(64))
    x = torch.rand(4, 1, 8, 8, 8)
    coarse = build_view_pipeline("brain_mri", 3, (8, 8, 8), {**ALL_ON, "crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0)},
                                 spacing=(6.0, 6.0, 6.0))
    lowres = next(t for t in coarse.others if t.name == "low_resolution")
    params = lowres.sample_params(x.shape, _gen(3))
    torch.testing.assert_close(lowres.apply(x, params), x, atol=1e-5, rtol=0)  # all frequencies kept
    # anisotropic (thick-slice) mode: only the chosen axis is scaled; the others stay exactly 1
    f = RandomLowResolution(1.0, (1.5, 3.0), anisotropic=True, voxel_scale=(2.0, 2.0, 2.0)).sample_params(
        shape, _gen(4))["factor"]
    assert torch.equal((f > 1).sum(1), torch.ones(64, dtype=torch.long)) and float(f.max()) <= 6.0


@pytest.mark.parametrize("spacing", [(0.0, 1.0, 1.0), (1.0, -2.0, 1.0), (1.0, 1.0), (1.0, 1.0, 1.0, 1.0),
                                     (1.0, float("nan"), 1.0), (1.0, float("inf"), 1.0), "1mm", 2.0, ("a", 1, 1)])
def test_bad_spacing_is_a_clear_error(spacing):
    with pytest.raises(ValueError, match="spacing"):
        build_view_pipeline("brain_mri", 3, CROP, spacing=spacing)


def test_presets_without_reference_spacing_are_not_rescaled():
    """none / chest_xray have nothing in voxel units to rescale: spacing is validated, then ignored."""
    assert voxel_scale_for(get_preset("none"), (6.0, 6.0, 6.0), 3) is None
    assert voxel_scale_for(get_preset("chest_xray"), (0.2, 0.2), 2) is None
    assert voxel_scale_for(get_preset("brain_mri"), (2.0, 4.0, 0.5), 3) == (0.5, 0.25, 2.0)
    x = torch.randn(2, 1, 40, 40)
    a = build_view_pipeline("chest_xray", 2, (32, 32)).views(x, 2, _gen(7))
    b = build_view_pipeline("chest_xray", 2, (32, 32), spacing=(0.2, 0.2)).views(x, 2, _gen(7))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="spacing"):
        build_view_pipeline("none", 3, CROP, spacing=(1.0, 1.0))


@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), "1mm", True])
def test_reference_spacing_must_be_positive_mm(value):
    with pytest.raises(ValueError, match="reference_spacing_mm"):
        AugmentParams(reference_spacing_mm=value)


def test_config_switch_physical_units():
    """augment.physical_units (default off) rescales build_method's views to data.spacing; it needs a data.spacing."""
    from medssl.api import build_method

    small = ["encoder.options={width: 4}", "augment.crop_size=[16,16,16]", "data.shape=[24,24,24]"]
    assert load_config(None, small).augment.physical_units is False
    elastic = lambda cfg: next(t for t in build_method(cfg).views.spatial if t.name == "elastic")
    assert elastic(load_config(None, small + ["data.spacing=[3,3,3]"])).voxel_scale is None
    on = load_config(None, small + ["data.spacing=[2, 4, 2]", "augment.physical_units=true"])
    assert elastic(on).voxel_scale == (0.5, 0.25, 0.5)
    with pytest.raises(ConfigError, match="data.spacing"):
        load_config(None, small + ["augment.physical_units=true"])


def test_rotation_on_an_anisotropic_grid_is_a_rotation_in_mm():
    """With a data spacing, a rotation turns the anatomy by the angle in millimetres, not in voxel indices: a
    Gaussian blob 8 mm right of the centre of a (1, 1, 2) mm grid, rotated 90 degrees in the plane of axes 0
    and 2, lands 8 mm (4 voxels) along axis 2 (a rotation of voxel indices would put it 8 voxels = 16 mm
    away); compared with the analytic blob at the rotated positions."""
    spacing, shape, w = (1.0, 1.0, 2.0), (33, 5, 17), 4.0
    mm = [(torch.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]  # voxel centres, mm from the centre
    grid = torch.stack(torch.meshgrid(*mm, indexing="ij"), -1)  # (*shape, 3)
    blob = lambda p: torch.exp(-((p - torch.tensor([8.0, 0.0, 0.0])) ** 2).sum(-1) / (2 * w**2))
    x = blob(grid)[None, None]
    only_affine = {f.name: 0.0 for f in fields(AugmentParams) if f.name.endswith("_prob")}
    only_affine.update(affine_prob=1.0, scale=(1.0, 1.0), crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    pipe = build_view_pipeline("brain_mri", 3, shape, only_affine, spacing=spacing)
    params = pipe.sample_params(x.shape, _gen(0))
    angles = torch.tensor([[0.0, math.pi / 2, 0.0]])
    _by_name(params, "affine")["angles"][:] = angles
    got = pipe.apply(x, params)[0, 0]
    R = rotation_matrix(angles, 3)[0]
    expected = blob(grid @ R.T)  # output position q (mm) reads the input at R q
    assert (got - expected).abs().max() < 0.05
    assert got.flatten().argmax() == expected.flatten().argmax()
