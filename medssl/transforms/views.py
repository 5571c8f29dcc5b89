"""Random views of a batch for self-supervised learning.

>>> pipe = build_view_pipeline("brain_mri", spatial_dims=3, crop_size=(96, 96, 96))
>>> g = torch.Generator(device=x.device).manual_seed(0)
>>> view = pipe(x, g)                      # (B, C, 96, 96, 96), one view per sample
>>> views = make_views(pipe, x, 2, g)      # (B, 2, C, 96, 96, 96) for contrastive methods

A :class:`ViewPipeline` runs on the batch's device (DataLoader worker CPU or the GPU right
after transfer). Crop, flips, affine and elastic deformation are fused into one
resampling per batch (all V views at once, without copying the input V times); the
intensity and artefact transforms follow in a fixed, physically ordered sequence: bias
field, gamma, scale/shift, blur, low resolution, motion, ghosting, noise, cutout.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from medssl.transforms.artefacts import RandomCutout, RandomGhosting, RandomLowResolution, RandomMotion
from medssl.transforms.base import Params, RandomTransform, check_batch, resolve_device
from medssl.transforms.intensity import (RandomBiasField, RandomGamma, RandomGaussianBlur, RandomGaussianNoise,
                                         RandomRicianNoise, RandomScaleShift)
from medssl.transforms.presets import PRESET_DIMS, AugmentParams, get_preset
from medssl.transforms.spatial import RandomAffine, RandomElastic, RandomFlip, RandomResizedCrop, fused_spatial


class ViewPipeline:
    """Crop + fused spatial transforms + intensity/artefact transforms.

    Args:
        crop: the random (resized) crop that fixes the output size.
        spatial: flips / affine / elastic, applied to the cropped view (in order).
        others: intensity and artefact transforms, applied after resampling (in order).
        mode, padding_mode: interpolation of the fused resampling (``grid_sample`` names).
        params: the :class:`AugmentParams` it was built from (for logging), if any.
    """

    def __init__(self, crop: RandomResizedCrop, spatial: Sequence[RandomTransform] = (),
                 others: Sequence[RandomTransform] = (), mode: str = "bilinear",
                 padding_mode: str = "border", params: AugmentParams | None = None) -> None:
        self.crop, self.spatial, self.others = crop, list(spatial), list(others)
        self.mode, self.padding_mode, self.params = mode, padding_mode, params
        self.spatial_dims = len(crop.size)

    @property
    def crop_size(self) -> tuple[int, ...]:
        return self.crop.size

    def sample_params(self, shape: Sequence[int], generator: torch.Generator,
                      device: torch.device | str | None = None, n_views: int = 1) -> dict[str, Params]:
        """Parameters of ``n_views`` views for each sample of a (B, C, *S) batch.

        Returns:
            ``{transform_key: params}`` with per-sample tensors of first dim ``B * n_views``
            (view v of sample b at row ``b * n_views + v``).
        """
        device = resolve_device(generator, device)
        b, c = int(shape[0]) * n_views, int(shape[1])
        params = {"crop": self.crop.sample_params((b, c, *shape[2:]), generator, device)}
        for i, t in enumerate(self.spatial):
            params[f"{i}:{t.name}"] = t.sample_params((b, c, *self.crop.size), generator, device)
        for i, t in enumerate(self.others):
            params[f"{len(self.spatial) + i}:{t.name}"] = t.sample_params((b, c, *self.crop.size), generator, device)
        return params

    def apply(self, x: torch.Tensor, params: dict[str, Params], n_views: int = 1) -> torch.Tensor:
        """Deterministic twin of :meth:`__call__`: (B, C, *S) -> (B * n_views, C, *crop_size).

        Runs with autocast disabled: a training step under ``train.precision=bf16`` augments in the input's
        dtype (float32) on CPU and GPU alike; only the model runs in bf16."""
        check_batch(x, "ViewPipeline", self.spatial_dims)
        n = len(self.spatial)
        sp = [params[f"{i}:{t.name}"] for i, t in enumerate(self.spatial)]
        with torch.autocast(x.device.type, enabled=False):
            y = fused_spatial(x, self.crop, self.spatial, sp, params["crop"], n_views, self.mode, self.padding_mode)
            for i, t in enumerate(self.others):
                y = t.apply(y, params[f"{n + i}:{t.name}"], inplace=True)  # y is ours: no batch copies
        return y

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random view per sample: (B, C, *S) -> (B, C, *crop_size)."""
        return self.apply(x, self.sample_params(x.shape, generator, x.device))

    def views(self, x: torch.Tensor, n_views: int, generator: torch.Generator) -> torch.Tensor:
        """``n_views`` independent views per sample: (B, C, *S) -> (B, V, C, *crop_size)."""
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        y = self.apply(x, self.sample_params(x.shape, generator, x.device, n_views), n_views)
        return y.reshape((x.shape[0], n_views) + tuple(y.shape[1:]))

    def __repr__(self) -> str:
        names = [t.name for t in self.spatial + self.others]
        return f"ViewPipeline(crop_size={self.crop_size}, transforms={names})"


