"""DICOM series folder → 3D volume: position order, one series, uniform spacing, SEG ignored."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medssl.io import BadFileError, read_dicom, read_dicom_series, read_image
from medssl.io.dicom import hash_uid
from medssl.io.dicom_series import LPS_TO_RAS

CT5N = "dicomdirtests/98892001/CT5N"  # 5 real cardiac CT slices, 2.5 mm apart, 16x16
CT2 = "dicomdirtests/77654033/CT2"  # 4 real head CT slices: one far away (a gap)
MR700 = "dicomdirtests/98892003/MR700"  # 7 real radial MR slices (orientation changes)


def _sitk_reference(folder, uid):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), uid))
    img = reader.Execute()
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) @ np.diag(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    return sitk.GetArrayFromImage(img).transpose(2, 1, 0), LPS_TO_RAS @ lps


def _copy_shuffled(src_files, dst, seed):
    """Copy files under names whose sorted order is a seeded permutation of the input order."""
    dst.mkdir()
    perm = np.random.default_rng(seed).permutation(len(src_files))
    for name_rank, f in zip(perm, src_files, strict=True):
        shutil.copy(f, dst / f"img_{name_rank:03d}.dcm")
    return dst


def test_real_ct_series_matches_simpleitk_and_ignores_seg(shared_data):
    folder = shared_data / "dicom_ct_liver_3slice"
    uid = str(pydicom.dcmread(folder / "01.dcm", stop_before_pixels=True).SeriesInstanceUID)
    vol = read_dicom_series(folder)
    ref, ref_affine = _sitk_reference(folder, uid)
    assert vol.array.shape == (1, 512, 512, 3)
    tissue = ref > -3024  # GDCM keeps the padding (stored -2000) as -3024 HU, medssl reads it as air
    np.testing.assert_array_equal(vol.array[0][tissue], ref[tissue])  # padding: see test_dicom_padding.py
    np.testing.assert_allclose(vol.affine, ref_affine, atol=1e-4)
    np.testing.assert_allclose(vol.spacing, (0.810547, 0.810547, 1.0), atol=1e-5)
    assert ref.min() == -3024 and vol.array.min() == -1024 and vol.array.max() == 1381  # PROVENANCE.md: -3024..1381
    # liver_seg.dcm (Modality SEG), MD5SUMS and PROVENANCE.md are not slices
    assert vol.meta["n_ignored_files"] == 3 and vol.meta["modality"] == "CT"
    assert vol.meta["ignored_files"] == {"liver_seg.dcm": "non-image object (Modality SEG)",
                                         "MD5SUMS": "not DICOM (no DICM marker, no .dcm suffix)",
                                         "PROVENANCE.md": "not DICOM (no DICM marker, no .dcm suffix)"}
    assert vol.meta["series_hash"] == hash_uid(uid) and uid not in repr(vol)
    np.testing.assert_array_equal(read_image(folder).array, vol.array)


def test_real_ct_series_order_is_by_position_not_name(shared_data, tmp_path):
    folder = shared_data / "dicom_ct_liver_3slice"
    ref = read_dicom_series(folder)
    dst = tmp_path / "renamed"
    dst.mkdir()
    # reverse the name order and hide the SEG in front: name order is now 03, 02, 01 by position
    for src, name in [("01.dcm", "c.dcm"), ("02.dcm", "b.dcm"), ("03.dcm", "a.dcm"), ("liver_seg.dcm", "0.dcm")]:
        shutil.copy(folder / src, dst / name)
    vol = read_dicom_series(dst)
    np.testing.assert_array_equal(vol.array, ref.array)
    np.testing.assert_allclose(vol.affine, ref.affine)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shuffled_names_sorted_by_position(pydicom_file, tmp_path, seed):
    files = sorted(pydicom_file(CT5N).iterdir())
    folder = _copy_shuffled(files, tmp_path / "s", seed)
    vol = read_dicom_series(folder)
    assert vol.array.shape == (1, 16, 16, 5)
    # each slice k must hold the file whose ImagePositionPatient maps to voxel (0, 0, k)
    for f in files:
        ds = pydicom.dcmread(f)
        ipp_ras = LPS_TO_RAS[:3, :3] @ np.asarray(ds.ImagePositionPatient, dtype=float)
        k = np.linalg.solve(vol.affine[:3, :3], ipp_ras - vol.affine[:3, 3])
        np.testing.assert_allclose(k[:2], 0, atol=1e-6)
        kk = int(round(k[2]))
        assert abs(k[2] - kk) < 1e-6
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(vol.array[0, :, :, kk], hu.T)
    np.testing.assert_allclose(vol.spacing[2], 2.5, atol=1e-4)
    uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    ref, ref_affine = _sitk_reference(folder, uid)
    np.testing.assert_array_equal(vol.array[0], ref)
    np.testing.assert_allclose(vol.affine, ref_affine, atol=1e-4)


def test_instance_numbers_and_slice_locations_do_not_order_slices(pydicom_file, tmp_path):
    """InstanceNumber and SliceLocation scrambled (not monotonic in position): the volume is
    the one read from the untouched files; only ImagePositionPatient orders the slices."""
    files = sorted(pydicom_file(CT5N).iterdir())  # InstanceNumber 6..10 follow position here
    ref = read_dicom_series(_copy_shuffled(files, tmp_path / "ref", 0))
    folder = _copy_shuffled(files, tmp_path / "scrambled", 0)
    for f, number in zip(sorted(folder.iterdir()), [3, 1, 5, 2, 4], strict=True):
        ds = pydicom.dcmread(f)
        ds.InstanceNumber, ds.SliceLocation = number, 10.0 * number
        ds.save_as(f)
    vol = read_dicom_series(folder)
    np.testing.assert_array_equal(vol.array, ref.array)
    np.testing.assert_allclose(vol.affine, ref.affine)


def test_each_slice_gets_its_own_rescale(pydicom_file, tmp_path):
    """Rescale Slope/Intercept may differ per slice (the rule in PET, seen in CT): each slice
    is rescaled with its own header, checked per position against stored × slope + intercept."""
    folder = _copy_shuffled(sorted(pydicom_file(CT5N).iterdir()), tmp_path / "s", 1)
    for j, f in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(f)
        ds.RescaleSlope, ds.RescaleIntercept = 0.5 + j, -1000.0 + 100 * j
        ds.save_as(f)
    vol = read_dicom_series(folder)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ipp_ras = LPS_TO_RAS[:3, :3] @ np.asarray(ds.ImagePositionPatient, dtype=float)
        k = int(round(np.linalg.solve(vol.affine[:3, :3], ipp_ras - vol.affine[:3, 3])[2]))
        expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(vol.array[0, :, :, k], expected.T)


def test_two_series_error_lists_hashes_and_selects(pydicom_file, tmp_path):
    ct5n = sorted(pydicom_file(CT5N).iterdir())
    folder = _copy_shuffled(ct5n + [pydicom_file("CT_small.dcm")], tmp_path / "two", 3)
    uid_a = str(pydicom.dcmread(ct5n[0]).SeriesInstanceUID)
    uid_b = str(pydicom.dcmread(pydicom_file("CT_small.dcm")).SeriesInstanceUID)
    with pytest.raises(BadFileError) as err:
        read_dicom_series(folder)
    msg = str(err.value)
    assert str(folder) in msg and "contains 2 image series" in msg and "series_uid=" in msg and "reader_options: {series_uid:" in msg
    assert f"{hash_uid(uid_a)} (CT, 5 files)" in msg and f"{hash_uid(uid_b)} (CT, 1 files)" in msg
    assert uid_a not in msg and uid_b not in msg
    by_hash = read_dicom_series(folder, series_uid=hash_uid(uid_a))
    by_uid = read_dicom_series(folder, series_uid=uid_a)
    assert by_hash.array.shape == (1, 16, 16, 5)
    np.testing.assert_array_equal(by_hash.array, by_uid.array)
    assert read_dicom_series(folder, series_uid=hash_uid(uid_b)).array.shape == (1, 128, 128, 1)
    with pytest.raises(BadFileError, match="no image series matches series_uid='0000'"):
        read_dicom_series(folder, series_uid="0000")


def test_real_gap_is_an_error(pydicom_file, tmp_path):
    folder = _copy_shuffled(sorted(pydicom_file(CT2).iterdir()), tmp_path / "gap", 0)
    with pytest.raises(BadFileError, match=r"slice spacing is not uniform: steps range 1\.25–202\.5 mm"):
        read_dicom_series(folder)


def test_missing_middle_slice_is_an_error(pydicom_file, tmp_path):
    files = sorted(pydicom_file(CT5N).iterdir(), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    folder = _copy_shuffled(files[:2] + files[3:], tmp_path / "hole", 0)
    with pytest.raises(BadFileError, match=r"not uniform.*a slice is missing"):
        read_dicom_series(folder)
    assert read_dicom_series(folder, spacing_rtol=1.5).array.shape == (1, 16, 16, 4)  # tolerance is honoured


def test_mixed_orientation_is_an_error(pydicom_file, tmp_path):
    folder = _copy_shuffled(sorted(pydicom_file(MR700).iterdir()), tmp_path / "radial", 0)
    with pytest.raises(BadFileError, match="mixes orientations"):
        read_dicom_series(folder)


def test_duplicate_position_is_an_error(pydicom_file, tmp_path):
    files = sorted(pydicom_file(CT5N).iterdir())
    folder = _copy_shuffled(files, tmp_path / "dup", 0)
    shutil.copy(files[2], folder / "zz_copy.dcm")
    with pytest.raises(BadFileError, match="same slice position"):
        read_dicom_series(folder)


def test_inconsistent_pixel_spacing_names_the_file(pydicom_file, tmp_path):
    files = sorted(pydicom_file(CT5N).iterdir())
    folder = _copy_shuffled(files, tmp_path / "ps", 0)
    victim = sorted(folder.iterdir())[1]
    ds = pydicom.dcmread(victim)
    ds.PixelSpacing = [0.6, 0.6]
    ds.save_as(victim)
    with pytest.raises(BadFileError, match=rf"{victim.name}: PixelSpacing"):
        read_dicom_series(folder)


def test_folder_without_slices(tmp_path, pydicom_file):
    (tmp_path / "notes.txt").write_text("not an image")
    shutil.copy(pydicom_file("liver_1frame.dcm"), tmp_path / "seg.dcm")  # a real DICOM SEG
    with pytest.raises(BadFileError, match=r"no DICOM image slices found \(2 files ignored"):
        read_dicom_series(tmp_path)
    with pytest.raises(BadFileError, match="folder does not exist"):
        read_dicom_series(tmp_path / "missing")


def _truncate(path):
    path.write_bytes(path.read_bytes()[:700])  # header cut inside the first elements


def _zero_marker(path):
    raw = bytearray(path.read_bytes())
    assert raw[128:132] == b"DICM"
    raw[128:132] = bytes(4)
    path.write_bytes(bytes(raw))


def _drop_position(path):
    ds = pydicom.dcmread(path)
    del ds.ImagePositionPatient
    ds.save_as(path)


@pytest.mark.parametrize(("damage", "reason"), [
    (_truncate, "lacks Rows, Columns, ImagePositionPatient, ImageOrientationPatient, SeriesInstanceUID"),
    (_zero_marker, "unreadable slice candidate (not a DICOM file (no 'DICM' marker)"),
    (_drop_position, "lacks ImagePositionPatient: a damaged or truncated slice"),
])
def test_damaged_end_slice_is_an_error_naming_it(shared_data, tmp_path, damage, reason):
    folder = Path(shutil.copytree(shared_data / "dicom_ct_liver_3slice", tmp_path / "ct"))
    assert read_dicom_series(folder).array.shape[-1] == 3
    victim = folder / "03.dcm"  # the end slice: dropping it would leave uniform steps behind
    victim.chmod(0o644)
    damage(victim)
    with pytest.raises(BadFileError) as err:
        read_image(folder)
    assert err.value.path == victim and err.value.reason.startswith(reason)


def test_damaged_slice_without_shared_data(pydicom_file, tmp_path):
    folder = _copy_shuffled(sorted(pydicom_file(CT5N).iterdir()), tmp_path / "s", 0)
    victim = sorted(folder.iterdir())[0]
    _truncate(victim)
    with pytest.raises(BadFileError) as err:
        read_dicom_series(folder)
    assert err.value.path == victim and "damaged or truncated slice" in err.value.reason


def test_non_slices_are_skipped_with_their_reason(pydicom_file, tmp_path):
    folder = _copy_shuffled(sorted(pydicom_file(CT5N).iterdir()), tmp_path / "s", 0)
    (folder / "README.txt").write_text("notes")
    (folder / ".DS_Store").write_bytes(b"\0" * 10)
    shutil.copy(pydicom_file("dicomdirtests/DICOMDIR"), folder / "DICOMDIR")
    shutil.copy(pydicom_file("test-SR.dcm"), folder / "report.dcm")  # a real structured report
    ds = pydicom.dcmread(pydicom_file("test-SR.dcm"))
    del ds.Modality  # known only by its SOP class now
    ds.save_as(folder / "report2.dcm")
    vol = read_dicom_series(folder)
    assert vol.array.shape == (1, 16, 16, 5)
    assert vol.meta["ignored_files"] == {
        ".DS_Store": "hidden file", "DICOMDIR": "DICOMDIR", "README.txt": "not DICOM (no DICM marker, no .dcm suffix)",
        "report.dcm": "non-image object (Modality SR)", "report2.dcm": "non-image object (Comprehensive SR Storage)"}
    assert vol.meta["n_ignored_files"] == 5


def test_zero_pixel_spacing_in_a_series_is_an_error(pydicom_file, tmp_path):
    folder = _copy_shuffled(sorted(pydicom_file(CT5N).iterdir()), tmp_path / "s", 0)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.PixelSpacing = ["0", "0"]
        ds.save_as(f)
    with pytest.raises(BadFileError, match=r"PixelSpacing \[0\.0, 0\.0\] mm is not a positive, finite spacing") as err:
        read_dicom_series(folder)
    assert err.value.path.parent == folder
    assert read_dicom_series(_copy_shuffled(sorted(pydicom_file(CT5N).iterdir()), tmp_path / "ok", 0)
                             ).meta["spacing_source"] == "PixelSpacing"


def test_a_selected_series_reads_past_another_series_image_without_geometry(pydicom_file, tmp_path):
    """A dose-report screen capture of its own series (no ImagePositionPatient) cannot be a
    hole in the series chosen with series_uid=: it is skipped with its reason, while without
    a choice it is still named as an error."""
    ct5n = sorted(pydicom_file(CT5N).iterdir())
    folder = _copy_shuffled(ct5n, tmp_path / "study", 1)
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.SOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    del ds.ImagePositionPatient, ds.ImageOrientationPatient
    ds.save_as(folder / "dose.dcm")
    with pytest.raises(BadFileError) as err:
        read_dicom_series(folder)
    assert err.value.path == folder / "dose.dcm" and "lacks ImagePositionPatient" in err.value.reason
    uid = str(pydicom.dcmread(ct5n[0]).SeriesInstanceUID)
    vol = read_dicom_series(folder, series_uid=hash_uid(uid))
    np.testing.assert_array_equal(vol.array, read_dicom_series(_copy_shuffled(ct5n, tmp_path / "ct", 2)).array)
    assert vol.meta["ignored_files"] == {
        "dose.dcm": "image of another series, lacking ImagePositionPatient, ImageOrientationPatient"}
    with pytest.raises(BadFileError) as err:  # a slice of the chosen series is still never dropped
        _drop_position(sorted(folder.glob("img_*.dcm"))[2])
        read_dicom_series(folder, series_uid=uid)
    assert "lacks ImagePositionPatient" in err.value.reason


def test_anisotropic_pixel_spacing_matches_simpleitk(pydicom_file, tmp_path):
    """PixelSpacing is (row spacing, column spacing): with unequal values the affine must
    equal SimpleITK's; every shipped test file has square pixels, so a swap went unnoticed."""
    files = sorted(pydicom_file(CT5N).iterdir())
    folder = _copy_shuffled(files, tmp_path / "s", 2)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.PixelSpacing = [0.4, 0.7]  # 0.4 mm between rows, 0.7 mm between columns
        ds.save_as(f)
    vol = read_dicom_series(folder)
    ref, ref_affine = _sitk_reference(folder, str(pydicom.dcmread(files[0]).SeriesInstanceUID))
    np.testing.assert_array_equal(vol.array[0], ref)
    np.testing.assert_allclose(vol.affine, ref_affine, atol=1e-4)
    np.testing.assert_allclose(vol.spacing, (0.7, 0.4, 2.5), atol=1e-4)  # axis 0 runs along a row
    one = sorted(folder.iterdir())[0]
    np.testing.assert_allclose(read_image(one).spacing, sitk.ReadImage(str(one)).GetSpacing()[:2])


