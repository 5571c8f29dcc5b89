"""Patient identifiers planted in DICOM headers must never reach Volumes, reprs, errors or warnings."""

from __future__ import annotations

import logging
import shutil
import traceback
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from medssl.io import BadFileError, read_dicom, read_dicom_series, read_image

PLANTED = {
    "PatientName": "Qzxvbn^Wyrmtrude", "PatientID": "PID-88123-QZ", "PatientBirthDate": "19230411",
    "AccessionNumber": "ACC77Q9912", "InstitutionName": "Saint Qzxv Hospital",
    "ReferringPhysicianName": "Drwy^Plonk", "StudyID": "STQ4471", "PatientAddress": "12 Qzxv Lane",
    "OperatorsName": "Oprq^Vantle", "StudyDescription": "Qzxv follow-up",
}
SERIES_UID = "1.2.826.0.1.3680043.8.498.99887766554433221100"


def _plant(src, dst, series_uid=SERIES_UID, **raw):
    ds = pydicom.dcmread(src)
    for key, value in PLANTED.items():
        setattr(ds, key, value)
    ds.SeriesInstanceUID = series_uid
    for keyword, value in raw.items():  # malformed values written as raw bytes
        tag = Tag(pydicom.datadict.tag_for_keyword(keyword))
        data = value.encode() + (b" " if len(value) % 2 else b"")
        ds[tag] = RawDataElement(tag, pydicom.datadict.dictionary_VR(tag), len(data), data, 0, False, True)
    ds.save_as(dst)
    return dst


def _assert_clean(*texts):
    blob = "\n".join(texts)
    for key, value in PLANTED.items():
        assert value not in blob, f"{key} leaked: {value!r}"
        for part in value.split("^"):
            assert part not in blob, f"part of {key} leaked: {part!r}"
    assert SERIES_UID not in blob


def _clean_volume(vol):
    _assert_clean(repr(vol), str(vol.meta), str(vars(vol)))


