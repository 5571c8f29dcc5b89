"""A folder of single-frame DICOM slices → one 3D :class:`Volume` (CT in HU, MR as stored).

Rules (also in docs/io.md):

* Every file in the folder is either a *slice* or skipped for a stated reason, counted in
  ``meta["n_ignored_files"]`` and listed in ``meta["ignored_files"]`` (name → reason): hidden
  files, a DICOMDIR, files that are neither DICOM-marked nor named ``*.dcm`` (a README),
  non-image objects (Modality in :data:`NON_IMAGE_MODALITIES` such as SEG, RTSTRUCT, SR, or a
  SOP class that is not an image storage class) and multi-frame objects.
* Any other DICOM-marked or ``*.dcm`` file is a slice candidate: one that cannot be parsed
  (truncated, no ``DICM`` marker) or lacks Rows, Columns, ImagePositionPatient,
  ImageOrientationPatient or SeriesInstanceUID is an error naming that file, never dropped
  (a damaged slice would silently leave a hole in the volume), unless ``series_uid=`` selects
  another series than its SeriesInstanceUID: then it is skipped with its reason.
* Slices are grouped by SeriesInstanceUID; exactly one series must remain (select with
  ``series_uid=``, the full UID or the 16-digit hash shown in the error).
* Slices are ordered by their position along the slice normal
  ``d = ImagePositionPatient · (row_cosines × col_cosines)``, never by file name or
  InstanceNumber; steps must be uniform within ``spacing_rtol``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from medssl.io.dicom import (cs, decode_pixels, fill_padding, guarded, hash_uid, modality_values, padding_mask,
                             positive_spacing, read_header, rescale, safe_meta, spacing_2d)
from medssl.io.errors import BadFileError, check_array
from medssl.io.volume import Volume

NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "RTIMAGE", "SR", "PR",
                                  "KO", "REG", "RWV", "DOC", "FID", "PLAN", "AU", "ECG"})
#: DICOM patient space (LPS) → nibabel world space (RAS): negate x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _direction_cosines(ds: pydicom.Dataset, path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64)
    except (AttributeError, TypeError, ValueError):
        raise BadFileError(path, "ImageOrientationPatient is missing or malformed; the slice has no "
                                 "patient geometry (read it as a 2D image with read_dicom)") from None
    row, col = iop[:3], iop[3:]
    # unit within 1%, perpendicular within 0.6°: parallel or zero cosines gave a singular or sheared affine
    if (iop.size != 6 or not np.isfinite(iop).all() or max(abs(np.linalg.norm(row) - 1), abs(np.linalg.norm(col) - 1)) > 0.01
            or abs(row @ col) > 0.01):
        raise BadFileError(path, f"ImageOrientationPatient {iop.round(4).tolist()} is not two perpendicular unit "
                                 "vectors (row, column cosines): the slice has no valid patient geometry; fix the "
                                 "header, or read the file as a 2D image (read_dicom, spatial_dims=2)")
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def _position(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    try:
        pos = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
    except (AttributeError, TypeError, ValueError):
        raise BadFileError(path, "ImagePositionPatient is missing or malformed") from None
    if pos.size != 3 or not np.isfinite(pos).all():
        raise BadFileError(path, f"ImagePositionPatient {pos.round(3).tolist()} is not three finite coordinates (mm)")
    return pos


def _pixel_spacing(ds: pydicom.Dataset, path: Path) -> tuple[float, float]:
    """``(row_spacing, col_spacing)`` in mm (PixelSpacing order), by the rule of
    :func:`~medssl.io.dicom.spacing_2d` (PixelSpacing, else ImagerPixelSpacing, else 1.0)."""
    (col_sp, row_sp), _ = spacing_2d(ds, path)
    return row_sp, col_sp


def slice_thickness(ds: pydicom.Dataset, path: str | Path) -> float:
    """SliceThickness in mm (the step of a one-slice volume), 1.0 when absent or empty.

    Raises:
        BadFileError: zero, negative or non-finite thickness.
    """
    value = ds.get("SliceThickness")
    return 1.0 if value is None or value == "" else positive_spacing([value], "SliceThickness", path)[0]


def _affine(ds: pydicom.Dataset, path: Path, origin: np.ndarray, step: np.ndarray) -> np.ndarray:
    """RAS affine for index ``(i along a row, j down a column, k slice)``."""
    row, col = _direction_cosines(ds, path)
    row_sp, col_sp = _pixel_spacing(ds, path)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * col_sp, col * row_sp, step, origin
    return LPS_TO_RAS @ lps


def slice_affine(ds: pydicom.Dataset, path: str | Path, thickness: float = 1.0) -> np.ndarray:
    """4×4 RAS affine of one slice; the third axis is the slice normal × ``thickness`` (mm)."""
    path = Path(path)
    row, col = _direction_cosines(ds, path)
    return _affine(ds, path, _position(ds, path), np.cross(row, col) * thickness)


SLICE_KEYWORDS = ("Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient", "SeriesInstanceUID")


def _not_a_slice(ds: pydicom.Dataset) -> str | None:
    """Why a readable DICOM object is legitimately not a slice (``None``: it must be one)."""
    modality = str(ds.get("Modality", "")).upper()
    if modality in NON_IMAGE_MODALITIES:
        return f"non-image object (Modality {cs(ds, 'Modality')})"
    meta = getattr(ds, "file_meta", None)
    sop = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    name = getattr(sop, "name", "")
    if sop and name != str(sop) and "Image" not in name:  # a known SOP class; names come from pydicom
        return f"non-image object ({name})"
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return "multi-frame object"
    return None


def _scan(folder: Path, recursive: bool, series_uid: str | None = None) -> tuple[dict[str, list], dict[str, str]]:
    """Group the folder's slices by SeriesInstanceUID; returns ``(series, {ignored name: reason})``.

    Raises:
        BadFileError: naming a slice candidate (DICOM-marked or ``*.dcm``) that cannot be
            read or lacks one of :data:`SLICE_KEYWORDS` (unless ``series_uid`` selects
            another series than the one it names: then it is ignored, with its reason).
    """
    files = sorted(p for p in (folder.rglob("*") if recursive else folder.iterdir()) if p.is_file())
    series: dict[str, list] = {}
    ignored: dict[str, str] = {}
    for p in files:
        name = str(p.relative_to(folder))
        marked = pydicom.misc.is_dicom(p)
        if p.name.startswith("."):
            ignored[name] = "hidden file"
        elif p.name.upper() == "DICOMDIR":
            ignored[name] = "DICOMDIR"
        elif not marked and p.suffix.lower() != ".dcm":
            ignored[name] = "not DICOM (no DICM marker, no .dcm suffix)"
        if name in ignored:
            continue
        holder: list = []
        with guarded(p, holder):
            try:
                holder.append(read_header(p, stop_before_pixels=True))
            except BadFileError as e:
                raise BadFileError(p, f"unreadable slice candidate ({e.reason.split('; ')[0]}); restore it or "
                                      "move it out of the folder (dropping it would leave a hole in the "
                                      "volume)") from None
            ds = holder[0]
            reason = _not_a_slice(ds)
            if reason is None:
                missing = [k for k in SLICE_KEYWORDS if not ds.get(k)]
                uid = str(ds.get("SeriesInstanceUID") or "")
                if missing and uid and series_uid is not None and series_uid not in (uid, hash_uid(uid)):
                    reason = f"image of another series, lacking {', '.join(missing)}"  # no hole in the chosen one
                elif missing:
                    other = "; if it is of another series, pick yours with series_uid= (UID or its hash_uid)" if uid else ""
                    raise BadFileError(p, f"lacks {', '.join(missing)}: a damaged or truncated slice, or an image "
                                          f"that is not part of this volume; restore it or move it out of the folder{other}")
        if reason is not None:
            ignored[name] = reason
            continue
        series.setdefault(str(ds.SeriesInstanceUID), []).append((p, ds))
    return series, ignored


def ignored_summary(ignored: dict[str, str]) -> str:
    """``"2 not DICOM (…): MD5SUMS, README; 1 non-image object (Modality SEG): seg.dcm"``."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in ignored.items():
        by_reason.setdefault(reason, []).append(name)
    parts = [f"{len(names)} {reason}: {', '.join(names[:3])}{', …' if len(names) > 3 else ''}"
             for reason, names in by_reason.items()]
    return "; ".join(parts) or "none"


