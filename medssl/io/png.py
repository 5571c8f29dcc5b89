"""2D PNG and JPEG images with Pillow (grayscale or RGB)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medssl.io.errors import BadFileError, check_array
from medssl.io.volume import Volume

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Full-scale value per Pillow mode: pixel values are divided by it (→ [0, 1]).
_FULL_SCALE = {"1": 1.0, "L": 255.0, "LA": 255.0, "P": 255.0, "PA": 255.0, "RGB": 255.0, "RGBA": 255.0,
               "CMYK": 255.0, "YCbCr": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0,
               "I": 65535.0, "F": 1.0}
#: ITU-R BT.601 luma weights of (R, G, B): ``color="luminance"`` turns an RGB image into one channel with them.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def _refuse_16_bit_colour(path: Path) -> None:
    """Pillow reads 16-bit RGB(A) and grey+alpha PNGs as 8 bit, dropping the low byte without a word."""
    with path.open("rb") as fh:
        head = fh.read(26)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 4, 6):
        raise BadFileError(path, "a 16-bit colour (or grey + alpha) PNG, which Pillow would cut to 8 bits; save it as "
                                 "a 16-bit grey-scale PNG, or as .nrrd / .mha (read with full precision)")


def read_png(path: str | Path, *, color: str = "luminance",
             spacing: float | tuple[float, float] | None = None) -> Volume:
    """Read a PNG or JPEG file (8 or 16 bit, grayscale, palette or RGB[A]).

    Args:
        path: ``.png`` / ``.jpg`` / ``.jpeg`` file.
        color: ``"luminance"``: 1 channel, RGB converted with ITU-R BT.601 luma
            ``0.299 R + 0.587 G + 0.114 B``; ``"rgb"``: 3 channels (a grayscale image is
            repeated). Alpha is dropped.
        spacing: pixel size in mm, one value or ``(x, y)``; 1.0 when not given (the file's
            DPI is not a patient-space spacing and is ignored).

    Returns:
        Volume with array ``(C, W, H)`` float32 in [0, 1] (8-bit values / 255, 16-bit
        / 65535): the transpose of the displayed image, as in every medssl 2D reader;
        affine ``diag(sx, sy, 1)``.

    Raises:
        BadFileError: missing, not an image, truncated, empty, 16-bit colour PNG (Pillow
            would drop its low byte).
        ValueError: ``color`` not one of the two, ``spacing`` not positive (x, y) mm.
    """
    if color not in ("luminance", "rgb"):
        raise ValueError(f"color must be 'luminance' or 'rgb', got {color!r}")
    sizes = (spacing,) * 2 if isinstance(spacing, int | float) else tuple(spacing or (1.0, 1.0))
    if len(sizes) != 2 or not all(isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in sizes):
        raise ValueError(f"read_png: spacing must be one positive number or (x, y) in mm, got {spacing!r}")
    sx, sy = sizes
    path = Path(path)
    if not path.is_file():
        raise BadFileError(path, "file does not exist" if not path.exists() else "is not a regular file")
    _refuse_16_bit_colour(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("P", "PA", "CMYK", "YCbCr", "RGBA"):
                img, mode = img.convert("RGB"), "RGB"
            elif mode == "LA":
                img, mode = img.convert("L"), "L"
            pixels = np.asarray(img)
            fmt = (img.format or path.suffix.lstrip(".")).lower()
    except UnidentifiedImageError:
        raise BadFileError(path, "not a PNG/JPEG image Pillow can identify") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadFileError(path, f"cannot decode image ({type(e).__name__}: {e}); the file is corrupt "
                                 "or truncated") from None
    if mode not in _FULL_SCALE:
        raise BadFileError(path, f"unsupported Pillow image mode {mode!r}")
    values = pixels.astype(np.float64) / _FULL_SCALE[mode]
    if values.ndim == 3:
        gray = values @ np.array(LUMA_WEIGHTS)
        channels = gray[None] if color == "luminance" else np.moveaxis(values[..., :3], -1, 0)
    else:
        channels = values[None] if color == "luminance" else np.repeat(values[None], 3, axis=0)
    array = np.ascontiguousarray(np.swapaxes(channels, 1, 2), dtype=np.float32)  # (C, W, H)
    check_array(path, array)
    meta = {"source_format": "jpeg" if fmt in ("jpeg", "jpg", "mpo") else fmt, "color": color,
            "shape": tuple(array.shape[1:]), "spacing_source": "given" if spacing is not None else "default"}
    vol = Volume(array, np.diag([float(sx), float(sy), 1.0]), meta)
    vol.meta["spacing"] = vol.spacing
    return vol
