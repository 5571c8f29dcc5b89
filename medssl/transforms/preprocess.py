"""Deterministic per-sample preprocessing: orient → resample → crop → normalise → pad.

Runs once per scan on the CPU (and is cached); random augmentation happens later on whole
batches (:mod:`medssl.transforms.views`). Built on nibabel (exact axis reordering, no
interpolation) and MONAI (``Spacing``, ``ResizeWithPadOrCrop``, intensity transforms).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (NormalizeIntensity, ResizeWithPadOrCrop, ScaleIntensity, ScaleIntensityRangePercentiles,
                               SpatialPad, Spacing)

from medssl.io.volume import Volume


def to_canonical(volume: Volume, axcodes: str = "RAS") -> Volume:
    """Reorder/flip array axes (no interpolation) so they point along ``axcodes``.

    Args:
        volume: 2D or 3D volume.
        axcodes: target orientation, e.g. "RAS" (3D) — for 2D the first two letters are used.
    """
    nd = volume.spatial_dims
    if nd == 2:
        aff3 = np.eye(4)
        aff3[:2, :2], aff3[:2, 3] = volume.affine[:2, :2], volume.affine[:2, 2]
    else:
        aff3 = volume.affine
    ornt = nib.orientations.io_orientation(aff3)[:nd]
    target = nib.orientations.axcodes2ornt(tuple(axcodes[:nd]) + tuple("RAS"[nd:3]))[:nd]
    transform = nib.orientations.ornt_transform(ornt, target)
    arr = np.stack([nib.orientations.apply_orientation(c, transform) for c in volume.array])
    inv = nib.orientations.inv_ornt_aff(transform, volume.spatial_shape)  # (nd+1, nd+1)
    return Volume(arr, volume.affine @ inv, dict(volume.meta))


@dataclass
class Preprocessor:
    """Deterministic preprocessing of one :class:`Volume` into a fixed-shape array.

    Args:
        shape: output spatial shape (voxels): axes longer than it are centre-cropped, then the scan is
            normalised, then shorter axes are centre-padded. Padded voxels take the normalised scan's
            minimum per channel (its background: air in CT, about 0 in MR), not 0, which in CT is
            water (HU 0) and would look like tissue.
        spacing: resample to this voxel size in mm (empty = keep the file's spacing).
        normalise: "zscore" (mean/std), "minmax" (0.5–99.5 percentiles → [0, 1], clipped), "range"
            (the volume's own min and max → [0, 1], no clipping: MONAI's ``ScaleIntensity``, what
            MONAI/nidl-style recipes feed their networks) or "none". Statistics are those of the
            scan's voxels kept by the crop, never of padding: otherwise the amount of padding (the
            target shape against the scan's field of view) would shift every normalised value.
        orientation: canonical axis codes applied first ("" = keep file orientation).

    Returns (``__call__``): float32 array ``(C, *shape)``.
    """

    shape: list[int]
    spacing: list[float] = field(default_factory=list)
    normalise: str = "zscore"
    orientation: str = "RAS"
    #: what padded voxels hold, and when (recorded in cache settings: caches of older versions, padded with 0
    #: or padded before normalising, are rebuilt)
    pad: str = field(default="normalised scan minimum, padding after normalisation", init=False)

    def __call__(self, volume: Volume) -> np.ndarray:
        if self.orientation:
            volume = to_canonical(volume, self.orientation)
        x = MetaTensor(torch.from_numpy(volume.array), affine=torch.as_tensor(volume.affine))
        if self.spacing:
            x = Spacing(pixdim=self.spacing, mode="bilinear")(x)
        resize = ResizeWithPadOrCrop(spatial_size=self.shape, mode="constant")
        x = resize.cropper(x)
        if self.normalise == "zscore":
            x = NormalizeIntensity(channel_wise=True)(x)
        elif self.normalise == "minmax":
            x = ScaleIntensityRangePercentiles(0.5, 99.5, 0.0, 1.0, clip=True, channel_wise=True)(x)
        elif self.normalise == "range":
            x = ScaleIntensity(minv=0.0, maxv=1.0, channel_wise=True)(x)
        elif self.normalise != "none":
            raise ValueError(f"normalise must be zscore, minmax, range or none, got {self.normalise!r}")
        x = _pad_with_minimum(x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x), resize.padder)
        return np.asarray(x, dtype=np.float32)

    def fingerprint(self) -> str:
        """Hash of the settings; a cache built with other settings is invalid."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def _pad_with_minimum(x: torch.Tensor, padder: SpatialPad) -> torch.Tensor:
    """MONAI's centre pad of ``x`` ``(C, *spatial)`` (``padder``), padded voxels set to each channel's minimum."""
    out = padder(x)
    if out.shape == x.shape:  # nothing padded
        return out
    lo = x.reshape(x.shape[0], -1).amin(dim=1).view(-1, *[1] * (x.ndim - 1))
    inside = padder(torch.ones_like(x[:1])).bool()  # False where padded (same placement as the scan's)
    return torch.where(inside, out, lo.to(out.dtype))
