"""DICOM series checks pinned by mutation testing: the spacing tolerance, a step that is too
small (an extra slice), file names in the messages, a slightly tilted slice, a two-frame
object, a different slice size, a nearly perpendicular frame, ``recursive=``, a colour slice, a lower-case
``dicomdir``, a truncated slice under ``series_uid=`` and the ignored-files summary.

All built from pydicom's real CT5N series (5 cardiac CT slices, 16x16, 2.5 mm apart, axial)."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from medssl.io import BadFileError, read_dicom_series
from medssl.io.dicom_series import ignored_summary

CT5N = "dicomdirtests/98892001/CT5N"


def _by_position(pydicom_file):
    return sorted(pydicom_file(CT5N).iterdir(), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))


def _copy(files, dst, names=None):
    """Copy ``files`` as ``s0.dcm, s1.dcm, …`` (lowest slice first) into ``dst``."""
    dst.mkdir()
    out = []
    for i, f in enumerate(files):
        out.append(dst / (names[i] if names else f"s{i}.dcm"))
        shutil.copy(f, out[-1])
    return out


def _edit(path, save_as=None, **values):
    ds = pydicom.dcmread(path)
    for k, v in values.items():
        setattr(ds, k, v)
    ds.SOPInstanceUID = pydicom.uid.generate_uid() if save_as else ds.SOPInstanceUID
    ds.save_as(save_as or path)


def _shift_z(path, dz, save_as=None):
    x, y, z = (float(v) for v in pydicom.dcmread(path).ImagePositionPatient)
    _edit(path, save_as, ImagePositionPatient=[x, y, round(z + dz, 6)])


def test_spacing_tolerance_is_relative_to_the_median_step(pydicom_file, tmp_path):
    """Steps 2.5 mm; moving the middle slice by 0.05 mm makes steps of 2.55 and 2.45 mm (2 %):
    refused at the default 1 %, accepted at 5 %; a 0.01 mm move (0.4 %) is accepted by default."""
    files = _copy(_by_position(pydicom_file), tmp_path / "a")
    _shift_z(files[2], 0.05)
    with pytest.raises(BadFileError, match=r"slice spacing is not uniform: steps range 2\.45–2\.55 mm \(median 2\.5\)"):
        read_dicom_series(tmp_path / "a")
    assert read_dicom_series(tmp_path / "a", spacing_rtol=0.05).array.shape == (1, 16, 16, 5)
    _shift_z(files[2], -0.04)
    vol = read_dicom_series(tmp_path / "a")
    np.testing.assert_allclose(vol.spacing[2], 2.5, atol=1e-6)  # step from the first and last positions


def test_an_extra_slice_between_two_is_refused_naming_both(pydicom_file, tmp_path):
    """A slice 1 mm above another makes steps of 1 and 1.5 mm among 2.5 mm ones: the steps are too
    SMALL, not too large; the message names the two files around the worst step (1 mm)."""
    files = _copy(_by_position(pydicom_file), tmp_path / "a")
    _shift_z(files[1], 1.0, save_as=tmp_path / "a" / "extra.dcm")
    with pytest.raises(BadFileError, match=r"steps range 1–2\.5 mm \(median 2\.5\), e\.g\. 1 mm between "
                                           r"s1\.dcm and extra\.dcm; a slice is missing"):
        read_dicom_series(tmp_path / "a")


def test_a_gap_message_names_the_two_files_around_it(pydicom_file, tmp_path):
    files = _by_position(pydicom_file)
    _copy(files[:3] + files[4:], tmp_path / "a", names=["a.dcm", "b.dcm", "c.dcm", "d.dcm"])
    with pytest.raises(BadFileError, match=r"e\.g\. 5 mm between c\.dcm and d\.dcm"):
        read_dicom_series(tmp_path / "a")


def test_duplicate_message_names_the_two_files(pydicom_file, tmp_path):
    files = _copy(_by_position(pydicom_file), tmp_path / "a")
    shutil.copy(files[3], tmp_path / "a" / "s3_copy.dcm")
    with pytest.raises(BadFileError, match=r"s3\.dcm and s3_copy\.dcm have the same slice position"):
        read_dicom_series(tmp_path / "a")


def test_a_slightly_tilted_slice_is_refused_naming_it(pydicom_file, tmp_path):
    """0.2 degrees off the others (cosines differ by 0.0035) is a different orientation, not rounding."""
    files = _copy(_by_position(pydicom_file), tmp_path / "a")
    a = np.deg2rad(0.2)
    _edit(files[3], ImageOrientationPatient=[1, 0, 0, 0, round(np.cos(a), 6), round(np.sin(a), 6)])
    with pytest.raises(BadFileError, match=r"s3\.dcm: ImageOrientationPatient differs from s0\.dcm"):
        read_dicom_series(tmp_path / "a")


def test_a_two_frame_object_is_skipped_not_read_as_a_slice(pydicom_file, tmp_path):
    files = _copy(_by_position(pydicom_file), tmp_path / "a")
    ds = pydicom.dcmread(files[0])
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "a" / "cine.dcm")
    vol = read_dicom_series(tmp_path / "a")
    assert vol.array.shape == (1, 16, 16, 5) and vol.meta["ignored_files"] == {"cine.dcm": "multi-frame object"}


def test_a_slice_of_another_size_is_refused_before_decoding(pydicom_file, tmp_path):
    files = _copy(_by_position(pydicom_file), tmp_path / "a")
    ds = pydicom.dcmread(files[2])
    ds.PixelData = ds.pixel_array[::2, ::2].copy().tobytes()
    ds.Rows, ds.Columns = 8, 8
    ds.save_as(files[2])
    with pytest.raises(BadFileError, match=r"s2\.dcm: slice size \(8, 8\) differs from \(16, 16\) of s0\.dcm"):
        read_dicom_series(tmp_path / "a")


@pytest.mark.parametrize("iop", [[1, 0, 0, 0.05, 0.99875, 0],  # unit vectors 2.9 degrees off perpendicular
                                 [1.03, 0, 0, 0, 1, 0]])  # a row cosine 3 % too long
def test_a_nearly_valid_frame_is_still_refused(pydicom_file, tmp_path, iop):
    files = _copy(_by_position(pydicom_file), tmp_path / "a")
    for f in files:
        _edit(f, ImageOrientationPatient=iop)
    with pytest.raises(BadFileError, match=r"s0\.dcm: ImageOrientationPatient .* is not two perpendicular unit"):
        read_dicom_series(tmp_path / "a")


def test_sub_folders_are_read_only_when_recursive(pydicom_file, tmp_path):
    _copy(_by_position(pydicom_file), tmp_path / "a")
    shutil.copy(pydicom_file("CT_small.dcm"), (tmp_path / "a" / "sub").mkdir() or tmp_path / "a" / "sub" / "x.dcm")
    assert read_dicom_series(tmp_path / "a").array.shape == (1, 16, 16, 5)
    with pytest.raises(BadFileError, match="contains 2 image series"):
        read_dicom_series(tmp_path / "a", recursive=True)


def test_a_series_mapped_by_a_modality_lut_is_marked_rescaled(pydicom_file, tmp_path):
    """A Modality LUT Sequence (no RescaleSlope/Intercept) is a rescale too: values are the table's, meta says so."""
    files = _copy(_by_position(pydicom_file), tmp_path / "a")
    stored = np.stack([pydicom.dcmread(f).pixel_array for f in files])
    first, n = int(stored.min()), int(stored.max() - stored.min()) + 1
    table = (np.arange(n) * 3 % 4096).astype(np.uint16)
    for f in files:
        ds = pydicom.dcmread(f)
        item = pydicom.Dataset()
        item.LUTDescriptor, item.ModalityLUTType = [n, first, 16], "US"
        item.add_new(0x00283006, "US", table.tolist())
        ds.ModalityLUTSequence = pydicom.Sequence([item])
        for kw in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
            if kw in ds:
                delattr(ds, kw)
        ds.save_as(f)
    vol = read_dicom_series(tmp_path / "a")
    np.testing.assert_array_equal(vol.array[0], table[stored - first].transpose(2, 1, 0))
    assert vol.meta["rescaled"] is True


