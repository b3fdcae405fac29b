"""Media in the admission estimate: size readers (PNG/JPEG/GIF/WebP headers, PDF pages, WAV/FLAC
durations) and the per-provider image rules, and that ``estimate_request`` is never below what any
provider's published rule bills. The images are made here, byte by byte."""

from __future__ import annotations

import base64
import math
import struct
import zlib

import pytest

from pisces.canonical import ChatRequest, FilePart, ImagePart, Message, TextPart, ToolResultPart
from pisces.media import (
    b64_decode,
    b64_length,
    flac_seconds,
    image_size,
    inline_image_size,
    pdf_page_count,
    wav_seconds,
)
from pisces.tokens import (
    MEDIA_MIN_BYTES_PER_SECOND,
    MEDIA_PART_CAP,
    PDF_PAGE_TOKENS,
    VIDEO_TOKENS_PER_SECOND,
    anthropic_image_tokens,
    estimate_request,
    estimate_text,
    gemini_image_tokens,
    image_tokens,
    openai_patch_tokens,
    openai_tile_tokens,
)
from support.media import png

# --- files made by hand ---------------------------------------------------------------------------


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def sof(width: int, height: int, marker: int = 0xC0) -> bytes:
    """A baseline (C0) or progressive (C2) frame header: precision, height, width, 3 components."""
    comps = b"".join(bytes([i, 0x11, 0]) for i in (1, 2, 3))
    return _segment(marker, bytes([8]) + struct.pack(">HH", height, width) + bytes([3]) + comps)


def jpeg(width: int, height: int, marker: int = 0xC0, app_padding: int = 0) -> bytes:
    """SOI, JFIF APP0, an EXIF APP1 carrying a 160x120 thumbnail (its own SOF, to be skipped),
    ``app_padding`` bytes of APP2 segments, the frame header, a scan header, EOI."""
    thumb = b"\xff\xd8" + sof(160, 120) + b"\xff\xd9"
    out = b"\xff\xd8" + _segment(0xE0, b"JFIF\x00\x01\x02\x00\x00\x01\x00\x01\x00\x00")
    out += _segment(0xE1, b"Exif\x00\x00" + b"\x00" * 32 + thumb)
    while app_padding > 0:
        n = min(app_padding, 65000)
        out += _segment(0xE2, b"ICC_PROFILE\x00" + b"\x00" * n)
        app_padding -= n
    out += b"\xff\xff" + sof(width, height, marker)  # a fill byte before the marker is allowed
    out += _segment(0xDA, bytes([3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0])) + b"\x00" * 16 + b"\xff\xd9"
    return out


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b",\x00\x00\x00\x00\x01\x00\x01\x00\x00;"


