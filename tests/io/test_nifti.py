"""NIfTI reader: round trips, orientation of real IXI scans, nibabel's own test files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medssl.io import BadFileError, Volume, read_image, read_nifti, write_nifti


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_round_trip_values_affine_spacing(tmp_path, suffix, oblique_affine):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(7, 9, 5)).astype(np.float32)
    vol = Volume(data[None], oblique_affine)
    path = write_nifti(vol, tmp_path / f"x{suffix}")
    back = read_nifti(path)
    np.testing.assert_array_equal(back.array, data[None])
    np.testing.assert_allclose(back.affine, oblique_affine, atol=1e-5)
    np.testing.assert_allclose(back.spacing, (0.9, 1.1, 2.5), atol=1e-5)
    assert back.orientation == "".join(nib.aff2axcodes(oblique_affine))
    assert back.meta["source_format"] == "nifti" and back.meta["shape"] == (7, 9, 5)


def test_round_trip_integer_dtype(tmp_path):
    data = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2) - 5
    path = write_nifti(Volume(data[None], np.diag([2.0, 2.0, 3.0, 1.0])), tmp_path / "i.nii.gz", dtype=np.int16)
    assert nib.load(str(path)).get_data_dtype() == np.int16
    np.testing.assert_array_equal(read_nifti(path).array[0], data)


def test_ixi_real_files_are_psr_2mm(shared_data):
    files = sorted((shared_data / "ixi_t1_hh_2mm" / "images").glob("*.nii.gz"))[:3]
    assert files, "no IXI images found"
    for f in files:
        vol = read_nifti(f)
        img = nib.load(str(f))
        # independent reference: raw stored uint8 values times scl_slope plus scl_inter
        raw = np.asarray(img.dataobj.get_unscaled(), dtype=np.float64)
        assert img.get_data_dtype() == np.uint8 and img.dataobj.slope != 1.0  # scaled uint8, per README
        expected = raw * float(img.dataobj.slope) + float(img.dataobj.inter)
        assert vol.array.shape == (1, 120, 120, 90)
        assert vol.orientation == "PSR"  # documented in shared/data/README.md
        np.testing.assert_allclose(vol.spacing, (2.0, 2.0, 2.0), atol=1e-4)
        np.testing.assert_allclose(vol.array[0], expected, rtol=1e-6, atol=1e-4)


def test_read_image_dispatches_nifti(shared_data):
    f = sorted((shared_data / "ixi_t1_hh_2mm" / "images").glob("*.nii.gz"))[0]
    np.testing.assert_array_equal(read_image(f).array, read_nifti(f).array)


def test_nibabel_anatomical(nibabel_file):
    path = nibabel_file("anatomical.nii")
    vol = read_nifti(path)
    hdr = nib.load(str(path)).header
    assert vol.spatial_shape == (33, 41, 25)
    np.testing.assert_allclose(vol.spacing, hdr.get_zooms()[:3], atol=1e-6)
    np.testing.assert_allclose(vol.affine, hdr.get_best_affine(), atol=1e-6)
    assert vol.orientation == "".join(nib.aff2axcodes(hdr.get_best_affine()))


@pytest.mark.parametrize("name, shape", [("example4d.nii.gz", (128, 96, 24, 2)), ("functional.nii", (17, 21, 3, 20))])
def test_true_4d_is_an_error(nibabel_file, name, shape):
    with pytest.raises(BadFileError) as err:
        read_nifti(nibabel_file(name))
    assert name in str(err.value) and "expected a 3D image" in str(err.value) and str(shape) in str(err.value)


def test_4d_with_one_volume_reads_as_3d(tmp_path):
    data = np.random.default_rng(1).random((5, 6, 7, 1)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 1.5, 1])), str(tmp_path / "one.nii.gz"))
    vol = read_nifti(tmp_path / "one.nii.gz")
    assert vol.array.shape == (1, 5, 6, 7)
    np.testing.assert_array_equal(vol.array[0], data[..., 0])


def test_2d_nifti_gets_in_plane_affine(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(4, 3, 1)
    affine = np.array([[0.5, 0, 0, 10], [0, 0.7, 0, -4], [0, 0, 3, 2], [0, 0, 0, 1.0]])
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "slice.nii"))
    vol = read_nifti(tmp_path / "slice.nii", expect_spatial_dims=2)
    assert vol.array.shape == (1, 4, 3)
    np.testing.assert_allclose(vol.affine, [[0.5, 0, 10], [0, 0.7, -4], [0, 0, 1]])
    np.testing.assert_allclose(vol.spacing, (0.5, 0.7))


def test_2d_orientation_of_a_rotated_in_plane_affine(tmp_path):
    """Axis codes read off the columns of the in-plane affine, written out: column 0 = (0, 1.5) mm runs to
    Anterior, column 1 = (-0.5, 0) mm to Left, so "AL" (a transposed affine would give "PR"); reoriented, the
    image is "RA" and each voxel keeps its world position."""
    from medssl.transforms.preprocess import to_canonical

    data = np.arange(12, dtype=np.float32).reshape(4, 3, 1)
    affine = np.array([[0, -0.5, 0, 10], [1.5, 0, 0, -4], [0, 0, 3, 2], [0, 0, 0, 1.0]])
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "rotated.nii"))
    vol = read_nifti(tmp_path / "rotated.nii", expect_spatial_dims=2)
    assert vol.orientation == "AL" and vol.spacing == pytest.approx((1.5, 0.5))
    ras = to_canonical(vol)
    assert ras.orientation == "RA" and ras.spatial_shape == (3, 4)
    for i, j in np.ndindex(4, 3):  # voxel (i, j) of the file is where the reoriented affine puts the same value
        world = vol.affine @ [i, j, 1]
        k = np.linalg.solve(ras.affine, world).round().astype(int)
        assert ras.array[0, k[0], k[1]] == data[i, j, 0]


def test_2d_sagittal_slice_of_a_real_scan_keeps_its_pixel_size(shared_data, tmp_path):
    """A 2D NIfTI whose plane is not the world x-y plane: a sagittal slice of a real IXI T1 (PSR: axes 0 and 1 run
    to posterior and superior, 2 mm), cut with nibabel's slicer. Rows x, y of its affine gave pixel size (2, 0)
    and the slice was refused as having "broken" spacing. The plane spans world y and z: the in-plane affine is
    nibabel's rows y, z (voxel (i, j) lands where nibabel puts it), the pixel size nibabel's zooms."""
    f = sorted((shared_data / "ixi_t1_hh_2mm" / "images").glob("*.nii.gz"))[0]
    sl = nib.load(str(f)).slicer[:, :, 45:46]
    nib.save(sl, str(tmp_path / "sagittal.nii.gz"))
    vol = read_nifti(tmp_path / "sagittal.nii.gz", expect_spatial_dims=2)
    assert vol.array.shape == (1, 120, 120)
    saved = nib.load(str(tmp_path / "sagittal.nii.gz"))  # nibabel rescales the slice's uint8 when saving it
    np.testing.assert_array_equal(vol.array[0], saved.get_fdata(dtype=np.float32)[..., 0])
    np.testing.assert_allclose(vol.spacing, sl.header.get_zooms()[:2], atol=1e-5)
    for ij in ([0, 0], [7, 3], [119, 60]):
        np.testing.assert_allclose(vol.affine @ [*ij, 1], (sl.affine @ [*ij, 0, 1])[[1, 2, 3]], atol=1e-4)


def test_a_2d_nifti_with_a_zero_column_is_refused_naming_its_real_pixel_size(tmp_path):
    """A zero column (pixdim 0 in an sform) has no slice normal: np.argmax of the zero normal dropped world x, so
    column 0's 1 mm (along x) vanished too and the error claimed a voxel size of (0, 0) mm. Rows x, y are kept
    for such an affine: the message names the (1, 0) mm the header holds."""
    img = nib.Nifti1Image(np.ones((4, 3, 1), np.float32), None)
    img.header.set_sform(np.diag([1.0, 0.0, 2.0, 1.0]), code=1)  # column 1 zero; nibabel cannot write it as a qform
    img.header.set_qform(None)
    img.update_header = lambda: None  # keep the sform as set (nibabel would rebuild it from the affine)
    nib.save(img, str(tmp_path / "flat.nii"))
    with pytest.raises(BadFileError, match=r"flat\.nii: voxel size \(1\.0, 0\.0\) mm"):
        read_nifti(tmp_path / "flat.nii", expect_spatial_dims=2)


def test_scl_slope_and_scl_inter_are_both_applied(tmp_path):
    """NIfTI-1: value = scl_slope * stored + scl_inter. The IXI files have scl_inter 0, so only the slope was
    checked; here both are written into the header bytes (offsets 112 and 116) of a plain int16 file."""
    import struct

    stored = np.arange(-12, 12, dtype=np.int16).reshape(2, 3, 4)
    nib.save(nib.Nifti1Image(stored, np.eye(4)), str(tmp_path / "s.nii"))
    raw = bytearray((tmp_path / "s.nii").read_bytes())
    raw[112:120] = struct.pack("<ff", 0.5, -100.0)
    (tmp_path / "s.nii").write_bytes(bytes(raw))
    np.testing.assert_array_equal(read_nifti(tmp_path / "s.nii").array[0], stored * 0.5 - 100.0)


def test_the_sform_wins_over_a_different_qform_and_the_qform_is_used_without_one(tmp_path, oblique_affine):
    """NIfTI-1 (and nibabel's img.affine): with sform_code > 0 the sform is the voxel-to-world map, else the qform.
    Every other test writes the same matrix into both, so a reader of the wrong one went unnoticed."""
    qform = np.diag([1.2, 1.2, 3.0, 1.0])
    qform[:3, 3] = [-40.0, 10.0, 5.0]
    img = nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), None)
    img.set_qform(qform, code=1)
    img.set_sform(oblique_affine, code=2)
    nib.save(img, str(tmp_path / "both.nii"))
    np.testing.assert_allclose(read_nifti(tmp_path / "both.nii").affine, oblique_affine, atol=1e-5)
    np.testing.assert_allclose(nib.load(str(tmp_path / "both.nii")).affine, oblique_affine, atol=1e-5)
    img.set_sform(oblique_affine, code=0)
    nib.save(img, str(tmp_path / "qform.nii"))
    np.testing.assert_allclose(read_nifti(tmp_path / "qform.nii").affine, qform, atol=1e-5)
