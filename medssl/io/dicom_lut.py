"""Stored values → modality values → VOI LUT lookups of grayscale DICOM (PS3.3 C.11.1, C.11.2): the Rescale
Slope / Intercept and the Modality and VOI LUT Sequences, shared by :mod:`medssl.io.dicom` and
:mod:`medssl.io.dicom_series` (which import them from :mod:`medssl.io.dicom`)."""

from __future__ import annotations

import numpy as np
import pydicom


def rescale(ds: pydicom.Dataset) -> tuple[float, float] | None:
    """``(slope, intercept)`` of the Rescale step, the missing one of the pair taken as 1 / 0 (as GDCM and
    SimpleITK read it; pydicom's ``apply_modality_lut`` skips the step unless both are present).

    ``None`` when neither is present (empty counts as absent) or a Modality LUT Sequence replaces them.
    """
    if ds.get("ModalityLUTSequence"):
        return None
    slope, inter = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope in (None, "") and inter in (None, ""):
        return None
    return 1.0 if slope in (None, "") else float(slope), 0.0 if inter in (None, "") else float(inter)


def lut_lookup(ds: pydicom.Dataset, item: pydicom.Dataset, values: np.ndarray,
               signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(looked-up values, table)``, float64, of a Modality or VOI LUT item (PS3.3 C.11): each value rounded, minus
    the first mapped value, clipped to the table. LUT Data is US values or OW words in the file's byte order, one
    entry per word or two 8-bit entries per word (CP-522); fewer entries than the LUT Descriptor's is a ValueError.
    Not pydicom's lookups: they wrap an 8-bit VOI table at entry 256 and refuse a 12-bit Modality LUT.

    ``signed``: the LUT's input may be negative, so its first mapped value is signed (C.11.1.1, C.11.2.1.1); one
    written as US (explicit VR gives all three values one VR: -1024 as 64512) is read back as negative."""
    n, first = int(item.LUTDescriptor[0]) or 2**16, int(item.LUTDescriptor[1])
    if signed and first >= 2**15:
        first -= 2**16
    data = item.LUTData
    if isinstance(data, bytes):  # OW: 16-bit words in the file's byte order
        data = np.frombuffer(data, dtype="<u2" if ds.original_encoding[1] is not False else ">u2")
    words = np.asarray(data, np.int64).ravel()
    if int(item.LUTDescriptor[2]) == 8 and len(words) < n:  # 8-bit entries two per word, low byte first (CP-522)
        words = np.stack([words & 0xFF, words >> 8], axis=-1).ravel()
    if len(words) < n:
        raise ValueError(f"LUT Data holds {len(words)} entries, fewer than the {n} of its LUT Descriptor")
    table = words[:n].astype(np.float64)
    return table[np.clip(np.rint(values).astype(np.int64) - first, 0, len(table) - 1)], table


def modality_values(pixels: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Stored values → modality values (PS3.3 C.11.1, e.g. HU), float64, same shape: the Modality LUT
    Sequence (:func:`lut_lookup`), else Rescale Slope / Intercept (:func:`rescale`), else the stored values."""
    if ds.get("ModalityLUTSequence"):
        return lut_lookup(ds, ds.ModalityLUTSequence[0], pixels, int(ds.get("PixelRepresentation", 0)) == 1)[0]
    pair = rescale(ds) or (1.0, 0.0)
    return np.asarray(pixels, np.float64) * pair[0] + pair[1]


def modality_range(ds: pydicom.Dataset) -> tuple[float, float]:
    """Output range of the Modality LUT / rescale for the stored bit depth (PS3.3 C.11.1)."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.get("BitsStored", 16))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    slope, inter = rescale(ds) or (1.0, 0.0)
    lo, hi = lo * slope + inter, hi * slope + inter
    return (min(lo, hi), max(lo, hi))
