"""Models Genesis corruptions against the paper's definitions (Zhou et al., MedIA 2021)."""

from __future__ import annotations

import pytest
import torch
from aug_helpers import blob_phantom, gen

from medssl.transforms.genesis import GenesisCorruption, bezier_curve, bezier_transform, local_pixel_shuffle


def _unit(shape, batch=4, seed=0):
    x = blob_phantom(shape, batch=batch, seed=seed)
    return x / x.amax(dim=tuple(range(1, x.ndim)), keepdim=True)


def test_bezier_curve_is_monotone_with_fixed_end_points():
    p1, p2 = torch.rand(200, 2, generator=gen(0)), torch.rand(200, 2, generator=gen(1))
    xs, ys = bezier_curve(p1, p2)
    assert torch.all(xs.diff(dim=1) >= -1e-7) and torch.all(ys.diff(dim=1) >= -1e-7)
    assert torch.allclose(xs[:, 0], torch.zeros(200)) and torch.allclose(ys[:, -1], torch.ones(200))
    # a naive evaluation of the Bernstein form at t = 0.3
    i = 307
    t = i / (xs.shape[1] - 1)
    naive = 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3
    assert torch.allclose(torch.stack([xs[:, i], ys[:, i]], 1), naive, atol=1e-5)


def test_bezier_transform_preserves_or_reverses_intensity_order():
    x = torch.rand(2, 1, 500, generator=gen(2)).reshape(2, 1, 20, 25)
    p1, p2 = torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([[0.1, 0.9], [0.7, 0.3]])
    y = bezier_transform(x, p1, p2, torch.tensor([False, True]))
    order = x.flatten(1).argsort(1)
    ys = y.flatten(1).gather(1, order)
    assert torch.all(ys[0].diff() >= -1e-6) and torch.all(ys[1].diff() <= 1e-6)
    assert y.min() >= 0 and y.max() <= 1
    ident = bezier_transform(x, torch.tensor([[1 / 3, 1 / 3]] * 2), torch.tensor([[2 / 3, 2 / 3]] * 2),
                             torch.tensor([False, False]))  # collinear control points: y = x
    assert torch.allclose(ident, x, atol=1e-4)