def _select(folder: Path, series: dict[str, list], ignored: dict[str, str], series_uid: str | None) -> list:
    listing = ", ".join(f"{hash_uid(u)} ({cs(g[0][1], 'Modality')}, {len(g)} files)" for u, g in series.items())
    if series_uid is not None:
        for uid, group in series.items():
            if series_uid in (uid, hash_uid(uid)):
                return group
        raise BadFileError(folder, f"no image series matches series_uid={series_uid!r}; "
                                   f"found: {listing or 'none'}")
    if not series:
        raise BadFileError(folder, f"no DICOM image slices found ({len(ignored)} files ignored: "
                                   f"{ignored_summary(ignored)})")
    if len(series) > 1:
        raise BadFileError(folder, f"contains {len(series)} image series: {listing}; pass "
                                   "series_uid='<hash>' (one of these) to read one of them (in a data card: "
                                   "reader_options: {series_uid: '<hash>'})")
    return next(iter(series.values()))


def _check_consistent(group: list) -> None:
    p0, ds0 = group[0]
    ref = (int(ds0.Rows), int(ds0.Columns), _pixel_spacing(ds0, p0), np.concatenate(_direction_cosines(ds0, p0)))
    for p, ds in group[1:]:
        cur = (int(ds.Rows), int(ds.Columns), _pixel_spacing(ds, p), np.concatenate(_direction_cosines(ds, p)))
        if cur[:2] != ref[:2]:
            raise BadFileError(p, f"slice size {cur[:2]} differs from {ref[:2]} of {p0.name}")
        if not np.allclose(cur[2], ref[2], rtol=1e-4):
            raise BadFileError(p, f"PixelSpacing {cur[2]} differs from {ref[2]} of {p0.name}")
        if not np.allclose(cur[3], ref[3], atol=1e-4):
            raise BadFileError(p, f"ImageOrientationPatient differs from {p0.name}: the series mixes "
                                  "orientations (e.g. localizer or radial slices); it is not one volume")


