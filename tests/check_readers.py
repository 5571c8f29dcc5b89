"""A reader that fails on purpose, for the `data check` robustness tests.

A module of its own (not a test file) so that the spawned worker processes of
``check_card(workers=2)`` can unpickle it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medssl.data.reader import ScanReader


@dataclass
class FaultyReader(ScanReader):
    """Reads as :class:`ScanReader`, except for the subjects in ``faults`` (subject → fault)."""

    faults: dict = field(default_factory=dict)

    def __call__(self, record):
        fault = self.faults.get(record.subject)
        if fault == "memory":
            raise MemoryError("cannot allocate 80.0 GiB for an array")
        if fault == "zero":
            raise ZeroDivisionError("float division by zero in 'Smith^J'")  # a quoted value is redacted
        vol = super().__call__(record)
        if fault == "nan_affine":  # the volume's orientation then raises LinAlgError
            vol.affine[0, 0] = np.nan
        return vol
