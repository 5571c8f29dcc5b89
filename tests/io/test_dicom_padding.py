"""Pixel Padding Value (PS3.3 C.7.5.1.1.2): padding outside a CT's reconstruction circle is not tissue.

Padding pixels take the nearest end of the range of the other pixels (for CT padding, the image's
minimum: air), in a single file and, with one range per volume, in a series.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medssl.io import BadFileError, read_dicom, read_dicom_series


def test_real_ct_padding_is_not_read_as_minus_3024_hu(shared_data):
    # The shared GE CT stores -2000 (PixelPaddingValue) outside the reconstruction circle: with intercept -1024
    # that read as -3024 HU, 21% of every slice, 2000 HU below air, into every intensity statistic.
    folder = shared_data / "dicom_ct_liver_3slice"
    reader = sitk.ImageSeriesReader()  # independent reader: GDCM keeps the padding as -3024
    uid = str(pydicom.dcmread(folder / "01.dcm", stop_before_pixels=True).SeriesInstanceUID)
    files = reader.GetGDCMSeriesFileNames(str(folder), uid)  # ordered by position
    reader.SetFileNames(files)
    headers = [pydicom.dcmread(f) for f in files]
    assert all(int(ds.PixelPaddingValue) == -2000 for ds in headers)
    pad = np.stack([ds.pixel_array == -2000 for ds in headers], axis=-1).transpose(1, 0, 2)  # (cols, rows, n)
    ref = sitk.GetArrayFromImage(reader.Execute()).transpose(2, 1, 0).astype(np.float64)
    assert ref[pad].max() == -3024 and pad.sum() == 3 * 55772

    vol = read_dicom_series(folder)
    np.testing.assert_array_equal(vol.array[0][~pad], ref[~pad])  # tissue unchanged
    assert np.all(vol.array[0][pad] == ref[~pad].min()) and ref[~pad].min() == -1024  # padding → air
    assert vol.meta["padding_pixels"] == int(pad.sum())
    one = read_dicom(files[0])
    np.testing.assert_array_equal(one.array[0], vol.array[0, :, :, 0])  # this slice's minimum is air as well
    assert one.meta["padding_pixels"] == int(pad[..., 0].sum())


@pytest.mark.parametrize("photometric, padding, limit", [("MONOCHROME2", -2000, None), ("MONOCHROME2", -2000, -1500),
                                                          ("MONOCHROME2", 63536, None),  # -2000 written as US
                                                          ("MONOCHROME1", 3000, 2500)])
def test_padding_takes_the_nearest_end_of_the_image_range(pydicom_file, tmp_path, photometric, padding, limit):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))  # signed, stored 128..2191, no padding pixels
    pixels = ds.pixel_array.copy()
    stored_pad = -2000 if padding > 2**15 else padding
    pad = np.zeros(pixels.shape, bool)
    pad[:20, :20] = pad[-7:, -30:] = True  # two corners, part of the range when there is a limit
    pixels[pad] = np.where(np.arange(pad.sum()) % 2, stored_pad, stored_pad if limit is None else limit)
    ds.PixelData = pixels.tobytes()
    ds.PhotometricInterpretation = photometric
    del ds.PixelPaddingValue
    ds.add_new(0x00280120, "US" if padding > 2**15 else "SS", padding)
    if limit is not None:
        ds.add_new(0x00280121, "SS", limit)
    (tmp_path / "one").mkdir()
    path = tmp_path / "one" / "ct.dcm"
    ds.save_as(path)
    hu = pixels.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = hu.copy()
    expected[pad] = hu[~pad].min() if photometric == "MONOCHROME2" else hu[~pad].max()  # naive: nearest end
    vol = read_dicom(path)
    np.testing.assert_array_equal(vol.array[0], expected.T)
    assert vol.meta["padding_pixels"] == pad.sum()
    np.testing.assert_array_equal(read_dicom_series(tmp_path / "one").array[0, ..., 0], expected.T)
    windowed = read_dicom(path, voi=(hu[~pad].min() + 300, 400)).array[0]
    assert np.all(windowed[pad.T] == 0.0)  # padding displays black in either polarity (MONOCHROME1 is inverted)


def test_an_image_of_padding_only_is_an_error_naming_the_file(pydicom_file, tmp_path):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.PixelData = np.full(ds.pixel_array.shape, -2000, np.int16).tobytes()
    ds.save_as(tmp_path / "blank.dcm")
    with pytest.raises(BadFileError, match=r"blank\.dcm: every pixel equals the PixelPaddingValue"):
        read_dicom(tmp_path / "blank.dcm")


def test_a_12_bit_signed_image_with_its_padding_written_as_us_in_16_bits(pydicom_file, tmp_path):
    """PixelPaddingValue of a signed image written as US holds the value's 16-bit (Bits Allocated) two's complement."""
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    pixels = ds.pixel_array // 2  # 64..1095: inside 12-bit signed
    pixels[:10, :10] = -2000
    ds.PixelData, ds.BitsStored, ds.HighBit = pixels.astype(np.int16).tobytes(), 12, 11
    del ds.PixelPaddingValue
    ds.add_new(0x00280120, "US", 65536 - 2000)
    ds.save_as(tmp_path / "ct12.dcm")
    hu = pixels.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = np.where(pixels == -2000, hu[pixels != -2000].min(), hu)
    vol = read_dicom(tmp_path / "ct12.dcm")
    assert vol.meta["padding_pixels"] == 100
    np.testing.assert_array_equal(vol.array[0], expected.T)
