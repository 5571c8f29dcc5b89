"""Independent references for the DICOM reader tests (written from the standard, not from medssl)."""

from __future__ import annotations

import numpy as np


def linear_window(x, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 (LINEAR VOI function) mapped to [0, 1], written piecewise with its 0.5 and 1
    terms: 0 where ``x <= c - 0.5 - (w - 1) / 2``, 1 where ``x > c - 0.5 + (w - 1) / 2``, else
    ``(x - (c - 0.5)) / (w - 1) + 0.5``. A width of 1 (allowed) is a threshold at ``c - 0.5``."""
    x = np.asarray(x, dtype=np.float64)
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):  # width 1: the ramp is never selected
        ramp = (x - (center - 0.5)) / (width - 1) + 0.5
    return np.where(x <= low, 0.0, np.where(x > high, 1.0, ramp))
