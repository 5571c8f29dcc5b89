"""NRRD / MetaImage reader: SimpleITK round trips (values, spacing, orientation)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medssl.io import BadFileError, read_image, read_itk, read_nifti


def _rotation(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])


def _write(array_zyx, path, spacing, origin, direction):
    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(tuple(np.asarray(direction, dtype=float).ravel()))
    sitk.WriteImage(img, str(path))
    return path


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
def test_round_trip_values_spacing_orientation(tmp_path, suffix):
    data = np.random.default_rng(0).normal(size=(4, 6, 5)).astype(np.float32)  # (z, y, x) in ITK
    spacing, origin, direction = (0.7, 1.3, 2.0), (10.0, -20.0, 5.0), _rotation(25)
    path = _write(data, tmp_path / f"img{suffix}", spacing, origin, direction)
    vol = read_itk(path)
    assert vol.array.shape == (1, 5, 6, 4)
    np.testing.assert_array_equal(vol.array[0], data.transpose(2, 1, 0))
    np.testing.assert_allclose(vol.spacing, spacing, atol=1e-6)
    # naive LPS → RAS: world_ras = diag(-1,-1,1) (direction · diag(spacing) · ijk + origin)
    flip = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(vol.affine[:3, :3], flip @ direction @ np.diag(spacing), atol=1e-6)
    np.testing.assert_allclose(vol.affine[:3, 3], flip @ np.asarray(origin), atol=1e-6)
    np.testing.assert_array_equal(read_image(path).array, vol.array)


def test_identity_direction_is_lps(tmp_path):
    """ITK's index axes with identity direction point to patient Left, Posterior, Superior."""
    path = _write(np.zeros((2, 3, 4), np.int16) + 1, tmp_path / "id.nrrd", (1, 1, 1), (0, 0, 0), np.eye(3))
    assert read_itk(path).orientation == "LPS"


def test_same_geometry_as_nibabel_through_itk(nibabel_file, tmp_path):
    """SimpleITK reads a real NIfTI, writes NRRD; read_itk must agree with read_nifti (nibabel)."""
    src = nibabel_file("anatomical.nii")
    sitk.WriteImage(sitk.ReadImage(str(src)), str(tmp_path / "anat.nrrd"))
    a, b = read_itk(tmp_path / "anat.nrrd"), read_nifti(src)
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-4)
    assert a.orientation == b.orientation == "".join(nib.aff2axcodes(b.affine))


def test_2d_and_vector_images(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)  # (y, x)
    img = sitk.GetImageFromArray(gray)
    img.SetSpacing((0.5, 0.25))
    sitk.WriteImage(img, str(tmp_path / "g.mha"))
    vol = read_itk(tmp_path / "g.mha")
    assert vol.spatial_dims == 2 and vol.array.shape == (1, 4, 3)
    np.testing.assert_array_equal(vol.array[0], gray.T)
    np.testing.assert_allclose(vol.affine, np.diag([0.5, 0.25, 1.0]))
    rgb = np.random.default_rng(1).integers(0, 255, size=(3, 4, 3), dtype=np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "c.mha"))
    vol = read_itk(tmp_path / "c.mha")
    assert vol.array.shape == (3, 4, 3)
    np.testing.assert_array_equal(vol.array, rgb.transpose(2, 1, 0))


def test_4d_single_time_point_and_true_4d(tmp_path):
    vol3 = np.random.default_rng(2).random((3, 4, 5)).astype(np.float32)  # (z, y, x)
    one = sitk.JoinSeries([sitk.GetImageFromArray(vol3)])  # 4D image, size (5, 4, 3, 1)
    assert one.GetDimension() == 4
    sitk.WriteImage(one, str(tmp_path / "one.nrrd"))
    np.testing.assert_array_equal(read_itk(tmp_path / "one.nrrd").array[0], vol3.transpose(2, 1, 0))
    two = sitk.JoinSeries([sitk.GetImageFromArray(vol3), sitk.GetImageFromArray(vol3)])
    sitk.WriteImage(two, str(tmp_path / "two.nrrd"))
    with pytest.raises(BadFileError, match=r"two\.nrrd: expected a 2D or 3D image, got 4D"):
        read_itk(tmp_path / "two.nrrd")
    with pytest.raises(BadFileError, match="expected a 2D image"):
        read_itk(tmp_path / "one.nrrd", expect_spatial_dims=2)


