"""Media files made by hand for tests: small, valid, of any pixel size."""

from __future__ import annotations

import math
import struct
import zlib


def png(width: int, height: int) -> bytes:
    """A valid 1-bit grayscale PNG (small even when large: each row is a filter byte and w/8 zeros)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\x00" + b"\x00" * math.ceil(width / 8)) * height
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
