"""Acquisition artefacts (k-space, via ``torch.fft``) and cutout, on whole batches.

The k-space transforms act on the magnitude ``m = x - min`` of each sample (so they work
on z-scored data), take the full ``fftn`` over the spatial axes, modify it, and return
``|ifftn| + min`` — a magnitude image, as an MRI scanner would reconstruct.

* :class:`RandomLowResolution` keeps only the central ``1/factor`` of k-space per axis
  (an acquisition at lower resolution, with its Gibbs ringing).
* :class:`RandomMotion` splits the phase-encoding lines into acquisition segments, each
  acquired with the head translated (a linear phase ramp, Fourier shift theorem), as
  TorchIO ``RandomMotion`` does with rigid motion (here: translations only, exact and cheap).
* :class:`RandomGhosting` attenuates every n-th phase-encoding line (DC kept), which
  produces n ghosts shifted by multiples of ``size / n`` (TorchIO ``RandomGhosting``).
* :class:`RandomCutout` blanks random boxes (coarse dropout, like MONAI ``RandCoarseDropout``).
"""

from __future__ import annotations

import math

import torch

from medssl.transforms.base import Params, RandomTransform, check_voxel_scale, per_sample, uniform, voxel_scale_tensor


def kspace_magnitude(x: torch.Tensor, fn) -> torch.Tensor:
    """``|ifftn(fn(fftn(x - min)))| + min`` per sample over the spatial axes, in float32 (a half-precision
    batch is rounded once, at the end)."""
    dims = tuple(range(2, x.ndim))
    xf = x.float()
    lo = per_sample(xf.reshape(x.shape[0], -1).amin(1), xf)
    k = torch.fft.fftn(xf - lo, dim=dims)
    return (torch.fft.ifftn(fn(k), dim=dims).abs() + lo).to(x.dtype)


def _axis_view(v: torch.Tensor, axis: int, nd: int) -> torch.Tensor:
    """(B, n) -> (B, 1, ..., n at spatial axis, ...) broadcastable against (B, C, *S)."""
    shape = [v.shape[0], 1] + [1] * nd
    shape[2 + axis] = v.shape[1]
    return v.reshape(shape)


def _sample_axis(b: int, axes: tuple[int, ...] | None, d: int, generator, device) -> torch.Tensor:
    choices = torch.tensor(axes if axes is not None else tuple(range(d)), device=device)
    return choices[torch.randint(0, len(choices), (b,), generator=generator, device=device)]


class RandomLowResolution(RandomTransform):
    """Simulated low-resolution acquisition by k-space truncation.

    Args:
        prob: probability per sample.
        factor: range of the resolution loss per axis (1 = unchanged, 2 = half the
            frequencies kept along that axis); with ``voxel_scale``, relative to the
            reference spacing (target resolution = factor × reference spacing, in mm).
        anisotropic: if True only one random axis per sample loses resolution (thick slices).
        voxel_scale: optional per-axis factor (reference spacing / data spacing) multiplying
            the drawn factor; the result is clamped to >= 1, so a target resolution finer
            than the data's grid leaves that axis unchanged. ``None`` = factor on the data's grid.
    """

    name = "low_resolution"

    def __init__(self, prob: float = 0.1, factor: tuple[float, float] = (1.5, 3.0), anisotropic: bool = False,
                 voxel_scale: tuple[float, ...] | None = None) -> None:
        super().__init__(prob)
        self.factor, self.anisotropic = (float(factor[0]), float(factor[1])), bool(anisotropic)
        self.voxel_scale = check_voxel_scale("RandomLowResolution", voxel_scale)

    def _sample(self, b, spatial_shape, generator, device):
        d = len(spatial_shape)
        f = uniform((b, d), *self.factor, generator, device)
        scale = voxel_scale_tensor("RandomLowResolution", self.voxel_scale, d, device)
        if scale is not None:
            f = (f * scale).clamp(min=1.0)
        if self.anisotropic:
            axis = _sample_axis(b, None, d, generator, device)
            f = torch.where(torch.arange(d, device=device)[None] == axis[:, None], f, torch.ones_like(f))
        return {"factor": f}

    def _apply(self, x, params):
        nd = x.ndim - 2

        def truncate(k: torch.Tensor) -> torch.Tensor:
            for a in range(nd):
                freq = torch.fft.fftfreq(x.shape[2 + a], device=x.device).abs()
                keep = freq[None] <= 0.5 / params["factor"][:, a : a + 1] + 1e-6
                k = k * _axis_view(keep.to(k.real.dtype), a, nd)
            return k

        return kspace_magnitude(x, truncate)


