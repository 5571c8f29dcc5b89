"""DICOM series geometry pinned by mutation testing: an oblique sagittal series ordered along its slice normal
(PS3.3 C.7.6.2: normal = row cosines x column cosines), gantry tilt kept as shear, cosines stored slightly off unit
length, near-duplicate positions, a slice with another column count or a 1 % different PixelSpacing, non-square
slices.

All built from pydicom's real CT5N series (5 cardiac CT slices, 16x16, PixelSpacing 0.488281 mm, 2.5 mm apart)."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medssl.io import BadFileError, read_dicom_series

CT5N = "dicomdirtests/98892001/CT5N"
PS = 0.488281
LPS = np.diag([-1.0, -1.0, 1.0])  # DICOM patient space (LPS) -> RAS, written out


def _by_position(pydicom_file):
    return sorted(pydicom_file(CT5N).iterdir(), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))


def _write(files, folder, names, **per_slice):
    """Copy ``files`` (lowest first) to ``folder/names[i]``, setting keyword -> list of per-slice values."""
    folder.mkdir()
    for i, (f, name) in enumerate(zip(files, names, strict=True)):
        ds = pydicom.dcmread(f)
        for key, values in per_slice.items():
            setattr(ds, key, values[i])
        ds.save_as(folder / name)
    return folder


def _voxel_of(vol, ipp_lps):
    """Voxel index (i, j, k) where the volume's affine puts a point given in DICOM LPS coordinates."""
    return np.linalg.solve(vol.affine[:3, :3], LPS @ np.asarray(ipp_lps, float) - vol.affine[:3, 3])


def _check_each_slice_at_its_position(vol, folder):
    """PS3.3 C.7.6.2.1.1: ImagePositionPatient is the centre of the slice's first voxel; voxel (0, 0, k) must be it,
    and slice k must hold that file's pixels (rows along i, columns along j)."""
    ks = []
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ijk = _voxel_of(vol, ds.ImagePositionPatient)
        np.testing.assert_allclose(ijk[:2], 0, atol=1e-3)
        k = int(round(ijk[2]))
        assert abs(ijk[2] - k) < 1e-3
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(vol.array[0, :, :, k], hu.T)
        ks.append(k)
    assert sorted(ks) == list(range(len(ks)))


def test_an_oblique_sagittal_series_is_ordered_along_its_normal_like_simpleitk(pydicom_file, tmp_path):
    """Rows run to posterior (0, 1, 0), columns 15 degrees off straight down (sin, 0, -cos): the normal row x col =
    (-cos, 0, -sin) points to the patient's right and feet, so the slices' z falls as their position along the
    normal rises (sorting by z gives the reverse order, sorting by file name a scrambled one)."""
    a = np.deg2rad(15.0)
    row, col = np.array([0.0, 1.0, 0.0]), np.array([np.sin(a), 0.0, -np.cos(a)])
    normal = np.cross(row, col)
    origin = np.array([-30.0, -100.0, 40.0])
    ipps = [[round(v, 6) for v in origin + 3.0 * k * normal] for k in range(5)]
    iop = [round(v, 6) for v in (*row, *col)]
    names = ["c.dcm", "e.dcm", "a.dcm", "d.dcm", "b.dcm"]  # name order is not position order
    folder = _write(_by_position(pydicom_file), tmp_path / "sag", names, ImagePositionPatient=ipps,
                    ImageOrientationPatient=[iop] * 5)
    vol = read_dicom_series(folder)
    _check_each_slice_at_its_position(vol, folder)
    np.testing.assert_allclose(vol.affine[:3, 2], LPS @ (3.0 * normal), atol=1e-4)  # k runs along +normal
    np.testing.assert_allclose(vol.spacing, (PS, PS, 3.0), atol=1e-4)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    ref = reader.Execute()
    np.testing.assert_array_equal(vol.array[0], sitk.GetArrayFromImage(ref).transpose(2, 1, 0))
    np.testing.assert_allclose(vol.affine[:3, 3], LPS @ np.asarray(ref.GetOrigin()), atol=1e-4)
    np.testing.assert_allclose(vol.affine[:3, :3], LPS @ np.reshape(ref.GetDirection(), (3, 3)) @ np.diag(ref.GetSpacing()),
                               atol=1e-4)


