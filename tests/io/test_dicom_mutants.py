"""Single-file DICOM reader, second mutation pass: spacing preference, the signed padding boundary, a 2-frame
file and the 3-character floor of the PHI values, each against pydicom / the standard on files built here."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medssl.io import BadFileError, read_dicom
from medssl.io.dicom import phi_values, safe_reason

CR = "dicomdirtests/77654033/CR1/6154"  # real CR, MONOCHROME1, ImagerPixelSpacing, no PixelSpacing


def test_pixel_spacing_is_preferred_to_imager_pixel_spacing(pydicom_file, tmp_path):
    # PS3.3 C.8.11.7 / 10.7.1.3: ImagerPixelSpacing is measured at the detector; a PixelSpacing present as well is
    # the calibrated spacing (e.g. corrected for magnification), which the reader uses (docstring of read_dicom).
    ds = pydicom.dcmread(pydicom_file(CR))
    ds.ImagerPixelSpacing, ds.PixelSpacing = [0.2, 0.15], [0.16, 0.12]  # row \ column spacing (mm), 1.25 x
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 0, -1]
    ds.save_as(tmp_path / "cr.dcm")
    flat, vol = read_dicom(tmp_path / "cr.dcm"), read_dicom(tmp_path / "cr.dcm", spatial_dims=3)
    assert flat.spacing == pytest.approx((0.12, 0.16)) and vol.spacing[:2] == pytest.approx((0.12, 0.16))
    assert flat.meta["spacing_source"] == vol.meta["spacing_source"] == "PixelSpacing"


def test_signed_padding_of_32768_written_as_us_is_minus_32768(pydicom_file, tmp_path):
    # C.7.5.1.1.2: with PixelRepresentation 1 the value is two's complement in Bits Allocated (16) bits, so the
    # smallest one, 0x8000 = 32768 as US, is -32768 (the boundary of the conversion).
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))  # signed 16-bit, stored 128..2191
    pixels = ds.pixel_array.copy()
    pixels[:8, :8] = -32768
    ds.PixelData = pixels.tobytes()
    del ds.PixelPaddingValue
    ds.add_new(0x00280120, "US", 32768)
    ds.save_as(tmp_path / "ct.dcm")
    assert np.array_equal(pydicom.dcmread(tmp_path / "ct.dcm").pixel_array[:8, :8], np.full((8, 8), -32768))
    hu = pixels.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = np.where(pixels == -32768, hu[pixels != -32768].min(), hu)
    vol = read_dicom(tmp_path / "ct.dcm")
    assert vol.meta["padding_pixels"] == 64
    np.testing.assert_array_equal(vol.array[0], expected.T)


def test_a_two_frame_file_is_refused_as_multi_frame(pydicom_file, tmp_path):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    frames = np.stack([ds.pixel_array, ds.pixel_array[::-1]])
    ds.PixelData, ds.NumberOfFrames = frames.tobytes(), 2
    ds.save_as(tmp_path / "two.dcm")
    assert pydicom.dcmread(tmp_path / "two.dcm").pixel_array.shape == frames.shape
    with pytest.raises(BadFileError, match=r"two\.dcm: multi-frame DICOM \(2 frames, Modality CT\)"):
        read_dicom(tmp_path / "two.dcm")


def test_phi_values_keep_three_characters_and_more():
    # Values of 1-2 characters (a StudyID "16", initials "JS") identify no one, and redacting them would cut
    # every "16" out of messages such as "16 bits stored"; 3 characters and more are redacted.
    ds = pydicom.Dataset()
    ds.StudyID, ds.PatientName, ds.AccessionNumber = "16", "JS", "A12"
    assert sorted(phi_values(ds)) == ["A12"]
    reason = safe_reason(ValueError("16 bits stored, accession A12"), ds)
    assert reason == "ValueError: 16 bits stored, accession <redacted>"


def test_a_one_valued_patient_orientation_is_not_kept_letter_by_letter(pydicom_file, tmp_path):
    # PatientOrientation (0020,0020) is CS with VM 2 (row \ column direction). A malformed one-valued element
    # holding free text is no orientation: split into letters it would pass the Code String check one by one.
    ds = pydicom.dcmread(pydicom_file(CR))
    assert str(pydicom.dcmread(pydicom_file(CR)).PatientOrientation) == "['L', 'F']"
    ds.PatientOrientation = "SMITH"
    ds.save_as(tmp_path / "cr.dcm")
    assert pydicom.dcmread(tmp_path / "cr.dcm")["PatientOrientation"].VM == 1
    assert "patient_orientation" not in read_dicom(tmp_path / "cr.dcm").meta
