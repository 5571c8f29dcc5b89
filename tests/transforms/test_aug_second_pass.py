"""Second-pass mutation tests of the augmentations: invariances, limits and naive references."""

from __future__ import annotations

import pytest
import torch
from aug_helpers import blob_phantom, forced_params, gen

from medssl.transforms.artefacts import RandomCutout, RandomGhosting, RandomMotion
from medssl.transforms.intensity import RandomGamma
from medssl.transforms.spatial import RandomAffine
from medssl.transforms.views import build_view_pipeline, make_views


def test_gamma_commutes_with_an_affine_change_of_units():
    # gamma acts on (x - min) / range: rescaling or offsetting the input (a [0, 1e-3] image, a
    # z-scored one) must rescale/offset the output alike, whatever the size of the range
    x = blob_phantom((12, 14), batch=3)
    tr = RandomGamma(1.0)
    p = forced_params(tr, x, gamma=[0.5, 1.0, 2.0])
    ref = tr.apply(x, p)
    for a, c in [(1e-3, 0.0), (0.2, -0.5), (40.0, -3.0)]:
        assert torch.allclose(tr.apply(x * a + c, p), ref * a + c, atol=1e-5 * max(1.0, a))


def test_ghost_counts_span_the_documented_integer_range_inclusive():
    # docs/augmentations.md: ghosting count 2-6, both ends drawn
    counts = RandomGhosting(1.0, count=(2, 6)).sample_params((600, 1, 8, 8), gen(0))["count"]
    assert set(counts.tolist()) == {2, 3, 4, 5, 6}


def test_phase_encoding_axis_is_drawn_from_every_allowed_axis():
    for tr in (RandomMotion(1.0), RandomGhosting(1.0)):
        assert set(tr.sample_params((300, 1, 6, 6, 6), gen(1))["axis"].tolist()) == {0, 1, 2}
    assert set(RandomGhosting(1.0, axes=(0, 2)).sample_params((300, 1, 6, 6, 6), gen(2))["axis"].tolist()) == {0, 2}


def test_cutout_boxes_of_a_view_are_sized_and_placed_on_the_view_not_the_scan():
    # docs/augmentations.md: "box side as a fraction of the view side"; the scan here is 4x the view
    over = {k: 0.0 for k in ("flip_prob", "affine_prob", "elastic_prob", "bias_prob", "gamma_prob", "scale_shift_prob",
                             "blur_prob", "lowres_prob", "motion_prob", "ghosting_prob", "noise_prob", "rician_prob")}
    pipe = build_view_pipeline("brain_mri", 3, (8, 8, 8), {**over, "dropout_prob": 1.0})
    (key,) = [k for k in pipe.sample_params((1, 1, 32, 32, 32), gen(0)) if k.endswith("cutout")]
    p = pipe.sample_params((50, 1, 32, 32, 32), gen(0))[key]
    assert p["size"].max() <= round(0.25 * 8) and (p["start"] + p["size"]).max() <= 8


def test_cutout_box_sides_are_the_drawn_fraction_of_the_side_on_average():
    # side = fraction x extent rounded to whole voxels: unbiased, mean 0.175 x 40 = 7 voxels
    size = RandomCutout(1.0, holes=8, size=(0.1, 0.25)).sample_params((500, 1, 40, 40), gen(3))["size"]
    assert abs(size.mean().item() - 7.0) < 0.15


def test_zero_views_are_refused_with_a_clear_message():
    pipe = build_view_pipeline("none", 2, (4, 4))
    with pytest.raises(ValueError, match="n_views must be >= 1"):
        make_views(pipe, torch.zeros(2, 1, 6, 6), 0, gen(0))


def test_brain_mri_views_ghost_and_move_along_any_phase_encoding_axis():
    pipe = build_view_pipeline("brain_mri", 3, (6, 6, 6), {"ghosting_prob": 1.0, "motion_prob": 1.0})
    params = pipe.sample_params((200, 1, 8, 8, 8), gen(4))
    for name in ("ghosting", "motion"):
        (key,) = [k for k in params if k.endswith(name)]
        assert set(params[key]["axis"].tolist()) == {0, 1, 2}


@pytest.mark.parametrize("prob", [0.3, 0.5])
def test_flip_probability_below_one_half_still_flips_some_views(prob):
    # full-size crop, flips only: each view is the scan or its mirror image along axis 0, both occur
    x = torch.randn(1, 1, 5, 6)
    pipe = build_view_pipeline("none", 2, (5, 6), {"flip_prob": prob, "flip_axes": (0,)})
    v = make_views(pipe, x, 40, gen(5))[0]
    same = [torch.allclose(vi, x[0], atol=1e-5) for vi in v]
    mirrored = [torch.allclose(vi, x[0].flip(1), atol=1e-5) for vi in v]
    assert all(a or b for a, b in zip(same, mirrored)) and any(same) and any(mirrored)


def test_cutout_fill_value_of_the_preset_reaches_the_views():
    x = torch.ones(4, 1, 12, 12)
    pipe = build_view_pipeline("none", 2, (12, 12), {"dropout_prob": 1.0, "dropout_fill": -7.0})
    v = pipe(x, gen(6))
    assert (v == -7.0).flatten(1).any(1).all() and set(v.unique().tolist()) == {-7.0, 1.0}


def test_brain_mri_bias_field_has_the_documented_legendre_order_3():
    # docs/augmentations.md preset table: bias field "Legendre order 3" -> cubic terms present, none above
    pipe = build_view_pipeline("brain_mri", 3, (6, 6, 6), {"bias_prob": 1.0})
    params = pipe.sample_params((2, 1, 8, 8, 8), gen(7))
    (key,) = [k for k in params if k.endswith("bias_field")]
    c = params[key]["coeffs"]
    degree = sum(torch.meshgrid(*[torch.arange(n) for n in c.shape[1:]], indexing="ij"))
    assert degree.max() >= 3 and c[:, degree == 3].abs().min() > 0 and (c[:, degree > 3] == 0).all()


def test_brain_mri_rician_noise_uses_its_own_documented_std_range():
    # docs/augmentations.md preset table: rician std 0-0.05 (Gaussian noise has its own range)
    pipe = build_view_pipeline("brain_mri", 3, (6, 6, 6), {"rician_prob": 1.0, "noise_std": (0.5, 1.0)})
    params = pipe.sample_params((200, 1, 8, 8, 8), gen(8))
    (key,) = [k for k in params if k.endswith("rician_noise")]
    std = params[key]["std"]
    assert std.min() >= 0 and 0.045 < std.max() <= 0.05


def test_affine_zoom_is_log_uniform_so_zoom_in_and_out_are_equally_likely():
    zoom = RandomAffine(1.0, scale=(0.5, 2.0)).sample_params((4000, 1, 4, 4), gen(9))["zoom"][:, 0]
    assert abs(zoom.median().item() - 1.0) < 0.05 and abs((zoom < 1).float().mean().item() - 0.5) < 0.03
