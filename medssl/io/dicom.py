"""Single DICOM files: radiographs (DX, CR, MG, …) and single slices, read with pydicom.

Conventions (shared with :mod:`medssl.io.dicom_series`):

* The array follows nibabel / ITK index order: axis 0 runs along a row (DICOM columns),
  axis 1 down a column (DICOM rows), i.e. the transpose of ``ds.pixel_array``.
* Nothing that identifies a patient leaves this module: the Volume keeps only whitelisted
  metadata, the series is kept as a truncated SHA-256 of its UID, and error / warning
  messages are scrubbed of header values (:func:`safe_reason`).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_windowing, get_decoder

from medssl.io.dicom_lut import lut_lookup, modality_range, modality_values, rescale
from medssl.io.errors import BadFileError, MissingDecoderError, check_array, redact, scrubbed_warnings
from medssl.io.volume import Volume

#: Modalities whose pixel values are display intensities; ``voi="auto"`` windows them.
RADIOGRAPHIC_MODALITIES = frozenset({"CR", "DX", "MG", "RF", "XA", "IO", "PX", "RG", "DF", "OT"})
#: Header keywords never copied anywhere and scrubbed from messages (plus every PN element).
PHI_KEYWORDS = frozenset({
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "OtherPatientIDs",
    "OtherPatientNames", "PatientAddress", "PatientTelephoneNumbers", "PatientMotherBirthName",
    "IssuerOfPatientID", "MedicalRecordLocator", "PatientComments", "AccessionNumber",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName", "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy", "RequestingPhysician", "StudyID", "StudyDate", "SeriesDate",
    "AcquisitionDate", "ContentDate", "StudyTime", "DeviceSerialNumber", "StudyInstanceUID",
    "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "StudyDescription",
})
CODECS_HINT = 'pip install "medssl[dicom-codecs]"'
_CS = re.compile(r"^[A-Z0-9 _]{1,16}$")  # DICOM Code String: safe to keep (CHEST, MONOCHROME1…)


def hash_uid(uid: str) -> str:
    """Return the first 16 hex digits of SHA-256(uid): a stable, non-reversible series id."""
    return hashlib.sha256(str(uid).encode()).hexdigest()[:16]


def phi_values(ds: pydicom.Dataset | None) -> list[str]:
    """String values (3+ characters) of identifying elements: :data:`PHI_KEYWORDS` and all PN."""
    if ds is None:
        return []
    values = []
    with contextlib.suppress(Exception):  # a header too broken to iterate: quotes still redacted
        for elem in ds.iterall():
            if elem.keyword in PHI_KEYWORDS or elem.VR == "PN":
                values += [str(v) for v in (elem.value if elem.VM > 1 else [elem.value])]
    return [v for v in set(values) if len(v) >= 3]


def safe_reason(exc: BaseException, *headers: pydicom.Dataset | None) -> str:
    """``"TypeName: message"`` of an exception, scrubbed with :func:`redact` of the ``headers``' values."""
    return f"{type(exc).__name__}: {redact(str(exc), [v for ds in headers for v in phi_values(ds)])}"


@contextlib.contextmanager
def guarded(path: str | Path, holder: list | None = None):
    """Scrub warnings; turn unexpected errors (a malformed header value surfaces as
    ``ValueError("... 'value'")``) into a :class:`BadFileError` without header values of the
    headers in ``holder`` (filled inside the block, once read) or quoted parts."""
    def secrets() -> list[str]:
        return [v for ds in holder or () for v in phi_values(ds)]

    try:
        with scrubbed_warnings(secrets, logger="pydicom"):
            yield
    except BadFileError:
        raise
    except Exception as e:  # noqa: BLE001
        raise BadFileError(path, f"malformed DICOM content ({safe_reason(e, *(holder or ()))}); if other tools read "
                                 "this file, please report it as a medssl bug") from None


def cs(ds: pydicom.Dataset, keyword: str, default: str = "?") -> str:
    """A Code String element (Modality, PhotometricInterpretation…) if well-formed, else ``default``."""
    value = str(ds.get(keyword, ""))
    return value if _CS.match(value) else default