@pytest.mark.parametrize("iop", [[1, 0, 0, 1, 0, 0],  # parallel cosines: the affine was singular (0 mm slices)
                                 [1, 0, 0, 0.9, 0.43589, 0],  # 26° apart: a sheared in-plane frame
                                 [0.6, 0, 0, 0, 0.6, 0], [float("nan"), 0, 0, 0, 1, 0], [0, 0, 0, 0, 1, 0],
                                 [1, 0, 0, 0, 1]])  # five values
def test_a_degenerate_orientation_is_refused_naming_the_file_in_every_3d_read(pydicom_file, tmp_path, iop):
    files = sorted(pydicom_file(CT5N).iterdir())
    folder = _copy_shuffled(files, tmp_path / "many", 0)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.ImageOrientationPatient = iop
        ds.save_as(f)
    (tmp_path / "one").mkdir()
    one = tmp_path / "one" / "a.dcm"
    shutil.copy(sorted(folder.iterdir())[0], one)
    for read, named in [(lambda: read_dicom(one, spatial_dims=3), one), (lambda: read_dicom_series(one.parent), one),
                        (lambda: read_dicom_series(folder), sorted(folder.iterdir())[0])]:
        with pytest.raises(BadFileError, match=rf"{named.name}: ImageOrientationPatient .* is not two perpendicular unit"):
            read()
    assert read_dicom(one).array.shape == (1, 16, 16)  # the 2D read the message suggests needs no geometry


