"""Readers: every one returns a :class:`~medssl.io.volume.Volume`."""

from medssl.io.errors import BadFileError
from medssl.io.nifti import read_nifti, write_nifti
from medssl.io.volume import SAFE_METADATA_KEYS, Volume

__all__ = ["BadFileError", "SAFE_METADATA_KEYS", "Volume", "read_nifti", "write_nifti"]