def read_header(path: str | Path, stop_before_pixels: bool = False) -> pydicom.Dataset:
    """``pydicom.dcmread`` with errors turned into :class:`BadFileError` (no header values)."""
    path = Path(path)
    if not path.is_file():
        raise BadFileError(path, "file does not exist" if not path.exists() else "is not a regular file")
    holder: list = []
    try:
        with scrubbed_warnings(lambda: phi_values(holder[0] if holder else None), logger="pydicom"):
            holder.append(pydicom.dcmread(path, stop_before_pixels=stop_before_pixels))
        return holder[0]
    except InvalidDicomError:
        raise BadFileError(path, "not a DICOM file (no 'DICM' marker); check the path or "
                                 "read it with pydicom.dcmread(force=True) to inspect it") from None
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for corrupt files
        raise BadFileError(path, f"cannot parse DICOM ({safe_reason(e)}); the file is corrupt or truncated") from None


def transfer_syntax(ds: pydicom.Dataset) -> pydicom.uid.UID | None:
    """The file's Transfer Syntax UID (``None`` when the file meta lacks it)."""
    meta = getattr(ds, "file_meta", None)
    return meta.get("TransferSyntaxUID") if meta is not None else None


def decode_pixels(ds: pydicom.Dataset, path: str | Path) -> np.ndarray:
    """Stored pixel values, ``(rows, cols)`` / ``(frames, rows, cols)`` [``, 3``] (RGB).

    Raises:
        BadFileError: no pixel data, or undecodable / truncated pixel data.
        MissingDecoderError: compressed transfer syntax without an installed decoder.
    """
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        sop = getattr(ds.get("SOPClassUID"), "name", "unknown SOP class")
        if "Rows" in ds or "Image" in sop:  # an image object without its pixels: cut short
            raise BadFileError(path, f"has no pixel data although it is an image ({sop}, Modality "
                                     f"{cs(ds, 'Modality')}): the file looks truncated or damaged; "
                                     "restore or re-export it")
        raise BadFileError(path, f"has no pixel data ({sop}, Modality {cs(ds, 'Modality')}); "
                                 "it is not an image (e.g. a report or structure set)")
    ts = transfer_syntax(ds)
    where = f"transfer syntax {ts.name} ({ts})" if ts else "unknown transfer syntax"
    if ts is not None and ts.is_compressed:
        decoder = get_decoder(ts)
        if decoder is None or not decoder.is_available:
            raise MissingDecoderError(path, f"no installed decoder for {where}; install the DICOM "
                                            f"codecs with: {CODECS_HINT}")
    try:
        with scrubbed_warnings(lambda: phi_values(ds), logger="pydicom"):
            return ds.pixel_array
    except Exception as e:  # noqa: BLE001
        if ts is not None and ts.is_compressed and "does not support" in str(e):  # e.g. Pillow and 12-bit JPEG
            plugins = ", ".join(get_decoder(ts).available_plugins)
            raise MissingDecoderError(path, f"the installed decoder(s) ({plugins}) cannot read this {where} file "
                                            f"({ds.get('BitsStored', '?')} bits stored); install the DICOM codecs "
                                            f"with: {CODECS_HINT}") from None
        hint = f"; more decoders: {CODECS_HINT}" if ts and ts.is_compressed else "; the file is corrupt or truncated"
        raise BadFileError(path, f"cannot decode pixel data with {where} ({safe_reason(e, ds)}){hint}") from None


