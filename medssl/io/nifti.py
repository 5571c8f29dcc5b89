"""NIfTI reading and writing with nibabel."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.spatialimages import HeaderDataError

from medssl.io.errors import BadFileError, check_affine, check_array
from medssl.io.volume import Volume, plane_affine


def read_nifti(path: str | Path, expect_spatial_dims: int = 3) -> Volume:
    """Read a ``.nii`` / ``.nii.gz`` file into a :class:`Volume`.

    Args:
        path: file path.
        expect_spatial_dims: 3 for volumes; a 4D file with a single volume along axis 4 is
            accepted, a true 4D series is an error. 2 for 2D images (stored as (X, Y) or
            (X, Y, 1)); the affine is then the 3x3 pixel → mm map in the image plane (rows of the two world
            axes the plane spans: x, y for an axial slice, y, z sagittal, x, z coronal).

    Returns:
        Volume with array ``(1, X, Y, Z)`` float32 (scl_slope/inter applied), the file's
        affine (qform/sform as chosen by nibabel) and safe metadata.

    Raises:
        BadFileError: unreadable, truncated, a damaged header field, wrong dimensionality,
            empty or non-finite data, RGB or complex voxels, a header larger than memory, a
            broken affine (:func:`~medssl.io.errors.check_affine`).
    """
    path = Path(path)
    try:
        img = nib.load(str(path))
    except FileNotFoundError:
        raise BadFileError(path, "file does not exist") from None
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, nib.filebasedimages.ImageFileError, HeaderDataError,
            ValueError) as e:  # HeaderDataError: a damaged field (unknown datatype code, negative vox_offset)
        raise BadFileError(path, f"cannot decode NIfTI ({type(e).__name__}: {e}); the file is corrupt or truncated, re-export or re-download it") from None
    dtype = img.get_data_dtype()
    if dtype.fields is not None or dtype.kind == "c":
        raise BadFileError(path, f"voxels are of type {dtype} ({'complex' if dtype.kind == 'c' else 'RGB / structured'}); "
                                 "medssl reads real-valued scalar images: convert it to one real channel first "
                                 "(e.g. the magnitude, or a grey-scale image)")
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except MemoryError:
        raise BadFileError(path, f"its header declares shape {img.shape} ({np.prod(img.shape) * 4 / 2**30:.1f} GiB as "
                                 "float32), more than memory allows; the header is corrupt, or the image needs cropping") from None
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError, OverflowError) as e:  # Overflow: negative dim
        raise BadFileError(path, f"cannot decode NIfTI ({type(e).__name__}: {e}); the file is corrupt or truncated, re-export or re-download it") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if expect_spatial_dims == 2 and data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]  # a 2D NIfTI is stored as (X, Y, 1)
    if data.size == 0:
        raise BadFileError(path, f"image has zero voxels (header shape {img.shape})")
    if data.ndim != expect_spatial_dims:
        raise BadFileError(path, f"expected a {expect_spatial_dims}D image, got shape {data.shape}; "
                           "select one volume (e.g. with fslroi) or use a reader for series")
    check_array(path, data)
    affine = img.affine if expect_spatial_dims == 3 else plane_affine(img.affine)
    check_affine(path, affine)
    return Volume(array=data[None], affine=affine, meta={"source_format": "nifti", "shape": tuple(data.shape)})


def write_nifti(volume: Volume, path: str | Path, dtype: np.dtype | None = None) -> Path:
    """Write a single-channel 3D :class:`Volume` to ``path`` (gzip when it ends in .gz)."""
    path = Path(path)
    if volume.spatial_dims != 3 or volume.array.shape[0] != 1:
        raise ValueError(f"write_nifti needs a single-channel 3D volume, got array {volume.array.shape}")
    data = volume.array[0] if dtype is None else volume.array[0].astype(dtype)
    img = nib.Nifti1Image(data, volume.affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(volume.affine, code=1)
    img.set_sform(volume.affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path
