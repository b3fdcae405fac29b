"""What the bytes of an inline media part say, read without a decoder: an image's pixel size (PNG,
JPEG, GIF, WebP headers), a PDF's page count, a WAV's or FLAC's duration, the media type of bytes
that came without one, and base64 decoded in part or measured without decoding. :mod:`pisces.tokens`
turns these into token bounds.
"""

from __future__ import annotations

import binascii
import math
import re
import struct
import zlib

HEAD_BYTES = 4096  # enough for a WAV's fmt chunk after a bext/JUNK chunk, a FLAC's STREAMINFO
_JPEG_HEAD_BYTES = 65536  # SOF is after the APPn segments: EXIF (with its thumbnail), ICC profile
_PDF_INFLATE_LIMIT = 16 * 1024 * 1024  # decompressed object streams, in all: beyond, pages are unknown


# ------------------------------------------------------------------------------------------------------
# image sizes


def image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of a PNG, JPEG, GIF or WebP; None for anything else."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24 and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        return _sized(w, h)
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        w, h = struct.unpack("<HH", head[6:10])
        return _sized(w, h)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    return None


def _sized(w: int, h: int) -> tuple[int, int] | None:
    return (w, h) if w > 0 and h > 0 else None


def _webp_size(b: bytes) -> tuple[int, int] | None:
    chunk = b[12:16]
    if len(b) < (25 if chunk == b"VP8L" else 30):
        return None
    if chunk == b"VP8X":  # extended: 24-bit width-1 and height-1
        return _sized(int.from_bytes(b[24:27], "little") + 1, int.from_bytes(b[27:30], "little") + 1)
    if chunk == b"VP8L" and b[20] == 0x2F:  # lossless: 14-bit width-1 and height-1, packed
        bits = int.from_bytes(b[21:25], "little")
        return _sized((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8 " and b[23:26] == b"\x9d\x01\x2a":  # lossy: after the key frame's start code
        w, h = struct.unpack("<HH", b[26:30])
        return _sized(w & 0x3FFF, h & 0x3FFF)
    return None


def _jpeg_size(b: bytes) -> tuple[int, int] | None:
    """The frame header's size, walking the segments (an EXIF thumbnail's own SOF is skipped)."""
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before it
            return None
        (length,) = struct.unpack(">H", b[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(b):
                return None
            h, w = struct.unpack(">HH", b[i + 5 : i + 9])
            return _sized(w, h)  # a height of 0 (set later by a DNL marker) is unknown
        if length < 2:
            return None
        i += 2 + length
    return None


# ------------------------------------------------------------------------------------------------------
# inline bytes


def split_data_url(url: str | None) -> tuple[str, str] | None:
    if not url or not url.startswith("data:") or ";base64," not in url:
        return None
    media_type, _, data = url[5:].partition(";base64,")
    return media_type, data


def b64_decode(data: str, max_bytes: int | None = None) -> bytes | None:
    """Base64 (standard or URL-safe, whitespace ignored) decoded, or only its first ``max_bytes``
    (about); None when it is not base64 at all."""
    text = data if max_bytes is None else data[: (max_bytes // 3 + 2) * 4 + 256]
    text = re.sub(r"\s+", "", text).replace("-", "+").replace("_", "/")
    if max_bytes is not None and len(text) < len(data):
        text = text[: len(text) // 4 * 4]
    text = text.rstrip("=")
    text += "=" * (-len(text) % 4)
    try:
        return binascii.a2b_base64(text)
    except (binascii.Error, ValueError):
        return None


def b64_length(data: str) -> int:
    """The byte length base64 text decodes to, without decoding it."""
    n = len(data) - data.count("\n") - data.count("\r") - data.count(" ")
    return max(0, n * 3 // 4 - (2 if data.endswith("==") else 1 if data.endswith("=") else 0))


def inline_image_size(data: str) -> tuple[int, int] | None:
    head = b64_decode(data, _JPEG_HEAD_BYTES)
    if head is None:
        return None
    size = image_size(head)
    if size is None and head[:2] == b"\xff\xd8" and b64_length(data) > len(head):
        whole = b64_decode(data)  # a JPEG whose APPn segments are longer than the head
        size = image_size(whole) if whole else None
    return size


# ------------------------------------------------------------------------------------------------------
# PDFs, audio

_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z0-9])")
_PAGES_COUNT = re.compile(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)|/Count\s+(\d+)[^>]*?/Type\s*/Pages\b")
_OBJSTM = re.compile(rb"/Type\s*/ObjStm")
_NAME_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")


def pdf_page_count(pdf: bytes) -> int | None:
    """The pages of a PDF, counted roughly but never low for a well-formed file: page objects in the
    file and in its compressed object streams, or the page tree's /Count when that says more.
    None when no page is found (not a PDF, or pages hidden where this does not look)."""
    texts = [pdf]
    inflated = 0
    for m in _OBJSTM.finditer(pdf):
        start = pdf.find(b"stream", m.end())
        if start < 0:
            break
        start += 6
        start += 2 if pdf[start : start + 2] == b"\r\n" else 1
        end = pdf.find(b"endstream", start)
        try:
            body = zlib.decompressobj().decompress(pdf[start : end if end > 0 else len(pdf)],
                                                   _PDF_INFLATE_LIMIT - inflated)  # fmt: skip
        except zlib.error:
            continue
        inflated += len(body)
        if inflated >= _PDF_INFLATE_LIMIT:
            return None  # too much to look through: unknown
        texts.append(body)
    pages = counted = 0
    for t in texts:
        if b"#" in t:  # names may spell letters as #xx (/P#61ge is /Page)
            t = _NAME_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), t)
        pages += len(_PAGE.findall(t))
        for a, b in _PAGES_COUNT.findall(t):
            counted = max(counted, int(a or b))
    return max(pages, counted) or None


def wav_seconds(wav: bytes, length: int | None = None) -> float | None:
    """A PCM WAV's duration: its whole ``length`` (default: these bytes) over the byte rate of its
    samples (rate x channels x sample bytes, as a decoder plays them; not the header's own byte rate
    field). None for anything else, compressed WAVs included."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        return None
    i = 12
    while i + 8 <= len(wav):
        cid, size = wav[i : i + 4], struct.unpack("<I", wav[i + 4 : i + 8])[0]
        if cid == b"fmt " and i + 24 <= len(wav):
            fmt, channels, rate = struct.unpack("<HHI", wav[i + 8 : i + 16])
            bits = struct.unpack("<H", wav[i + 22 : i + 24])[0]
            rate_bytes = rate * channels * math.ceil(bits / 8)
            if fmt not in (1, 3, 0xFFFE) or rate_bytes <= 0:  # PCM, float, extensible: else compressed
                return None
            return (len(wav) if length is None else length) / rate_bytes  # header bytes too: never short
        i += 8 + size + (size & 1)
    return None


def flac_seconds(flac: bytes) -> float | None:
    """A FLAC's duration from its STREAMINFO block (None when it does not say the sample count)."""
    if flac[:4] != b"fLaC" or len(flac) < 8 + 34 or flac[4] & 0x7F != 0:
        return None
    info = int.from_bytes(flac[18:26], "big")  # 20 bits rate, 3 channels, 5 bits depth, 36 samples
    rate, samples = info >> 44, info & ((1 << 36) - 1)
    return samples / rate if rate and samples else None


def sniffed_media_type(media_type: str, head: bytes) -> str:
    """The media type to count a file as: its own, or what its first bytes say when it has none
    (the doors require one, so this is for an inline file that reaches here without)."""
    if media_type and media_type != "application/octet-stream":
        return media_type
    if head[:5] == b"%PDF-":
        return "application/pdf"
    if image_size(head) is not None:
        return "image/unknown"
    if (head[:4] == b"RIFF" and head[8:12] == b"WAVE") or head[:4] == b"fLaC":
        return "audio/unknown"
    return "video/unknown"  # unknown bytes: counted at the densest rate per byte there is