def _order(folder: Path, group: list, spacing_rtol: float) -> tuple[list, np.ndarray]:
    """Sort slices along the normal and return ``(group, step_vector_lps)``."""
    p0, ds0 = group[0]
    row, col = _direction_cosines(ds0, p0)
    normal = np.cross(row, col)
    pos = {id(ds): _position(ds, p) for p, ds in group}
    group = sorted(group, key=lambda item: float(pos[id(item[1])] @ normal))
    d = np.array([pos[id(ds)] @ normal for _, ds in group])
    if len(group) == 1:
        return group, normal * slice_thickness(ds0, p0)
    steps = np.diff(d)
    k = int(np.argmin(steps))
    if steps[k] < 1e-4:
        raise BadFileError(folder, f"{group[k][0].name} and {group[k + 1][0].name} have the same slice position "
                                   f"({d[k]:.3f} mm along the normal): the series holds several volumes "
                                   "(echoes, phases, time points) or duplicate files; split it first")
    med = float(np.median(steps))
    k = int(np.argmax(np.abs(steps - med)))
    if abs(steps[k] - med) > max(spacing_rtol * med, 1e-3):
        raise BadFileError(folder, f"slice spacing is not uniform: steps range {steps.min():.4g}–"
                                   f"{steps.max():.4g} mm (median {med:.4g}), e.g. {steps[k]:.4g} mm between "
                                   f"{group[k][0].name} and {group[k + 1][0].name}; a slice is missing or the "
                                   "folder mixes acquisitions")
    return group, (pos[id(group[-1][1])] - pos[id(group[0][1])]) / (len(group) - 1)