def test_bad_itk_files(tmp_path):
    data = np.ones((3, 4, 5), np.float32)
    data[1, 2, 3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(data), str(tmp_path / "nan.mha"))
    with pytest.raises(BadFileError, match=r"nan\.mha: 1 voxels are NaN or Inf"):
        read_itk(tmp_path / "nan.mha")
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 4, 5), np.float32)), str(tmp_path / "h.mhd"))
    (tmp_path / "h.raw").unlink()
    with pytest.raises(BadFileError, match=r"h\.mhd: SimpleITK cannot read it"):
        read_itk(tmp_path / "h.mhd")
    with pytest.raises(BadFileError, match="file does not exist"):
        read_itk(tmp_path / "missing.nrrd")
    raw = (tmp_path / "nan.mha").read_bytes()
    (tmp_path / "cut.mha").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BadFileError) as err:  # ITK's stale errno line and object address are left out
        read_itk(tmp_path / "cut.mha")
    assert "File cannot be read" in str(err.value) and "No such file" not in str(err.value) and "0x" not in str(err.value)
    (tmp_path / "bad.nrrd").write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n\n" + bytes(32))
    with pytest.raises(BadFileError, match=r"bad\.nrrd: SimpleITK cannot read it \(\[nrrd\] _nrrdHeaderCheck: .*endian"):
        read_itk(tmp_path / "bad.nrrd")


@pytest.mark.parametrize("suffix", [".nrrd"])  # MetaImage stores complex as 2 channels, read as such
def test_complex_voxels_are_refused_not_cut_to_their_real_part(tmp_path, suffix):
    """Complex data (e.g. MR k-space or phase) would silently lose its imaginary part in the
    float32 cast; as for NIfTI it is refused with the fix."""
    data = (np.arange(60).reshape(3, 4, 5) + 1j).astype(np.complex64)
    path = tmp_path / f"c{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(data), str(path))
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[0, 0, 0] == 1j  # the file holds it
    with pytest.raises(BadFileError, match=rf"c\{suffix}: voxels are complex .*one real channel"):
        read_itk(path)


def test_a_2d_image_stored_as_one_slice_3d_reads_as_2d_like_a_nifti(tmp_path):
    """2D images are often written as 3D files with one slice (size (W, H, 1), e.g. radiographs as .mha). With
    expect_spatial_dims=2 read_nifti takes (X, Y, 1) as 2D, read_itk refused it ("expected a 2D image, got 3D"):
    it now gives the same Volume as the genuine 2D file with those pixels and in-plane geometry."""
    gray = np.random.default_rng(3).normal(size=(3, 4)).astype(np.float32)  # (y, x)
    flat = sitk.GetImageFromArray(gray)
    flat.SetSpacing((0.5, 0.25))
    flat.SetOrigin((4.0, -2.0))
    sitk.WriteImage(flat, str(tmp_path / "flat.mha"))
    slab = sitk.GetImageFromArray(gray[None])  # (z=1, y, x)
    slab.SetSpacing((0.5, 0.25, 3.0))
    slab.SetOrigin((4.0, -2.0, 7.0))
    sitk.WriteImage(slab, str(tmp_path / "slab.mha"))
    ref, vol = read_itk(tmp_path / "flat.mha"), read_itk(tmp_path / "slab.mha", expect_spatial_dims=2)
    assert vol.array.shape == ref.array.shape == (1, 4, 3)
    np.testing.assert_array_equal(vol.array, ref.array)
    np.testing.assert_allclose(vol.affine, ref.affine)
    np.testing.assert_allclose(vol.affine, [[0.5, 0, 4.0], [0, 0.25, -2.0], [0, 0, 1]])
    assert read_itk(tmp_path / "slab.mha").spatial_shape == (4, 3, 1)  # without expect_spatial_dims: 3D


@pytest.mark.parametrize("direction, expected", [
    ((0, 0, 1, 1, 0, 0, 0, 1, 0), [[0.5, 0, 20.0], [0, 0.8, 30.0], [0, 0, 1]]),  # sagittal: i → y, j → z
    ((1, 0, 0, 0, 0, -1, 0, 1, 0), [[0.5, 0, 10.0], [0, 0.8, 30.0], [0, 0, 1]]),  # coronal: i → x, j → z
])
def test_a_one_slice_3d_image_off_the_xy_plane_keeps_its_pixel_size(tmp_path, direction, expected):
    """A sagittal or coronal one-slice file read as 2D took rows x, y of its direction, so one pixel axis got 0 mm
    and the file was refused as having a broken spacing; its plane's rows are taken instead, as read_nifti does
    (written out: ITK coordinates, origin (10, 20, 30), spacing (0.5, 0.8))."""
    img = sitk.GetImageFromArray(np.arange(35, dtype=np.float32).reshape(1, 5, 7))
    img.SetSpacing((0.5, 0.8, 2.0))
    img.SetOrigin((10.0, 20.0, 30.0))
    img.SetDirection(direction)
    sitk.WriteImage(img, str(tmp_path / "slice.mha"))
    vol = read_itk(tmp_path / "slice.mha", expect_spatial_dims=2)
    np.testing.assert_allclose(vol.affine, expected)
    assert vol.spacing == pytest.approx((0.5, 0.8))


