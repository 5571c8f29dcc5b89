"""Models Genesis corruptions, parameter ranges and per-sample selection (Zhou et al., MedIA 2021; docs/augmentations.md):
the box mask against naive slicing, tile sides 2-8, box sides per painting kind, 1-5 windows, and each corruption
touching only the samples drawn for it, painting last."""

from __future__ import annotations

import torch
from aug_helpers import gen

from medssl.transforms.genesis import GenesisCorruption, bezier_transform, box_union_mask


def test_box_union_mask_is_the_union_of_naive_half_open_slices_of_active_boxes():
    start = torch.randint(0, 6, (4, 3, 3), generator=gen(0)).float()
    size = torch.randint(1, 5, (4, 3, 3), generator=gen(1)).float()
    active = torch.rand(4, 3, generator=gen(2)) < 0.6
    active[0] = False  # no box: nothing
    mask = box_union_mask(start, size, active, (9, 8, 10))
    naive = torch.zeros(4, 1, 9, 8, 10, dtype=torch.bool)
    for b in range(4):
        for w in range(3):
            if active[b, w]:
                lo, n = start[b, w].long().tolist(), size[b, w].long().tolist()
                naive[b, 0, lo[0]:lo[0] + n[0], lo[1]:lo[1] + n[1], lo[2]:lo[2] + n[2]] = True
    assert active[1:].any() and (~active[1:]).any()
    assert torch.equal(mask, naive)


def test_tile_sides_cover_2_to_8_voxels_and_the_grid_offset_every_phase_that_leaves_a_tile():
    """Tile sides are drawn from 2-8 inclusive (docs); the grid origin from 0 .. min(side, axis - side + 1) - 1."""
    tr = GenesisCorruption()
    sides = torch.cat([tr.sample_params((1, 1, 16, 16, 16), gen(s))["block"] for s in range(150)])
    assert set(sides.tolist()) == set(range(2, 9))
    fixed = GenesisCorruption(shuffle_block=(8, 8))
    offsets = torch.stack([fixed.sample_params((1, 1, 10, 20), gen(s))["offset"] for s in range(200)])
    assert set(offsets[:, 0].tolist()) == {0, 1, 2} and set(offsets[:, 1].tolist()) == set(range(8))


def test_box_sides_follow_the_painting_kind_and_windows_number_1_to_5():
    """Side 10: out-painting boxes 3/7-4/7 of it (4.3-5.7 → 4, 5 or 6 voxels rounded), in-painting 1/6-1/3 (1.7-3.3
    → 2 or 3), independently per axis; 1 to 5 windows per sample."""
    p = GenesisCorruption().sample_params((4000, 1, 10, 10), gen(0))
    out, size = p["outpaint"], p["box_size"]
    assert set(size[out].flatten().tolist()) == {4.0, 5.0, 6.0}
    assert set(size[~out].flatten().tolist()) == {2.0, 3.0}
    assert (size[..., 0] != size[..., 1]).float().mean() > 0.3  # boxes, not squares
    assert set(p["n_windows"].tolist()) == {1, 2, 3, 4, 5}


def _only(**probs) -> GenesisCorruption:
    return GenesisCorruption(**{"nonlinear_prob": 0.0, "shuffle_prob": 0.0, "paint_prob": 0.0, **probs})


def test_each_corruption_touches_only_the_samples_drawn_for_it():
    """With one corruption at probability 0.5, the samples not drawn for it are returned unchanged, the others
    changed (shuffling in a batch where some sample shuffles, painting, the Bézier transform)."""
    x = torch.rand(12, 1, 16, 16, generator=gen(1))  # distinct values: any shuffle or transform shows
    for key, tr in [("shuffle", _only(shuffle_prob=0.5, shuffle_fraction=(1.0, 1.0))), ("paint", _only(paint_prob=0.5)),
                    ("nonlinear", _only(nonlinear_prob=0.5))]:
        p = tr.sample_params(x.shape, gen(2))
        drawn = p[key]
        assert drawn.any() and (~drawn).any(), key
        changed = (tr.apply(x, p) != x).flatten(1).any(1)
        assert torch.equal(changed, drawn), key


def test_every_sample_is_shuffled_by_its_own_permutations():
    """The same image in every row, every tile shuffled: the samples come out different (permutations drawn per
    sample and tile, not one set for the whole batch)."""
    x = torch.rand(1, 1, 16, 16, generator=gen(6)).expand(6, 1, 16, 16)
    y = _only(shuffle_prob=1.0, shuffle_fraction=(1.0, 1.0))(x, gen(7))[0].flatten(1)
    assert y.unique(dim=0).shape[0] == 6


def test_every_sample_gets_its_own_curve_reversed_for_half_of_them():
    """Bézier transform only, the same image in every row: each sample has its own control points (its own curve,
    not one per batch), and about half come out in reverse intensity order (docs: flipped to a decreasing curve
    half of the time)."""
    x = torch.linspace(0.05, 0.95, 64).reshape(1, 1, 8, 8).expand(400, 1, 8, 8)
    y = _only(nonlinear_prob=1.0)(x, gen(3))[0].flatten(1)
    reversed_ = (y[:, -1] < y[:, 0]).float().mean().item()
    assert 0.4 < reversed_ < 0.6, reversed_
    assert y[y[:, -1] > y[:, 0]].unique(dim=0).shape[0] > 150


def test_painting_comes_last_with_uniform_noise():
    """In-painting after a Bézier curve that darkens most intensities: the kept voxels are the transformed image,
    the painted ones uniform noise on [0, 1] (mean 1/2, a quarter below 1/4), not noise through the curve."""
    x = torch.rand(64, 1, 24, 24, generator=gen(4))
    tr = GenesisCorruption(nonlinear_prob=1.0, shuffle_prob=0.0, paint_prob=1.0, outpaint_prob=0.0)
    p = tr.sample_params(x.shape, gen(5))
    p["p1"] = p["p2"] = torch.tensor([[1.0, 0.0]]).expand(64, 2)
    p["flip_curve"] = torch.zeros(64, dtype=torch.bool)
    y = tr.apply(x, p)
    active = torch.arange(tr.windows)[None] < p["n_windows"][:, None]
    painted = box_union_mask(p["box_start"], p["box_size"], active, (24, 24))
    curve = bezier_transform(x, p["p1"], p["p2"], p["flip_curve"])
    assert torch.equal(y[~painted], curve[~painted]) and curve.mean() < 0.2
    noise = y[painted]
    assert noise.numel() > 5000 and noise.min() >= 0 and noise.max() <= 1
    assert abs(noise.mean().item() - 0.5) < 0.02 and abs((noise < 0.25).float().mean().item() - 0.25) < 0.02
