"""What write_nifti puts in the header, checked with independent readers (SimpleITK, nibabel's
quaternion decoding), and NIfTI / NRRD edges found by mutation testing."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medssl.io import BadFileError, Volume, read_image, read_itk, read_nifti, write_nifti


def test_written_header_is_scanner_space_in_mm_for_qform_and_sform_readers(tmp_path, oblique_affine):
    """Both qform and sform carry the affine with code 1 (scanner), units are mm: a tool that
    reads only the quaternion (nibabel get_qform) or scales spacing by the units (ITK) sees
    the same geometry; SimpleITK's LPS geometry is the affine with x and y negated."""
    data = np.arange(7 * 9 * 5, dtype=np.float32).reshape(7, 9, 5)
    path = write_nifti(Volume(data[None], oblique_affine), tmp_path / "x.nii.gz")
    hdr = nib.load(str(path)).header
    assert (int(hdr["qform_code"]), int(hdr["sform_code"])) == (1, 1)
    assert hdr.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_allclose(hdr.get_qform(), oblique_affine, atol=1e-5)
    np.testing.assert_allclose(hdr.get_sform(), oblique_affine, atol=1e-5)
    img = sitk.ReadImage(str(path))
    np.testing.assert_allclose(img.GetSpacing(), (0.9, 1.1, 2.5), atol=1e-5)
    lps = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(img.GetOrigin(), lps @ oblique_affine[:3, 3], atol=1e-4)
    np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)) @ np.diag(img.GetSpacing()),
                               lps @ oblique_affine[:3, :3], atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img).transpose(2, 1, 0), data)


def test_write_refuses_several_channels_instead_of_dropping_all_but_the_first(tmp_path):
    vol = Volume(np.zeros((2, 3, 4, 5), np.float32), np.eye(4))
    with pytest.raises(ValueError, match=r"single-channel 3D volume, got array \(2, 3, 4, 5\)"):
        write_nifti(vol, tmp_path / "two.nii")
    assert not (tmp_path / "two.nii").exists()


def test_a_one_slice_3d_nifti_stays_3d(tmp_path):
    """(X, Y, 1) is squeezed only when a 2D image is asked for; a 3D read keeps the slice axis."""
    data = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 5.0, 1.0])), str(tmp_path / "one.nii"))
    vol = read_nifti(tmp_path / "one.nii")
    assert vol.array.shape == (1, 3, 4, 1)
    np.testing.assert_allclose(vol.spacing, (2.0, 2.0, 5.0))
    assert read_nifti(tmp_path / "one.nii", expect_spatial_dims=2).array.shape == (1, 3, 4)


def test_a_detached_nrrd_header_is_read_as_nrrd(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)  # sitk order (z, y, x)
    img = sitk.GetImageFromArray(data)
    img.SetSpacing((0.5, 0.75, 2.0))  # x, y, z
    sitk.WriteImage(img, str(tmp_path / "x.nhdr"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nhdr", "x.raw"]  # the data in a file beside it
    vol = read_itk(tmp_path / "x.nhdr")
    assert vol.meta["source_format"] == "nrrd" and vol.array.shape == (1, 4, 3, 2)
    np.testing.assert_allclose(vol.meta["spacing"], (0.5, 0.75, 2.0))
    np.testing.assert_array_equal(read_image(tmp_path / "x.nhdr").array[0], data.transpose(2, 1, 0))


def test_a_nifti_with_a_zero_sized_axis_is_refused_with_its_header_shape(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((0, 4, 4), np.float32), np.eye(4)), str(tmp_path / "z.nii"))
    with pytest.raises(BadFileError, match=r"z\.nii: image has zero voxels \(header shape \(0, 4, 4\)\)"):
        read_nifti(tmp_path / "z.nii")


def test_a_folder_named_like_an_nrrd_is_not_a_regular_file(tmp_path):
    (tmp_path / "x.nrrd").mkdir()
    with pytest.raises(BadFileError, match=r"x\.nrrd: is not a regular file"):
        read_itk(tmp_path / "x.nrrd")


def test_a_single_volume_4d_nifti_reports_its_3d_shape(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5, 1), np.float32), np.eye(4)), str(tmp_path / "t.nii"))
    vol = read_nifti(tmp_path / "t.nii")
    assert vol.array.shape == (1, 3, 4, 5) and vol.meta["shape"] == (3, 4, 5)
