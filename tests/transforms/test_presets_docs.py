"""The presets are what docs/augmentations.md says they are: every value of its preset table, the order of the
transforms a pipeline applies, and the validation of positive ranges and fractions."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from medssl.transforms.artefacts import RandomCutout, RandomGhosting, RandomLowResolution, RandomMotion
from medssl.transforms.intensity import (RandomBiasField, RandomGamma, RandomGaussianBlur, RandomGaussianNoise,
                                         RandomRicianNoise, RandomScaleShift)
from medssl.transforms.presets import PRESETS, AugmentParams, get_preset
from medssl.transforms.spatial import RandomAffine, RandomElastic, RandomFlip
from medssl.transforms.views import build_view_pipeline

DOC = (Path(__file__).resolve().parents[2] / "docs" / "augmentations.md").read_text()

#: the table's first column → the AugmentParams fields its cells list, in the order they are written
ROWS = {
    "crop_scale": ["crop_scale"], "crop_ratio": ["crop_ratio"], "flip_prob, flip_axes": ["flip_prob", "flip_axes"],
    "affine_prob": ["affine_prob"], "rotate": ["rotate"], "scale": ["scale"], "translate": ["translate"],
    "elastic_prob (magnitude, grid)": ["elastic_prob", "elastic_magnitude", "elastic_grid"],
    "bias_prob (coeff)": ["bias_prob", "bias_coeff"], "gamma_prob (gamma)": ["gamma_prob", "gamma"],
    "scale_shift_prob (intensity_scale, intensity_shift)": ["scale_shift_prob", "intensity_scale", "intensity_shift"],
    "blur_prob (sigma)": ["blur_prob", "blur_sigma"], "lowres_prob (factor)": ["lowres_prob", "lowres_factor"],
    "motion_prob (shift, segments)": ["motion_prob", "motion_shift", "motion_segments"],
    "ghosting_prob (count, intensity)": ["ghosting_prob", "ghosting_count", "ghosting_intensity"],
    "noise_prob (std)": ["noise_prob", "noise_std"], "rician_prob (std)": ["rician_prob", "rician_std"],
    "dropout_prob (holes, size, fill)": ["dropout_prob", "dropout_holes", "dropout_size", "dropout_fill"],
    "reference_spacing_mm": ["reference_spacing_mm"],
}


def _table() -> tuple[list[str], dict[str, list[str]]]:
    lines = [ln for ln in DOC.splitlines() if ln.startswith("| key | none |")]
    assert len(lines) == 1, "the preset table of docs/augmentations.md moved"
    start = DOC.splitlines().index(lines[0])
    presets = [c.strip() for c in lines[0].strip("|").split("|")][1:-1]
    rows = {}
    for ln in DOC.splitlines()[start + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:1 + len(presets)]
    return presets, rows


def _numbers(value) -> list[float]:
    if value is None or isinstance(value, str):
        return []
    return [float(v) for v in value] if isinstance(value, tuple) else [float(value)]


def test_the_docs_table_is_every_preset_value():
    """Each cell's numbers are the preset's values of that row's fields, in order ("0" alone: probability 0, the
    rest unused); "all" flip axes is None, "mean" the fill, "None" no reference spacing."""
    presets, rows = _table()
    assert presets == ["none", "brain_mri", "ct", "chest_xray"] and set(presets) == set(PRESETS)
    assert set(rows) == set(ROWS)
    listed = {f for names in ROWS.values() for f in names}
    assert listed == {f.name for f in fields(AugmentParams)} - {"interpolation", "padding_mode"}
    for key, names in ROWS.items():
        for preset, cell in zip(presets, rows[key]):
            p = PRESETS[preset]
            values = [getattr(p, n) for n in names]
            if cell == "None":
                assert values == [None], (key, preset)
                continue
            doc = [float(v) for v in re.findall(r"\d+(?:\.\d+)?", cell.replace("vox", ""))]
            want = [v for value in values for v in _numbers(value)]
            if doc == [0.0] and names[0].endswith("_prob"):
                want = want[:1]
            assert doc == want, (key, preset, cell, values)
            if "flip_axes" in names and values[0] > 0:
                assert ("all" in cell) == (p.flip_axes is None), (preset, cell)
            if "dropout_fill" in names and values[0] > 0:
                assert cell.endswith("mean)") and p.dropout_fill == "mean", (preset, cell)


def test_every_preset_interpolates_trilinearly_with_border_padding():
    """docs: interpolated views are trilinear (``bilinear`` in grid_sample's names), ``padding_mode="border"``."""
    assert "trilinear, `align_corners=False`, `padding_mode=\"border\"`" in DOC
    for name in PRESETS:
        assert (get_preset(name).interpolation, get_preset(name).padding_mode) == ("bilinear", "border")


def test_transforms_run_in_the_documented_order():
    """docs: crop, flips, affine and elastic fused into one resampling, then "bias field, gamma, scale/shift, blur,
    low resolution, motion, ghosting, Gaussian noise, Rician noise, cutout"."""
    order = re.search(r"in this fixed order: ([^.]+)\.", DOC.replace("\n", " ")).group(1)
    names = {"bias field": RandomBiasField, "gamma": RandomGamma, "scale/shift": RandomScaleShift,
             "blur": RandomGaussianBlur, "low resolution": RandomLowResolution, "motion": RandomMotion,
             "ghosting": RandomGhosting, "Gaussian noise": RandomGaussianNoise, "Rician noise": RandomRicianNoise,
             "cutout": RandomCutout}
    documented = [names[s.strip()] for s in order.split(",")]
    all_on = {f.name: 1.0 for f in fields(AugmentParams) if f.name.endswith("_prob")}
    pipe = build_view_pipeline("brain_mri", 3, (8, 8, 8), overrides=all_on)
    assert [type(t) for t in pipe.others] == documented
    assert [type(t) for t in pipe.spatial] == [RandomFlip, RandomAffine, RandomElastic]


@pytest.mark.parametrize("key", ["crop_scale", "crop_ratio", "intensity_scale", "lowres_factor"])  # gamma, scale: test_views
def test_ranges_that_are_drawn_log_uniformly_or_divide_must_be_positive(key):
    with pytest.raises(ValueError, match=f"{key}.*positive"):
        get_preset("ct", {key: (0.0, 1.0)})


def test_dropout_size_is_a_fraction_up_to_the_whole_side():
    assert get_preset("ct", {"dropout_size": (0.5, 1.0)}).dropout_size == (0.5, 1.0)
    with pytest.raises(ValueError, match="dropout_size"):
        get_preset("ct", {"dropout_size": (0.5, 1.01)})
