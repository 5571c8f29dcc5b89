"""A DICOM series read scrubs each slice's own header values (they differ per slice: SOPInstanceUID, dates) and
turns a malformed value met while checking the slices' geometry into a clean BadFileError; the folder scan and the
several-series listing leak no header value either."""

from __future__ import annotations

import uuid
import warnings

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

import medssl.io.dicom_series as series_mod
from medssl.io import BadFileError, read_dicom_series

NAME = "Qzxvbn^Wyrmtrude"


def _series(pydicom_file, folder, **raw_last):
    """CT5N's five slices with a planted name and unrelated SOPInstanceUIDs; ``raw_last`` elements written as raw bytes into the last one."""
    folder.mkdir()
    files = sorted(pydicom_file("dicomdirtests/98892001/CT5N").iterdir())
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.PatientName = NAME
        ds.SOPInstanceUID = f"2.25.{uuid.UUID(int=(i + 1) * 0x9E3779B97F4A7C15).int}"  # UUID-derived, as many write
        for keyword, value in (raw_last.items() if i == len(files) - 1 else ()):
            tag = Tag(pydicom.datadict.tag_for_keyword(keyword))
            data = value.encode() + (b" " if len(value) % 2 else b"")
            ds[tag] = RawDataElement(tag, pydicom.datadict.dictionary_VR(tag), len(data), data, 0, False, True)
        ds.save_as(folder / f"{i}.dcm")
    return [pydicom.dcmread(folder / f"{i}.dcm", stop_before_pixels=True) for i in range(len(files))]


def test_an_error_while_decoding_a_later_slice_is_scrubbed_of_that_slices_values(pydicom_file, tmp_path,
                                                                                  monkeypatch):
    # The per-slice block was given the first slice's header: a value of slice 3 that slice 0 lacks went out.
    headers = _series(pydicom_file, tmp_path / "s")
    uids = {str(ds.SOPInstanceUID) for ds in headers}
    assert len(uids) == len(headers)  # each slice has its own
    calls = []

    def fails_on_third(pixels, ds):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError(f"bad slice {ds.SOPInstanceUID} of {ds.PatientName}")
        return pixels.astype("float32")

    monkeypatch.setattr(series_mod, "modality_values", fails_on_third)
    with pytest.raises(BadFileError, match="malformed DICOM content") as err:
        read_dicom_series(tmp_path / "s")
    text = str(err.value)
    assert "<redacted>" in text and "Qzxvbn" not in text and "Wyrmtrude" not in text
    for uid in uids:
        assert uid not in text


def test_a_malformed_pixel_spacing_is_a_clean_bad_file_error(pydicom_file, tmp_path):
    _series(pydicom_file, tmp_path / "s", PixelSpacing=f"{NAME}\\0.6")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(BadFileError, match="malformed DICOM content") as err:
            read_dicom_series(tmp_path / "s")
    blob = str(err.value) + "".join(str(w.message) for w in caught)
    assert "Qzxvbn" not in blob and "Wyrmtrude" not in blob


def test_an_error_while_sorting_out_a_header_is_scrubbed_of_that_headers_values(pydicom_file, tmp_path, monkeypatch):
    # The folder scan reads each header to tell slices from other objects; an unquoted value in an error raised
    # there (a library naming the patient) must be redacted like one raised while decoding.
    _series(pydicom_file, tmp_path / "s")

    def leaky(ds):
        raise RuntimeError(f"odd object of {ds.PatientName}")

    monkeypatch.setattr(series_mod, "_not_a_slice", leaky)
    with pytest.raises(BadFileError, match="malformed DICOM content") as err:
        read_dicom_series(tmp_path / "s")
    assert "<redacted>" in str(err.value) and "Qzxvbn" not in str(err.value) and "Wyrmtrude" not in str(err.value)


def test_a_malformed_modality_is_not_quoted_in_the_series_listing(pydicom_file, tmp_path):
    # The several-series error lists each series' Modality: a value that is not a Code String (here a name) is
    # shown as '?', never as written.
    headers = _series(pydicom_file, tmp_path / "s", Modality=NAME)
    assert str(headers[-1].Modality) == NAME
    ds = pydicom.dcmread(tmp_path / "s" / "4.dcm")
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "s" / "4.dcm")
    with pytest.raises(BadFileError, match=r"contains 2 image series: .*\(\?, 1 files\)") as err:
        read_dicom_series(tmp_path / "s")
    assert "Qzxvbn" not in str(err.value) and "Wyrmtrude" not in str(err.value)
