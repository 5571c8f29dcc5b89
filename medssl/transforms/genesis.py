"""Models Genesis image corruptions for restoration pre-training, on whole batches.

Written from the paper's description (Zhou et al., "Models Genesis", Medical Image
Analysis 67:101840, 2021; MICCAI 2019), not from its code. Input is a ``(B, C, *S)`` batch
in [0, 1] as in the paper; :class:`GenesisCorruption` returns ``(corrupted, target)`` with
``target`` the uncorrupted input. Per sample, in this order:

1. **local pixel shuffling** (prob 0.5): voxels are permuted inside small windows, which
   keeps the global shape but destroys local texture. Windows here are the tiles of a
   random grid (tile side ``block`` voxels per axis), a random fraction of which is
   shuffled; every tile keeps its multiset of values.
2. **non-linear intensity transformation** (prob 0.9): each intensity ``v`` becomes ``y``
   on a cubic Bézier curve through end points (0, 0), (1, 1) and two random control
   points in [0, 1]^2 — monotone, so intensities keep their order (or its reverse when
   the curve is flipped, half of the time) and the network must restore absolute values.
3. **out-painting / in-painting** (prob 0.9; out-painting 80 %, in-painting 20 %): random
   boxes; in-painting fills the inside of the boxes with uniform noise, out-painting keeps
   the union of the boxes and fills everything outside with uniform noise.

The probabilities are those the authors report as defaults; flips, which their pipeline
also applies to input and target, are left to the spatial augmentations
(:mod:`medssl.transforms.views`) so that ``target`` is always the input.
"""

from __future__ import annotations

from typing import Sequence

import torch

from medssl.transforms.base import (Params, bernoulli, check_batch, draw_seed, generator_from, resolve_device,
                                    uniform)


def bezier_curve(p1: torch.Tensor, p2: torch.Tensor, n: int = 1025) -> tuple[torch.Tensor, torch.Tensor]:
    """Points of the cubic Bézier curve from (0, 0) to (1, 1) with control points p1, p2.

    ``B(t) = 3(1-t)^2 t p1 + 3(1-t) t^2 p2 + t^3 (1, 1)``. With control points in [0, 1]^2
    both coordinates are non-decreasing in t (the Bernstein coefficients of the derivative,
    ``(a, b, c) = (p1, p2 - p1, 1 - p2)``, satisfy ``b >= -sqrt(a c)``), so y(x) is monotone.

    Args:
        p1, p2: (B, 2) control points (x, y).
        n: number of curve samples.

    Returns:
        xs, ys: (B, n) each, xs non-decreasing from 0 to 1.
    """
    t = torch.linspace(0, 1, n, device=p1.device, dtype=torch.float32)[None]
    w1, w2, w3 = 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
    xs = w1 * p1[:, :1] + w2 * p2[:, :1] + w3
    ys = w1 * p1[:, 1:] + w2 * p2[:, 1:] + w3
    return xs, ys


