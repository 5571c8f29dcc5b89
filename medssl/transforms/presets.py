"""Augmentation parameters and per-modality presets.

:class:`AugmentParams` lists every probability and range of the view pipeline (flat keys,
so a YAML override is one line). A preset is a named instance of it; user overrides are
validated against its fields: an unknown key is an error naming the valid keys and the
closest match.

What each preset assumes about its input (the output of ``medssl.transforms.preprocess``):

* ``brain_mri`` — 3D T1w head MRI, RAS+ (axis 0 = left-right), ~1-2 mm voxels, z-scored
  over the whole volume (``data.normalise=zscore``; background negative). Flips only left-right. MRI physics: bias field,
  Rician noise, motion and ghosting (k-space), low resolution (k-space truncation).
* ``ct`` — 3D CT, HU windowed and scaled to [0, 1]. No MRI artefacts; mild noise and blur,
  simulated low resolution (k-space truncation by a factor drawn for every axis, not one
  thick-slice axis), flips on all axes.
* ``chest_xray`` — 2D frontal radiograph scaled to [0, 1] (MONOCHROME2: bright bone).
  No flips by default (they swap cardiac laterality); resized crops, small rotations,
  gamma, blur, noise.
* ``none`` — crop to size only (evaluation, or a no-augmentation baseline).

**Voxels or millimetres.** Blur sigmas, elastic offsets, motion shifts and the
low-resolution factor are in voxels. ``reference_spacing_mm`` records the voxel size they
were tuned for (brain_mri 1 mm, ct 1.5 mm; chest_xray and none: ``None``, nothing to
rescale). ``build_view_pipeline(..., spacing=...)`` multiplies those strengths by
reference / data spacing per axis, so a view has the same strength in mm on any grid
(config: ``augment.physical_units``), and rotates in mm on anisotropic grids; without
``spacing`` the voxel values are used as is.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

Range = tuple[float, float]


#: ranges whose lower bound must be > 0 (log-uniform draws, zoom factors, crop scales)
POSITIVE_RANGES = ("crop_scale", "crop_ratio", "scale", "gamma", "intensity_scale", "lowres_factor")
#: standard-deviation ranges, whose lower bound must be >= 0 (a negative blur sigma was quietly no blur)
NON_NEGATIVE_RANGES = ("blur_sigma", "noise_std", "rician_std")



class AugmentParamError(ValueError):
    """An invalid augmentation parameter value; ``param`` is its field name (so a caller can name the config key
    that set it, e.g. ``augment.overrides.blur_sigma``)."""

    def __init__(self, param: str, value: Any, why: str) -> None:
        super().__init__(f"augmentation parameter {param}={value!r}{why}")
        self.param = param

@dataclass(frozen=True)
class AugmentParams:
    """All knobs of the view pipeline; ``*_prob`` are per-sample probabilities.

    Units: voxels for sigmas/magnitudes/shifts, degrees for rotations, fractions of the
    view extent for translations and cutout sizes, normalised intensity units (SDs for
    z-scored data) for noise, shifts and fill values. The voxel-unit strengths
    (``elastic_magnitude``, ``blur_sigma``, ``lowres_factor``, ``motion_shift``) are voxels
    of ``reference_spacing_mm`` when the pipeline is built with a data ``spacing``.
    """

    #: voxel size (mm) the voxel-unit strengths were tuned for; ``None`` = never rescaled
    reference_spacing_mm: float | None = None

    # spatial (fused into one resampling)
    crop_scale: Range = (1.0, 1.0)  #: region side / crop side (<1 zooms in)
    crop_ratio: Range = (1.0, 1.0)  #: per-axis aspect jitter (log-uniform)
    flip_prob: float = 0.0  #: per-axis flip probability
    flip_axes: tuple[int, ...] | None = None  #: axes allowed to flip (None = all)
    affine_prob: float = 0.0
    rotate: float = 0.0  #: max |angle| in degrees per rotation plane
    scale: Range = (1.0, 1.0)  #: zoom range (>1 enlarges anatomy)
    translate: float = 0.0  #: max |shift| as a fraction of the view extent
    elastic_prob: float = 0.0
    elastic_magnitude: float = 2.0  #: SD of control-point offsets in voxels
    elastic_grid: int = 5  #: control points per axis
    interpolation: str = "bilinear"  #: "bilinear" (trilinear in 3D) or "nearest"
    padding_mode: str = "border"  #: grid_sample padding: "border", "zeros" or "reflection"
    # intensity
    bias_prob: float = 0.0
    bias_coeff: float = 0.3  #: max |Legendre coefficient| of the log bias field
    gamma_prob: float = 0.0
    gamma: Range = (0.7, 1.5)
    scale_shift_prob: float = 0.0
    intensity_scale: Range = (0.9, 1.1)
    intensity_shift: float = 0.1
    blur_prob: float = 0.0
    blur_sigma: Range = (0.25, 1.0)
    lowres_prob: float = 0.0
    lowres_factor: Range = (1.5, 3.0)  #: k-space truncation factor per axis
    # MRI k-space artefacts
    motion_prob: float = 0.0
    motion_shift: float = 2.0  #: max |translation| in voxels of each movement
    motion_segments: int = 3  #: acquisition segments (movements + 1)
    ghosting_prob: float = 0.0
    ghosting_count: Range = (2, 6)  #: number of ghosts
    ghosting_intensity: Range = (0.3, 0.8)
    # noise and dropout (applied last)
    noise_prob: float = 0.0
    noise_std: Range = (0.0, 0.1)
    rician_prob: float = 0.0
    rician_std: Range = (0.0, 0.05)
    dropout_prob: float = 0.0
    dropout_holes: int = 4
    dropout_size: Range = (0.1, 0.25)  #: hole side as a fraction of the view side
    dropout_fill: float | str = "mean"  #: a number, or "mean" (per-sample mean)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.endswith("_prob") and not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise AugmentParamError(f.name, v, " must be a probability in [0, 1]")
            if f.type in ("Range", Range) and not (isinstance(v, tuple) and len(v) == 2 and v[0] <= v[1]):
                raise AugmentParamError(f.name, v, " must be a (low, high) pair with low <= high")
            if f.name in POSITIVE_RANGES and not v[0] > 0:
                raise AugmentParamError(f.name, v, " must be positive (it is drawn log-uniformly or divides)")
            if f.name in NON_NEGATIVE_RANGES and not v[0] >= 0:
                raise AugmentParamError(f.name, v, " is a standard deviation: use 0 <= low <= high")
        if not (0 < self.dropout_size[0] and self.dropout_size[1] <= 1):
            raise AugmentParamError("dropout_size", self.dropout_size,
                                    " is a fraction of the view side: use 0 < low <= high <= 1")
        if self.interpolation not in ("bilinear", "nearest"):
            raise AugmentParamError("interpolation", self.interpolation, ": use 'bilinear' or 'nearest'")
        if self.padding_mode not in ("border", "zeros", "reflection"):
            raise AugmentParamError("padding_mode", self.padding_mode, ": use 'border', 'zeros' or 'reflection'")
        ref = self.reference_spacing_mm
        if ref is not None and not (isinstance(ref, (int, float)) and not isinstance(ref, bool) and 0 < ref < float("inf")):
            raise AugmentParamError("reference_spacing_mm", ref, ": use a positive number of mm, or None (strengths "
                                    "never rescaled to the data spacing)")
        if not (self.dropout_fill == "mean" or isinstance(self.dropout_fill, (int, float))):
            raise AugmentParamError("dropout_fill", self.dropout_fill, ": use a number or 'mean'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, AugmentParams] = {
    "none": AugmentParams(),
    "brain_mri": AugmentParams(
        reference_spacing_mm=1.0, crop_scale=(0.8, 1.0), crop_ratio=(0.9, 1.1), flip_prob=0.5, flip_axes=(0,),
        affine_prob=0.5, rotate=10.0, scale=(0.9, 1.1), elastic_prob=0.2, elastic_magnitude=2.0,
        bias_prob=0.3, bias_coeff=0.3, gamma_prob=0.3, gamma=(0.7, 1.5),
        scale_shift_prob=0.5, intensity_scale=(0.9, 1.1), intensity_shift=0.1,
        blur_prob=0.2, blur_sigma=(0.5, 1.0), lowres_prob=0.1, lowres_factor=(1.5, 3.0),
        motion_prob=0.1, motion_shift=2.0, ghosting_prob=0.1,
        noise_prob=0.3, noise_std=(0.0, 0.1), rician_prob=0.1, rician_std=(0.0, 0.05),
        dropout_prob=0.3, dropout_holes=4, dropout_size=(0.1, 0.25)),
    "ct": AugmentParams(
        reference_spacing_mm=1.5, crop_scale=(0.8, 1.0), crop_ratio=(0.9, 1.1), flip_prob=0.5,
        affine_prob=0.5, rotate=15.0, scale=(0.9, 1.1), elastic_prob=0.1,
        gamma_prob=0.3, gamma=(0.8, 1.25), scale_shift_prob=0.3, intensity_scale=(0.95, 1.05),
        intensity_shift=0.03, blur_prob=0.2, blur_sigma=(0.5, 1.0), lowres_prob=0.1,
        lowres_factor=(1.5, 2.5), noise_prob=0.3, noise_std=(0.0, 0.03),
        dropout_prob=0.3, dropout_holes=4, dropout_size=(0.1, 0.25)),
    "chest_xray": AugmentParams(
        crop_scale=(0.6, 1.0), crop_ratio=(0.8, 1.25), flip_prob=0.0,
        affine_prob=0.5, rotate=10.0, scale=(0.9, 1.1), translate=0.05,
        gamma_prob=0.5, gamma=(0.7, 1.5), scale_shift_prob=0.5, intensity_scale=(0.85, 1.15),
        intensity_shift=0.05, blur_prob=0.3, blur_sigma=(0.2, 1.5), lowres_prob=0.1,
        lowres_factor=(1.5, 3.0), noise_prob=0.3, noise_std=(0.0, 0.04),
        dropout_prob=0.2, dropout_holes=4, dropout_size=(0.05, 0.2)),
}

#: Spatial dimensionality each preset is designed for (None = either).
PRESET_DIMS: dict[str, int | None] = {"none": None, "brain_mri": None, "ct": None, "chest_xray": 2}


def _did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(str(name), list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _coerce(value: Any) -> Any:
    """YAML gives lists where the dataclass holds tuples."""
    return tuple(value) if isinstance(value, list) else value


def get_preset(name: str, overrides: Mapping[str, Any] | None = None) -> AugmentParams:
    """The preset ``name`` with ``overrides`` applied and validated.

    Raises:
        ValueError: unknown preset (lists the presets) or unknown key (lists the keys, with
            a did-you-mean), or an invalid value.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}.{_did_you_mean(name, PRESETS)} "
                         f"Valid presets: {', '.join(sorted(PRESETS))}")
    overrides = dict(overrides or {})
    valid = [f.name for f in fields(AugmentParams)]
    for key in overrides:
        if key not in valid:
            raise ValueError(f"unknown augmentation parameter {key!r} in overrides for preset {name!r}."
                             f"{_did_you_mean(key, valid)} Valid keys: {', '.join(valid)}")
    return replace(PRESETS[name], **{k: _coerce(v) for k, v in overrides.items()})


def list_presets() -> list[str]:
    return sorted(PRESETS)


__all__ = ["AugmentParamError", "AugmentParams", "PRESETS", "PRESET_DIMS", "get_preset", "list_presets"]
