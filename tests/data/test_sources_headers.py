"""Detached-header parsing edges found by mutating medssl/data/sources.py, with SimpleITK
(which reads these headers itself) as the reference where it applies."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medssl.data.sources import detached_data_files, source_files, source_signature

NRRD = "NRRD0004\ntype: float\ndimension: 3\nsizes: 6 5 4\nencoding: raw\n"


def test_metaimage_local_in_any_case_is_data_in_the_header(tmp_path):
    """MetaIO (SimpleITK) reads ``ElementDataFile = Local`` / ``local`` as data after the header, like LOCAL."""
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(24, dtype=np.int16).reshape(2, 3, 4)), str(tmp_path / "a.mha"))
    raw = (tmp_path / "a.mha").read_bytes()
    for spelling in (b"Local", b"local"):
        h = tmp_path / f"{spelling.decode()}.mhd"
        h.write_bytes(raw.replace(b"ElementDataFile = LOCAL", b"ElementDataFile = " + spelling))
        assert int(sitk.GetArrayFromImage(sitk.ReadImage(str(h))).sum()) == sum(range(24))  # the reference
        assert detached_data_files(h) == [] and source_files(h) == [h.name]


def test_a_numbered_pattern_with_step_zero_falls_back_to_the_stem_files(tmp_path):
    h = tmp_path / "img.mhd"
    h.write_text("ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\n"
                 "ElementDataFile = z%02d.raw 1 3 0\n")
    (tmp_path / "img.raw").write_bytes(b"\0" * 8)
    assert detached_data_files(h) is None
    assert source_files(h) == ["img.mhd", "img.raw"]


def test_a_nrrd_key_value_pair_named_like_the_field_is_not_the_field(tmp_path):
    """``key:=value`` lines are free-form metadata, even when the key reads 'data file'."""
    n = tmp_path / "vol.nhdr"
    n.write_text(NRRD + "data file:=old/vol.raw\ndata file: vol.raw\n")
    assert detached_data_files(n) == [tmp_path / "vol.raw"]


def test_a_nrrd_list_of_data_files_ends_at_the_blank_line(tmp_path):
    n = tmp_path / "vol.nhdr"
    n.write_text(NRRD + "data file: LIST\na.raw\nb.raw\n\nnot-a-file.raw\n")
    assert detached_data_files(n) == [tmp_path / "a.raw", tmp_path / "b.raw"]
    assert source_files(n) == ["vol.nhdr", "a.raw", "b.raw"]


def test_a_numbered_pattern_names_up_to_100001_files_and_more_falls_back(tmp_path):
    """``name%0Nd first last step`` lists first..last inclusive (MetaIO); a pattern of more than 100,000 steps is
    taken for a bad header (fallback: the files with the header's stem) rather than listed."""
    h = tmp_path / "img.mhd"
    head = "ObjectType = Image\nNDims = 3\nDimSize = 2 2 12\nElementType = MET_UCHAR\n"
    h.write_text(head + "ElementDataFile = s%03d.raw 1 12 1\n")
    assert detached_data_files(h) == [tmp_path / f"s{i:03d}.raw" for i in range(1, 13)]
    h.write_text(head + "ElementDataFile = s%06d.raw 0 100000 1\n")
    files = detached_data_files(h)
    assert len(files) == 100_001 and files[-1] == tmp_path / "s100000.raw"
    (tmp_path / "img.raw").write_bytes(b"\0" * 8)
    h.write_text(head + "ElementDataFile = s%06d.raw 0 100001 1\n")
    assert detached_data_files(h) is None and source_files(h) == ["img.mhd", "img.raw"]


def test_a_list_of_no_data_files_is_no_data_file(tmp_path):
    """``data file: LIST`` followed by the blank line names no file: ``None`` (the docstring), so the signature
    falls back to the files with the header's stem instead of covering the header alone."""
    n = tmp_path / "vol.nhdr"
    n.write_text(NRRD + "data file: LIST\n\n")
    (tmp_path / "vol.raw").write_bytes(b"\0" * 8)
    assert detached_data_files(n) is None
    assert source_files(n) == ["vol.nhdr", "vol.raw"]


def test_a_header_in_a_folder_that_does_not_exist_is_one_missing_file(tmp_path):
    """Neither the header nor its folder can be read: the header alone, whose signature says "missing" as a plain
    missing file's does (a cache row of it is rebuilt once the file appears)."""
    h = tmp_path / "absent" / "img.mhd"
    assert source_files(h) == ["img.mhd"] and source_signature(h) == source_signature(tmp_path / "gone.nii") == "missing"
