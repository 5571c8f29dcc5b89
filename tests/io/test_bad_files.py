"""Bad input: every case raises BadFileError naming the file and a reason the user can act on."""

from __future__ import annotations

import gzip
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medssl.io import BadFileError, ReaderOptionError, read_dicom, read_dicom_series, read_image, read_nifti, reader_for
from medssl.io.errors import check_array


def _assert_names(err, path, *words):
    msg = str(err.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    assert err.value.path == path


def test_truncated_nii_gz(nibabel_file, tmp_path):
    raw = gzip.compress(nibabel_file("anatomical.nii").read_bytes())
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(raw[: int(len(raw) * 0.6)])  # header intact, voxel data cut
    with pytest.raises(BadFileError) as err:
        read_nifti(path)
    _assert_names(err, path, "cannot decode NIfTI", "corrupt or truncated")


def test_truncated_real_ixi(shared_data, tmp_path):
    src = sorted((shared_data / "ixi_t1_hh_2mm" / "images").glob("*.nii.gz"))[0]
    path = tmp_path / "ixi_cut.nii.gz"
    raw = src.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BadFileError) as err:
        read_image(path)
    _assert_names(err, path, "corrupt or truncated")


def test_corrupt_nii_gz(tmp_path):
    path = tmp_path / "junk.nii.gz"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(BadFileError) as err:
        read_nifti(path)
    _assert_names(err, path, "cannot decode NIfTI")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels(tmp_path, bad):
    data = np.zeros((4, 4, 4), np.float32)
    data[1, 2, 3] = bad
    data[0, 0, 0] = bad
    path = tmp_path / "nf.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    with pytest.raises(BadFileError) as err:
        read_nifti(path)
    _assert_names(err, path, "2 voxels are NaN or Inf")


def test_4d_where_3d_expected(nibabel_file):
    path = nibabel_file("example4d.nii.gz")
    with pytest.raises(BadFileError) as err:
        read_image(path)
    _assert_names(err, path, "expected a 3D image", "(128, 96, 24, 2)")


def test_zero_sized_arrays(tmp_path):
    path = tmp_path / "empty.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 0, 3), np.float32), np.eye(4)), str(path))
    with pytest.raises(BadFileError) as err:
        read_nifti(path)
    _assert_names(err, path, "zero voxels")
    with pytest.raises(BadFileError, match=r"x\.png: image has zero voxels \(shape \(1, 0, 5\)\)"):
        check_array(tmp_path / "x.png", np.zeros((1, 0, 5)))


def test_dicom_without_pixel_data(pydicom_file, tmp_path):
    with pytest.raises(BadFileError) as err:
        read_dicom(pydicom_file("rtplan.dcm"))
    _assert_names(err, pydicom_file("rtplan.dcm"), "has no pixel data", "RT Plan Storage")
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    del ds.PixelData
    path = tmp_path / "nopix.dcm"
    ds.save_as(path)
    with pytest.raises(BadFileError) as err:
        read_image(path)
    _assert_names(err, path, "has no pixel data", "Modality CT")


def test_truncated_and_non_dicom(pydicom_file, tmp_path):
    path = pydicom_file("MR_truncated.dcm")  # real file whose pixel data is short
    with pytest.raises(BadFileError) as err:
        read_dicom(path)
    _assert_names(err, path, "cannot decode pixel data", "corrupt or truncated")
    fake = tmp_path / "fake.dcm"
    fake.write_text("hello")
    with pytest.raises(BadFileError) as err:
        read_dicom(fake)
    _assert_names(err, fake, "not a DICOM file")


def test_two_series_folder(pydicom_file, tmp_path):
    shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "a.dcm")
    shutil.copy(pydicom_file("MR_small.dcm"), tmp_path / "b.dcm")
    with pytest.raises(BadFileError) as err:
        read_image(tmp_path)
    _assert_names(err, tmp_path, "contains 2 image series", "(CT, 1 files)", "(MR, 1 files)", "series_uid=")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "scan.txt"
    path.write_text("x")
    with pytest.raises(BadFileError) as err:
        read_image(path)
    _assert_names(err, path, "unsupported file type '.txt'", ".nii.gz", ".dcm", ".nrrd", ".png", ".npz")


def test_dicom_without_extension_is_detected(pydicom_file, tmp_path):
    shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "IM0001")
    assert reader_for(tmp_path / "IM0001") is read_dicom
    np.testing.assert_array_equal(read_image(tmp_path / "IM0001").array, read_dicom(pydicom_file("CT_small.dcm")).array)