def padding_mask(pixels: np.ndarray, ds: pydicom.Dataset) -> np.ndarray | None:
    """Stored pixels that are padding (PS3.3 C.7.5.1.1.2), bool, shape of ``pixels``: equal to
    PixelPaddingValue, or between it and PixelPaddingRangeLimit (inclusive). ``None`` without one."""
    if ds.get("PixelPaddingValue") in (None, ""):
        return None
    ends = [int(ds.PixelPaddingValue), int(ds.get("PixelPaddingRangeLimit", ds.PixelPaddingValue))]
    bits = int(ds.get("BitsAllocated", 16))
    if int(ds.get("PixelRepresentation", 0)) == 1:  # a signed value written as US (e.g. 63536 for -2000)
        ends = [v - 2**bits if v >= 2 ** (bits - 1) else v for v in ends]
    lo, hi = min(ends), max(ends)
    return (pixels >= lo) & (pixels <= hi)


def fill_padding(values: np.ndarray, mask: np.ndarray, path: str | Path) -> int:
    """Set the padding pixels of ``values`` (modality values, any shape; changed in place) to the nearest end
    of the other pixels' range (C.7.5.1.1.2: padding lies outside it), e.g. CT padding of -3024 HU to the
    image's minimum (air). Returns the number of padding pixels; all padding is a :class:`BadFileError`."""
    n = int(mask.sum())
    if n == mask.size:
        raise BadFileError(path, "every pixel equals the PixelPaddingValue (or lies in its range): the image holds "
                                 "no data; exclude it or fix the header")
    if n:
        real = values[~mask]
        values[mask] = np.clip(values[mask], real.min(), real.max())
    return n


def _window_header(ds: pydicom.Dataset, center: float, width: float, function: str = "") -> pydicom.Dataset:
    """A new header with only what :func:`apply_windowing` reads, plus one window (LINEAR unless ``function`` names
    the file's VOI LUT Function). No rescale: the window's output range is then the stored (or Modality LUT) range,
    low → high, which :func:`apply_display` maps to [0, 1]; with the rescale, a negative Rescale Slope would make
    pydicom's range high → low and invert every window."""
    out = pydicom.Dataset()
    for kw in ("PhotometricInterpretation", "BitsStored", "PixelRepresentation", "ModalityLUTSequence"):
        if kw in ds:
            setattr(out, kw, ds[kw].value)
    out.WindowCenter, out.WindowWidth = center, width
    if function:
        out.VOILUTFunction = function
    return out


def apply_display(ds: pydicom.Dataset, values: np.ndarray, voi, path: str | Path = "") -> tuple[np.ndarray, str]:
    """Apply a VOI transform to modality values and map to [0, 1] (see :func:`read_dicom`).

    Raises:
        BadFileError: the file's window (``voi="file"``) has a width below 1 or is not finite,
            which DICOM forbids (numbers only in the message: they identify no one).
    """
    if isinstance(voi, tuple | list):
        center, width = (float(v) for v in voi)
        ds = _window_header(ds, center, max(width, 1.0))  # the caller's header is not changed
        tag = f"c={center:g},w={width:g}"
    elif voi == "file" and ds.get("VOILUTSequence"):
        out, table = lut_lookup(ds, ds.VOILUTSequence[0], values, modality_range(ds)[0] < 0)  # its range → [0, 1]
        return (out - table.min()) / max(table.max() - table.min(), 1e-12), "voi_lut"
    elif voi == "file" and all(ds.get(k) not in (None, "") for k in ("WindowCenter", "WindowWidth")):  # empty: none
        c, w = (float(ds[k].value[0] if ds[k].VM > 1 else ds[k].value) for k in ("WindowCenter", "WindowWidth"))
        if not (math.isfinite(c) and math.isfinite(w) and w >= 1):
            raise BadFileError(path, f"its display window is WindowCenter {c:g}, WindowWidth {w:g}; DICOM requires a "
                                     "finite centre and a width of at least 1. Read it with reader_options "
                                     "{voi: none} (stored values) or {voi: [center, width]}")
        tag, ds = f"c={c:g},w={w:g}", _window_header(ds, c, w, str(ds.get("VOILUTFunction") or ""))
    else:
        lo, hi = modality_range(ds)
        return np.clip((values - lo) / max(hi - lo, 1e-12), 0.0, 1.0), "full_range"
    lo, hi = modality_range(ds)  # the header's: stored (or Modality LUT) range, as apply_windowing's output
    return (apply_windowing(np.asarray(values, np.float64), ds, index=0) - lo) / max(hi - lo, 1e-12), tag