def bezier_transform(x: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Map intensities in [0, 1] through each sample's Bézier curve (flipped: ``1 - y``).

    Args:
        x: (B, C, *S) in [0, 1] (clamped). p1, p2: (B, 2). flip: (B,) bool.
    """
    xs, ys = bezier_curve(p1, p2)
    v = x.reshape(x.shape[0], -1).float().clamp(0, 1)
    hi = torch.searchsorted(xs.contiguous(), v.contiguous()).clamp(1, xs.shape[1] - 1)
    x0, x1 = xs.gather(1, hi - 1), xs.gather(1, hi)
    y0, y1 = ys.gather(1, hi - 1), ys.gather(1, hi)
    w = ((v - x0) / (x1 - x0).clamp(min=1e-12)).clamp(0, 1)
    y = y0 + w * (y1 - y0)
    y = torch.where(flip[:, None], 1 - y, y)
    return y.reshape(x.shape).to(x.dtype)


def local_pixel_shuffle(x: torch.Tensor, block: Sequence[int], offset: Sequence[int], selected: torch.Tensor,
                        generator: torch.Generator) -> torch.Tensor:
    """Permute voxels inside the selected tiles of a regular grid (all channels alike).

    Args:
        x: (B, C, *S).
        block: tile side per spatial axis (voxels).
        offset: grid origin per axis (voxels, < block and <= shape - block, so at least one tile fits).
        selected: (B, T) bool, which of the T tiles (row-major over the tile grid) to shuffle.
        generator: drives the permutations.

    Returns:
        (B, C, *S); each tile's multiset of voxel values is preserved.
    """
    b, c, *shape = x.shape
    nd = len(shape)
    n = [(shape[a] - offset[a]) // block[a] for a in range(nd)]
    region = tuple(slice(offset[a], offset[a] + n[a] * block[a]) for a in range(nd))
    r = x[(slice(None), slice(None)) + region]
    split = [b, c] + [v for a in range(nd) for v in (n[a], block[a])]
    order = [0, 1] + [2 + 2 * a for a in range(nd)] + [3 + 2 * a for a in range(nd)]
    n_tiles, size = int(torch.tensor(n).prod()), int(torch.tensor(list(block)).prod())
    tiles = r.reshape(split).permute(order).reshape(b, c, n_tiles, size)
    keys = torch.rand((b, n_tiles, size), generator=generator, device=x.device)
    perm = keys.argsort(-1)
    perm = torch.where(selected[..., None], perm, torch.arange(size, device=x.device))
    tiles = tiles.gather(3, perm[:, None].expand(b, c, n_tiles, size))
    inverse = [order.index(i) for i in range(len(order))]
    back = tiles.reshape([b, c] + n + list(block)).permute(inverse).reshape(r.shape)
    out = x.clone()
    out[(slice(None), slice(None)) + region] = back
    return out


def box_union_mask(start: torch.Tensor, size: torch.Tensor, active: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """(B, 1, *shape) bool union of boxes; start/size (B, W, D) voxels, active (B, W) bool."""
    nd = len(shape)
    out = torch.zeros((start.shape[0], 1) + tuple(shape), dtype=torch.bool, device=start.device)
    for w in range(start.shape[1]):  # small loop over windows, whole batch at once
        inside = active[:, w].reshape((-1, 1) + (1,) * nd)
        for a in range(nd):
            cshape = [1, 1] + [1] * nd
            cshape[2 + a] = shape[a]
            c = torch.arange(shape[a], device=start.device).reshape(cshape)
            lo = start[:, w, a].reshape((-1, 1) + (1,) * nd)
            inside = inside & (c >= lo) & (c < lo + size[:, w, a].reshape((-1, 1) + (1,) * nd))
        out |= inside
    return out


class GenesisCorruption:
    """The Models Genesis corruption of a batch; ``(corrupted, target) = corrupt(x, generator)``.

    Args:
        nonlinear_prob: probability of the Bézier intensity transform.
        shuffle_prob: probability of local pixel shuffling.
        paint_prob: probability of painting (in- or out-).
        outpaint_prob: given painting, probability of out-painting (else in-painting).
        shuffle_block: (min, max) tile side in voxels, drawn per call and axis.
        shuffle_fraction: (min, max) fraction of tiles shuffled, per sample.
        windows: maximum number of painting boxes per sample (at least one).
        inpaint_size, outpaint_size: (min, max) box side as a fraction of the image side.
    """

    def __init__(self, nonlinear_prob: float = 0.9, shuffle_prob: float = 0.5, paint_prob: float = 0.9,
                 outpaint_prob: float = 0.8, shuffle_block: tuple[int, int] = (2, 8),
                 shuffle_fraction: tuple[float, float] = (0.2, 0.6), windows: int = 5,
                 inpaint_size: tuple[float, float] = (1 / 6, 1 / 3),
                 outpaint_size: tuple[float, float] = (3 / 7, 4 / 7)) -> None:
        for name, p in [("nonlinear_prob", nonlinear_prob), ("shuffle_prob", shuffle_prob),
                        ("paint_prob", paint_prob), ("outpaint_prob", outpaint_prob)]:
            if not 0 <= p <= 1:
                raise ValueError(f"GenesisCorruption: {name} must be in [0, 1], got {p}")
        self.nonlinear_prob, self.shuffle_prob, self.paint_prob = nonlinear_prob, shuffle_prob, paint_prob
        self.outpaint_prob, self.shuffle_block = outpaint_prob, (int(shuffle_block[0]), int(shuffle_block[1]))
        self.shuffle_fraction, self.windows = tuple(shuffle_fraction), int(windows)
        self.inpaint_size, self.outpaint_size = tuple(inpaint_size), tuple(outpaint_size)

    def sample_params(self, shape: Sequence[int], generator: torch.Generator, device=None) -> Params:
        """Per-sample parameters for a (B, C, *S) batch."""
        device = resolve_device(generator, device)
        b, spatial = int(shape[0]), [int(s) for s in shape[2:]]
        nd, w = len(spatial), self.windows
        block = torch.randint(self.shuffle_block[0], self.shuffle_block[1] + 1, (nd,), generator=generator, device=device)
        block = torch.minimum(block, torch.tensor(spatial, device=device))
        room = torch.minimum(block, torch.tensor(spatial, device=device) - block + 1)  # offsets leaving >= 1 tile
        outpaint = bernoulli(b, self.outpaint_prob, generator, device)
        frac_in = uniform((b, w, nd), *self.inpaint_size, generator, device)
        frac_out = uniform((b, w, nd), *self.outpaint_size, generator, device)
        extent = torch.tensor(spatial, dtype=torch.float32, device=device)
        size = (torch.where(outpaint[:, None, None], frac_out, frac_in) * extent).round().clamp(min=1)
        return {
            "shuffle": bernoulli(b, self.shuffle_prob, generator, device),
            "block": block,
            "offset": (torch.rand(nd, generator=generator, device=device) * room).long(),
            "shuffle_fraction": uniform(b, *self.shuffle_fraction, generator, device),
            "nonlinear": bernoulli(b, self.nonlinear_prob, generator, device),
            "p1": torch.rand((b, 2), generator=generator, device=device),
            "p2": torch.rand((b, 2), generator=generator, device=device),
            "flip_curve": bernoulli(b, 0.5, generator, device),
            "paint": bernoulli(b, self.paint_prob, generator, device),
            "outpaint": outpaint,
            "box_start": ((extent - size + 1) * torch.rand(size.shape, generator=generator, device=device)).floor(),
            "box_size": size,
            "n_windows": torch.randint(1, w + 1, (b,), generator=generator, device=device),
            "seed": draw_seed(generator, device),
        }

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Deterministic corruption of ``x`` (B, C, *S) in [0, 1] with given parameters."""
        check_batch(x, "GenesisCorruption")
        g = generator_from(params["seed"], x.device)
        b, shape = x.shape[0], tuple(x.shape[2:])
        block = [int(v) for v in params["block"].tolist()]
        offset = [int(v) for v in params["offset"].tolist()]
        n_tiles = 1
        for a, s in enumerate(shape):
            n_tiles *= (s - offset[a]) // block[a]
        tile_keys = torch.rand((b, n_tiles), generator=g, device=x.device)
        selected = (tile_keys < params["shuffle_fraction"][:, None]) & params["shuffle"][:, None]
        y = local_pixel_shuffle(x, block, offset, selected, g) if bool(params["shuffle"].any()) else x
        y = torch.where(params["nonlinear"].reshape((-1,) + (1,) * (x.ndim - 1)),
                        bezier_transform(y, params["p1"], params["p2"], params["flip_curve"]), y)
        active = torch.arange(self.windows, device=x.device)[None] < params["n_windows"][:, None]
        boxes = box_union_mask(params["box_start"], params["box_size"], active, shape)
        outp = params["outpaint"].reshape((-1,) + (1,) * (x.ndim - 1))
        replace = torch.where(outp, ~boxes, boxes) & params["paint"].reshape((-1,) + (1,) * (x.ndim - 1))
        noise = torch.rand(x.shape, generator=g, device=x.device, dtype=x.dtype)
        return torch.where(replace, noise, y)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(corrupted, target) for a batch in [0, 1]; ``target`` is a copy of ``x``."""
        return self.apply(x, self.sample_params(x.shape, generator, x.device)), x.clone()


__all__ = ["GenesisCorruption", "bezier_curve", "bezier_transform", "box_union_mask", "local_pixel_shuffle"]
