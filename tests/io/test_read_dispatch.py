"""Which reader read_image picks: suffix case, DICOM files named by their UID (a dotted name, DICM marker), files
without a suffix that are not DICOM; and the smallest voxel size check_affine accepts."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from medssl.io import BadFileError, read_image
from medssl.io.dicom import read_dicom
from medssl.io.errors import MIN_SPACING_MM, check_affine
from medssl.io.nifti import read_nifti
from medssl.io.png import read_png
from medssl.io.read import reader_for


@pytest.mark.parametrize("name", ["1.2.840.113619.2.55.3.604688119.969.1", "IM_0001.1"])
def test_a_dicom_file_named_with_another_suffix_is_read_by_its_marker(pydicom_file, tmp_path, name):
    # Scanners and PACS exports name files by their SOPInstanceUID or a number ("IM_0001.1"): the part after the
    # last dot was taken as a file type and the file refused as "unsupported file type '.1'".
    shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / name)
    assert reader_for(tmp_path / name) is read_dicom
    np.testing.assert_array_equal(read_image(tmp_path / name).array, read_dicom(pydicom_file("CT_small.dcm")).array)


@pytest.mark.parametrize("name, reader", [("SCAN.PNG", read_png), ("BRAIN.NII.GZ", read_nifti), ("T1.Nii", read_nifti),
                                          ("x.dicom", read_dicom), ("CT.DICOM", read_dicom)])
def test_an_upper_case_suffix_picks_the_same_reader(tmp_path, name, reader):
    (tmp_path / name).write_bytes(b"not read here")  # the choice is made from the name alone
    assert reader_for(tmp_path / name) is reader


@pytest.mark.parametrize("name", ["README", "notes.1"])
def test_a_file_that_is_not_dicom_and_has_no_known_suffix_is_unsupported(tmp_path, name):
    (tmp_path / name).write_text("Study notes, not an image\n")
    with pytest.raises(BadFileError, match="unsupported file type") as err:
        reader_for(tmp_path / name)
    assert str(tmp_path / name) in str(err.value) and "DICM" in str(err.value)


def test_voxels_below_a_micrometre_are_refused_and_above_are_kept():
    fine = np.diag([2 * MIN_SPACING_MM, 1.0, 1.0, 1.0])
    assert check_affine("a.nii", fine) is not None
    with pytest.raises(BadFileError, match="zero or below"):
        check_affine("b.nii", np.diag([5e-4, 1.0, 1.0, 1.0]))  # a broken pixdim, not a scan
    assert MIN_SPACING_MM == 1e-3