def webp_vp8x(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    body = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + bits.to_bytes(4, "little") + b"\x00"
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def webp_vp8(width: int, height: int) -> bytes:
    frame = b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 8
    body = b"VP8 " + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def pdf(pages: int, compressed: bool = False, escaped: bool = False) -> bytes:
    """A PDF with ``pages`` page objects: plain objects, or inside a Flate object stream (PDF 1.5)."""
    page = (
        b"<< /Type /P#61ge /Parent 2 0 R >>" if escaped else b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"
    )
    kids = b" ".join(b"%d 0 R" % (3 + i) for i in range(pages))
    head = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    tree = b"2 0 obj << /Type /Pages /Kids [" + kids + b"] /Count %d >> endobj\n" % pages
    if not compressed:
        objs = b"".join(b"%d 0 obj " % (3 + i) + page + b" endobj\n" for i in range(pages))
        return head + tree + objs + b"trailer << /Root 1 0 R >>\n%%EOF\n"
    # the tree's /Count is hidden too: only the object stream's pages can be counted
    tree = b"2 0 obj << /Type /Pages /Kids [" + kids + b"] >> endobj\n"
    stream = zlib.compress(b" ".join([page] * pages))
    objstm = b"9 0 obj << /Type /ObjStm /N %d /First 0 /Filter /FlateDecode /Length %d >>\nstream\r\n" % (
        pages,
        len(stream),
    )
    return head + tree + objstm + stream + b"\r\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def wav(seconds: float, rate: int = 16000, channels: int = 1, bits: int = 16, extra_chunk: bytes = b"") -> bytes:
    data = b"\x00" * int(seconds * rate * channels * bits // 8)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    body = b"WAVE" + extra_chunk + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data))
    return b"RIFF" + struct.pack("<I", len(body) + len(data)) + body + data


def flac(seconds: int, rate: int = 44100) -> bytes:
    info = (rate << 44) | (1 << 41) | (15 << 36) | (seconds * rate)  # stereo, 16 bits, total samples
    streaminfo = struct.pack(">HH", 4096, 4096) + b"\x00" * 6 + info.to_bytes(8, "big") + b"\x00" * 16
    return b"fLaC" + bytes([0x80]) + len(streaminfo).to_bytes(3, "big") + streaminfo + b"\xff\xf8" + b"\x00" * 64


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def req(*parts, model: str = "gpt-4o") -> ChatRequest:
    return ChatRequest(model=model, messages=[Message(role="user", content=list(parts))])


# --- size readers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (640, 480), (1024, 1024), (4000, 3000), (7, 9001)])
def test_png_size_is_read_from_ihdr(size):
    data = png(*size)
    assert image_size(data) == size
    assert image_size(data[:24]) == size  # the header alone is enough
    assert zlib.decompress(data[data.index(b"IDAT") + 4 : -16])  # and the PNG is a real one


@pytest.mark.parametrize("marker", [0xC0, 0xC1, 0xC2])
def test_jpeg_size_is_the_frame_headers_not_the_exif_thumbnails(marker):
    assert image_size(jpeg(1920, 1080, marker)) == (1920, 1080)


def test_jpeg_size_after_app_segments_longer_than_the_head():
    data = jpeg(3000, 2000, app_padding=200_000)
    assert len(data) > 200_000
    assert image_size(data[:65536]) is None  # the frame header is further on
    assert inline_image_size(b64(data)) == (3000, 2000)  # so the whole file is decoded


def test_jpeg_with_its_height_left_to_a_dnl_marker_is_unknown():
    assert image_size(jpeg(800, 0)) is None


def test_gif_and_webp_sizes():
    assert image_size(gif(320, 200)) == (320, 200)
    assert image_size(webp_vp8x(5000, 3)) == (5000, 3)
    assert image_size(webp_vp8l(1000, 16383)) == (1000, 16383)
    assert image_size(webp_vp8(1280, 720)) == (1280, 720)


@pytest.mark.parametrize(
    "junk", [b"", b"hello", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\x00\x00\x00\x00WAVE", b"BM"]
)
def test_unknown_or_cut_bytes_have_no_size(junk):
    assert image_size(junk) is None


def test_base64_readers():
    data = png(300, 200)
    text = b64(data)
    assert b64_decode(text) == data
    assert b64_decode("\n".join(text[i : i + 76] for i in range(0, len(text), 76))) == data  # MIME lines
    assert b64_decode(base64.urlsafe_b64encode(data).decode().rstrip("=")) == data  # URL-safe, unpadded
    assert b64_decode(text, 24)[:24] == data[:24]
    assert b64_length(text) == len(data)
    assert inline_image_size(text) == (300, 200)
    assert inline_image_size("not base64 at all!") is None


def test_pdf_pages_are_counted():
    assert pdf_page_count(pdf(1)) == 1
    assert pdf_page_count(pdf(12)) == 12
    assert pdf_page_count(pdf(7, compressed=True)) == 7  # page objects in a compressed object stream
    assert pdf_page_count(pdf(3, escaped=True)) == 3  # /P#61ge spells /Page
    assert pdf_page_count(b"%PDF-1.4\nno pages here\n%%EOF") is None
    # the page tree's /Count says more than the objects found: the larger is taken
    assert pdf_page_count(b"%PDF-1.4 << /Type /Pages /Count 40 /Kids [] >> << /Type /Page >>") == 40


def test_wav_duration_is_the_files_length_over_its_sample_rate():
    assert wav_seconds(wav(2.0)) == pytest.approx(2.0, abs=0.01)
    assert wav_seconds(wav(3.0, rate=8000, channels=2, bits=8)) == pytest.approx(3.0, abs=0.01)
    # a chunk before fmt (bext, JUNK) is walked over
    assert wav_seconds(wav(1.0, extra_chunk=b"JUNK" + struct.pack("<I", 28) + b"\x00" * 28)) == pytest.approx(
        1.0, abs=0.01
    )
    head = wav(10.0)[:64]  # the header and the file's whole length are enough
    assert wav_seconds(head, 320_044) == pytest.approx(10.0, abs=0.01)
    compressed = bytearray(wav(1.0))
    compressed[20:22] = struct.pack("<H", 0x55)  # MPEG Layer 3 in a WAV: no PCM rate to go by
    assert wav_seconds(bytes(compressed)) is None


def test_flac_duration_from_streaminfo():
    assert flac_seconds(flac(90)) == pytest.approx(90.0)
    assert flac_seconds(flac(0)) is None  # sample count not given
    assert flac_seconds(b"fLaC") is None


# --- the providers' rules -------------------------------------------------------------------------


def test_openai_tile_rule_matches_its_documented_examples():
    assert openai_tile_tokens(1024, 1024) == 765
    assert openai_tile_tokens(2048, 4096) == 1105
    assert openai_tile_tokens(4096, 8192, "low") == 85
    assert openai_tile_tokens(512, 512) == 255  # never scaled up
    assert openai_tile_tokens(None, None) == 85 + 170 * 8  # unknown size: the most tiles (768 x 2048)
    assert openai_tile_tokens(None, None, "low") == 85
    # gpt-4o-mini bills 33x the tokens, at a 33x lower price
    assert openai_tile_tokens(1024, 1024, model="gpt-4o-mini") == 2833 + 4 * 5667
    assert openai_tile_tokens(10, 10, "low", model="openai/gpt-4o-mini-2024-07-18") == 2833


def test_openai_patch_rule():
    assert openai_patch_tokens(1024, 1024) == math.ceil(1024 * 2.46)
    assert openai_patch_tokens(1800, 2400) == math.ceil(1536 * 2.46)  # shrunk to at most 1536 patches
    assert openai_patch_tokens(None, None) == math.ceil(1536 * 2.46)


def test_anthropic_rule():
    assert anthropic_image_tokens(1000, 1000) == 1334  # ~ 1000*1000/750
    assert anthropic_image_tokens(1092, 1092) >= 1590
    assert anthropic_image_tokens(200, 200) >= 54
    # shrunk to the largest native resolution (3.75 MP): about 5,000 at most, whatever the input
    assert 4900 <= anthropic_image_tokens(8000, 8000) <= 5001
    assert anthropic_image_tokens(None, None) == 5000


def test_gemini_rule():
    assert gemini_image_tokens(384, 384) == 1120  # 258 for Gemini 2.x, up to 1,120 for Gemini 3
    assert gemini_image_tokens(2000, 800) == 3 * 2 * 258
    assert gemini_image_tokens(3072, 3072) == 16 * 258
    assert gemini_image_tokens(12000, 12000) == 16 * 258  # shrunk to fit 3072 x 3072 first
    assert gemini_image_tokens(None, None) == 16 * 258


def _documented(w: int, h: int, detail: str | None, model: str) -> dict[str, int]:
    """Each provider's published count, written out independently of pisces.tokens."""

    def fit(w: float, h: float, edge: float, pixels: float = float("inf")) -> tuple[float, float]:
        s = min(1.0, edge / max(w, h), math.sqrt(pixels / (w * h)))
        return w * s, h * s

    out: dict[str, int] = {}
    for name, base, tile in (("gpt-4o", 85, 170), ("o1", 75, 150), ("gpt-5", 70, 140)):
        fw, fh = fit(w, h, 2048)
        if min(fw, fh) > 768:
            fw, fh = fw * 768 / min(fw, fh), fh * 768 / min(fw, fh)
        out[name] = base if detail == "low" else base + tile * math.ceil(int(fw) / 512) * math.ceil(int(fh) / 512)
        if "4o-mini" in model and name == "gpt-4o":
            n = math.ceil(int(fw) / 512) * math.ceil(int(fh) / 512)
            out["gpt-4o-mini"] = 2833 if detail == "low" else 2833 + 5667 * n
    patches = math.ceil(w / 32) * math.ceil(h / 32)
    if patches > 1536:
        s = math.sqrt(1536 * 32 * 32 / (w * h))
        patches = min(1536, math.ceil(w * s / 32) * math.ceil(h * s / 32))
    for name, mult in (("gpt-4.1-mini", 1.62), ("o4-mini", 1.72), ("gpt-4.1-nano", 2.46)):
        out[name] = math.ceil(min(patches, 1536) * mult)
    fw, fh = fit(w, h, 1568, 1_150_000)
    out["claude-sonnet-4-5"] = round(fw * fh / 750)
    fw, fh = fit(w, h, 2576, 3_750_000)
    out["claude-opus-4-7"] = math.ceil(fw / 28) * math.ceil(fh / 28)
    if w <= 384 and h <= 384:
        out["gemini-2.5"] = 258
    else:
        fw, fh = fit(w, h, 3072)
        out["gemini-2.5"] = 258 * math.ceil(int(fw) / 768) * math.ceil(int(fh) / 768)
    out["gemini-3"] = 1120
    return out


SIZES = [(1, 1), (100, 100), (384, 384), (385, 200), (512, 512), (513, 513), (768, 2048), (1024, 1024),
         (1092, 1092), (1568, 784), (1800, 2400), (2048, 4096), (4000, 3000), (6000, 400), (8000, 8000)]  # fmt: skip


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("detail", [None, "low", "high"])
@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini"])
def test_an_inline_image_is_never_counted_below_any_providers_bill(size, detail, model):
    for data in (png(*size), jpeg(*size), gif(*size) if max(size) < 65536 else png(*size)):
        est = estimate_request(req(ImagePart(data=b64(data), media_type="image/png", detail=detail), model=model))
        bills = _documented(*size, detail, model)
        assert est >= max(bills.values()), (size, bills)


def test_an_image_of_unknown_size_counts_as_the_largest_any_provider_bills():
    by_url = estimate_request(req(ImagePart(url="https://example.com/cat.png")))
    worst = max(max(_documented(w, h, None, "gpt-4o").values()) for w, h in SIZES)
    assert by_url >= worst
    assert by_url == 3 + 5000  # the role, and Anthropic's largest image
    assert (
        estimate_request(req(ImagePart(url="https://example.com/cat.png"), model="gpt-4o-mini")) == 3 + 2833 + 8 * 5667
    )
    # bytes that are no image it can read: the same
    assert estimate_request(req(ImagePart(data=b64(b"\x00" * 100), media_type="image/heic"))) == 3 + 5000
    assert estimate_request(req(ImagePart(data="%%% not base64", media_type="image/png"))) == 3 + 5000


def test_a_data_url_image_is_read_like_inline_data():
    data = png(200, 100)
    as_url = estimate_request(req(ImagePart(url=f"data:image/png;base64,{b64(data)}")))
    assert (
        as_url
        == estimate_request(req(ImagePart(data=b64(data), media_type="image/png")))
        == 3 + image_tokens((200, 100))
    )
    assert as_url < 3 + 5000


def test_low_detail_does_not_lower_other_providers_bill():
    """``detail`` is OpenAI's: Gemini 3 still bills up to 1,120, Anthropic by pixels."""
    small = b64(png(64, 64))
    assert estimate_request(req(ImagePart(data=small, detail="low"))) == 3 + 1120
    big = b64(png(4000, 3000))
    assert estimate_request(req(ImagePart(data=big, detail="low"))) >= 3 + 5000 - 1


def test_images_in_tool_results_and_several_images_add_up():
    one = image_tokens((1024, 1024))
    part = ImagePart(data=b64(png(1024, 1024)))
    r = req(TextPart(text="compare"), part, part, ToolResultPart(tool_call_id="c1", content=[TextPart(text="x"), part]))
    assert estimate_request(r) == 3 + estimate_text("compare") + 3 * one + estimate_text("x")


# --- files ----------------------------------------------------------------------------------------


def test_pdf_counts_pages_times_the_per_page_bound():
    for n, kw in ((1, {}), (5, {}), (4, {"compressed": True})):
        est = estimate_request(req(FilePart(data=b64(pdf(n, **kw)), media_type="application/pdf")))
        assert est == 3 + n * PDF_PAGE_TOKENS
        assert est >= 3 + n * 3000  # Anthropic: ~1,500-3,000 a page, its image included
    # pages that cannot be counted, and a PDF by URL: the largest input window
    assert (
        estimate_request(req(FilePart(data=b64(b"%PDF-1.7 garbage"), media_type="application/pdf")))
        == 3 + MEDIA_PART_CAP
    )
    assert (
        estimate_request(req(FilePart(uri="https://example.com/a.pdf", media_type="application/pdf")))
        == 3 + MEDIA_PART_CAP
    )


def test_audio_is_32_tokens_a_second_of_its_duration_or_of_an_assumed_low_bitrate():
    assert estimate_request(req(FilePart(data=b64(wav(10.0)), media_type="audio/wav"))) == 3 + 321  # 10.0014 s
    assert estimate_request(req(FilePart(data=b64(flac(60)), media_type="audio/flac"))) == 3 + 60 * 32
    mp3 = b"ID3\x04" + b"\x00" * 99_996  # 100 kB of an MP3: at 2 kbit/s, 400 s at most
    est = estimate_request(req(FilePart(data=b64(mp3), media_type="audio/mpeg")))
    assert est == 3 + math.ceil(100_000 / MEDIA_MIN_BYTES_PER_SECOND * 32) == 3 + 12_800
    # a real 100 kB MP3 at 32 kbit/s is 25 s, 800 tokens on Gemini: the bound is well above it
    assert est > 25 * 32


def test_video_and_untyped_files_use_the_densest_rate():
    blob = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 9988  # 10 kB
    per_byte = VIDEO_TOKENS_PER_SECOND / MEDIA_MIN_BYTES_PER_SECOND
    assert estimate_request(req(FilePart(data=b64(blob), media_type="video/mp4"))) == 3 + math.ceil(10_000 * per_byte)
    assert estimate_request(req(FilePart(data=b64(blob)))) == 3 + math.ceil(10_000 * per_byte)
    # untyped bytes that are a PDF or an image are counted as such
    assert estimate_request(req(FilePart(data=b64(pdf(2))))) == 3 + 2 * PDF_PAGE_TOKENS
    assert estimate_request(req(FilePart(data=b64(png(100, 100))))) == 3 + image_tokens((100, 100))


def test_text_files_count_a_token_per_byte_and_unknown_files_the_window():
    text = "naïve café " * 100
    est = estimate_request(req(FilePart(data=b64(text.encode()), media_type="text/plain")))
    assert est == 3 + len(text.encode()) >= 3 + estimate_text(text)
    assert estimate_request(req(FilePart(uri="gs://bucket/video.mp4", media_type="video/mp4"))) == 3 + MEDIA_PART_CAP
    assert estimate_request(req(FilePart(uri="https://www.youtube.com/watch?v=x"))) == 3 + MEDIA_PART_CAP
    huge = b"\x00" * 2_000_000
    assert estimate_request(req(FilePart(data=b64(huge), media_type="video/mp4"))) == 3 + MEDIA_PART_CAP  # capped


def test_text_estimates_are_unchanged():
    r = ChatRequest(
        model="m",
        system=[TextPart(text="be brief")],
        messages=[Message(role="user", content=[TextPart(text="one two three four")])],
    )
    assert estimate_request(r) == estimate_text("be brief") + 3 + estimate_text("one two three four") == 11
