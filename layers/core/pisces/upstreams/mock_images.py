"""The offline image model of the ``mock`` channel (``mock-image``): real PNGs, deterministically.

Each image is a PNG of the requested size (``auto``: 1024x1024) striped in four colours taken from
the SHA-256 of the prompt, the image's index and, for an edit, the input images' and mask's bytes:
the same request gets the same pixels. It reports usage as GPT Image models do (text and image input
tokens, output tokens by pixel count) and writes PNG only (``output_format`` jpeg/webp is a 400).
PNGs are written with zlib and struct, row by row, so a 4096x4096 image never sits raw in memory.
"""

from __future__ import annotations

import hashlib
import math
import struct
import time
import zlib

from pisces.canonical_images import GeneratedImage, ImageRequest, ImageResponse, ImageUsage
from pisces.tokens import estimate_text
from pisces.upstreams.base import UpstreamError

BANDS = 4


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def striped_png(width: int, height: int, colours: list[bytes]) -> bytes:
    """An 8-bit RGB PNG of ``width`` x ``height`` in horizontal bands of ``colours`` (3 bytes each)."""
    z = zlib.compressobj(6)
    out = bytearray()
    rows = [b"\x00" + c * width for c in colours]
    band = max(1, math.ceil(height / len(colours)))
    for y in range(height):
        out += z.compress(rows[min(y // band, len(rows) - 1)])
    out += z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", bytes(out)) + _chunk(b"IEND", b"")


def _tiles(width: int, height: int) -> int:
    """Input image tokens as OpenAI counts an image: 85 plus 170 per 512-pixel tile."""
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


def mock_images(req: ImageRequest) -> ImageResponse:
    if req.output_format not in (None, "png"):
        raise UpstreamError("unsupported_parameter", "mock-image writes PNG only: leave output_format unset or png.",
                            retryable=False, status=400, upstream_status=400)  # fmt: skip
    width, height = req.pixels()
    seed = hashlib.sha256(req.prompt.encode())
    for im in [*req.images, *([req.mask] if req.mask else [])]:
        seed.update(hashlib.sha256(im.data).digest())
    images = []
    for i in range(req.n):
        digest = hashlib.sha256(seed.digest() + i.to_bytes(2, "big")).digest()
        colours = [digest[3 * k : 3 * k + 3] for k in range(BANDS)]
        images.append(GeneratedImage(data=striped_png(width, height, colours), media_type="image/png"))
    text = estimate_text(req.prompt)
    image_in = sum(_tiles(im.width, im.height) for im in req.images)
    usage = ImageUsage(input_tokens=text + image_in, input_text_tokens=text, input_image_tokens=image_in,
                       output_tokens=req.n * math.ceil(width * height / 4096))  # fmt: skip
    return ImageResponse(created=int(time.time()), images=images, usage=usage, size=f"{width}x{height}",
                         output_format="png", quality=req.quality, background=req.background)  # fmt: skip
