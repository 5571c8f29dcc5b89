"""View pipelines: presets, overrides, shapes, determinism, real-data grid and benchmark smoke."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from aug_helpers import blob_phantom, gen, real_path

from medssl.transforms.presets import PRESETS, AugmentParams, get_preset
from medssl.transforms.views import build_view_pipeline, make_views, pipeline_from_params

ALL_ON = {f.name: 1.0 for f in fields(AugmentParams) if f.name.endswith("_prob")}


@pytest.mark.parametrize("preset,dims,crop,shape", [
    ("brain_mri", 3, (12, 14, 10), (20, 22, 18)), ("ct", 3, (12, 12, 12), (16, 16, 16)),
    ("chest_xray", 2, (24, 20), (32, 30)), ("none", 2, (8, 8), (12, 12)), ("none", 3, (8, 8, 8), (12, 12, 12)),
])
def test_presets_shapes_dtype_determinism_variety(preset, dims, crop, shape):
    x = blob_phantom(shape, batch=3)
    pipe = build_view_pipeline(preset, spatial_dims=dims, crop_size=crop, overrides={})
    a, b, c = pipe(x, gen(0)), pipe(x, gen(0)), pipe(x, gen(1))
    assert a.shape == (3, 1) + crop and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()


@pytest.mark.parametrize("dims", [2, 3])
def test_every_transform_on_at_once_float64(dims):
    shape, crop = ((18, 20, 16), (10, 12, 8)) if dims == 3 else ((24, 20), (16, 12))
    x = blob_phantom(shape, batch=3).double()
    pipe = build_view_pipeline("none", dims, crop, overrides=ALL_ON)
    assert len(pipe.spatial) == 3 and len(pipe.others) == 10
    y = make_views(pipe, x, 2, gen(3))
    assert y.shape == (3, 2, 1) + crop and y.dtype == torch.float64 and torch.isfinite(y).all()


def test_make_views_are_independent_and_reproducible():
    x = blob_phantom((20, 20, 20), batch=2)
    pipe = build_view_pipeline("brain_mri", 3, (12, 12, 12))
    v1, v2 = make_views(pipe, x, 3, gen(7)), make_views(pipe, x, n_views=3, generator=gen(7))
    assert v1.shape == (2, 3, 1, 12, 12, 12) and torch.equal(v1, v2)
    assert not torch.equal(v1[:, 0], v1[:, 1])


def test_none_preset_is_a_plain_crop_and_identity_at_full_size():
    x = torch.randn(2, 2, 10, 12, 14)
    same = build_view_pipeline("none", 3, (10, 12, 14))(x, gen(0))
    assert torch.equal(same, x)
    v = make_views(build_view_pipeline("none", 3, (4, 5, 6)), x, 2, gen(1))
    for b in range(2):
        for k in range(2):  # each view is a contiguous block of its own sample
            assert any(torch.equal(v[b, k], x[b, :, i:i + 4, j:j + 5, l:l + 6])
                       for i in range(7) for j in range(8) for l in range(9))


def test_intensity_only_pipeline_keeps_anatomy_in_place():
    x = blob_phantom((16, 16, 16), batch=4)
    over = {"gamma_prob": 1.0, "scale_shift_prob": 1.0, "bias_prob": 1.0, "intensity_shift": 0.0}
    y = build_view_pipeline("none", 3, (16, 16, 16), overrides=over)(x, gen(0))
    assert torch.equal(y[x == 0], x[x == 0]) and not torch.equal(y, x)


def test_unknown_key_names_valid_keys_and_suggests():
    with pytest.raises(ValueError) as e:
        build_view_pipeline("brain_mri", 3, (8, 8, 8), overrides={"flip_prb": 0.3})
    msg = str(e.value)
    assert "'flip_prb'" in msg and "Did you mean 'flip_prob'" in msg and "noise_std" in msg


def test_unknown_preset_names_the_presets():
    with pytest.raises(ValueError) as e:
        build_view_pipeline("brian_mri", 3, (8, 8, 8))
    assert "Did you mean 'brain_mri'" in str(e.value) and all(p in str(e.value) for p in PRESETS)


@pytest.mark.parametrize("over,match", [({"flip_prob": 1.5}, "flip_prob"), ({"gamma": (2.0, 1.0)}, "gamma"),
                                        ({"padding_mode": "wrap"}, "padding_mode"), ({"flip_axes": (3,)}, "flip_axes")])
def test_invalid_values_are_rejected(over, match):
    with pytest.raises(ValueError, match=match):
        build_view_pipeline("ct", 3, (8, 8, 8), overrides=over)


def test_yaml_lists_are_accepted_and_dims_checked():
    assert get_preset("ct", {"gamma": [0.9, 1.1]}).gamma == (0.9, 1.1)
    with pytest.raises(ValueError, match="2D"):
        build_view_pipeline("chest_xray", 3, (8, 8, 8))
    with pytest.raises(ValueError, match="crop_size"):
        pipeline_from_params(AugmentParams(), 3, (8, 8))


def test_generator_on_another_device_is_explained():
    x = torch.zeros(1, 1, 8, 8)
    pipe = build_view_pipeline("none", 2, (4, 4))
    with pytest.raises(ValueError, match="Generator"):
        pipe.sample_params(x.shape, gen(0), device="meta")


def _benchmark_module():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "augment.py"
    spec = importlib.util.spec_from_file_location("augment_benchmark", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_view_grid_png_from_real_ixi_and_cxr(tmp_path):
    real_path("data", "ixi_t1_hh_2mm", "images")
    real_path("data", "dicom_cxr_nih_dx")
    bench = _benchmark_module()
    out = tmp_path / "grid.png"
    bench.main(["--grid", str(out), "--no-speed"])
    import matplotlib.image

    img = matplotlib.image.imread(out)
    assert img.shape[0] > 500 and img.shape[1] > 800 and img[..., :3].std() > 0.1


def test_benchmark_quick_smoke(tmp_path):
    real_path("data", "ixi_t1_hh_2mm", "images")
    bench = _benchmark_module()
    res = bench.main(["--quick", "--repeats", "1", "--json", str(tmp_path / "r.json")])
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["batch"] == res["batch"] == 4
    assert saved["medssl_cpu_s_per_view"] > 0 and saved["monai_cpu_s_per_view"] > 0


@pytest.mark.parametrize("override, message", [
    ({"gamma": (0.0, 1.5)}, r"gamma=\(0.0, 1.5\) must be positive"),
    ({"scale": (-1.0, 1.0)}, r"scale=\(-1.0, 1.0\) must be positive"),
    ({"dropout_size": (0.5, 1.5)}, r"dropout_size=\(0.5, 1.5\) is a fraction of the view side"),
    ({"dropout_size": (0.0, 0.2)}, "use 0 < low <= high <= 1"),
    ({"blur_sigma": (-1.0, 1.0)}, r"blur_sigma=\(-1.0, 1.0\) is a standard deviation"),  # was: no blur below 0
    ({"noise_std": (-0.1, 0.1)}, r"noise_std=\(-0.1, 0.1\) is a standard deviation"),
    ({"rician_std": (-0.05, 0.0)}, r"rician_std=\(-0.05, 0.0\) is a standard deviation: use 0 <= low <= high"),
])
def test_ranges_outside_their_domain_fail_when_the_pipeline_is_built(override, message):
    """Not at the first batch (gamma's log-uniform draw) or silently (a box larger than the view)."""
    with pytest.raises(ValueError, match=message):
        AugmentParams(**override)


def test_views_of_one_sample_get_independent_crops():
    """Crop only ("none" preset): each of the V views of a sample is cropped at its own random place."""
    x = torch.arange(4 * 24 * 24 * 24, dtype=torch.float32).reshape(4, 1, 24, 24, 24)
    v = make_views(build_view_pipeline("none", 3, (8, 8, 8)), x, 2, gen(3))
    corner = v[:, :, 0, 0, 0, 0]  # the crop origin's value encodes its position
    assert (corner[:, 0] != corner[:, 1]).all()
