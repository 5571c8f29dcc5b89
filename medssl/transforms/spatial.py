"""Spatial batch augmentations fused into one resampling per batch (one map per view).

Each spatial transform describes a map from output voxel coordinates ``q`` to input voxel
coordinates ``p`` (both relative to the image centre, in voxels, tensor-axis order):
``p = A q + t`` with ``A`` (B, D, D) and ``t`` (B, D), plus, for the elastic transform, a
smooth displacement field. A random resized crop sets the output grid; flips and the
affine act on the cropped view. :func:`fused_spatial` composes everything and
:func:`~medssl.transforms.resample.resample` samples the batch once, so a view costs one
interpolation whatever the number of spatial transforms (and none for plain crops/flips):
one ``grid_sample`` per batch, or on CPU for 3D views
:func:`~medssl.transforms.trilinear.affine_trilinear_` per view (same values).
Each transform is also usable alone (``apply`` then keeps the input size, except the crop).

Conventions: ``align_corners=False`` (a voxel is a cell; an identity map samples voxel
centres exactly), ``padding_mode="border"`` by default because the background of z-scored
data is not 0. Rotation angles in degrees, translations as a fraction of the image extent,
``scale > 1`` enlarges the anatomy (zoom in).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from medssl.transforms.base import (Params, RandomTransform, check_batch, check_voxel_scale, log_uniform, uniform,
                                    voxel_scale_tensor)
from medssl.transforms.resample import _eye, resample, sampling_grid  # noqa: F401 (re-exported)


class SpatialTransform(RandomTransform):
    """A spatial transform exposing its coordinate map for fusion."""

    mode = "bilinear"
    padding_mode = "border"

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return in_shape

    def compose(self, A: torch.Tensor, t: torch.Tensor, params: Params,
                out_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this transform (applied after those in ``A, t``) to the chain."""
        M, tau = self.local_map(params, out_shape)
        keep = params["apply"].reshape(-1, 1, 1)
        M = torch.where(keep, M, torch.eye(M.shape[-1], device=M.device, dtype=M.dtype))
        tau = torch.where(keep[..., 0], tau, torch.zeros_like(tau))
        return A @ M, t + (A @ tau[..., None])[..., 0]

    def local_map(self, params: Params, out_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """(M (B, D, D), tau (B, D)) in output voxels: ``q_before = M q_after + tau``."""
        raise NotImplementedError

    def _apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        b, shape = x.shape[0], tuple(x.shape[2:])
        A, t = self.compose(_eye(b, len(shape), x), torch.zeros(b, len(shape), device=x.device), params, shape)
        return resample(x, A, t, shape, mode=self.mode, padding_mode=self.padding_mode)


class RandomResizedCrop(RandomTransform):
    """Random (resized) crop to a fixed size, for 2D/3D batches.

    The region has side ``size * s * r`` input voxels with ``s ~ U(scale)`` per sample and
    per-axis aspect factors ``r`` log-uniform in ``ratio`` (normalised to geometric mean 1),
    placed uniformly inside the image (centred when larger than it), then resampled to
    ``size``. ``scale=(1, 1), ratio=(1, 1)`` is a plain random crop at native resolution
    with integer offsets (exact voxel values, like MONAI ``RandSpatialCrop``).

    Args:
        size: output spatial size.
        scale: range of the region side relative to ``size`` (``< 1`` zooms in).
        ratio: range of per-axis aspect factors.
    """

    name = "crop"

    def __init__(self, size: Sequence[int], scale: tuple[float, float] = (1.0, 1.0),
                 ratio: tuple[float, float] = (1.0, 1.0)) -> None:
        super().__init__(1.0)
        self.size = tuple(int(s) for s in size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        if min(self.size) < 1 or self.scale[0] <= 0 or self.scale[1] < self.scale[0] or self.ratio[0] <= 0:
            raise ValueError(f"RandomResizedCrop: invalid size={self.size}, scale={scale} or ratio={ratio}")

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.size

    def _sample(self, b, spatial_shape, generator, device):
        d = len(self.size)
        if len(spatial_shape) != d:
            raise ValueError(f"RandomResizedCrop: crop size {self.size} has {d} dims but the batch is "
                             f"{len(spatial_shape)}D; give a crop_size with one entry per spatial axis")
        size = torch.tensor(self.size, dtype=torch.float32, device=device)
        s_in = torch.tensor(spatial_shape, dtype=torch.float32, device=device)
        s = uniform(b, *self.scale, generator, device)[:, None]
        r = log_uniform((b, d), *self.ratio, generator, device)
        r = r / r.log().mean(1, keepdim=True).exp()
        region = size * s * r
        room = (s_in - region).clamp(min=0)
        integer = self.scale == (1.0, 1.0) and self.ratio == (1.0, 1.0)  # a plain crop: whole-voxel starts 0 … room
        u = torch.rand((b, d), generator=generator, device=device)
        start = torch.where(region > s_in, (s_in - region) / 2, (room + 1) * u if integer else room * u)
        if integer:
            start = start.floor()
        return {"region": region, "centre": start + region / 2 - s_in / 2}

    def base_map(self, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, t) of the crop alone: region voxels per output voxel and region centre."""
        size = torch.tensor(self.size, dtype=torch.float32, device=params["region"].device)
        return torch.diag_embed(params["region"] / size), params["centre"]

    def _apply(self, x, params):
        A, t = self.base_map(params)
        return resample(x, A, t, self.size, padding_mode="border")


class RandomFlip(SpatialTransform):
    """Flip each spatial axis in ``axes`` independently with probability ``prob``.

    Args:
        prob: per-axis flip probability.
        axes: spatial axes (0-based, after B and C) that may flip; ``None`` = all.
    """

    name = "flip"

    def __init__(self, prob: float = 0.5, axes: Sequence[int] | None = None) -> None:
        super().__init__(prob)
        self.axes = None if axes is None else tuple(int(a) for a in axes)

    def sample_params(self, shape, generator, device=None):
        params = super().sample_params(shape, generator, device)  # draws "apply" (unused) and flips
        params["apply"] = params["flip"].any(1)
        return params

    def _sample(self, b, spatial_shape, generator, device):
        d = len(spatial_shape)
        flip = torch.rand((b, d), generator=generator, device=device) < self.prob
        if self.axes is not None:
            allowed = torch.zeros(d, dtype=torch.bool, device=device)
            allowed[list(self.axes)] = True
            flip &= allowed
        return {"flip": flip}

    def local_map(self, params, out_shape):
        sign = 1.0 - 2.0 * params["flip"].float()
        return torch.diag_embed(sign), torch.zeros_like(sign)


def rotation_matrix(angles: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Rotation matrices from angles in radians.

    Args:
        angles: (B, 1) in 2D (plane of axes 0-1) or (B, 3) in 3D, rotations in the planes of
            axes (1, 2), (0, 2) and (0, 1), applied in that order.

    Returns:
        (B, D, D) orthonormal matrices with determinant +1.
    """
    b = angles.shape[0]
    planes = [(0, 1)] if spatial_dims == 2 else [(1, 2), (0, 2), (0, 1)]
    R = torch.eye(spatial_dims, device=angles.device).expand(b, -1, -1).clone()
    for k, (i, j) in enumerate(planes):
        c, s = torch.cos(angles[:, k]), torch.sin(angles[:, k])
        Rk = torch.eye(spatial_dims, device=angles.device).expand(b, -1, -1).clone()
        Rk[:, i, i], Rk[:, i, j], Rk[:, j, i], Rk[:, j, j] = c, -s, s, c
        R = Rk @ R
    return R


class RandomAffine(SpatialTransform):
    """Random rotation, scaling and translation about the view centre.

    Args:
        prob: probability per sample.
        rotate: maximum absolute rotation in degrees in each rotation plane (3 planes in 3D).
        scale: range of the zoom factor (``> 1`` enlarges anatomy), drawn log-uniformly; isotropic unless
            ``isotropic=False`` (then one factor per axis).
        translate: maximum absolute shift as a fraction of the extent along each axis.
        voxel_scale: optional per-axis factor (reference spacing / data spacing): only its ratios
            matter; on an anisotropic grid the rotation then turns the anatomy by the angle in
            millimetres (``M = V R V^-1`` with ``V = diag(voxel_scale)``), where a rotation of
            voxel indices would shear it. ``None`` = rotation of voxel indices (right for isotropic
            voxels).
    """

    name = "affine"

    def __init__(self, prob: float = 1.0, rotate: float = 15.0, scale: tuple[float, float] = (0.9, 1.1),
                 translate: float = 0.0, isotropic: bool = True, voxel_scale: tuple[float, ...] | None = None) -> None:
        super().__init__(prob)
        self.rotate, self.scale, self.translate, self.isotropic = float(rotate), tuple(scale), float(translate), isotropic
        self.voxel_scale = check_voxel_scale("RandomAffine", voxel_scale)

    def _sample(self, b, spatial_shape, generator, device):
        d = len(spatial_shape)
        n_rot = 1 if d == 2 else 3
        r = math.radians(self.rotate)
        angles = uniform((b, n_rot), -r, r, generator, device)
        zoom = log_uniform((b, 1 if self.isotropic else d), *self.scale, generator, device).expand(b, d)
        shift = uniform((b, d), -self.translate, self.translate, generator, device)
        return {"angles": angles, "zoom": zoom.contiguous(), "shift": shift}

    def local_map(self, params, out_shape):
        d = len(out_shape)
        R = rotation_matrix(params["angles"], d)
        v = voxel_scale_tensor("RandomAffine", self.voxel_scale, d, R.device)
        if v is not None and bool((v != v[0]).any()):  # anisotropic: rotate in mm (isotropic: V R V^-1 = R)
            R = v[:, None] * R / v[None, :]
        M = R @ torch.diag_embed(1.0 / params["zoom"])
        extent = torch.tensor(out_shape, dtype=torch.float32, device=M.device)
        return M, -params["shift"] * extent


class RandomElastic(SpatialTransform):
    """Smooth random deformation from a coarse grid of Gaussian control-point offsets.

    Offsets ``~ N(0, magnitude^2)`` input voxels on a ``grid``^D lattice are interpolated
    (bicubic in 2D, trilinear in 3D) to every output voxel and added to the sampling grid.

    Args:
        prob: probability per sample.
        magnitude: standard deviation of the control-point offsets in input voxels (at the
            reference spacing when ``voxel_scale`` is given).
        grid: control points per axis (>= 2); fewer points give smoother fields. The lattice
            spans the view, so its spacing is a fraction of the view, not a voxel count.
        voxel_scale: optional per-axis factor (reference spacing / data spacing) multiplying
            the offsets along each axis (same mm on any grid); ``None`` = voxels of the data's grid.
    """

    name = "elastic"

    def __init__(self, prob: float = 0.3, magnitude: float = 2.0, grid: int = 5,
                 voxel_scale: tuple[float, ...] | None = None) -> None:
        super().__init__(prob)
        if grid < 2:
            raise ValueError(f"RandomElastic: grid must be >= 2 control points per axis, got {grid}")
        self.magnitude, self.grid = float(magnitude), int(grid)
        self.voxel_scale = check_voxel_scale("RandomElastic", voxel_scale)

    def _sample(self, b, spatial_shape, generator, device):
        d = len(spatial_shape)
        ctrl = torch.randn((b, d) + (self.grid,) * d, generator=generator, device=device) * self.magnitude
        scale = voxel_scale_tensor("RandomElastic", self.voxel_scale, d, device)
        if scale is not None:  # channel a = offset along tensor axis a
            ctrl = ctrl * scale.reshape((1, d) + (1,) * d)
        return {"control": ctrl}

    def displacement(self, params: Params, out_shape: tuple[int, ...]) -> torch.Tensor:
        """(M, D, *out_shape) offsets in input voxels of the M samples where it applies."""
        ctrl = params["control"][params["apply"]]
        mode = "bicubic" if len(out_shape) == 2 else "trilinear"
        return F.interpolate(ctrl, size=tuple(out_shape), mode=mode, align_corners=True)

    def local_map(self, params, out_shape):
        b, d = params["control"].shape[:2]
        return _eye(b, d, params["control"]), params["control"].new_zeros(b, d)

    def _apply(self, x, params):
        b, shape = x.shape[0], tuple(x.shape[2:])
        A, t = _eye(b, len(shape), x), x.new_zeros(b, len(shape), dtype=torch.float32)
        return resample(x, A, t, shape, self.displacement(params, shape), padding_mode=self.padding_mode,
                        moved=params["apply"])


def fused_spatial(x: torch.Tensor, crop: RandomResizedCrop, transforms: Sequence[SpatialTransform],
                  params: Sequence[Params], crop_params: Params, n_views: int = 1,
                  mode: str = "bilinear", padding_mode: str = "border") -> torch.Tensor:
    """Crop + flips/affine/elastic of V views per sample in one resampling (see :func:`resample`).

    Args:
        x: (B, C, *S) batch; ``crop_params`` and each of ``params`` are drawn for B*V samples.

    Returns:
        (B*V, C, *crop.size).
    """
    check_batch(x, "fused_spatial")
    A, t = crop.base_map(crop_params)
    disp, moved = None, None
    for tr, p in zip(transforms, params):
        if isinstance(tr, RandomElastic):
            if disp is not None:
                raise ValueError("fused_spatial supports one RandomElastic per pipeline; merge them into one")
            disp, moved = tr.displacement(p, crop.size), p["apply"]
        else:
            A, t = tr.compose(A, t, p, crop.size)
    return resample(x, A, t, crop.size, disp, n_views=n_views, mode=mode, padding_mode=padding_mode, moved=moved)


__all__ = ["RandomAffine", "RandomElastic", "RandomFlip", "RandomResizedCrop", "SpatialTransform",
           "fused_spatial", "resample", "rotation_matrix", "sampling_grid"]
