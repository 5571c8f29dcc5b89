"""Single-file DICOM reader: radiographs, VOI, MONOCHROME1, codecs, single slices."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGExtended12Bit, JPEGLSLossless

from medssl.io import BadFileError, MissingDecoderError, read_dicom, read_dicom_series, read_image
from medssl.io.dicom_series import LPS_TO_RAS

from dicom_reference import linear_window

CR = "dicomdirtests/77654033/CR1/6154"  # real CR, MONOCHROME1, window 1600/2800, slope 0.684


def test_nih_chest_xray(shared_data):
    path = next((shared_data / "dicom_cxr_nih_dx").glob("*.dcm"))
    raw = pydicom.dcmread(path).pixel_array.astype(np.float64)  # (rows, cols) uint8 0..252
    vol = read_dicom(path)
    assert vol.array.shape == (1, 1024, 1024) and vol.array.dtype == np.float32
    # DX without a window in the file: full 8-bit range → [0, 1]; axis 0 runs along a row
    np.testing.assert_allclose(vol.array[0], raw.T / 255.0, atol=1e-6)
    assert vol.meta["modality"] == "DX" and vol.meta["window"] == "full_range"
    assert vol.meta["spacing_source"] == "default" and vol.spacing == (1.0, 1.0)
    np.testing.assert_array_equal(read_dicom(path, voi="none").array[0], raw.T)
    np.testing.assert_array_equal(read_image(path).array, vol.array)


def test_cr_monochrome1_window_rescale_inversion(pydicom_file):
    path = pydicom_file(CR)
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = 1.0 - linear_window(hu, float(ds.WindowCenter), float(ds.WindowWidth))
    vol = read_dicom(path)  # CR → voi="auto" uses the file's window
    np.testing.assert_allclose(vol.array[0], expected.T, atol=1e-6)
    assert vol.meta["inverted"] is True and vol.meta["window"] == "c=1600,w=2800"
    assert vol.meta["spacing_source"] == "ImagerPixelSpacing"
    np.testing.assert_allclose(vol.spacing, [float(v) for v in ds.ImagerPixelSpacing][::-1])
    assert vol.meta["patient_orientation"] == "L\\F"


def test_radiograph_spacing_is_the_same_in_2d_3d_and_as_a_series(pydicom_file, tmp_path):
    # A projection radiograph has ImagerPixelSpacing (at the detector) and often no PixelSpacing: the 2D read
    # used it, the single-slice 3D read and the series reader ignored it and fell back to 1 mm.
    ds = pydicom.dcmread(pydicom_file(CR))
    assert "PixelSpacing" not in ds
    ds.ImagerPixelSpacing = [0.2, 0.15]  # row spacing \ column spacing (mm)
    ds.EstimatedRadiographicMagnificationFactor = 1.25  # not applied: the spacing stays at the detector plane
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 0, -1]  # a frontal view
    (tmp_path / "one").mkdir()
    ds.save_as(tmp_path / "one" / "cr.dcm")
    path = tmp_path / "one" / "cr.dcm"
    flat, vol, series = read_dicom(path), read_dicom(path, spatial_dims=3), read_dicom_series(tmp_path / "one")
    assert flat.spacing == pytest.approx((0.15, 0.2))  # (along a row = column spacing, down a column)
    assert vol.spacing == pytest.approx((0.15, 0.2, 1.0)) and series.spacing == pytest.approx((0.15, 0.2, 1.0))
    for v in (flat, vol, series):
        assert v.meta["spacing_source"] == "ImagerPixelSpacing"
    # independent check: pixel (10, 0) lies 10 column spacings from (0, 0) along the row direction (LPS x → RAS -x)
    np.testing.assert_allclose(vol.affine @ [10, 0, 0, 1], [-1.5, 0, 0, 1], atol=1e-9)


def test_cr_no_voi_inverts_within_stored_range(pydicom_file):
    path = pydicom_file(CR)
    ds = pydicom.dcmread(path)
    slope, inter = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    values = ds.pixel_array * slope + inter
    lo, hi = inter, (2**ds.BitsStored - 1) * slope + inter  # 12-bit unsigned, rescaled
    np.testing.assert_allclose(read_dicom(path, voi="none").array[0], (lo + hi - values).T, rtol=1e-6)


def test_ct_slice_hounsfield_and_explicit_window(pydicom_file):
    path = pydicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    vol = read_dicom(path)  # CT → voi="auto" keeps quantitative values
    np.testing.assert_array_equal(vol.array[0], hu.T)
    assert vol.meta["window"] == "none" and vol.meta["rescaled"] is True
    np.testing.assert_allclose(vol.spacing, [float(v) for v in ds.PixelSpacing][::-1])
    win = read_dicom(path, voi=(40, 400))
    np.testing.assert_allclose(win.array[0], linear_window(hu, 40, 400).T, atol=1e-6)
    assert win.meta["window"] == "c=40,w=400" and 0.0 <= win.array.min() and win.array.max() <= 1.0


@pytest.mark.parametrize("drop, slope, intercept", [("RescaleIntercept", 2.0, 0.0), ("RescaleSlope", 1.0, -1024.0)])
def test_a_rescale_with_one_of_the_pair_missing_is_applied(pydicom_file, tmp_path, drop, slope, intercept):
    # pydicom's apply_modality_lut skips the rescale unless both elements are present: a CT slice with only an
    # intercept of -1024 came out 1024 HU off, with only a slope the values were unscaled while the output
    # range (full_range, windows, MONOCHROME1 inversion) assumed the slope. GDCM / SimpleITK take 1 and 0.
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    del ds[drop]
    (tmp_path / "one").mkdir()
    path = tmp_path / "one" / "ct.dcm"
    ds.save_as(path)
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[0].T.astype(np.float64)  # independent reader
    np.testing.assert_allclose(expected, ds.pixel_array.T * slope + intercept)
    vol = read_dicom(path)
    np.testing.assert_array_equal(vol.array[0], expected)
    assert vol.meta["rescaled"] is True
    np.testing.assert_array_equal(read_dicom_series(tmp_path / "one").array[0, ..., 0], expected)
    np.testing.assert_allclose(read_dicom(path, voi=(40, 400)).array[0], linear_window(expected, 40, 400),
                               atol=1e-6)
    signed = int(ds.PixelRepresentation) == 1
    lo, hi = (-(2 ** (ds.BitsStored - 1)), 2 ** (ds.BitsStored - 1) - 1) if signed else (0, 2**ds.BitsStored - 1)
    lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
    np.testing.assert_allclose(read_dicom(path, voi="file").array[0], (expected - lo) / (hi - lo), atol=1e-6)


def test_monochrome1_ct_keeps_hounsfield_units(pydicom_file, tmp_path):
    """MONOCHROME1 is a display polarity (PS3.3 C.7.6.3.1.2, after VOI): modality values
    (HU) are not inverted, as in read_dicom_series; a display window still is."""
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    ds.PhotometricInterpretation = "MONOCHROME1"
    (tmp_path / "one").mkdir()
    path = tmp_path / "one" / "ct_m1.dcm"
    ds.save_as(path)
    for vol in (read_dicom(path), read_dicom(path, voi="none"), read_dicom(path, spatial_dims=3)):
        np.testing.assert_array_equal(vol.array[0].reshape(hu.T.shape), hu.T)
        assert "inverted" not in vol.meta and vol.meta["window"] == "none"
    np.testing.assert_array_equal(read_dicom_series(tmp_path / "one").array, read_dicom(path, spatial_dims=3).array)
    win = read_dicom(path, voi=(40, 400))
    np.testing.assert_allclose(win.array[0], 1.0 - linear_window(hu, 40, 400).T, atol=1e-6)
    assert win.meta["inverted"] is True


def test_voi_lut_sequence(pydicom_file, tmp_path):
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    first, n = 100, 1500
    table = (np.sqrt(np.arange(n) / (n - 1)) * 4095).astype(np.uint16)
    item = pydicom.Dataset()
    item.LUTDescriptor = [n, first, 12]
    item.add_new(0x00283006, "US", table.tolist())  # LUT Data
    ds.VOILUTSequence = pydicom.Sequence([item])
    ds.save_as(tmp_path / "lut.dcm")
    x = ds.pixel_array.astype(np.int64)
    expected = table[np.clip(x - first, 0, n - 1)] / float(table.max())  # naive table lookup
    vol = read_dicom(tmp_path / "lut.dcm", voi="file")
    assert vol.meta["window"] == "voi_lut"
    np.testing.assert_allclose(vol.array[0], expected.T, atol=1e-6)


@pytest.mark.parametrize("variant", ["MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm",
                                     "MR_small_jp2klossless.dcm"])
def test_encodings_decode_to_the_same_pixels(pydicom_file, variant):
    ref = read_dicom(pydicom_file("MR_small.dcm"))
    np.testing.assert_array_equal(read_dicom(pydicom_file(variant)).array, ref.array)


def test_jpeg_ls_decodes_or_names_syntax_and_extra(pydicom_file):
    path = pydicom_file("MR_small_jpeg_ls_lossless.dcm")
    if get_decoder(JPEGLSLossless).is_available:  # codecs installed: must be lossless
        np.testing.assert_array_equal(read_dicom(path).array, read_dicom(pydicom_file("MR_small.dcm")).array)
        return
    with pytest.raises(MissingDecoderError) as err:
        read_dicom(path)
    msg = str(err.value)
    assert str(path) in msg and "JPEG-LS Lossless Image Compression" in msg and "1.2.840.10008.1.2.4.80" in msg
    assert 'pip install "medssl[dicom-codecs]"' in msg


def test_12_bit_jpeg_with_only_pillow_is_a_missing_decoder(pydicom_file):
    """Pillow is installed (the decoder counts as available) but cannot read 12-bit JPEG Extended: the
    error is MissingDecoderError with the codecs hint, not "corrupt or truncated"."""
    path = pydicom_file("JPEG-lossy.dcm")
    if get_decoder(JPEGExtended12Bit).available_plugins != ("pillow",):
        pytest.skip("a 12-bit JPEG decoder (pylibjpeg or gdcm) is installed, so the file decodes")
    with pytest.raises(MissingDecoderError, match=r"decoder\(s\) \(pillow\) cannot read .*JPEG Extended.*12 bits "
                                                  r"stored.*medssl\[dicom-codecs\]"):
        read_dicom(path)


def test_simulated_missing_plugin(pydicom_file, monkeypatch):
    class NoPlugins:
        is_available = False

    monkeypatch.setattr("medssl.io.dicom.get_decoder", lambda uid: NoPlugins())
    with pytest.raises(MissingDecoderError, match=r"RLE Lossless \(1\.2\.840\.10008\.1\.2\.5\).*dicom-codecs"):
        read_dicom(pydicom_file("MR_small_RLE.dcm"))
    read_dicom(pydicom_file("MR_small.dcm"))  # uncompressed files never ask for a decoder


def test_single_slice_3d_matches_simpleitk(pydicom_file):
    path = pydicom_file("CT_small.dcm")
    vol = read_dicom(path, spatial_dims=3)
    img = sitk.ReadImage(str(path))
    ref = sitk.GetArrayFromImage(img).transpose(2, 1, 0)  # (z, y, x) → (x, y, z), HU
    np.testing.assert_array_equal(vol.array[0], ref)
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) @ np.diag(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    np.testing.assert_allclose(vol.affine, LPS_TO_RAS @ lps, atol=1e-4)


def test_color_luminance_and_rgb(pydicom_file):
    path = pydicom_file("examples_rgb_color.dcm")
    rgb = pydicom.dcmread(path).pixel_array.astype(np.float64)  # 8-bit RGB
    lum = read_dicom(path)
    np.testing.assert_allclose(lum.array[0], (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).T / 255,
                               atol=1e-6)
    three = read_dicom(path, color="rgb")
    np.testing.assert_allclose(three.array, rgb.transpose(2, 1, 0) / 255, atol=1e-7)
    np.testing.assert_array_equal(read_dicom(path, color="rgb", voi="none").array, rgb.transpose(2, 1, 0))
    gray3 = read_dicom(pydicom_file("CT_small.dcm"), color="rgb")
    assert gray3.array.shape[0] == 3 and np.array_equal(gray3.array[0], gray3.array[2])


def test_16_bit_rgb_is_divided_by_its_full_range(pydicom_file):
    path = pydicom_file("SC_rgb_rle_16bit.dcm")  # RLE, 16 bits stored per sample, values up to 65535
    rgb = pydicom.dcmread(path).pixel_array.astype(np.float64)
    np.testing.assert_allclose(read_dicom(path, color="rgb").array, rgb.transpose(2, 1, 0) / 65535.0, atol=1e-7)
    luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 65535.0
    np.testing.assert_allclose(read_dicom(path).array[0], luma.T, atol=1e-6)


def test_palette_color(pydicom_file):
    path = pydicom_file("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    assert bits == 16 and ds.original_encoding[1]  # 16-bit entries, little endian
    red_lut = np.frombuffer(ds.RedPaletteColorLookupTableData, dtype="<u2")
    first = int(ds.RedPaletteColorLookupTableDescriptor[1])
    idx = np.clip(ds.pixel_array.astype(np.int64) - first, 0, len(red_lut) - 1)
    expected_red = red_lut[idx] / (2.0**bits - 1)  # naive palette lookup of the red channel
    vol = read_dicom(path, color="rgb")
    np.testing.assert_allclose(vol.array[0], expected_red.T, atol=1e-6)


def test_multiframe_is_rejected_with_reason(pydicom_file):
    with pytest.raises(BadFileError, match=r"rtdose\.dcm: multi-frame DICOM \(15 frames"):
        read_dicom(pydicom_file("rtdose.dcm"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="voi must be"):
        read_dicom("x.dcm", voi="soft")
    with pytest.raises(ValueError, match="voi must be"):
        read_dicom("x.dcm", voi=(40, 0))


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # NaN / inf are what the test writes
@pytest.mark.parametrize(("keyword", "value", "shown"), [
    ("PixelSpacing", "0\\0", "[0.0, 0.0]"), ("PixelSpacing", "-0.5\\0.5", "[-0.5, 0.5]"),
    ("PixelSpacing", "NaN\\1", "[nan, 1.0]"), ("ImagerPixelSpacing", "0\\0", "[0.0, 0.0]")])
def test_zero_negative_or_nan_pixel_spacing_is_an_error(pydicom_file, tmp_path, keyword, value, shown):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    del ds.PixelSpacing
    ds.add_new(pydicom.datadict.tag_for_keyword(keyword), "DS", value)
    path = tmp_path / "bad_spacing.dcm"
    ds.save_as(path)
    for spatial_dims in (2, 3) if keyword == "PixelSpacing" else (2,):
        with pytest.raises(BadFileError) as err:
            read_dicom(path, spatial_dims=spatial_dims)
        assert err.value.path == path
        assert err.value.reason.startswith(f"{keyword} {shown} mm is not a positive, finite spacing")


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
@pytest.mark.parametrize("thickness", ["0", "-5", "inf"])
def test_bad_slice_thickness_of_a_single_slice_is_an_error(pydicom_file, tmp_path, thickness):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.add_new(0x00180050, "DS", thickness)
    (tmp_path / "one").mkdir()
    path = tmp_path / "one" / "slice.dcm"
    ds.save_as(path)
    with pytest.raises(BadFileError, match="SliceThickness .* is not a positive, finite spacing") as err:
        read_dicom_series(path.parent)
    assert err.value.path == path
    with pytest.raises(BadFileError, match="SliceThickness"):
        read_dicom(path, spatial_dims=3)


@pytest.mark.parametrize("width", [0, 0.5, -5])  # C.11.2.1.2: a width of at least 1
def test_a_window_width_below_one_names_the_window_and_the_fix(pydicom_file, tmp_path, width):
    ds = pydicom.dcmread(pydicom_file(CR))
    ds.WindowWidth = width
    path = tmp_path / "w.dcm"
    ds.save_as(path)
    with pytest.raises(BadFileError, match=rf"w\.dcm: its display window is WindowCenter 1600, WindowWidth {width}; "
                                           r"DICOM requires .*\{voi: none\}"):
        read_dicom(path)
    assert read_dicom(path, voi="none").meta["window"] == "none"  # the fix the message names works


def test_an_empty_window_is_no_window(pydicom_file, tmp_path):
    """WindowCenter / WindowWidth present but empty (zero-length values) mean 'not given':
    the full stored range is used, as for a file without them (it was 'malformed')."""
    ds = pydicom.dcmread(pydicom_file(CR))
    slope, inter = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    values = ds.pixel_array * slope + inter
    lo, hi = inter, (2**ds.BitsStored - 1) * slope + inter
    ds.WindowCenter, ds.WindowWidth = "", ""
    path = tmp_path / "empty_window.dcm"
    ds.save_as(path)
    vol = read_dicom(path)
    np.testing.assert_allclose(vol.array[0], (1.0 - (values - lo) / (hi - lo)).T, atol=1e-6)  # MONOCHROME1
    assert vol.meta["window"] == "full_range" and vol.meta["inverted"] is True


def test_grayscale_ultrasound_keeps_stored_values_under_auto(pydicom_file, tmp_path):
    """docs/io.md: voi="auto" windows only radiographic modalities; a grayscale US keeps 0–255, "file" → [0, 1]."""
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    stored = (np.arange(ds.Rows * ds.Columns) % 256).astype(np.uint8).reshape(ds.Rows, ds.Columns)
    ds.Modality, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = "US", 8, 8, 7, 0
    for kw in ("RescaleSlope", "RescaleIntercept", "PixelPaddingValue", "WindowCenter", "WindowWidth"):
        if kw in ds:
            del ds[kw]
    ds.PixelData = stored.tobytes()
    ds.save_as(tmp_path / "us.dcm")
    np.testing.assert_array_equal(read_dicom(tmp_path / "us.dcm").array[0], stored.T)
    np.testing.assert_allclose(read_dicom(tmp_path / "us.dcm", voi="file").array[0], stored.T / 255.0, atol=1e-7)
