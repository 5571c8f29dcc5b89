"""Damage one member of a zip (.npz) file in place, as a bad download or disk would: for reader error tests."""

from __future__ import annotations

import zipfile
from pathlib import Path


def member_data(path: Path, name: str) -> tuple[int, int]:
    """(offset, size) of a member's stored bytes in a zip (local header: 30 bytes + name + extra field)."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    raw = path.read_bytes()
    h = info.header_offset
    return h + 30 + int.from_bytes(raw[h + 26:h + 28], "little") + int.from_bytes(raw[h + 28:h + 30], "little"), \
        info.compress_size


def flip_last_byte(path: Path, name: str, mask: int = 1) -> None:
    """XOR the last stored byte of member ``name`` with ``mask``: its CRC-32 no longer matches."""
    raw = bytearray(path.read_bytes())
    start, size = member_data(path, name)
    raw[start + size - 1] ^= mask
    path.write_bytes(bytes(raw))


def break_deflate(path: Path, name: str) -> None:
    """Overwrite member ``name``'s stored bytes with 0xff: deflate block type 3 (reserved), not a deflate stream."""
    raw = bytearray(path.read_bytes())
    start, size = member_data(path, name)
    raw[start:start + size] = b"\xff" * size
    path.write_bytes(bytes(raw))
