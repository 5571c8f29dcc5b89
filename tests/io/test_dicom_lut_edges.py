"""Edge cases of the Modality / VOI steps (PS3.3 C.11.1, C.11.2) against naive formulas and pydicom's own
lookups: a negative Rescale Slope, a window of width 1, 65536-entry and signed-first LUTs, and an unsigned image
whose VOI LUT starts above 32767, a LUT entry above its bit depth, several VOI LUTs."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

from medssl.io import read_dicom
from medssl.io.dicom import apply_display
from medssl.io.dicom_lut import modality_values

from dicom_reference import linear_window


def test_a_negative_rescale_slope_keeps_high_modality_values_bright(pydicom_file, tmp_path):
    # The window output was normalised by the ordered modality range, but pydicom's window maps "above the window" to
    # its y_max = stored max * slope + intercept, which is the LOWER end when the slope is negative: every window came
    # out inverted (high modality values dark). The full stored range must likewise map low → 0, high → 1.
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))  # signed 16 bit, stored 127..2145
    ds.RescaleSlope, ds.RescaleIntercept = -1.0, 100.0
    ds.WindowCenter, ds.WindowWidth = -1000, 1001
    ds.save_as(tmp_path / "neg.dcm")
    values = ds.pixel_array * -1.0 + 100.0
    np.testing.assert_allclose(apply_modality_lut(ds.pixel_array, ds), values)  # pydicom agrees on the modality step
    for voi in ("file", (-1000, 1001)):
        vol = read_dicom(tmp_path / "neg.dcm", voi=voi)
        np.testing.assert_allclose(vol.array[0], linear_window(values, -1000, 1001).T, atol=1e-6)
    del ds.WindowCenter, ds.WindowWidth
    ds.save_as(tmp_path / "full.dcm")
    lo, hi = 32767 * -1.0 + 100.0, -32768 * -1.0 + 100.0  # the stored range through the slope, ordered
    full = read_dicom(tmp_path / "full.dcm", voi="file")
    assert full.meta["window"] == "full_range"
    np.testing.assert_allclose(full.array[0], ((values - lo) / (hi - lo)).T, atol=1e-6)


def test_a_window_of_width_1_is_a_threshold_at_center_minus_half(pydicom_file, tmp_path):
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    ds.WindowCenter, ds.WindowWidth = 600.5, 1  # DICOM allows width 1: x <= c - 0.5 → min, else max
    ds.save_as(tmp_path / "w1.dcm")
    vol = read_dicom(tmp_path / "w1.dcm", voi="file")
    expected = (ds.pixel_array > 600).astype(np.float64)
    assert 0 < expected.mean() < 1
    np.testing.assert_array_equal(vol.array[0], expected.T)
    np.testing.assert_array_equal(linear_window(ds.pixel_array, 600.5, 1), expected)
    # A caller's window narrower than 1 (read_dicom accepts any width > 0) is read as width 1, not refused.
    narrow = read_dicom(tmp_path / "w1.dcm", voi=(600.5, 0.25))
    np.testing.assert_array_equal(narrow.array, vol.array)
    assert narrow.meta["window"] == "c=600.5,w=0.25"


def _lut_dataset(descriptor, table, signed):
    ds = pydicom.Dataset()
    ds.BitsStored, ds.PixelRepresentation = 16, int(signed)
    item = pydicom.Dataset()
    item.LUTDescriptor, item.ModalityLUTType = descriptor, "US"
    item.LUTData = [int(v) for v in table]
    ds.ModalityLUTSequence = pydicom.Sequence([item])
    return ds


def test_a_lut_descriptor_of_0_entries_means_65536():
    # PS3.3 C.11.1.1: a first value of 0 in the LUT Descriptor stands for 2^16 entries.
    table = (np.arange(2**16) * 7) % 4096
    ds = _lut_dataset([0, 0, 16], table, signed=False)
    x = np.array([[0, 1, 255, 256, 4000, 40000, 65535]], dtype=np.uint16)
    expected = table[x.astype(np.int64)].astype(np.float64)
    np.testing.assert_array_equal(apply_modality_lut(x, ds), expected)  # pydicom's own lookup
    np.testing.assert_array_equal(modality_values(x, ds), expected)


def test_a_signed_first_mapped_value_of_minus_32768_written_as_us():
    # -32768 is 32768 when written as US (the smallest value that must be read back as negative).
    table = np.arange(1000) * 3
    ds = _lut_dataset([1000, 32768, 16], table, signed=True)
    x = np.array([[-32768, -32767, -32000, -31769, 0]], dtype=np.int16)
    expected = table[np.clip(x.astype(np.int64) + 32768, 0, 999)].astype(np.float64)
    np.testing.assert_array_equal(modality_values(x, ds), expected)
    np.testing.assert_array_equal(expected[0, :3], [0, 3, 768 * 3])


def test_an_unsigned_image_reads_a_voi_lut_first_value_above_32767_as_unsigned():
    ds = pydicom.Dataset()
    ds.BitsStored, ds.PixelRepresentation, ds.PhotometricInterpretation = 16, 0, "MONOCHROME2"
    n, first = 500, 40000
    table = (np.arange(n) * 11) % 3000 + 7
    item = pydicom.Dataset()
    item.LUTDescriptor, item.LUTData = [n, first, 16], [int(v) for v in table]
    ds.VOILUTSequence = pydicom.Sequence([item])
    values = np.array([[39000.0, 40000.0, 40001.0, 40250.0, 40499.0, 50000.0]])
    looked_up = table[np.clip(values.astype(np.int64) - first, 0, n - 1)]
    out, tag = apply_display(ds, values, "file")
    assert tag == "voi_lut"
    np.testing.assert_allclose(out, (looked_up - table.min()) / (table.max() - table.min()), atol=1e-12)


def test_the_full_range_output_stays_in_0_1_for_a_lut_entry_above_its_bit_depth():
    # A 12-bit Modality LUT whose table holds 5000 (malformed, but read): voi="file" promises [0, 1].
    table = np.array([0, 1000, 4095, 5000])
    ds = _lut_dataset([4, 0, 12], table, signed=False)
    ds.PhotometricInterpretation = "MONOCHROME2"
    values = modality_values(np.array([[0, 1, 2, 3]], dtype=np.uint16), ds)
    out, tag = apply_display(ds, values, "file")
    assert tag == "full_range"
    np.testing.assert_allclose(out, [[0.0, 1000 / 4095, 1.0, 1.0]])


def test_of_several_voi_luts_the_first_is_used():
    # PS3.3 C.11.2: the VOI LUT Sequence may hold several items (like several windows); the first one is applied.
    ds = pydicom.Dataset()
    ds.BitsStored, ds.PixelRepresentation, ds.PhotometricInterpretation = 16, 0, "MONOCHROME2"
    tables = [np.arange(300) * 2, 4095 - np.arange(300) * 5]
    items = []
    for table in tables:
        item = pydicom.Dataset()
        item.LUTDescriptor, item.LUTData = [300, 100, 16], [int(v) for v in table]
        items.append(item)
    ds.VOILUTSequence = pydicom.Sequence(items)
    values = np.array([[50.0, 100.0, 250.0, 399.0]])
    first = tables[0][np.clip(values.astype(np.int64) - 100, 0, 299)]
    out, _ = apply_display(ds, values, "file")
    np.testing.assert_allclose(out, (first - tables[0].min()) / (tables[0].max() - tables[0].min()), atol=1e-12)