def positive_spacing(values, keyword: str, path: str | Path) -> tuple[float, ...]:
    """Spacings (mm) from a header element; any zero, negative or non-finite one is an error.

    A value that is not a number raises ``ValueError`` (turned into a redacted
    :class:`BadFileError` by :func:`guarded`); numbers are safe to name in the message.
    """
    out = tuple(float(v) for v in values)
    if not all(math.isfinite(v) and v > 0 for v in out):
        raise BadFileError(path, f"{keyword} {[round(v, 6) for v in out]} mm is not a positive, finite spacing; "
                                 "fix the header (or exclude the file): resampling would break on it")
    return out


def spacing_2d(ds: pydicom.Dataset, path: str | Path) -> tuple[tuple[float, float], str]:
    """``((col_spacing, row_spacing), source)`` in mm; 1.0 when the header has none.

    Raises:
        BadFileError: PixelSpacing / ImagerPixelSpacing zero, negative or non-finite.
    """
    for kw in ("PixelSpacing", "ImagerPixelSpacing"):
        if kw in ds and ds[kw].VM == 2:
            row_sp, col_sp = positive_spacing(ds[kw].value, kw, path)
            return (col_sp, row_sp), kw
    return (1.0, 1.0), "default"


def safe_meta(ds: pydicom.Dataset, **extra) -> dict:
    """The whitelisted metadata of a header: modality, photometric, hashed series, body part…"""
    meta = {"source_format": "dicom"}
    for key, kw in (("modality", "Modality"), ("photometric", "PhotometricInterpretation")):
        if cs(ds, kw, ""):
            meta[key] = cs(ds, kw)
    if ds.get("SeriesInstanceUID"):
        meta["series_hash"] = hash_uid(ds.SeriesInstanceUID)
    ts = transfer_syntax(ds)
    if ts is not None:
        meta["transfer_syntax"] = ts.name
    body = str(ds.get("BodyPartExamined", "")).strip().upper()
    if _CS.match(body):
        meta["body_part"] = body
    po = ds["PatientOrientation"] if "PatientOrientation" in ds else None
    if po is not None and po.VM == 2 and all(_CS.match(str(v)) for v in po.value):
        meta["patient_orientation"] = "\\".join(str(v) for v in po.value)
    meta.update(extra)
    return {k: v for k, v in meta.items() if v is not None}


def read_dicom(path: str | Path, *, voi="auto", color: str = "luminance", spatial_dims: int = 2) -> Volume:
    """Read one single-frame DICOM image (radiograph or one slice).

    Pipeline for grayscale images: Modality LUT (Rescale Slope/Intercept, e.g. → HU), pixel
    padding to the image's range (:func:`fill_padding`), then the VOI step chosen by ``voi``, then MONOCHROME1 inversion so that high = bright (not
    for ``"none"`` on CT/MR/PT/…: their modality values stay quantitative, as in
    :func:`~medssl.io.dicom_series.read_dicom_series`).

    Args:
        path: a ``.dcm`` file.
        voi: ``"auto"`` (``"file"`` for radiographic modalities DX/CR/MG/RF/XA/IO/PX/OT,
            ``"none"`` for CT/MR/PT/… so values stay quantitative); ``"file"``: the file's
            VOI LUT, else its first window, else the full stored range, output in [0, 1];
            ``(center, width)``: that linear window, output in [0, 1]; ``"none"``: modality
            values (HU for CT). The choice made is stored in ``meta["window"]``.
        color: ``"luminance"`` (RGB → BT.601 luma, 1 channel) or ``"rgb"`` (3 channels,
            grayscale repeated). Colour images (RGB, YBR → RGB, palette) get no VOI: they
            are divided by their full range (``2**bits - 1``) unless ``voi="none"``.
        spatial_dims: 2 → ``(C, cols, rows)`` with an in-plane affine (mm, no patient frame);
            3 → ``(C, cols, rows, 1)`` with the patient affine (RAS+) from Image Position /
            Orientation, slice thickness as third spacing (needs those tags).

    Returns:
        :class:`Volume` (float32), spacing from PixelSpacing, else ImagerPixelSpacing, else
        1.0 (``meta["spacing_source"]`` says which).

    Raises:
        BadFileError: missing / not DICOM / no pixel data / multi-frame / corrupt.
        MissingDecoderError: compressed transfer syntax without a decoder plugin.
    """
    if voi not in ("auto", "file", "none") and not (isinstance(voi, tuple | list) and len(voi) == 2 and voi[1] > 0):
        raise ValueError(f"voi must be 'auto', 'file', 'none' or (center, width > 0), got {voi!r}")
    if color not in ("luminance", "rgb") or spatial_dims not in (2, 3):
        raise ValueError(f"color must be 'luminance'/'rgb' and spatial_dims 2/3, got {color!r}, {spatial_dims!r}")
    path, holder = Path(path), []
    with guarded(path, holder):
        ds = read_header(path)
        holder.append(ds)
        return _read_dicom(path, ds, voi, color, spatial_dims)


