"""VOI step of read_dicom against naive formulas: VOI LUT data as pydicom reads it, the first of several
windows, the VOI LUT Functions, and a Modality LUT Sequence (PS3.3 C.11.1, C.11.2)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from medssl.io import BadFileError, read_dicom, read_dicom_series

from dicom_reference import linear_window

CR = "dicomdirtests/77654033/CR1/6154"  # real CR, MONOCHROME1, window 1600/2800, slope 0.684


def _voi_lut(bits: int, first: int, n: int, low: int) -> tuple[pydicom.Dataset, np.ndarray]:
    """A VOI LUT item of ``n`` entries from ``low`` up to the top of ``bits`` bits, and its table."""
    top = 2**bits - 1
    table = (low + np.sqrt(np.arange(n) / (n - 1)) * (top - low)).astype(np.uint16)
    item = pydicom.Dataset()
    item.LUTDescriptor = [n, first, bits]
    return item, table


@pytest.mark.parametrize("name, bits, vr", [("MR_small.dcm", 16, "OW"), ("MR_small_bigendian.dcm", 16, "OW"),
                                            ("MR_small.dcm", 8, "OW"), ("MR_small.dcm", 8, "US")])
def test_a_voi_lut_maps_every_entry_and_its_range_to_0_1(pydicom_file, tmp_path, name, bits, vr):
    # LUT Data in OW is one 16-bit word per entry in the file's byte order; the output range was taken from the
    # raw bytes as little-endian uint16 (uint8 for 8-bit entries), so a big-endian file or an 8-bit table came out
    # squeezed into a small part of [0, 1]. And pydicom's apply_voi indexes an 8-bit table with uint8 indices:
    # entry 256 and later (a 12-bit → 8-bit display LUT has 4096) wrapped round to entries 0, 1, …
    ds = pydicom.dcmread(pydicom_file(name))
    first, n = 100, 1500
    item, table = _voi_lut(bits, first, n, low=200)
    order = ">u2" if "bigendian" in name else "<u2"
    item.add_new(0x00283006, vr, table.astype(order).tobytes() if vr == "OW" else table.tolist())
    ds.VOILUTSequence = pydicom.Sequence([item])
    ds.save_as(tmp_path / "lut.dcm")
    x = ds.pixel_array.astype(np.int64)
    out = table[np.clip(x - first, 0, n - 1)].astype(np.float64)  # naive table lookup
    expected = (out - table.min()) / (table.max() - table.min())  # the table's range → [0, 1]
    vol = read_dicom(tmp_path / "lut.dcm", voi="file")
    assert vol.meta["window"] == "voi_lut"
    np.testing.assert_allclose(vol.array[0], expected.T, atol=1e-6)


def test_a_voi_lut_after_a_fractional_rescale_looks_up_the_rounded_value(pydicom_file, tmp_path):
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    ds.RescaleSlope, ds.RescaleIntercept = 0.7, 0.25  # modality values with fractions
    first, n = 50, 1600
    item, table = _voi_lut(16, first, n, low=0)
    table = (np.arange(n) * 7 % 4096).astype(np.uint16)  # neighbours differ: rounding matters
    item.add_new(0x00283006, "US", table.tolist())
    ds.VOILUTSequence = pydicom.Sequence([item])
    ds.save_as(tmp_path / "lut.dcm")
    values = ds.pixel_array * 0.7 + 0.25
    idx = np.clip(np.floor(values + 0.5).astype(np.int64) - first, 0, n - 1)  # round half up (no .5 occurs here)
    assert not np.any(np.isclose(values % 1, 0.5))
    expected = (table[idx] - table.min()) / float(table.max() - table.min())
    np.testing.assert_allclose(read_dicom(tmp_path / "lut.dcm", voi="file").array[0], expected.T, atol=1e-6)


def test_of_several_windows_the_first_is_used(pydicom_file, tmp_path):
    ds = pydicom.dcmread(pydicom_file(CR))
    values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    ds.WindowCenter, ds.WindowWidth = [1200, 1600, 2000], [1500, 2800, 900]
    ds.save_as(tmp_path / "w.dcm")
    vol = read_dicom(tmp_path / "w.dcm")
    np.testing.assert_allclose(vol.array[0], (1.0 - linear_window(values, 1200, 1500)).T, atol=1e-6)  # MONOCHROME1
    assert vol.meta["window"] == "c=1200,w=1500"


@pytest.mark.parametrize("function", ["SIGMOID", "LINEAR_EXACT"])
def test_the_voi_lut_function_of_the_file_is_applied(pydicom_file, tmp_path, function):
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    ds.Modality, ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = "DX", 900, 1200, function
    ds.save_as(tmp_path / "f.dcm")
    x = ds.pixel_array.astype(np.float64)
    if function == "SIGMOID":  # C.11.2.1.3.1
        expected = 1.0 / (1.0 + np.exp(-4.0 * (x - 900) / 1200))
    else:  # C.11.2.1.3.2
        expected = np.clip((x - 900) / 1200 + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(read_dicom(tmp_path / "f.dcm").array[0], expected.T, atol=1e-6)


@pytest.mark.parametrize("bits", [16, 12])
def test_a_modality_lut_sequence_replaces_the_rescale_and_sets_the_range(pydicom_file, tmp_path, bits):
    # 12-bit entries (PS3.3 C.11.1.1.1 allows 8 to 16) crashed pydicom's apply_modality_lut ("data type 'uint12' not
    # understood"), so such a file was refused as malformed, "please report it as a medssl bug".
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))  # stored 127..2145, signed 16 bit
    first, n = 100, 2100
    table = (4095 - np.arange(n) * 3 % 4096).astype(np.uint16)
    item = pydicom.Dataset()
    item.LUTDescriptor, item.ModalityLUTType = [n, first, bits], "US"
    item.add_new(0x00283006, "US", table.tolist())
    ds.ModalityLUTSequence = pydicom.Sequence([item])
    ds.RescaleSlope, ds.RescaleIntercept = 2.0, -10.0  # must not be applied: the LUT replaces them (C.11.1)
    del ds.WindowCenter, ds.WindowWidth
    ds.save_as(tmp_path / "mlut.dcm")
    naive = table[np.clip(ds.pixel_array.astype(np.int64) - first, 0, n - 1)].astype(np.float64)
    if bits == 16:
        np.testing.assert_array_equal(apply_modality_lut(ds.pixel_array, ds), naive)  # pydicom agrees
    vol = read_dicom(tmp_path / "mlut.dcm")
    np.testing.assert_array_equal(vol.array[0], naive.T)
    assert vol.meta["rescaled"] is True and vol.meta["window"] == "none"
    full = read_dicom(tmp_path / "mlut.dcm", voi="file")  # no window: the LUT's output range (bits) → [0, 1]
    np.testing.assert_allclose(full.array[0], naive.T / (2.0**bits - 1), atol=1e-7)
    (tmp_path / "one").mkdir()
    ds.save_as(tmp_path / "one" / "mlut.dcm")
    np.testing.assert_array_equal(read_dicom_series(tmp_path / "one").array[0, ..., 0], naive.T)
    windowed = read_dicom(tmp_path / "mlut.dcm", voi=(2000, 1000))
    np.testing.assert_allclose(windowed.array[0], linear_window(naive, 2000, 1000).T, atol=1e-6)


def test_a_file_without_rescale_is_not_marked_rescaled(pydicom_file):
    vol = read_dicom(pydicom_file("MR_small.dcm"))
    np.testing.assert_array_equal(vol.array[0], pydicom.dcmread(pydicom_file("MR_small.dcm")).pixel_array.T)
    assert vol.meta["rescaled"] is False


@pytest.mark.parametrize("step", ["modality", "voi"])
def test_a_negative_first_mapped_value_written_as_us_is_signed(pydicom_file, tmp_path, step):
    # PS3.3 C.11.1.1 / C.11.2.1.1: the first value mapped is signed when the LUT's input is (a signed Pixel
    # Representation; for the VOI LUT a rescale that may give negative values, e.g. HU). Explicit VR gives the
    # three values one VR, so -1024 is often written as US 64512: it was taken as 64512, every value mapped to
    # the table's first entry and the image came out constant.
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))  # signed 16 bit, stored 128..2191, rescale 1 / -1024
    first, n = -1024, 2048
    table = (np.arange(n) * 5 % 4096).astype(np.uint16)
    item = pydicom.Dataset()
    item.add_new(0x00283002, "US", [n, first + 2**16, 16])
    item.add_new(0x00283006, "US", table.tolist())
    if step == "modality":
        item.ModalityLUTType = "HU"
        del ds.RescaleSlope, ds.RescaleIntercept
        ds.ModalityLUTSequence = pydicom.Sequence([item])
        x = ds.pixel_array.astype(np.int64)  # the LUT's input: stored values
    else:
        ds.VOILUTSequence = pydicom.Sequence([item])
        x = ds.pixel_array.astype(np.int64) - 1024  # the LUT's input: HU
    ds.save_as(tmp_path / "lut.dcm")
    seq = "ModalityLUTSequence" if step == "modality" else "VOILUTSequence"
    assert pydicom.dcmread(tmp_path / "lut.dcm")[seq][0].LUTDescriptor[1] == 64512  # as the file holds it
    out = table[np.clip(x - first, 0, n - 1)].astype(np.float64)  # naive table lookup
    if step == "modality":
        np.testing.assert_array_equal(read_dicom(tmp_path / "lut.dcm", voi="none").array[0], out.T)
    else:
        expected = (out - table.min()) / (table.max() - table.min())
        np.testing.assert_allclose(read_dicom(tmp_path / "lut.dcm", voi="file").array[0], expected.T, atol=1e-6)


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_bigendian.dcm"])
def test_an_8_bit_voi_lut_packed_two_entries_per_word_is_read(pydicom_file, tmp_path, name):
    # PS3.3 C.11.2.1.1 (CP-522): 8-bit entries are stored as with 8 bits allocated, two per 16-bit OW word, the first
    # in the low byte. Reading n 16-bit words from n bytes raised, and the file was refused as malformed, "please
    # report it as a medssl bug". (One entry per word, high byte zero, is read as before: the test above.)
    ds = pydicom.dcmread(pydicom_file(name))
    first, n = 100, 1501  # odd: the last word holds one entry and a zero byte
    table = (np.arange(n) * 7 % 256).astype(np.uint8)
    pairs = np.append(table, 0).reshape(-1, 2)
    words = pairs[:, 0].astype(np.uint16) | pairs[:, 1].astype(np.uint16) << 8  # low byte first
    item = pydicom.Dataset()
    item.LUTDescriptor = [n, first, 8]
    item.add_new(0x00283006, "OW", words.astype(">u2" if "bigendian" in name else "<u2").tobytes())
    ds.VOILUTSequence = pydicom.Sequence([item])
    ds.save_as(tmp_path / "lut.dcm")
    out = table[np.clip(ds.pixel_array.astype(np.int64) - first, 0, n - 1)].astype(np.float64)
    expected = (out - table.min()) / (table.max() - table.min())
    np.testing.assert_allclose(read_dicom(tmp_path / "lut.dcm", voi="file").array[0], expected.T, atol=1e-6)
    item.LUTDescriptor = [2 * n, first, 8]  # more entries than the data holds: an error naming the file
    ds.save_as(tmp_path / "short.dcm")
    with pytest.raises(BadFileError, match=r"short\.dcm.*LUT Data holds 1502 entries, fewer than the 3002"):
        read_dicom(tmp_path / "short.dcm", voi="file")
