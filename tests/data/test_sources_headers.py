"""Detached-header parsing edges found by mutating medssl/data/sources.py, with SimpleITK
(which reads these headers itself) as the reference where it applies."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medssl.data.sources import detached_data_files, source_files

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