def _read_dicom(path: Path, ds: pydicom.Dataset, voi, color: str, spatial_dims: int) -> Volume:
    pixels = decode_pixels(ds, path)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames > 1:
        raise BadFileError(path, f"multi-frame DICOM ({n_frames} frames, Modality {cs(ds, 'Modality')}) "
                                 "is not supported by read_dicom; export the frames or read it with SimpleITK")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    meta = {}
    if int(ds.get("SamplesPerPixel", 1)) > 1 or photometric == "PALETTE COLOR":
        bits = int(ds.get("BitsStored", 8))
        if photometric == "PALETTE COLOR":
            pixels = pydicom.pixels.apply_color_lut(pixels, ds)
            bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        rgb = np.asarray(pixels, np.float64) / (1.0 if voi == "none" else 2.0**bits - 1)
        luma = rgb @ np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as in read_png
        image = luma[None] if color == "luminance" else np.moveaxis(rgb, -1, 0)
        meta.update(color=color, window="none" if voi == "none" else "full_range")
    else:
        values = modality_values(pixels, ds)
        mask = padding_mask(pixels, ds)
        if mask is not None:
            meta["padding_pixels"] = fill_padding(values, mask, path)
        mode = voi if voi != "auto" else ("file" if ds.get("Modality") in RADIOGRAPHIC_MODALITIES else "none")
        if mode == "none":
            image, meta["window"] = values, "none"
        else:
            image, meta["window"] = apply_display(ds, values, mode, path)
        if photometric == "MONOCHROME1" and (mode != "none" or ds.get("Modality") in RADIOGRAPHIC_MODALITIES):
            # a display polarity: quantitative modality values (CT HU…) stay as they are
            lo, hi = (0.0, 1.0) if mode != "none" else modality_range(ds)
            image, meta["inverted"] = lo + hi - image, True
        meta["rescaled"] = rescale(ds) is not None or "ModalityLUTSequence" in ds
        image = image[None] if color == "luminance" else np.repeat(image[None], 3, axis=0)
    image = np.ascontiguousarray(np.swapaxes(image, 1, 2), dtype=np.float32)  # (C, cols, rows)
    check_array(path, image)
    (sx, sy), source = spacing_2d(ds, path)
    if spatial_dims == 2:
        affine = np.diag([sx, sy, 1.0])
    else:
        from medssl.io.dicom_series import slice_affine, slice_thickness  # local: it imports this module

        affine = slice_affine(ds, path, thickness=slice_thickness(ds, path))
        image = image[..., None]  # same in-plane spacing (and source) as in 2D, via spacing_2d
    meta.update(shape=tuple(image.shape[1:]), spacing_source=source)
    vol = Volume(image, affine, safe_meta(ds, **meta))
    vol.meta["spacing"] = vol.spacing
    return vol