@pytest.mark.parametrize("shape,block", [((12, 16), (4, 4)), ((9, 12, 10), (3, 4, 2))])
def test_pixel_shuffle_preserves_each_tile_multiset(shape, block):
    x = torch.rand((3, 2) + shape, generator=gen(3))
    offset = [1] * len(shape)
    n = [(s - o) // b for s, o, b in zip(shape, offset, block)]
    selected = torch.rand(3, int(torch.tensor(n).prod()), generator=gen(4)) < 0.5
    y = local_pixel_shuffle(x, block, offset, selected, gen(5))
    assert not torch.equal(x, y)
    tiles_changed = 0
    for idx in torch.cartesian_prod(*[torch.arange(k) for k in n]).reshape(-1, len(shape)):
        sl = tuple(slice(o + i * b, o + (i + 1) * b) for o, i, b in zip(offset, idx.tolist(), block))
        tx, ty = x[(slice(None), slice(None)) + sl].flatten(2), y[(slice(None), slice(None)) + sl].flatten(2)
        assert torch.equal(tx.sort(-1).values, ty.sort(-1).values)
        tiles_changed += int(not torch.equal(tx, ty))
    assert tiles_changed > 0
    outside = torch.ones(shape, dtype=torch.bool)
    outside[tuple(slice(o, o + k * b) for o, k, b in zip(offset, n, block))] = False
    assert torch.equal(x[..., outside], y[..., outside])


def test_target_is_the_input_and_corruption_is_deterministic():
    x = _unit((16, 16, 16))
    x0 = x.clone()
    g = GenesisCorruption()
    (c1, t1), (c2, _), (c3, _) = g(x, gen(1)), g(x, gen(1)), g(x, gen(2))
    assert torch.equal(t1, x0) and torch.equal(x, x0)
    assert torch.equal(c1, c2) and not torch.equal(c1, c3)
    assert c1.shape == x.shape and c1.min() >= 0 and c1.max() <= 1


def test_inpainting_and_outpainting_touch_only_their_region():
    x = _unit((20, 24), batch=6)
    g = GenesisCorruption(nonlinear_prob=0.0, shuffle_prob=0.0, paint_prob=1.0, outpaint_prob=0.5)
    from medssl.transforms.genesis import box_union_mask

    p = g.sample_params(x.shape, gen(7))
    y = g.apply(x, p)
    active = torch.arange(g.windows)[None] < p["n_windows"][:, None]
    boxes = box_union_mask(p["box_start"], p["box_size"], active, (20, 24))[:, 0]
    for b in range(6):
        keep = ~boxes[b] if not p["outpaint"][b] else boxes[b]
        assert torch.equal(y[b, 0][keep], x[b, 0][keep])
        assert (y[b, 0][~keep] != x[b, 0][~keep]).float().mean() > 0.9  # replaced by uniform noise
    assert p["outpaint"].any() and (~p["outpaint"]).any()


def test_default_probabilities_are_the_papers():
    g = GenesisCorruption()
    p = g.sample_params((4000, 1, 8, 8), gen(0))
    rates = {k: p[k].float().mean().item() for k in ("nonlinear", "shuffle", "paint", "outpaint")}
    assert abs(rates["nonlinear"] - 0.9) < 0.02 and abs(rates["shuffle"] - 0.5) < 0.03
    assert abs(rates["paint"] - 0.9) < 0.02 and abs(rates["outpaint"] - 0.8) < 0.02


def test_invalid_probability_is_rejected():
    with pytest.raises(ValueError, match="paint_prob"):
        GenesisCorruption(paint_prob=1.2)


def test_painting_boxes_start_anywhere_from_the_first_to_the_last_fitting_voxel():
    params = GenesisCorruption().sample_params((3000, 1, 10, 10), gen(0))
    end = params["box_start"] + params["box_size"]
    assert params["box_start"].min() == 0 and end.max() == 10 and (end <= 10).all()


def test_pixel_shuffling_touches_the_drawn_fraction_of_tiles_only():
    """Shuffling only: the share of changed 4x4 tiles is the drawn fraction (0.25), not all tiles, not 1 - f."""
    x = torch.rand(8, 1, 64, 64, generator=gen(1))  # distinct values: a shuffled tile differs
    tr = GenesisCorruption(nonlinear_prob=0.0, shuffle_prob=1.0, paint_prob=0.0, shuffle_block=(4, 4),
                           shuffle_fraction=(0.25, 0.25))
    p = tr.sample_params(x.shape, gen(2))
    p["offset"][:] = 0
    y = tr.apply(x, p)
    changed = (y != x).reshape(8, 16, 4, 16, 4).any(4).any(2).float()  # (B, tile rows, tile cols)
    assert abs(changed.mean().item() - 0.25) < 0.04


def test_out_painting_always_keeps_at_least_one_window():
    """Out-painting replaces everything outside the windows: with no window it would leave only noise."""
    x = _unit((16, 16), batch=64)
    tr = GenesisCorruption(nonlinear_prob=0.0, shuffle_prob=0.0, paint_prob=1.0, outpaint_prob=1.0, windows=1)
    y = tr.apply(x, tr.sample_params(x.shape, gen(3)))
    assert (y == x).reshape(64, -1).any(1).all()


def test_pixel_shuffling_happens_on_axes_shorter_than_two_blocks():
    """The tile grid's offset leaves room for at least one tile: on a 6-voxel axis with blocks up to 8 every
    call shuffles (an offset past shape - block left no tile at all, so most calls did nothing)."""
    x = torch.rand(2, 1, 6, 32, generator=gen(0))
    tr = GenesisCorruption(nonlinear_prob=0.0, shuffle_prob=1.0, paint_prob=0.0, shuffle_block=(8, 8),
                           shuffle_fraction=(1.0, 1.0))
    for seed in range(10):
        assert not torch.equal(tr(x, gen(seed))[0], x)