def test_gantry_tilt_is_kept_as_shear(pydicom_file, tmp_path):
    """Axial slices whose positions also move 0.8 mm in y per slice (a tilted gantry): the third affine column is the
    step between positions, (0, 0.8, 2.5) in LPS, not the normal times 2.5 mm; each slice stays at its position."""
    files = _by_position(pydicom_file)
    ipps = [[-72.2, -143.0 + 0.8 * k, -1.2375 + 2.5 * k] for k in range(5)]
    folder = _write(files, tmp_path / "tilt", [f"s{k}.dcm" for k in range(5)], ImagePositionPatient=ipps)
    vol = read_dicom_series(folder)
    np.testing.assert_allclose(vol.affine[:3, 2], LPS @ [0.0, 0.8, 2.5], atol=1e-6)
    _check_each_slice_at_its_position(vol, folder)


def test_cosines_stored_slightly_off_unit_length_keep_the_pixel_spacing(pydicom_file, tmp_path):
    """Direction cosines are unit vectors (PS3.3 C.7.6.2.1.1); written 0.8 % / 0.5 % off (within the 1 % the reader
    accepts), they are normalised: the in-plane voxel size is PixelSpacing, not PixelSpacing times the stored length."""
    files = _by_position(pydicom_file)
    folder = _write(files, tmp_path / "long", [f"s{k}.dcm" for k in range(5)],
                    ImageOrientationPatient=[[1.008, 0, 0, 0, 0.995, 0]] * 5)
    vol = read_dicom_series(folder)
    np.testing.assert_allclose(vol.spacing, (PS, PS, 2.5), atol=1e-6)
    np.testing.assert_allclose(vol.affine[:3, :2], LPS @ [[PS, 0], [0, PS], [0, 0]], atol=1e-6)


def test_a_copy_whose_position_differs_in_the_fifth_decimal_is_a_duplicate(pydicom_file, tmp_path):
    """Two files 0.00005 mm apart along the normal (the same slice written with other rounding) hold the same
    position: the error says so, not that a slice is missing."""
    files = _by_position(pydicom_file)
    folder = _write(files, tmp_path / "dup", [f"s{k}.dcm" for k in range(5)])
    ds = pydicom.dcmread(files[2])
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, z + 0.00005]
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "s2_rewritten.dcm")
    with pytest.raises(BadFileError, match=r"s2\.dcm and s2_rewritten\.dcm have the same slice position"):
        read_dicom_series(folder)


def test_a_slice_with_fewer_columns_is_refused_naming_both_sizes(pydicom_file, tmp_path):
    files = _by_position(pydicom_file)
    folder = _write(files, tmp_path / "cols", [f"s{k}.dcm" for k in range(5)])
    ds = pydicom.dcmread(folder / "s3.dcm")
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, :8]).tobytes()
    ds.Columns = 8
    ds.save_as(folder / "s3.dcm")
    with pytest.raises(BadFileError, match=r"s3\.dcm: slice size \(16, 8\) differs from \(16, 16\) of s0\.dcm"):
        read_dicom_series(folder)


def test_a_pixel_spacing_one_percent_off_is_refused(pydicom_file, tmp_path):
    """1 % of 512 pixels is 5 pixels at the image edge: not rounding, another geometry."""
    files = _by_position(pydicom_file)
    spacing = [[PS, PS]] * 4 + [[round(PS * 1.01, 6), round(PS * 1.01, 6)]]
    folder = _write(files, tmp_path / "ps", [f"s{k}.dcm" for k in range(5)], PixelSpacing=spacing)
    with pytest.raises(BadFileError, match=r"s4\.dcm: PixelSpacing .* differs from .* of s0\.dcm"):
        read_dicom_series(folder)
    shutil.rmtree(folder)
    spacing[-1] = [round(PS * 1.00001, 7)] * 2  # a last-digit difference is accepted
    assert read_dicom_series(_write(files, folder, [f"s{k}.dcm" for k in range(5)], PixelSpacing=spacing)
                             ).array.shape == (1, 16, 16, 5)


def test_a_series_of_non_square_slices_matches_simpleitk(pydicom_file, tmp_path):
    """Every shipped series has square slices (16x16, 512x512): 16 rows x 11 columns, anisotropic pixels, must give
    array axes (columns, rows, slices) with each slice's pixels transposed, the same voxels and affine as SimpleITK."""
    files = _by_position(pydicom_file)
    folder = tmp_path / "rect"
    folder.mkdir()
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, 2:13]).tobytes()
        ds.Columns, ds.PixelSpacing = 11, [0.4, 0.7]
        ds.save_as(folder / f"s{(3 * k) % 5}.dcm")
    vol = read_dicom_series(folder)
    assert vol.array.shape == (1, 11, 16, 5)
    _check_each_slice_at_its_position(vol, folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    ref = reader.Execute()
    np.testing.assert_array_equal(vol.array[0], sitk.GetArrayFromImage(ref).transpose(2, 1, 0))
    np.testing.assert_allclose(vol.spacing, ref.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(vol.spacing, (0.7, 0.4, 2.5), atol=1e-5)