def test_a_nan_in_float_pixel_data_is_refused_naming_the_folder(pydicom_file, tmp_path):
    files = _copy(_by_position(pydicom_file), tmp_path / "a")
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        pixels = ds.pixel_array.astype(np.float32)
        pixels[3, 4] = np.nan if i == 2 else pixels[3, 4]
        del ds.PixelData
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
        ds.FloatPixelData = pixels.tobytes()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.save_as(f)
    with pytest.raises(BadFileError, match=r"a: 1 voxels are NaN or Inf"):
        read_dicom_series(tmp_path / "a")


def test_an_upper_case_dcm_without_its_marker_is_named_not_dropped(pydicom_file, tmp_path):
    """``IMG.DCM`` is a slice candidate like ``img.dcm``: without its DICM marker it is an error naming it;
    skipping it would silently drop the end slice (the remaining steps are uniform)."""
    files = _copy(_by_position(pydicom_file), tmp_path / "a", names=["a.dcm", "b.dcm", "c.dcm", "d.dcm", "E.DCM"])
    raw = bytearray(files[-1].read_bytes())
    raw[128:132] = bytes(4)
    files[-1].write_bytes(bytes(raw))
    with pytest.raises(BadFileError) as err:
        read_dicom_series(tmp_path / "a")
    assert err.value.path == files[-1] and err.value.reason.startswith("unreadable slice candidate")


