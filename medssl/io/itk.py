"""NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) via SimpleITK."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from medssl.io.errors import BadFileError, check_affine, check_array
from medssl.io.volume import Volume, plane_affine

ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
#: ITK physical space (LPS) → nibabel world space (RAS): negate x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def itk_affine(image, dims: int) -> np.ndarray:
    """Voxel → world affine of the first ``dims`` axes of a SimpleITK image.

    3D: ITK's LPS physical space converted to RAS+. 2D: ITK's in-plane coordinates as
    stored (a 2D image has no patient frame; see docs/io.md); for a one-slice 3D image the rows
    of its slice plane (:func:`~medssl.io.volume.plane_affine`), 3x3.
    """
    n = image.GetDimension()
    k = 3 if dims == 2 and n >= 3 else dims  # a one-slice 3D image read as 2D: its geometry in 3D first
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(n, n)[:k, :k]
    lin = direction @ np.diag(np.asarray(image.GetSpacing(), dtype=np.float64)[:k])
    affine = np.eye(k + 1)
    affine[:k, :k], affine[:k, k] = lin, np.asarray(image.GetOrigin())[:k]
    if k != dims:
        return plane_affine(affine)
    return LPS_TO_RAS @ affine if dims == 3 else affine


def _itk_reason(message: str) -> str:
    """The informative line of an ITK exception: not the C++ source location, not the stale
    ``Reason: No such file or directory`` errno ITK appends to read failures, not the rows of a matrix
    printed after the error line (a refused direction), no object address."""
    lines = [ln.strip() for ln in message.strip().splitlines()[1:]]
    lines = [ln for ln in lines if ln and not ln.startswith("Reason: No such file")]
    if lines and not re.search(r"[A-Za-z]", lines[-1]):  # numbers only: take the error line above them
        lines = [ln for ln in lines if "ERROR" in ln] or lines
    return re.sub(r"\(0x[0-9a-f]+\)", "", lines[-1] if lines else message.strip())[:200]


def read_itk(path: str | Path, *, expect_spatial_dims: int | None = None) -> Volume:
    """Read an NRRD or MetaImage file with SimpleITK.

    Args:
        path: ``.nrrd``, ``.nhdr``, ``.mha`` or ``.mhd`` (with its raw data file next to it).
        expect_spatial_dims: 2 or 3 to require that; ``None`` accepts either. A 4D image
            with a single time point is read as 3D; a true 4D image is an error. With 2, a 3D
            image of one slice (size (W, H, 1)) is read as 2D (its in-plane geometry), as
            :func:`~medssl.io.nifti.read_nifti` reads (X, Y, 1).

    Returns:
        Volume with array ``(C, X, Y[, Z])`` float32 (C = components per pixel, 1 for
        scalar images), the transpose of ``sitk.GetArrayFromImage``; affine from origin,
        spacing and direction (LPS → RAS for 3D).

    Raises:
        BadFileError: missing, unreadable or truncated file, wrong dimensionality, empty
            or non-finite data, complex voxels.
    """
    path = Path(path)
    if not path.is_file():
        raise BadFileError(path, "file does not exist" if not path.exists() else "is not a regular file")
    try:
        import SimpleITK as sitk  # imported here: only NRRD/MetaImage reading needs it

        image = sitk.ReadImage(str(path))
        data = sitk.GetArrayViewFromImage(image)
    except RuntimeError as e:
        raise BadFileError(path, f"SimpleITK cannot read it ({_itk_reason(str(e))}); the file is corrupt, truncated "
                                 "or its data file is missing") from None
    if data.dtype.kind == "c":  # the float32 cast below would keep the real part only
        raise BadFileError(path, f"voxels are complex ({data.dtype}); medssl reads real-valued images: convert it "
                                 "to one real channel first (e.g. the magnitude)")
    comps = image.GetNumberOfComponentsPerPixel()
    data = np.asarray(data, dtype=np.float32)
    if comps == 1:
        data = data[..., None]
    dims = image.GetDimension()
    if dims == 4 and image.GetSize()[3] == 1:
        data, dims = data[0], 3
    if dims == 3 and expect_spatial_dims == 2 and image.GetSize()[2] == 1:  # a 2D image stored as one slice
        data, dims = data[0], 2
    if dims not in (2, 3) or (expect_spatial_dims is not None and dims != expect_spatial_dims):
        want = f"{expect_spatial_dims}D" if expect_spatial_dims else "2D or 3D"
        raise BadFileError(path, f"expected a {want} image, got {dims}D of size {image.GetSize()}; "
                                 "select one volume first (e.g. with SimpleITK Extract)")
    array = np.ascontiguousarray(np.moveaxis(data, -1, 0).transpose(0, *range(dims, 0, -1)))
    check_array(path, array)
    source = "nrrd" if path.suffix.lower() in (".nrrd", ".nhdr") else "metaimage"
    vol = Volume(array, check_affine(path, itk_affine(image, dims)), {"source_format": source, "shape": tuple(array.shape[1:])})
    vol.meta["spacing"] = vol.spacing
    return vol