def _mha(path, matrix="1 0 0 0 1 0 0 0 1", spacing="1 1 1"):
    """A hand-written MetaImage (4x3x2 float32 ones) with this TransformMatrix and ElementSpacing."""
    header = (f"ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\nCompressedData = False\n"
              f"TransformMatrix = {matrix}\nOffset = 0 0 0\nElementSpacing = {spacing}\nDimSize = 4 3 2\n"
              "ElementType = MET_FLOAT\nElementDataFile = LOCAL\n")
    path.write_bytes(header.encode() + np.ones(24, np.float32).tobytes())
    return path


def test_meta_of_an_upper_case_nrrd_and_a_broken_spacing(tmp_path):
    """``X.NRRD`` is an NRRD; meta shape is the spatial shape; a 0.1 µm voxel is refused (check_affine)."""
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((2, 3, 4), np.float32)), str(tmp_path / "u.nrrd"))
    (tmp_path / "u.nrrd").rename(tmp_path / "U.NRRD")
    vol = read_itk(tmp_path / "U.NRRD")
    assert vol.meta["source_format"] == "nrrd" and vol.meta["shape"] == (4, 3, 2) == vol.array.shape[1:]
    assert read_itk(_mha(tmp_path / "ok.mha")).meta == {"source_format": "metaimage", "shape": (4, 3, 2),
                                                         "spacing": (1.0, 1.0, 1.0)}
    with pytest.raises(BadFileError, match=r"tiny\.mha: voxel size \(0\.0, 1\.0, 1\.0\) mm is zero or below"):
        read_itk(_mha(tmp_path / "tiny.mha", spacing="0.0000001 1 1"))


def test_2d_direction_and_4d_single_time_point_geometry(tmp_path):
    """A 2D image's own direction is kept (in-plane, no LPS flip); a 4D file of one time point gets the geometry of
    its first three axes (written out: flip(LPS→RAS) · direction[:3, :3] · diag(spacing[:3]), origin[:3])."""
    img = sitk.GetImageFromArray(np.arange(12, dtype=np.float32).reshape(3, 4))
    img.SetSpacing((0.5, 0.25))
    img.SetOrigin((4.0, -2.0))
    img.SetDirection((0.0, -1.0, 1.0, 0.0))  # i → +y, j → -x
    sitk.WriteImage(img, str(tmp_path / "rot.mha"))
    np.testing.assert_allclose(read_itk(tmp_path / "rot.mha").affine, [[0, -0.25, 4.0], [0.5, 0, -2.0], [0, 0, 1]])
    four = sitk.JoinSeries([sitk.GetImageFromArray(np.ones((3, 4, 5), np.float32))])  # size (5, 4, 3, 1)
    four.SetSpacing((0.7, 1.3, 2.0, 9.0))
    four.SetOrigin((10.0, -20.0, 5.0, 100.0))
    direction = np.eye(4)
    direction[:3, :3] = _rotation(25)
    four.SetDirection(tuple(direction.ravel()))
    sitk.WriteImage(four, str(tmp_path / "four.nrrd"))
    vol, flip = read_itk(tmp_path / "four.nrrd"), np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(vol.affine[:3, :3], flip @ _rotation(25) @ np.diag([0.7, 1.3, 2.0]), atol=1e-6)
    np.testing.assert_allclose(vol.affine[:3, 3], [-10.0, 20.0, 5.0], atol=1e-6)


def test_a_singular_direction_is_named_not_a_matrix_row(tmp_path):
    """ITK refuses parallel axes with the old and new matrices after its message; the reason shown was the last
    matrix row ("(0 0 1)"), it is now ITK's error line."""
    with pytest.raises(BadFileError, match=r"par\.mha: SimpleITK cannot read it \(.*Bad direction, determinant is 0") as err:
        read_itk(_mha(tmp_path / "par.mha", matrix="1 0 0 1 0 0 0 0 1"))  # i and j both along x
    assert "0x" not in str(err.value)
