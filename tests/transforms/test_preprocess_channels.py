"""Per-channel statistics: ``minmax`` and ``range`` normalise each channel by its own statistics, like ``zscore``."""

import numpy as np
import pytest

from medssl.io import Volume
from medssl.transforms.preprocess import Preprocessor


@pytest.mark.parametrize("normalise", ["minmax", "range"])
def test_minmax_and_range_normalise_each_channel_by_its_own_statistics(normalise):
    """Two stacked contrasts of different scale: each channel is the naive formula of that channel alone."""
    rng = np.random.default_rng(5)
    x = np.stack([rng.normal(5, 2, (8, 8, 8)), rng.normal(300, 80, (8, 8, 8))]).astype(np.float32)
    out = Preprocessor(shape=[8, 8, 8], normalise=normalise, orientation="")(Volume(x, np.eye(4))).astype(np.float64)
    c = x.astype(np.float64).reshape(2, -1)
    if normalise == "range":
        lo, hi = c.min(1), c.max(1)
        expected = (c - lo[:, None]) / (hi - lo)[:, None]
    else:
        lo, hi = np.percentile(c, 0.5, axis=1), np.percentile(c, 99.5, axis=1)
        expected = np.clip((c - lo[:, None]) / (hi - lo)[:, None], 0, 1)
    np.testing.assert_allclose(out.reshape(2, -1), expected, atol=1e-5)