def read_dicom_series(folder: str | Path, *, series_uid: str | None = None, spacing_rtol: float = 0.01,
                      recursive: bool = False) -> Volume:
    """Read one DICOM series (a folder of single-frame slices) into a 3D volume.

    Args:
        folder: directory holding the slices (any file names; order comes from positions).
        series_uid: SeriesInstanceUID or its 16-digit hash (:func:`medssl.io.dicom.hash_uid`),
            required when the folder holds more than one image series.
        spacing_rtol: allowed relative deviation of each slice step from the median step.
        recursive: also look into sub-folders.

    Returns:
        Volume with array ``(1, cols, rows, n_slices)`` float32 in modality units (Rescale
        Slope/Intercept applied: Hounsfield units for CT; PixelPaddingValue pixels set to the nearest
        end of the volume's other values, :func:`~medssl.io.dicom.fill_padding`); affine voxel → RAS mm built from
        ImageOrientationPatient, PixelSpacing (else ImagerPixelSpacing, as in
        :func:`~medssl.io.dicom.read_dicom`) and the first/last ImagePositionPatient (so
        gantry tilt appears as shear), converted from DICOM LPS.

    Raises:
        BadFileError: folder missing, a damaged slice candidate (named), no slices, several
            series, mixed geometry, duplicate positions, gaps or non-uniform spacing,
            undecodable pixels, NaN/Inf values.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadFileError(folder, "folder does not exist" if not folder.exists() else "is not a folder")
    with guarded(folder):
        return _read_series(folder, series_uid, spacing_rtol, recursive)


def _read_series(folder: Path, series_uid: str | None, spacing_rtol: float, recursive: bool) -> Volume:
    series, ignored = _scan(folder, recursive, series_uid)
    group = _select(folder, series, ignored, series_uid)
    _check_consistent(group)
    group, step = _order(folder, group, spacing_rtol)
    p0, ds0 = group[0]
    first = read_header(p0)
    volume = np.empty((int(ds0.Columns), int(ds0.Rows), len(group)), dtype=np.float32)
    padding = None  # (cols, rows, n) bool once a slice declares a PixelPaddingValue
    for k, (p, _) in enumerate(group):
        holder = [first]  # and this slice's header once read: its own values (SOPInstanceUID, dates…) are scrubbed too
        with guarded(p, holder):
            ds = first if k == 0 else read_header(p)
            holder.append(ds)
            pixels = decode_pixels(ds, p)
            if pixels.shape != (int(ds0.Rows), int(ds0.Columns)):
                raise BadFileError(p, f"expected one grayscale {ds0.Rows}x{ds0.Columns} slice, "
                                      f"got pixels of shape {pixels.shape}")
            volume[:, :, k] = modality_values(pixels, ds).T
            mask = padding_mask(pixels, ds)
            if mask is not None:
                padding = np.zeros(volume.shape, bool) if padding is None else padding
                padding[:, :, k] = mask.T
    extra = {} if padding is None else {"padding_pixels": fill_padding(volume, padding, folder)}  # one range per volume
    check_array(folder, volume)
    affine = _affine(ds0, p0, _position(ds0, p0), step)
    meta = safe_meta(first, shape=volume.shape, window="none", spacing_source=spacing_2d(ds0, p0)[1],
                     n_ignored_files=len(ignored), ignored_files=ignored,
                     rescaled=rescale(first) is not None or "ModalityLUTSequence" in first, **extra)
    vol = Volume(volume[None], affine, meta)
    vol.meta["spacing"] = vol.spacing
    return vol
