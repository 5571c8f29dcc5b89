"""Readers: every one returns a :class:`~medssl.io.volume.Volume` (see docs/io.md)."""

from medssl.io.dicom import read_dicom
from medssl.io.dicom_series import read_dicom_series
from medssl.io.errors import BadFileError, MissingDecoderError
from medssl.io.itk import read_itk
from medssl.io.medmnist import load_medmnist_split, read_medmnist
from medssl.io.nifti import read_nifti, write_nifti
from medssl.io.png import read_png
from medssl.io.read import ReaderOptionError, read_image, reader_for
from medssl.io.volume import SAFE_METADATA_KEYS, Volume

__all__ = [
    "BadFileError", "MissingDecoderError", "ReaderOptionError", "SAFE_METADATA_KEYS", "Volume", "load_medmnist_split",
    "read_dicom", "read_dicom_series", "read_image", "read_itk", "read_medmnist", "read_nifti",
    "read_png", "reader_for", "write_nifti",
]
