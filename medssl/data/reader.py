"""Decoding one record into a :class:`~medssl.io.volume.Volume`, whatever the card's format.

Kept apart from :mod:`medssl.data.prepare` so that reading (``medssl data check``) does not
import the preprocessing stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medssl.config import ConfigError
from medssl.data.card import DataCard
from medssl.data.manifest import Record
from medssl.io.volume import Volume


@dataclass
class ScanReader:
    """Record → :class:`Volume` (decoding only), picklable for process pools.

    Args:
        fmt: the card's ``format``: ``auto`` picks the reader by extension
            (:func:`medssl.io.read_image`); ``nifti``, ``dicom``, ``dicom_series``, ``itk``,
            ``png`` force one; ``medmnist`` and ``npy`` need more than the path.
        reader_options: keyword options for the reader (e.g. ``voi`` for DICOM).
        geometry: for ``npy``: ``(affine, expected spatial shape or None)``.
    """

    fmt: str = "auto"
    reader_options: dict = field(default_factory=dict)
    geometry: tuple | None = None

    def __call__(self, record: Record) -> Volume:
        if record.index >= 0:
            from medssl.io.medmnist import read_medmnist

            return read_medmnist(record.path, record.npz_split, record.index)
        if self.fmt == "npy":
            from medssl.data.npy import read_npy

            return read_npy(record.path, *self.geometry)
        from medssl.io.read import FORMAT_READERS, ReaderOptionError, read_image

        try:
            return FORMAT_READERS.get(self.fmt, read_image)(record.path, **self.reader_options)
        except ReaderOptionError as e:  # the card's settings, not the file: stop rather than skip every scan
            raise ConfigError(f"data card reader_options: {e}; set the card's `format` to the reader the options "
                              "are meant for, or remove them") from None


def make_reader(card: DataCard, root=None) -> ScanReader:
    """The :class:`ScanReader` of a card (resolves ``geometry`` for ``format: npy``)."""
    geometry = None
    if card.format == "npy":
        from medssl.data.npy import npy_geometry

        geometry = npy_geometry(card.geometry, card.resolve_root(root), card.dimensionality)
    return ScanReader(card.format, dict(card.reader_options), geometry)