def test_a_colour_slice_in_a_series_is_refused_naming_its_shape(pydicom_file, tmp_path):
    """An RGB image (a screen capture) with the series' UID and geometry: refused by the grayscale check, naming
    the file and its pixel shape, not a "please report a medssl bug" from a failed array assignment."""
    files = _copy(_by_position(pydicom_file), tmp_path / "a")
    ds = pydicom.dcmread(files[4])
    ds.PixelData = np.repeat((ds.pixel_array % 256).astype(np.uint8)[..., None], 3, axis=2).tobytes()
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.save_as(files[4])
    with pytest.raises(BadFileError, match=r"s4\.dcm: expected one grayscale 16x16 slice, got pixels of shape "
                                           r"\(16, 16, 3\)"):
        read_dicom_series(tmp_path / "a")


def test_a_lower_case_dicomdir_is_skipped_as_a_dicomdir(pydicom_file, tmp_path):
    """Media written on case-insensitive file systems often carry ``dicomdir``."""
    _copy(_by_position(pydicom_file), tmp_path / "a")
    shutil.copy(pydicom_file("dicomdirtests/DICOMDIR"), tmp_path / "a" / "dicomdir")
    assert read_dicom_series(tmp_path / "a").meta["ignored_files"] == {"dicomdir": "DICOMDIR"}


def test_a_truncated_slice_is_not_skipped_as_another_series_when_one_is_chosen(pydicom_file, tmp_path):
    """A truncated end slice has lost its SeriesInstanceUID too: it cannot be "another series", so choosing the
    series with series_uid= must still name it, not read the 4 remaining (uniform) slices."""
    files = _copy(_by_position(pydicom_file), tmp_path / "a")
    uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    files[4].write_bytes(files[4].read_bytes()[:700])
    with pytest.raises(BadFileError) as err:
        read_dicom_series(tmp_path / "a", series_uid=uid)
    assert err.value.path == files[4] and "damaged or truncated slice" in err.value.reason


def test_the_ignored_files_summary_names_three_files_per_reason():
    ignored = {f"n{i}.txt": "not DICOM" for i in range(4)} | {"seg.dcm": "non-image object (Modality SEG)"}
    assert ignored_summary(ignored) == "4 not DICOM: n0.txt, n1.txt, n2.txt, …; 1 non-image object (Modality SEG): seg.dcm"
    assert ignored_summary({}) == "none"