def _line_positions(n: int, device) -> torch.Tensor:
    """Acquisition time in [0, 1) of each k-space line in fft order (acquired -kmax .. +kmax)."""
    return ((torch.arange(n, device=device) + n // 2) % n).float() / n


class RandomMotion(RandomTransform):
    """Rigid (translational) head motion during the acquisition.

    Args:
        prob: probability per sample.
        shift: maximum absolute translation in voxels of each segment (at the reference
            spacing when ``voxel_scale`` is given).
        segments: number of acquisition segments (each with its own position).
        axes: spatial axes that may be the phase-encoding direction (None = all).
        voxel_scale: optional per-axis factor (reference spacing / data spacing) multiplying
            the drawn translations (same mm on any grid); ``None`` = voxels of the data's grid.
    """

    name = "motion"

    def __init__(self, prob: float = 0.1, shift: float = 2.0, segments: int = 3, axes=None,
                 voxel_scale: tuple[float, ...] | None = None) -> None:
        super().__init__(prob)
        if segments < 2:
            raise ValueError(f"RandomMotion: segments must be >= 2 (one movement needs two positions), got {segments}")
        self.shift, self.segments, self.axes = float(shift), int(segments), axes
        self.voxel_scale = check_voxel_scale("RandomMotion", voxel_scale)

    def _sample(self, b, spatial_shape, generator, device):
        d = len(spatial_shape)
        cuts = torch.rand((b, self.segments - 1), generator=generator, device=device).sort(1).values
        shifts = uniform((b, self.segments, d), -self.shift, self.shift, generator, device)
        scale = voxel_scale_tensor("RandomMotion", self.voxel_scale, d, device)
        if scale is not None:
            shifts = shifts * scale
        return {"cuts": cuts, "shifts": shifts, "axis": _sample_axis(b, self.axes, d, generator, device)}

    def _apply(self, x, params):
        nd, shape = x.ndim - 2, x.shape[2:]
        freqs = [torch.fft.fftfreq(s, device=x.device) for s in shape]

        def move(k: torch.Tensor) -> torch.Tensor:
            phase = torch.zeros((k.shape[0], 1) + tuple(shape), device=x.device)
            for a in range(nd):  # phase-encoding axis: small loop over <= 3 axes
                sel = (params["axis"] == a).float()
                seg = (_line_positions(shape[a], x.device)[None, :, None] >= params["cuts"][:, None, :]).sum(2)
                s_line = torch.gather(params["shifts"], 1, seg[..., None].expand(-1, -1, nd))  # (B, S_a, D)
                for d in range(nd):
                    term = _axis_view(s_line[..., d] * sel[:, None], a, nd)
                    phase = phase + term * _axis_view(freqs[d][None], d, nd)
            return k * torch.polar(torch.ones_like(phase), -2 * math.pi * phase)

        return kspace_magnitude(x, move)


class RandomGhosting(RandomTransform):
    """MRI ghosting: every n-th phase-encoding line scaled by ``1 - intensity``.

    Args:
        prob: probability per sample.
        count: range of the number of ghosts n (integers).
        intensity: range of the attenuation of the affected lines (0 = no artefact).
        axes: spatial axes that may be the phase-encoding direction (None = all).
    """

    name = "ghosting"

    def __init__(self, prob: float = 0.1, count: tuple[float, float] = (2, 6),
                 intensity: tuple[float, float] = (0.3, 0.8), axes=None) -> None:
        super().__init__(prob)
        self.count, self.intensity, self.axes = (int(count[0]), int(count[1])), tuple(intensity), axes

    def _sample(self, b, spatial_shape, generator, device):
        n = torch.randint(self.count[0], self.count[1] + 1, (b,), generator=generator, device=device)
        return {"count": n, "intensity": uniform(b, *self.intensity, generator, device),
                "axis": _sample_axis(b, self.axes, len(spatial_shape), generator, device)}

    def _apply(self, x, params):
        nd, shape = x.ndim - 2, x.shape[2:]

        def ghost(k: torch.Tensor) -> torch.Tensor:
            gain = torch.ones((k.shape[0], 1) + (1,) * nd, device=x.device)
            for a in range(nd):
                line = torch.arange(shape[a], device=x.device)[None]
                hit = (line % params["count"][:, None] == 0) & (line != 0) & (params["axis"][:, None] == a)
                g = 1.0 - hit.float() * params["intensity"][:, None]
                gain = gain * _axis_view(g, a, nd)
            return k * gain

        return kspace_magnitude(x, ghost)


class RandomCutout(RandomTransform):
    """Coarse dropout: ``holes`` random boxes per sample set to ``fill``.

    Args:
        prob: probability per sample.
        holes: boxes per sample.
        size: range of the box side as a fraction of the image side (per axis).
        fill: a number, or ``"mean"`` for the per-sample mean intensity.
    """

    name = "cutout"

    def __init__(self, prob: float = 0.3, holes: int = 4, size: tuple[float, float] = (0.1, 0.25),
                 fill: float | str = "mean") -> None:
        super().__init__(prob)
        self.holes, self.size, self.fill = int(holes), (float(size[0]), float(size[1])), fill

    def _sample(self, b, spatial_shape, generator, device):
        extent = torch.tensor(spatial_shape, dtype=torch.float32, device=device)
        size = (uniform((b, self.holes, len(spatial_shape)), *self.size, generator, device) * extent).round().clamp(min=1)
        start = ((extent - size + 1) * torch.rand(size.shape, generator=generator, device=device)).floor()  # 0 … extent − size
        return {"start": start, "size": size}

    def mask(self, params: Params, spatial_shape: tuple[int, ...]) -> torch.Tensor:
        """(B, 1, *S) bool, True inside a hole."""
        start, size = params["start"], params["size"]
        nd = len(spatial_shape)
        out = torch.zeros((start.shape[0], 1) + tuple(spatial_shape), dtype=torch.bool, device=start.device)
        for h in range(start.shape[1]):  # small loop over holes, whole batch at once
            inside = None
            for a in range(nd):
                c = torch.arange(spatial_shape[a], device=start.device)[None]
                m = _axis_view((c >= start[:, h, a : a + 1]) & (c < start[:, h, a : a + 1] + size[:, h, a : a + 1]), a, nd)
                inside = m if inside is None else inside & m
            out |= inside
        return out

    def _fill(self, x: torch.Tensor) -> torch.Tensor:
        if self.fill == "mean":
            return per_sample(x.reshape(x.shape[0], -1).mean(1), x)
        return torch.full((x.shape[0],) + (1,) * (x.ndim - 1), float(self.fill), dtype=x.dtype, device=x.device)

    def apply_mask(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Vectorised version (used on GPUs): one ``where`` with the union mask."""
        return torch.where(self.mask(params, tuple(x.shape[2:])), self._fill(x), x)

    def apply_slices(self, x: torch.Tensor, params: Params, out: torch.Tensor | None = None) -> torch.Tensor:
        """CPU version: fills each small box (far fewer bytes than a mask), in ``out`` if given
        (``out`` may be ``x``: in place), else in a copy of ``x``."""
        fill = self._fill(x)
        out = x.clone() if out is None else (out if out is x else out.copy_(x))
        starts, sizes = params["start"].long().tolist(), params["size"].long().tolist()
        for b, (st_b, sz_b) in enumerate(zip(starts, sizes)):  # small loop: B x holes box fills
            for st, sz in zip(st_b, sz_b):
                out[(b, slice(None)) + tuple(slice(s, s + k) for s, k in zip(st, sz))] = fill[b]
        return out

    def _apply(self, x, params):
        return self.apply_slices(x, params) if x.device.type == "cpu" else self.apply_mask(x, params)

    def _apply_into(self, x, params, out):
        return self.apply_slices(x, params, out)


__all__ = ["RandomCutout", "RandomGhosting", "RandomLowResolution", "RandomMotion", "kspace_magnitude"]
