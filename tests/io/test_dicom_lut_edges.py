"""Edge cases of the Modality / VOI steps (PS3.3 C.11.1, C.11.2) against naive formulas and pydicom's own
lookups: a negative Rescale Slope."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

from medssl.io import read_dicom


def _linear(x, center, width):
    """PS3.3 C.11.2.1.2.1 LINEAR, written piecewise with its 0.5 and 1 terms, output in [0, 1]."""
    out = np.empty_like(x, dtype=np.float64)
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    for i, v in np.ndenumerate(x):
        out[i] = 0.0 if v <= low else 1.0 if v > high else (v - (center - 0.5)) / (width - 1) + 0.5
    return out


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
        np.testing.assert_allclose(vol.array[0], _linear(values, -1000, 1001).T, atol=1e-6)
    del ds.WindowCenter, ds.WindowWidth
    ds.save_as(tmp_path / "full.dcm")
    lo, hi = 32767 * -1.0 + 100.0, -32768 * -1.0 + 100.0  # the stored range through the slope, ordered
    full = read_dicom(tmp_path / "full.dcm", voi="file")
    assert full.meta["window"] == "full_range"
    np.testing.assert_allclose(full.array[0], ((values - lo) / (hi - lo)).T, atol=1e-6)
