"""Each identifying DICOM element, planted with its own value, is scrubbed from warnings, log records and errors
that quote it unquoted (medssl.io.dicom.phi_values), and free-text header values never reach a Volume's metadata
or an error message (medssl.io.dicom.safe_meta, cs)."""

from __future__ import annotations

import hashlib
import logging
import warnings

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

import medssl.io.dicom as dicom_mod
from medssl.io import BadFileError, read_dicom

UID = "1.2.826.0.1.3680043.8.498."
PLANTED = {  # keyword → value; each must be scrubbed from any message that names it
    "PatientID": "Q7Z",  # three characters: the shortest value phi_values keeps
    "PatientBirthDate": "19230411", "AccessionNumber": "ACC77Q9912", "InstitutionName": "Saint Qzxv Hospital",
    "StudyID": "STQ4471", "StudyDescription": "Qzxv followup", "SeriesInstanceUID": UID + "99887766554433221100",
    "StudyInstanceUID": UID + "11223344556677889900", "SOPInstanceUID": UID + "55667788990011223344",
    "ConsultingPhysicianName": "Cnslt^Hwqpy",  # a PN element not in PHI_KEYWORDS
}
OTHER_IDS = ["OPIDAAA1", "OPIDBBB2"]  # a multi-valued element
NESTED = "NESTACC991"  # AccessionNumber inside a sequence item
VALUES = [*PLANTED.values(), *OTHER_IDS, NESTED]
TEXT = "Qzxvbn wyrm^Plnk"  # free text written into code-string elements


def _plant(src, dst, **extra):
    ds = pydicom.dcmread(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom notices values that are not valid for their VR (TEXT in a CS)
        for key, value in {**PLANTED, **extra}.items():
            setattr(ds, key, value)
    ds.OtherPatientIDs = OTHER_IDS
    item = Dataset()
    item.AccessionNumber = NESTED
    ds.RequestAttributesSequence = Sequence([item])
    ds.save_as(dst)
    return dst


def _assert_clean(*texts):
    blob = "\n".join(texts)
    for value in [*VALUES, TEXT, "Qzxvbn", "Plnk"]:
        assert value not in blob, f"{value!r} leaked"


def _unquoted(ds) -> str:
    return "header values " + " ".join([*(str(ds[k].value) for k in PLANTED), *OTHER_IDS, NESTED])


def test_every_identifying_element_is_scrubbed_from_decoder_warnings_and_logs(pydicom_file, tmp_path, monkeypatch,
                                                                               caplog):
    path = _plant(pydicom_file("CT_small.dcm"), tmp_path / "ct.dcm")
    pixels = pydicom.Dataset.pixel_array

    def leaky(self):
        warnings.warn(_unquoted(self))
        logging.getLogger("pydicom").warning(_unquoted(self))
        return pixels.fget(self)

    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(leaky))
    with caplog.at_level(logging.DEBUG, logger="pydicom"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = read_dicom(path)
    messages = [str(w.message) for w in caught if "header values" in str(w.message)]
    assert len(messages) == 1 and "header values" in caplog.text
    _assert_clean(*messages, caplog.text, str(vol.meta))


def test_warnings_and_errors_of_the_steps_after_decoding_are_scrubbed(pydicom_file, tmp_path, monkeypatch):
    # the rescale / window steps run in read_dicom's own guarded block, with the header read inside it
    path = _plant(pydicom_file("CT_small.dcm"), tmp_path / "ct.dcm")
    real = dicom_mod.modality_values

    def warns(pixels, ds):
        warnings.warn(_unquoted(ds))
        return real(pixels, ds)

    monkeypatch.setattr(dicom_mod, "modality_values", warns)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_dicom(path)
    messages = [str(w.message) for w in caught if "header values" in str(w.message)]
    assert len(messages) == 1
    _assert_clean(*messages)

    def fails(pixels, ds):
        raise RuntimeError(_unquoted(ds))

    monkeypatch.setattr(dicom_mod, "modality_values", fails)
    with pytest.raises(BadFileError, match="malformed DICOM content") as err:
        read_dicom(path)
    _assert_clean(str(err.value))


def test_series_hash_is_sha256_of_the_uid_and_no_uid_is_kept(pydicom_file, tmp_path):
    vol = read_dicom(_plant(pydicom_file("CT_small.dcm"), tmp_path / "ct.dcm"))
    uid = PLANTED["SeriesInstanceUID"]
    assert vol.meta["series_hash"] == hashlib.sha256(uid.encode()).hexdigest()[:16]  # data cards store this id
    _assert_clean(str(vol.meta))


def test_free_text_in_code_string_elements_is_not_kept(pydicom_file, tmp_path):
    path = _plant(pydicom_file("CT_small.dcm"), tmp_path / "ct.dcm", Modality=TEXT, BodyPartExamined=TEXT,
                  PatientOrientation=["Qzxvbn", "F"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own "invalid value for VR CS" notices
        vol = read_dicom(path)
    assert not {"modality", "body_part", "patient_orientation"} & set(vol.meta)
    _assert_clean(str(vol.meta))
    # the well-formed values are kept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ok = read_dicom(_plant(pydicom_file("CT_small.dcm"), tmp_path / "ok.dcm", BodyPartExamined="chest ",
                               PatientOrientation=["L", "P"]))
    assert (ok.meta["modality"], ok.meta["body_part"], ok.meta["patient_orientation"]) == ("CT", "CHEST", "L\\P")


def test_error_messages_name_no_free_text_modality(pydicom_file, tmp_path):
    nopix = _plant(pydicom_file("CT_small.dcm"), tmp_path / "nopix.dcm", Modality=TEXT)
    ds = pydicom.dcmread(nopix)
    del ds.PixelData
    ds.save_as(nopix)
    report = _plant(pydicom_file("CT_small.dcm"), tmp_path / "report.dcm", Modality=TEXT,
                    SOPClassUID="1.2.840.10008.5.1.4.1.1.88.11")  # Basic Text SR
    ds = pydicom.dcmread(report)
    del ds.PixelData, ds.Rows, ds.Columns
    ds.save_as(report)
    frames = _plant(pydicom_file("rtdose.dcm"), tmp_path / "frames.dcm", Modality=TEXT)
    for path, words in ((nopix, "no pixel data although it is an image (CT Image Storage, Modality ?)"),
                        (report, "no pixel data (Basic Text SR Storage, Modality ?)"), (frames, "multi-frame DICOM (15 frames, Modality ?)")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(BadFileError) as err:
                read_dicom(path)
        assert words in str(err.value)
        _assert_clean(str(err.value))