@pytest.mark.parametrize("name", ["gone.nii.gz", "gone.dcm", "gone.nrrd", "gone.png", "gone.npz", "gone_folder"])
def test_missing_file(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(BadFileError) as err:
        read_image(path, **({"split": "train", "index": 0} if name.endswith(".npz") else {}))
    _assert_names(err, path, "does not exist")


def test_missing_file_in_each_reader(tmp_path):
    for reader in (read_nifti, read_dicom, read_dicom_series):
        with pytest.raises(BadFileError, match="does not exist"):
            reader(tmp_path / "nope")


def test_unknown_reader_option(pydicom_file):
    """A settings error, importable from medssl.io as docs/io.md names it; a TypeError, and not a bad file."""
    with pytest.raises(ReaderOptionError, match=r"read_dicom .* does not take \['split'\]; its options: voi, color"):
        read_image(pydicom_file("CT_small.dcm"), split="train")
    assert issubclass(ReaderOptionError, TypeError) and not issubclass(ReaderOptionError, BadFileError)


def _nifti_with_sform(tmp_path, name, sform):
    """A 4³ NIfTI whose only orientation is ``sform`` (written into the header as given)."""
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), None)
    img.header.set_qform(None, code=0)
    img.header["sform_code"] = 1
    for row, key in zip(np.asarray(sform, float)[:3], ("srow_x", "srow_y", "srow_z")):
        img.header[key] = row
    path = tmp_path / name
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("sform, words", [
    (np.diag([1.0, np.nan, 1.0, 1.0]), ["NaN or Inf", "sform"]),
    (np.diag([1.0, 1.0, 0.0, 1.0]), ["voxel size", "zero or below"]),
    (np.diag([1.0, 1e-9, 1.0, 1.0]), ["voxel size", "broken"]),
    ([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], ["parallel", "singular"]),
])
def test_broken_affines_are_named_not_crashed_on(tmp_path, sform, words):
    path = _nifti_with_sform(tmp_path, "aff.nii.gz", sform)
    with pytest.raises(BadFileError) as err:
        read_nifti(path)
    _assert_names(err, path, *words)


def test_rgb_and_complex_nifti_are_refused_with_the_fix(tmp_path):
    rgb = np.zeros((4, 4, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    for name, data, word in (("rgb.nii.gz", rgb, "RGB"), ("cplx.nii.gz", np.full((4, 4, 4), 1 + 2j, np.complex64), "complex")):
        path = tmp_path / name
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
        with pytest.raises(BadFileError) as err:
            read_nifti(path)
        _assert_names(err, path, word, "one real channel")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_header_larger_than_the_file_or_memory(tmp_path, suffix):
    """A header that declares 30000³ voxels in a file of a few hundred bytes."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((30000, 30000, 30000))
    hdr.set_data_dtype(np.uint8)
    hdr["vox_offset"] = 352
    raw = hdr.binaryblock + b"\0" * 4 + b"\1" * 100
    path = tmp_path / f"huge{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix.endswith(".gz") else raw)
    with pytest.raises(BadFileError) as err:
        read_nifti(path)
    _assert_names(err, path)


def test_radiograph_cut_before_its_pixels_is_called_truncated(shared_data, tmp_path):
    src = next((shared_data / "dicom_cxr_nih_dx").glob("*.dcm"))
    path = tmp_path / "cut.dcm"
    path.write_bytes(src.read_bytes()[:700])  # the header survives, the pixel data does not
    assert "PixelData" not in pydicom.dcmread(path)
    with pytest.raises(BadFileError) as err:
        read_image(path)
    _assert_names(err, path, "looks truncated or damaged", "Modality DX")
    assert "not an image" not in str(err.value)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("field, value", [("datatype", 999), ("dim", -4), ("vox_offset", -100.0)])
def test_corrupt_nifti_header_fields_are_named(tmp_path, suffix, field, value):
    """A damaged header field (an unknown datatype code, a negative size, a negative data
    offset) is a BadFileError naming the file: nibabel raises HeaderDataError or
    OverflowError for these, which a skip policy would not catch."""
    hdr = nib.Nifti1Image(np.ones((4, 5, 6), np.float32), np.eye(4)).header
    raw = bytearray(hdr.binaryblock + b"\0" * 4 + np.ones(120, np.float32).tobytes())
    offset = {"datatype": 70, "dim": 42, "vox_offset": 108}[field]  # NIfTI-1 header byte offsets
    fmt = "<f" if field == "vox_offset" else "<h"
    raw[offset:offset + np.dtype(fmt).itemsize] = np.array(value, fmt).tobytes()
    path = tmp_path / f"bad_{field}{suffix}"
    path.write_bytes(gzip.compress(bytes(raw)) if suffix.endswith(".gz") else bytes(raw))
    with pytest.raises(BadFileError) as err:
        read_nifti(path)
    _assert_names(err, path, "corrupt")
