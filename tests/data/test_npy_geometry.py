"""``format: npy`` scans (medssl/data/npy.py): the layouts read_npy accepts, the geometry from a card's ``spacing`` or
reference NIfTI (nibabel writes the references), and the messages naming what does not fit (found by mutating
npy.py, never named in a mutation campaign before)."""

import nibabel as nib
import numpy as np
import pytest

from medssl.data.npy import npy_geometry, read_npy
from medssl.io.errors import BadFileError


def _save(path, arr):
    np.save(path, np.asarray(arr, np.float32))
    return path


def test_leading_singleton_axes_of_any_number_are_dropped(tmp_path):
    """Docstring: ``(1, …, 1, C, *S)``; three leading singletons before one channel of a 4×5×6 grid."""
    data = np.arange(120, dtype=np.float32).reshape(4, 5, 6)
    vol = read_npy(_save(tmp_path / "a.npy", data[None, None, None, None]), np.eye(4))
    assert vol.array.shape == (1, 4, 5, 6) and np.array_equal(vol.array[0], data)
    vol = read_npy(_save(tmp_path / "b.npy", np.stack([data, -data])[None]), np.eye(4))  # (1, C=2, *S)
    assert vol.array.shape == (2, 4, 5, 6) and np.array_equal(vol.array[1], -data)


def test_the_spacing_geometry_is_a_diagonal_affine_in_axis_order(tmp_path):
    affine, shape = npy_geometry({"spacing": [1.5, 2, 3]}, tmp_path, 3)
    assert shape is None and np.array_equal(affine, np.diag([1.5, 2.0, 3.0, 1.0]))
    vol = read_npy(_save(tmp_path / "a.npy", np.zeros((4, 5, 6))), affine)
    assert vol.spacing == (1.5, 2.0, 3.0) and vol.meta["spacing"] == (1.5, 2.0, 3.0)
    assert vol.meta["shape"] == (4, 5, 6) and vol.meta["source_format"] == "npy"
    with pytest.raises(ValueError, match=r"geometry.spacing must have 3 values \(mm\), got \[1.0, 1.0\]"):
        npy_geometry({"spacing": [1.0, 1.0]}, tmp_path, 3)  # would read 3D scans as 2D ones


def test_a_reference_image_gives_the_affine_and_the_grid_each_scan_must_be_on(tmp_path):
    """A template saved 4D with one volume (x, y, z, 1) is a 3D grid; a scan off it names both shapes."""
    affine = np.array([[-1.5, 0, 0, 90], [0, 1.5, 0, -126], [0, 0, 1.5, -72], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 1), np.float32), affine), tmp_path / "ref.nii.gz")
    got, shape = npy_geometry({"reference": "ref.nii.gz"}, tmp_path, 3)
    assert np.array_equal(got, affine) and shape == (4, 5, 6)
    vol = read_npy(_save(tmp_path / "a.npy", np.ones((1, 4, 5, 6))), got, shape)
    assert vol.spacing == (1.5, 1.5, 1.5)
    with pytest.raises(BadFileError, match=r"spatial shape \(5, 5, 6\) differs from the geometry reference \(4, 5, 6\)"):
        read_npy(_save(tmp_path / "b.npy", np.ones((5, 5, 6))), got, shape)
    with pytest.raises(BadFileError, match="geometry reference image does not exist"):
        npy_geometry({"reference": "absent.nii.gz"}, tmp_path, 3)
    (tmp_path / "folder.nii.gz").mkdir()  # there, but no image: not "does not exist"
    with pytest.raises(BadFileError, match=r"geometry reference image cannot be read \(ImageFileError\)"):
        npy_geometry({"reference": "folder.nii.gz"}, tmp_path, 3)


def test_the_array_is_a_writable_copy_not_a_view_of_the_file(tmp_path):
    """Docstring of read_npy's copy: the memmap is read-only and keeps the file open; preprocessing may write
    into the array, and the file must stay as it was."""
    path = _save(tmp_path / "a.npy", np.full((4, 5, 6), 2.0))
    vol = read_npy(path, np.eye(4))
    assert vol.array.flags.writeable and not isinstance(vol.array.base, np.memmap)
    vol.array[...] = 0
    assert np.load(path).min() == 2.0
