"""The one object every reader returns.

A :class:`Volume` holds a channel-first float32 array, its voxel-to-world affine and a
small whitelist of *safe* metadata. Nothing that identifies a patient is ever stored here:
readers copy only the keys in :data:`SAFE_METADATA_KEYS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nibabel as nib
import numpy as np

#: Metadata keys a reader may keep. Anything else (names, IDs, dates, institutions…) is dropped.
SAFE_METADATA_KEYS = frozenset(
    {"modality", "spacing", "shape", "orientation", "series_hash", "photometric", "source_format",
     "body_part", "rescaled", "window",
     # added with the DICOM / ITK / PNG / MedMNIST readers (see docs/io.md):
     "spacing_source", "inverted", "transfer_syntax", "patient_orientation", "color",
     "n_ignored_files", "ignored_files", "split", "index", "label", "padding_pixels"}
)


@dataclass
class Volume:
    """An image in memory, 2D or 3D.

    Attributes:
        array: float32 array of shape ``(C, *spatial)``; spatial is ``(X, Y[, Z])`` in the
            voxel order of ``affine`` (nibabel convention).
        affine: ``(D+1, D+1)`` voxel-index → world (mm, RAS+) matrix, D = spatial dims.
        meta: safe metadata only (see :data:`SAFE_METADATA_KEYS`).
    """

    array: np.ndarray
    affine: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array, dtype=np.float32)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        nd = self.array.ndim - 1
        if nd not in (2, 3):
            raise ValueError(f"Volume array must be (C, *spatial) with 2 or 3 spatial dims, got shape {self.array.shape}")
        if self.affine.shape != (nd + 1, nd + 1):
            raise ValueError(f"affine must be {(nd + 1, nd + 1)} for a {nd}D volume, got {self.affine.shape}")
        unsafe = set(self.meta) - SAFE_METADATA_KEYS
        if unsafe:
            raise ValueError(f"metadata keys {sorted(unsafe)} are not in the safe whitelist {sorted(SAFE_METADATA_KEYS)}")

    @property
    def spatial_dims(self) -> int:
        return self.array.ndim - 1

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[1:])

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis (column norms of the affine)."""
        lin = self.affine[:-1, :-1]
        return tuple(float(s) for s in np.sqrt((lin**2).sum(axis=0)))

    @property
    def orientation(self) -> str:
        """Axis codes such as ``"RAS"`` (where each array axis points in world space)."""
        if self.spatial_dims == 3:
            return "".join(nib.aff2axcodes(self.affine))
        a3 = np.eye(4)
        a3[:2, :2] = self.affine[:2, :2]
        a3[:2, 3] = self.affine[:2, 2]
        return "".join(nib.aff2axcodes(a3))[:2]


def plane_affine(affine: np.ndarray) -> np.ndarray:
    """The 3x3 pixel → mm affine of a 2D slice from its 4x4 affine (NIfTI, or a one-slice ITK image read as 2D):
    columns of the two image axes and the translation, rows of the two world axes the slice plane spans (the world
    axis most aligned with the slice normal is dropped: x, y for an axial slice, y, z sagittal, x, z coronal), so the
    pixel size of a slice in a world plane is kept (an oblique slice gets its projection onto that plane)."""
    normal = np.cross(affine[:3, 0], affine[:3, 1])
    drop = int(np.argmax(np.abs(normal))) if normal.any() else 2  # no plane (a zero column): rows x, y, as stored
    rows = [a for a in range(3) if a != drop] + [3]
    return affine[np.ix_(rows, [0, 1, 3])]
