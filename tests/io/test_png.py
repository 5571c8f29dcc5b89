"""PNG / JPEG reader: bit depths, colour handling, axis order, spacing, damaged files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medssl.io import BadFileError, read_image, read_medmnist, read_png


def _luma(rgb):
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def test_gray8_values_and_axis_order(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, size=(5, 7), dtype=np.uint8)  # (H, W)
    Image.fromarray(img).save(tmp_path / "g.png")
    vol = read_png(tmp_path / "g.png")
    assert vol.array.shape == (1, 7, 5) and vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array[0], img.T / 255.0, atol=1e-7)
    assert vol.array[0, 6, 2] == np.float32(img[2, 6] / 255.0)  # pixel (row 2, col 6) → index (6, 2)
    assert vol.spacing == (1.0, 1.0) and vol.meta["source_format"] == "png"


def test_gray16(tmp_path):
    img = np.random.default_rng(1).integers(0, 65536, size=(4, 6), dtype=np.uint16)
    Image.fromarray(img).save(tmp_path / "g16.png")
    np.testing.assert_allclose(read_png(tmp_path / "g16.png").array[0], img.T / 65535.0, rtol=1e-6)


def test_rgb_luminance_rgb_and_alpha(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, size=(6, 4, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    np.testing.assert_allclose(read_png(tmp_path / "c.png").array[0], _luma(rgb / 255.0).T, atol=1e-6)
    three = read_png(tmp_path / "c.png", color="rgb")
    np.testing.assert_allclose(three.array, rgb.transpose(2, 1, 0) / 255.0, atol=1e-7)
    rgba = np.concatenate([rgb, np.full((6, 4, 1), 7, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_png(tmp_path / "a.png", color="rgb").array, three.array)
    gray = read_png(tmp_path / "c.png", color="luminance")
    gray_as_rgb = (np.asarray(Image.open(tmp_path / "c.png").convert("L")).T / 255.0)
    assert np.abs(gray.array[0] - gray_as_rgb).max() <= 1 / 255 + 1e-6  # Pillow's rounded BT.601


def test_gray_as_rgb_and_palette(tmp_path):
    img = np.arange(20, dtype=np.uint8).reshape(4, 5) * 12
    Image.fromarray(img).save(tmp_path / "g.png")
    vol = read_png(tmp_path / "g.png", color="rgb")
    assert vol.array.shape == (3, 5, 4) and all(np.array_equal(vol.array[c], img.T / np.float32(255)) for c in range(3))
    pal = Image.fromarray(img).convert("P")
    pal.save(tmp_path / "p.png")
    expected = np.asarray(pal.convert("RGB"), dtype=np.float64) / 255.0
    np.testing.assert_allclose(read_png(tmp_path / "p.png", color="rgb").array, expected.transpose(2, 1, 0), atol=1e-7)


def test_jpeg_close_to_source_and_equal_to_pillow(tmp_path):
    yy, xx = np.mgrid[0:32, 0:48]
    img = (127 + 100 * np.sin(xx / 7.0) * np.cos(yy / 9.0)).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "s.jpg", quality=95)
    vol = read_image(tmp_path / "s.jpg")
    np.testing.assert_array_equal(vol.array[0], np.asarray(Image.open(tmp_path / "s.jpg")).T / np.float32(255))
    assert np.abs(vol.array[0] - img.T / 255.0).mean() < 0.01  # lossy but close
    assert vol.meta["source_format"] == "jpeg"


def test_spacing_option(tmp_path):
    Image.fromarray(np.zeros((3, 4), np.uint8)).save(tmp_path / "z.png")
    assert read_png(tmp_path / "z.png", spacing=0.5).spacing == (0.5, 0.5)
    vol = read_png(tmp_path / "z.png", spacing=(0.2, 0.3))
    np.testing.assert_allclose(vol.affine, np.diag([0.2, 0.3, 1.0]))
    assert vol.meta["spacing_source"] == "given"
    for bad in (0, -1.0, float("nan"), (0.2,), (0.2, 0.3, 1.0), (0.2, 0.0)):  # -1 flipped an axis, 0 degenerate
        with pytest.raises(ValueError, match=r"spacing must be one positive number or \(x, y\) in mm"):
            read_png(tmp_path / "z.png", spacing=bad)


def test_medmnist_image_exported_as_png_reads_back_identically(shared_data, tmp_path):
    """The same chest X-ray through two readers must give the same array and axis order."""
    path = shared_data / "medmnist_pneumoniamnist_reconstructed" / "pneumoniamnist.npz"
    with np.load(path) as npz:
        raw = npz["test_images"][17]  # (H, W) uint8, as stored
    Image.fromarray(raw).save(tmp_path / "x.png")
    np.testing.assert_array_equal(read_png(tmp_path / "x.png").array, read_medmnist(path, "test", 17).array)


def test_damaged_png(tmp_path):
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "ok.png")
    raw = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BadFileError, match=r"cut\.png: cannot decode image .*corrupt or truncated"):
        read_png(tmp_path / "cut.png")
    (tmp_path / "junk.png").write_bytes(b"definitely not a png" * 4)
    with pytest.raises(BadFileError, match=r"junk\.png: not a PNG/JPEG image"):
        read_png(tmp_path / "junk.png")
    with pytest.raises(ValueError, match="color must be"):
        read_png(tmp_path / "ok.png", color="cmyk")


def test_16_bit_colour_png_is_refused_not_cut_to_8_bits(tmp_path):
    """Written with SimpleITK (Pillow cannot write it); Pillow itself would read it as 8-bit RGB."""
    import SimpleITK as sitk

    rgb = np.random.default_rng(0).integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    path = tmp_path / "rgb16.png"
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(path))
    with Image.open(path) as img:
        assert img.mode == "RGB" and np.asarray(img).dtype == np.uint8  # the premise: precision lost
    with pytest.raises(BadFileError, match=r"rgb16\.png: a 16-bit colour .* would cut to 8 bits"):
        read_png(path)


def _png(path, pixels: np.ndarray, bit_depth: int, color_type: int, palette: np.ndarray | None = None) -> None:
    """A PNG written byte by byte (no Pillow): ``pixels`` (H, W[, samples]), big-endian samples, filter 0."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w = pixels.shape[:2]
    rows = pixels.astype(">u2" if bit_depth == 16 else np.uint8).reshape(h, -1)
    if bit_depth == 1:
        rows = np.packbits(rows, axis=1)
    raw = b"".join(b"\x00" + r.tobytes() for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    plte = chunk(b"PLTE", palette.astype(np.uint8).tobytes()) if palette is not None else b""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + plte + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def test_one_bit_png_reads_as_0_and_1(tmp_path):
    bits = np.random.default_rng(4).integers(0, 2, size=(5, 8), dtype=np.uint8)
    _png(tmp_path / "b.png", bits, 1, 0)
    np.testing.assert_array_equal(read_png(tmp_path / "b.png").array[0], bits.T.astype(np.float32))


def test_colour_palette_png_is_looked_up_in_its_palette(tmp_path):
    palette = np.random.default_rng(5).integers(0, 256, size=(6, 3))
    index = np.random.default_rng(6).integers(0, 6, size=(4, 7), dtype=np.uint8)
    _png(tmp_path / "p.png", index, 8, 3, palette)
    rgb = palette[index] / 255.0  # naive lookup (H, W, 3)
    np.testing.assert_allclose(read_png(tmp_path / "p.png", color="rgb").array, rgb.transpose(2, 1, 0), atol=1e-7)
    np.testing.assert_allclose(read_png(tmp_path / "p.png").array[0], _luma(rgb).T, atol=1e-6)


def test_grey_alpha_png_drops_the_alpha(tmp_path):
    grey = np.random.default_rng(7).integers(0, 256, size=(3, 5), dtype=np.uint8)
    _png(tmp_path / "la.png", np.stack([grey, 255 - grey], axis=-1), 8, 4)
    np.testing.assert_allclose(read_png(tmp_path / "la.png").array[0], grey.T / 255.0, atol=1e-7)
    np.testing.assert_allclose(read_png(tmp_path / "la.png", color="rgb").array, np.repeat(grey.T[None] / 255.0, 3, 0),
                               atol=1e-7)


def test_16_bit_grey_alpha_png_is_refused_not_cut_to_8_bits(tmp_path):
    grey = np.random.default_rng(8).integers(0, 65536, size=(3, 5))
    _png(tmp_path / "la16.png", np.stack([grey, grey], axis=-1), 16, 4)
    with pytest.raises(BadFileError, match=r"la16\.png: a 16-bit colour \(or grey \+ alpha\) PNG"):
        read_png(tmp_path / "la16.png")
    _png(tmp_path / "g16.png", grey, 16, 0)  # the same writer, 16-bit grey: read in full
    np.testing.assert_allclose(read_png(tmp_path / "g16.png").array[0], grey.T / 65535.0, rtol=1e-6)


def test_16_bit_rgba_png_is_refused_not_cut_to_8_bits(tmp_path):
    rgba = np.random.default_rng(3).integers(0, 65536, (3, 4, 4), dtype=np.uint16)
    _png(tmp_path / "rgba16.png", rgba, 16, 6)  # colour type 6: RGB + alpha
    with Image.open(tmp_path / "rgba16.png") as img:
        assert img.mode == "RGBA" and np.asarray(img).dtype == np.uint8  # the premise: precision lost
    with pytest.raises(BadFileError, match=r"rgba16\.png: a 16-bit colour"):
        read_png(tmp_path / "rgba16.png")


def test_16_bit_grey_png_read_as_mode_i_as_pillow_9_does(tmp_path, monkeypatch):
    # Pillow < 10 opened a 16-bit grey PNG as mode "I" (32-bit int) instead of "I;16"; pyproject allows pillow>=9.
    from PIL import PngImagePlugin

    monkeypatch.setitem(PngImagePlugin._MODES, (16, 0), ("I", "I;16B"))
    img = np.array([[0, 1, 255, 256], [4095, 32768, 65534, 65535]], np.uint16)
    _png(tmp_path / "g16.png", img, 16, 0)
    with Image.open(tmp_path / "g16.png") as pil:
        assert pil.mode == "I" and np.array_equal(np.asarray(pil), img)
    np.testing.assert_allclose(read_png(tmp_path / "g16.png").array[0], img.T / 65535.0, rtol=1e-6)


def test_a_multi_picture_jpeg_is_a_jpeg(tmp_path):
    # Pillow names a JPEG with an MPF (multi-picture, e.g. a camera's stereo / preview pair) format "MPO".
    img = np.random.default_rng(4).integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(img).convert("RGB").save(tmp_path / "m.jpg", "MPO", save_all=True,
                                             append_images=[Image.fromarray(img[::-1]).convert("RGB")])
    with Image.open(tmp_path / "m.jpg") as pil:
        assert pil.format == "MPO"
    assert read_png(tmp_path / "m.jpg").meta["source_format"] == "jpeg"