def _clean_error(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(BadFileError) as err:
            fn()
    e = err.value
    _assert_clean(str(e), repr(e), e.reason, "".join(traceback.format_exception(e)),
                  *(str(w.message) for w in caught))
    return e


def test_single_file_reads_are_clean(pydicom_file, tmp_path):
    path = _plant(pydicom_file("CT_small.dcm"), tmp_path / "ct.dcm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for vol in (read_dicom(path), read_dicom(path, spatial_dims=3), read_image(path, voi=(40, 400))):
            _clean_volume(vol)
    _assert_clean(*(str(w.message) for w in caught))
    assert len(read_dicom(path).meta["series_hash"]) == 16


def test_real_radiograph_is_clean(shared_data, tmp_path):
    src = next((shared_data / "dicom_cxr_nih_dx").glob("*.dcm"))
    _clean_volume(read_dicom(_plant(src, tmp_path / "cxr.dcm")))


def test_series_read_is_clean(pydicom_file, tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for i, f in enumerate(sorted(pydicom_file("dicomdirtests/98892001/CT5N").iterdir())):
        _plant(f, folder / f"{i}.dcm")
    _clean_volume(read_dicom_series(folder))
    _plant(pydicom_file("CT_small.dcm"), folder / "other.dcm", series_uid=SERIES_UID + ".2")
    e = _clean_error(lambda: read_dicom_series(folder))
    assert "contains 2 image series" in str(e)


def test_error_paths_are_clean(pydicom_file, tmp_path):
    src = pydicom_file("CT_small.dcm")
    cut = _plant(src, tmp_path / "cut.dcm")
    raw = cut.read_bytes()
    cut.write_bytes(raw[: len(raw) - 5000])  # pixel data truncated
    assert "cannot decode pixel data" in str(_clean_error(lambda: read_dicom(cut)))

    nopix = _plant(src, tmp_path / "nopix.dcm")
    ds = pydicom.dcmread(nopix)
    del ds.PixelData
    ds.save_as(nopix)
    assert "no pixel data" in str(_clean_error(lambda: read_dicom(nopix)))

    # the patient name written into numeric elements: libraries quote offending values in errors
    frames = _plant(src, tmp_path / "frames.dcm", NumberOfFrames=PLANTED["PatientName"])
    _clean_error(lambda: read_dicom(frames))
    pos = _plant(src, tmp_path / "pos.dcm", ImagePositionPatient=PLANTED["PatientID"])
    _clean_error(lambda: read_dicom(pos, spatial_dims=3))
    folder = tmp_path / "f"
    folder.mkdir()
    shutil.copy(frames, folder / "a.dcm")
    _clean_error(lambda: read_dicom_series(folder))


def test_unquoted_values_in_library_errors_are_redacted(pydicom_file, tmp_path, monkeypatch):
    path = _plant(pydicom_file("CT_small.dcm"), tmp_path / "x.dcm")

    def leaky(self):
        warnings.warn(f"frame of {self.PatientName} / {self.PatientID} looks odd")
        raise RuntimeError(f"cannot decode frame for {self.PatientName} ({self.InstitutionName})")

    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(leaky))
    e = _clean_error(lambda: read_dicom(path))
    assert "<redacted>" in str(e)
    with warnings.catch_warnings(record=True) as caught:  # the warning before the error is kept, scrubbed
        warnings.simplefilter("always")
        with pytest.raises(BadFileError):
            read_dicom(path)
    assert [str(w.message) for w in caught if "looks odd" in str(w.message)] == ["frame of <redacted> / <redacted> looks odd"]


def test_missing_decoder_error_is_clean(pydicom_file, tmp_path, monkeypatch):
    class NoPlugins:
        is_available = False

    monkeypatch.setattr("medssl.io.dicom.get_decoder", lambda uid: NoPlugins())
    path = _plant(pydicom_file("MR_small_RLE.dcm"), tmp_path / "rle.dcm")
    assert "dicom-codecs" in str(_clean_error(lambda: read_dicom(path)))


@pytest.mark.parametrize("log_threads", [True, False])  # logging.logThreads = False: records carry no thread id
def test_pydicom_log_records_are_scrubbed(pydicom_file, tmp_path, caplog, monkeypatch, log_threads):
    monkeypatch.setattr(logging, "logThreads", log_threads)
    # A UID with a leading-zero component (a common malformation) makes pydicom both warn and LOG
    # "Invalid value for VR UI: '<the UID>'" on the `pydicom` logger when the element is read.
    bad_uid = "1.2.826.0.1.3680043.8.498.0998877665544332211"
    folder = tmp_path / "series"
    folder.mkdir()
    path = _plant(pydicom_file("CT_small.dcm"), folder / "uid.dcm", SeriesInstanceUID=bad_uid)
    pydicom.config.debug(True, default_handler=False)  # debug records too (element offsets, tags)
    try:
        with caplog.at_level(logging.DEBUG, logger="pydicom"), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            read_dicom(path)
            read_dicom(path, spatial_dims=3)
            read_dicom_series(folder)
            frames = _plant(pydicom_file("CT_small.dcm"), tmp_path / "frames.dcm", SeriesInstanceUID=bad_uid,
                            NumberOfFrames=PLANTED["PatientName"])
            _clean_error(lambda: read_dicom(frames))  # records logged before an error arrive scrubbed too
    finally:
        pydicom.config.debug(False, default_handler=False)
    records = [r for r in caplog.records if r.name.split(".")[0] == "pydicom"]
    invalid = [r for r in records if "Invalid value for VR UI" in r.getMessage()]
    assert len(invalid) >= 4  # the record still arrives, once per file read
    assert all("<redacted>" in r.getMessage() for r in invalid)
    assert len(records) > len(invalid)  # debug records arrive as well
    _assert_clean(caplog.text, *(r.getMessage() for r in records), *(str(w.message) for w in caught))
    assert bad_uid not in caplog.text and "0998877665544332211" not in caplog.text


def test_volume_rejects_unsafe_metadata():
    from medssl.io import Volume

    with pytest.raises(ValueError, match="not in the safe whitelist"):
        Volume(np.zeros((1, 2, 2)), np.eye(3), {"patient_name": "x"})


@pytest.mark.parametrize("message, expected", [
    ("can't read 'Qzxvbn^W'", "can't read <redacted>"),  # the apostrophe of can't opens no quote (was garbled)
    ("the file's header isn't valid", "the file's header isn't valid"),
    ("invalid literal for int(): 'O'Qzxv^W'", "invalid literal for int(): <redacted>"),  # apostrophe inside a value
    ("got b'Qzxvbn^W' and u'PID-1'", "got b<redacted> and u<redacted>"),
    ('value "Qzxvbn^W" is bad', "value <redacted> is bad"),
    ("cut short 'Qzxvbn^W", "cut short <redacted>"),  # no closing quote: the rest goes
    ("'Qzxvbn'W more", "<redacted>"),  # a closing quote inside a word closes nothing: the rest goes
])
def test_quoted_values_are_redacted_and_apostrophes_kept(message, expected):
    from medssl.io.errors import redact

    assert redact(message) == expected


def test_a_header_value_with_an_apostrophe_is_redacted_whole():
    # The quote pass first cut the quoted value at its inner apostrophe ('St Qzxv' + " Hospital'"), so the
    # whole value no longer matched the list of header values and its end was shown.
    from medssl.io.errors import redact

    value = "St Qzxv' Wbnmhospital"
    out = redact(f"bad value '{value}' in header", [value])
    assert "Wbnm" not in out and "Qzxv" not in out and out.startswith("bad value <redacted>")


def test_a_header_value_is_redacted_in_any_letter_case_and_an_empty_one_changes_nothing():
    # A library may upper- or lower-case a value it quotes without quotes (a name in a DICOM-style error):
    # the case-sensitive replace let 'QZXVBN^WERT' through for the header value 'Qzxvbn^Wert'.
    from medssl.io.errors import redact

    out = redact("no match for QZXVBN^WERT or qzxvbn^wert; the sum 1+1 (a.b)", ["Qzxvbn^Wert", "", "1+1", "a.b"])
    assert out == "no match for <redacted> or <redacted>; the sum <redacted> (<redacted>)"
    assert redact("plain text", [""]) == "plain text"


def test_redaction_time_is_bounded_on_a_long_message_full_of_quotes():
    # Every unclosed opening quote scanned to the end of the message: quadratic (90 k characters took ~20 s).
    import time

    from medssl.io.errors import redact

    t0 = time.perf_counter()
    out = redact("header " + " 'Qzxv" * 30000)
    assert time.perf_counter() - t0 < 2.0
    assert "Qzxv" not in out and out.startswith("header")
