"""read_header on its own scrubs what pydicom says while parsing, and a series folder lists the files it skips
by reasons that hold no free header text (medssl.io.dicom.read_header, medssl.io.dicom_series._not_a_slice)."""

from __future__ import annotations

import shutil
import warnings

import pydicom
import pytest

from medssl.io import BadFileError, read_dicom_series
from medssl.io.dicom import read_header

NAME = "Qzxvbn^Wyrmtrude"


def _named(src, dst, **values):
    ds = pydicom.dcmread(src)
    ds.PatientName = NAME
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom notices a value that is not valid for its VR
        for key, value in values.items():
            setattr(ds, key, value)
    ds.save_as(dst)
    return dst


def test_a_warning_while_parsing_is_scrubbed_of_the_headers_values(pydicom_file, tmp_path, monkeypatch):
    # read_header's values come from the header it is reading: the block ends after dcmread has returned it
    path = _named(pydicom_file("CT_small.dcm"), tmp_path / "ct.dcm")
    real = pydicom.dcmread

    def chatty(*args, **kwargs):
        ds = real(*args, **kwargs)
        warnings.warn(f"odd element for {ds.PatientName}")
        return ds

    monkeypatch.setattr(pydicom, "dcmread", chatty)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert str(read_header(path).PatientName) == NAME
    assert [str(w.message) for w in caught] == ["odd element for <redacted>"]


def test_a_parse_error_quoting_a_value_is_redacted(tmp_path, monkeypatch):
    path = tmp_path / "x.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM")

    def fails(*args, **kwargs):
        raise ValueError(f"invalid value '{NAME}' at offset 132")

    monkeypatch.setattr(pydicom, "dcmread", fails)
    with pytest.raises(BadFileError, match="cannot parse DICOM") as err:
        read_header(path)
    assert "Qzxvbn" not in str(err.value) and "offset 132" in str(err.value)


def test_skipped_files_of_a_series_are_named_by_safe_reasons(pydicom_file, tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(pydicom_file("dicomdirtests/98892001/CT5N"), folder)
    # a malformed SOP Class UID holding free text is not a known class: a slice candidate, never quoted as a reason
    _named(next(folder.iterdir()), folder / "odd.dcm", SOPClassUID=NAME, SeriesInstanceUID="1.2.3.999")
    shutil.copy(pydicom_file("SC_rgb_rle_2frame.dcm"), folder / "frames.dcm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = read_dicom_series(folder, series_uid="1.2.3.999")
    assert caught and not any("Qzxvbn" in str(w.message) for w in caught)  # pydicom: invalid value for VR UI
    assert vol.meta["ignored_files"] == {"frames.dcm": "multi-frame object"}  # CT5N's slices: another series
    assert vol.spatial_shape[2] == 1
    assert "Qzxvbn" not in str(vol.meta)
