"""The Volume container: what its docstring promises about dtypes, whatever array a caller passes."""

from __future__ import annotations

import numpy as np

from medssl.io import Volume


def test_any_numeric_array_is_stored_as_float32_with_a_float64_affine():
    # Every reader passes float32 already, so only a direct caller sees this: an int16, uint8 or float64 array
    # comes out float32 (the class docstring's contract), values unchanged.
    for dtype in (np.int16, np.uint8, np.float64):
        data = (np.arange(24).reshape(1, 2, 3, 4) * 7 % 200).astype(dtype)
        vol = Volume(data, np.eye(4, dtype=np.int64))
        assert vol.array.dtype == np.float32 and vol.affine.dtype == np.float64
        np.testing.assert_array_equal(vol.array, data.astype(np.float64))