def test_orientation_written_to_six_digits_is_accepted(pydicom_file, tmp_path):
    """A tilted frame rounded to the precision scanners write keeps working (the check has a tolerance)."""
    a = np.deg2rad(17.0)
    iop = [round(v, 5) for v in (1, 0, 0, 0, np.cos(a), -np.sin(a))]
    folder = _copy_shuffled(sorted(pydicom_file(CT5N).iterdir()), tmp_path / "tilt", 0)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.ImageOrientationPatient = iop
        ds.save_as(f)
    vol = read_dicom(sorted(folder.iterdir())[0], spatial_dims=3)
    np.testing.assert_allclose(vol.affine[:3, 1] / vol.spacing[1], LPS_TO_RAS[:3, :3] @ iop[3:], atol=1e-5)


@pytest.mark.parametrize("ipp", [[0.0, float("nan"), 1.0], [float("inf"), 0.0, 1.0], [0.0, 1.0]])
def test_a_non_finite_position_is_refused_naming_the_file(pydicom_file, tmp_path, ipp):
    ds = pydicom.dcmread(sorted(pydicom_file(CT5N).iterdir())[0])
    ds.ImagePositionPatient = ipp
    ds.save_as(tmp_path / "a.dcm")
    for read in (lambda: read_dicom(tmp_path / "a.dcm", spatial_dims=3), lambda: read_dicom_series(tmp_path)):
        with pytest.raises(BadFileError, match=r"a\.dcm: ImagePositionPatient .* is not three finite"):
            read()


def test_real_ct_affine_is_in_ras_written_out(shared_data):
    """The LPS → RAS sign flip checked without medssl's own constant (the SimpleITK comparison above uses it):
    an axial CT (ImageOrientationPatient 1,0,0 / 0,1,0) has rows running to the patient's left, columns to
    posterior and, sorted along the normal, slices to superior: axis codes "LPS" in RAS+ world space. Voxel
    (0, 0, 0) is the lowest slice's (03.dcm, z = -128.69 mm) ImagePositionPatient with x and y negated."""
    folder = shared_data / "dicom_ct_liver_3slice"
    vol = read_dicom_series(folder)
    assert vol.orientation == "LPS"
    lowest = pydicom.dcmread(folder / "03.dcm", stop_before_pixels=True)
    x, y, z = (float(v) for v in lowest.ImagePositionPatient)
    np.testing.assert_allclose(vol.affine[:3, 3], [-x, -y, z], atol=1e-4)
    np.testing.assert_allclose(vol.affine[:3, :3], np.diag([-0.810547, -0.810547, 1.0]), atol=1e-5)