def voxel_scale_for(p: AugmentParams, spacing: Sequence[float] | None, spatial_dims: int) -> tuple[float, ...] | None:
    """Per-axis multiplier ``p.reference_spacing_mm / spacing`` of the voxel-unit strengths.

    Args:
        spacing: the data's voxel size in mm, one value per spatial axis (tensor order), or
            ``None`` (strengths in voxels of the data's grid, unchanged).

    Returns:
        ``None`` when ``spacing`` is None or the preset has no reference spacing (nothing to
        rescale), else ``spatial_dims`` factors (1.0 where the data is at the reference spacing).

    Raises:
        ValueError: ``spacing`` has the wrong length or a value that is not a positive number.
    """
    if spacing is None:
        return None
    if isinstance(spacing, (str, bytes)) or not hasattr(spacing, "__len__"):
        raise ValueError(f"spacing={spacing!r}: give the voxel size in mm as {spatial_dims} numbers, one per spatial axis")
    try:
        values = tuple(float(v) for v in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing={spacing!r}: give the voxel size in mm as {spatial_dims} numbers") from None
    if len(values) != spatial_dims:
        raise ValueError(f"spacing={list(spacing)} has {len(values)} values but the views are {spatial_dims}D; "
                         f"give one voxel size in mm per spatial axis")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing={list(spacing)}: voxel sizes must be positive finite numbers of mm")
    if p.reference_spacing_mm is None:
        return None
    return tuple(float(p.reference_spacing_mm) / v for v in values)


def pipeline_from_params(p: AugmentParams, spatial_dims: int, crop_size: Sequence[int],
                         spacing: Sequence[float] | None = None) -> ViewPipeline:
    """Build a :class:`ViewPipeline` from explicit :class:`AugmentParams`.

    ``spacing`` (mm per axis) rescales the voxel-unit strengths to the same physical size as at
    ``p.reference_spacing_mm`` (see :func:`voxel_scale_for` and :func:`build_view_pipeline`).
    """
    crop_size = tuple(int(s) for s in crop_size)
    if spatial_dims not in (2, 3) or len(crop_size) != spatial_dims:
        raise ValueError(f"crop_size {crop_size} must have spatial_dims={spatial_dims} entries (2 or 3)")
    if p.flip_axes is not None and any(not 0 <= a < spatial_dims for a in p.flip_axes):
        raise ValueError(f"flip_axes={p.flip_axes} has an axis outside 0..{spatial_dims - 1}")
    vs = voxel_scale_for(p, spacing, spatial_dims)
    crop = RandomResizedCrop(crop_size, p.crop_scale, p.crop_ratio)
    spatial: list[RandomTransform] = []
    if p.flip_prob > 0:
        spatial.append(RandomFlip(p.flip_prob, p.flip_axes))
    if p.affine_prob > 0:
        spatial.append(RandomAffine(p.affine_prob, p.rotate, p.scale, p.translate, voxel_scale=vs))
    if p.elastic_prob > 0:
        spatial.append(RandomElastic(p.elastic_prob, p.elastic_magnitude, p.elastic_grid, voxel_scale=vs))
    candidates = [
        (p.bias_prob, lambda: RandomBiasField(p.bias_prob, p.bias_coeff)),
        (p.gamma_prob, lambda: RandomGamma(p.gamma_prob, p.gamma)),
        (p.scale_shift_prob, lambda: RandomScaleShift(p.scale_shift_prob, p.intensity_scale, p.intensity_shift)),
        (p.blur_prob, lambda: RandomGaussianBlur(p.blur_prob, p.blur_sigma, voxel_scale=vs)),
        (p.lowres_prob, lambda: RandomLowResolution(p.lowres_prob, p.lowres_factor, voxel_scale=vs)),
        (p.motion_prob, lambda: RandomMotion(p.motion_prob, p.motion_shift, p.motion_segments, voxel_scale=vs)),
        (p.ghosting_prob, lambda: RandomGhosting(p.ghosting_prob, p.ghosting_count, p.ghosting_intensity)),
        (p.noise_prob, lambda: RandomGaussianNoise(p.noise_prob, p.noise_std)),
        (p.rician_prob, lambda: RandomRicianNoise(p.rician_prob, p.rician_std)),
        (p.dropout_prob, lambda: RandomCutout(p.dropout_prob, p.dropout_holes, p.dropout_size, p.dropout_fill)),
    ]
    others = [make() for prob, make in candidates if prob > 0]
    return ViewPipeline(crop, spatial, others, p.interpolation, p.padding_mode, p)


def build_view_pipeline(preset: str = "brain_mri", spatial_dims: int = 3, crop_size: Sequence[int] = (96, 96, 96),
                        overrides: Mapping[str, Any] | None = None,
                        spacing: Sequence[float] | None = None) -> ViewPipeline:
    """The view pipeline of a named preset (see :mod:`medssl.transforms.presets`).

    Args:
        preset: ``"brain_mri"``, ``"ct"``, ``"chest_xray"`` or ``"none"`` (crop only).
        spatial_dims: 2 or 3; must match the preset's design (chest_xray is 2D).
        crop_size: output spatial size of each view (voxels).
        overrides: ``{AugmentParams field: value}``; unknown keys raise ValueError.
        spacing: the voxel size of the batches in mm, one value per spatial axis. When given,
            every voxel-unit strength (blur sigma, elastic offsets, motion shifts,
            low-resolution factor) is multiplied by ``reference_spacing_mm / spacing`` per
            axis, so the view has the same physical strength as at the preset's reference
            spacing (e.g. brain_mri at 6 mm: blur, warps and motion 6x fewer voxels; the
            low-resolution factor clamped to >= 1, i.e. off where the target resolution is
            finer than the grid), and on an anisotropic grid the affine rotates in mm.
            ``None`` (default) or a preset without a reference spacing: voxel values as is.

    Raises:
        ValueError: unknown preset or key, invalid value, a dimensionality mismatch, or a
            ``spacing`` with the wrong length or a non-positive value.
    """
    params = get_preset(preset, overrides)
    want = PRESET_DIMS.get(preset)
    if want is not None and want != spatial_dims:
        raise ValueError(f"augmentation preset {preset!r} is designed for {want}D images but spatial_dims={spatial_dims}; "
                         f"use a {want}D crop_size or another preset (presets: brain_mri/ct 3D, chest_xray 2D, none any)")
    return pipeline_from_params(params, spatial_dims, crop_size, spacing)


def make_views(pipe: ViewPipeline, x: torch.Tensor, n_views: int = 2,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """``n_views`` independent random views per sample: (B, C, *S) -> (B, V, C, *crop_size).

    Args:
        generator: on ``x.device``; ``None`` uses a fresh unseeded generator (not reproducible).
    """
    if generator is None:
        generator = torch.Generator(device=x.device)
        generator.seed()
    return pipe.views(x, n_views, generator)


def save_view_grid(*args, **kwargs):
    """Write a PNG grid of original/view slices; see :func:`medssl.transforms.visualize.save_view_grid`."""
    from medssl.transforms.visualize import save_view_grid as _save

    return _save(*args, **kwargs)


__all__ = ["ViewPipeline", "build_view_pipeline", "make_views", "pipeline_from_params", "save_view_grid", "voxel_scale_for"]
