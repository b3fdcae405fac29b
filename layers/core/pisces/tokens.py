"""A counted token estimate that works offline (no tokenizer download).

Text: words and punctuation marks. Used by the mock upstream for its usage figures, and wherever a
provider's own count is missing. It is an estimate, close to BPE counts for English prose (within
~30%, which admission's INPUT_HOLD_FACTOR covers), and deterministic.

Images, audio, video and files: an UPPER bound of what any supported provider bills for them, so
that the hold admission takes for a request covers its real cost (the rest of a hold is given back
at settlement). The gateway holds before it knows which channel answers, so each part is counted as
the most expensive of the providers' published rules:

- images: the largest of OpenAI's tiles (``detail``-aware; gpt-4o-mini's 33x tile tokens when the
  model is named so), OpenAI's 32 px patches (x2.46, gpt-4.1-nano's multiplier, the largest),
  Anthropic's pixels/750 and 28 px patches (up to 3.75 MP, its high-resolution models), Gemini 2.x's
  258 per 768 px tile (after its 3072 px downscale) and Gemini 3's 1,120 per image. The pixel size is
  read from the PNG/JPEG/GIF/WebP header of inline data; an image by URL (or in an unknown format)
  counts as the largest image each provider bills.
- PDFs: pages x :data:`PDF_PAGE_TOKENS`, pages counted in the file (compressed object streams too).
- audio: 32 tokens a second (Gemini; OpenAI's audio models bill less), the duration read from a
  WAV or FLAC header, else assumed from the byte length at :data:`MEDIA_MIN_BYTES_PER_SECOND`.
- video: :data:`VIDEO_TOKENS_PER_SECOND`, the duration assumed from the byte length likewise.
- text files (and other declared types): one token per byte (every token of a byte-level
  tokenizer covers at least one byte).
- anything of unknown size (a file by URI, a PDF whose pages cannot be counted):
  :data:`MEDIA_PART_CAP`, the input window of the largest current models, which no single request
  can exceed without being refused unbilled. Every media part is capped there too.
"""

from __future__ import annotations

import json
import math
import re

from pisces.canonical import (
    ChatRequest,
    FilePart,
    ImagePart,
    OpaquePart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)
from pisces.canonical_embeddings import EmbedRequest
from pisces.media import (
    HEAD_BYTES,
    b64_decode,
    b64_length,
    flac_seconds,
    inline_image_size,
    pdf_page_count,
    sniffed_media_type,
    split_data_url,
    wav_seconds,
)

TOKEN_PATTERN = re.compile(r"\w{1,4}|[^\w\s]")

# --- images -----------------------------------------------------------------------------------------
# OpenAI, tile models (gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o-series): low detail costs the base; high
# detail fits the image in 2048x2048, shrinks its shortest side to 768, and adds a tile cost per
# 512 px tile. gpt-4o-mini bills 33x as many tokens (at a price 33x lower), so its images must be
# counted as such when its name says so. The others' bases and tiles are at most 85 / 170.
OPENAI_TILE = (85, 170)
OPENAI_MINI_TILE = (2833, 5667)
OPENAI_MINI_MARKERS = ("4o-mini",)
# OpenAI, patch models (gpt-4.1-mini/nano, o4-mini, gpt-5-mini/nano): 32 px patches, at most 1536
# (the image is shrunk to fit), times a model multiplier: 1.62, 1.72, 2.46 (nano, the largest).
OPENAI_PATCH_CAP = 1536
OPENAI_PATCH_MULTIPLIER = 2.46
# Anthropic: about width*height/750 tokens, or one per 28 px patch (newer models); images are shrunk
# to fit the native resolution: 1568 px / 1.15 MP before Opus 4.7, 2576 px / 3.75 MP since (so ~5,000).
ANTHROPIC_MAX_EDGE = 2576
ANTHROPIC_MAX_PIXELS = 3_750_000
# Gemini 2.x: 258 tokens when both sides are <= 384 px, else 258 per 768 px tile, once the image is
# shrunk to fit 3072x3072 (at most 16 tiles). Gemini 3: up to 1,120 tokens per image (HIGH, the
# default; ULTRA_HIGH is per part only, which the canonical model cannot say).
GEMINI_TILE_TOKENS = 258
GEMINI_SMALL = 384
GEMINI_TILE = 768
GEMINI_MAX_EDGE = 3072
GEMINI3_IMAGE_TOKENS = 1120

# --- documents, audio, video ------------------------------------------------------------------------
# A PDF page is sent to the model as an image of the page (Anthropic's largest image: 5,000) and its
# text (dense pages measure 1,500-3,000 tokens with the image; 3,000 for the text alone is generous).
# Gemini bills 258-1,120 per page. OpenAI channels take no files (the codec drops them).
PDF_PAGE_TOKENS = 5000 + 3000
AUDIO_TOKENS_PER_SECOND = 32  # Gemini, at every media resolution; OpenAI's audio models bill ~10
VIDEO_TOKENS_PER_SECOND = 312  # Gemini 3 at HIGH: 280 per frame at 1 fps + 32 for the sound (2.x: 263)
# Compressed audio and video whose length the header does not say: assumed to be no denser than
# 2 kbit/s (Opus's floor is 6, MP3's 8). A denser file (long silence under a VBR coder) could beat
# this assumption: the one media estimate here that is not a proven bound.
MEDIA_MIN_BYTES_PER_SECOND = 250
# The input window of the largest current models (Gemini 2.5/3, Claude and GPT-4.1 at 1M): a part
# of unknown size counts as this much; no request bills more input without being refused first.
MEDIA_PART_CAP = 1_048_576


def estimate_text(text: str) -> int:
    return len(TOKEN_PATTERN.findall(text))


# ------------------------------------------------------------------------------------------------------
# image token rules, per provider (None for a side: the size is unknown, count the largest image)


def _fit(w: float, h: float, max_edge: float, max_pixels: float | None = None) -> tuple[float, float]:
    """Shrink (never grow) to fit max_edge on the long side and max_pixels in area, keeping the aspect."""
    scale = min(1.0, max_edge / max(w, h))
    if max_pixels is not None:
        scale = min(scale, math.sqrt(max_pixels / (w * h)))
    return w * scale, h * scale


def openai_tile_tokens(w: int | None, h: int | None, detail: str | None = None, model: str = "") -> int:
    base, tile = OPENAI_MINI_TILE if any(m in model.lower() for m in OPENAI_MINI_MARKERS) else OPENAI_TILE
    if (detail or "").lower() == "low":
        return base
    if w is None or h is None:
        return base + tile * 2 * 4  # the most tiles: 768 x 2048 after scaling
    fw, fh = _fit(w, h, 2048)
    short = min(fw, fh)
    if short > 768:
        fw, fh = fw * 768 / short, fh * 768 / short
    return base + tile * math.ceil(round(fw, 6) / 512) * math.ceil(round(fh, 6) / 512)


def openai_patch_tokens(w: int | None, h: int | None) -> int:
    patches = OPENAI_PATCH_CAP if w is None or h is None else min(math.ceil(w / 32) * math.ceil(h / 32),
                                                                  OPENAI_PATCH_CAP)  # fmt: skip
    return math.ceil(patches * OPENAI_PATCH_MULTIPLIER)


def anthropic_image_tokens(w: int | None, h: int | None) -> int:
    if w is None or h is None:
        w, h = ANTHROPIC_MAX_EDGE, ANTHROPIC_MAX_EDGE  # shrunk below to the largest image it takes
    fw, fh = _fit(w, h, ANTHROPIC_MAX_EDGE, ANTHROPIC_MAX_PIXELS)
    return max(math.ceil(fw * fh / 750), math.ceil(fw / 28) * math.ceil(fh / 28))


def gemini_image_tokens(w: int | None, h: int | None) -> int:
    if w is None or h is None:
        w, h = GEMINI_MAX_EDGE, GEMINI_MAX_EDGE
    if w <= GEMINI_SMALL and h <= GEMINI_SMALL:
        tiles = 1
    else:
        fw, fh = _fit(w, h, GEMINI_MAX_EDGE)
        tiles = math.ceil(round(fw, 6) / GEMINI_TILE) * math.ceil(round(fh, 6) / GEMINI_TILE)
    return max(GEMINI_TILE_TOKENS * tiles, GEMINI3_IMAGE_TOKENS)


def image_tokens(size: tuple[int, int] | None, detail: str | None = None, model: str = "") -> int:
    """The most any supported provider bills for an image of ``size`` (None: unknown, the largest)."""
    w, h = size if size else (None, None)
    return max(
        openai_tile_tokens(w, h, detail, model),
        openai_patch_tokens(w, h),
        anthropic_image_tokens(w, h),
        gemini_image_tokens(w, h),
    )


# ------------------------------------------------------------------------------------------------------
# parts


def _capped(n: float) -> int:
    return min(math.ceil(n), MEDIA_PART_CAP)


def estimate_image(p: ImagePart, model: str = "") -> int:
    data = p.data
    if data is None and (inline := split_data_url(p.url)):
        data = inline[1]
    return _capped(image_tokens(inline_image_size(data) if data else None, p.detail, model))


def estimate_file(p: FilePart, model: str = "") -> int:
    media_type, data = (p.media_type or "").lower(), p.data
    if data is None and (inline := split_data_url(p.uri)):
        media_type, data = media_type or inline[0].lower(), inline[1]
    if data is None:
        return MEDIA_PART_CAP  # by URI (Gemini fileData, a document URL): its size is unknown here
    head = b64_decode(data, HEAD_BYTES) or b""
    media_type = sniffed_media_type(media_type, head)
    size = b64_length(data)
    if media_type.startswith("image/"):
        return _capped(image_tokens(inline_image_size(data), None, model))
    if media_type == "application/pdf":
        raw = b64_decode(data)
        pages = pdf_page_count(raw) if raw else None
        return MEDIA_PART_CAP if pages is None else _capped(pages * PDF_PAGE_TOKENS)
    if media_type.startswith("audio/"):
        seconds = wav_seconds(head, size) if head[:4] == b"RIFF" else flac_seconds(head)
        if seconds is None:
            seconds = size / MEDIA_MIN_BYTES_PER_SECOND
        return _capped(seconds * AUDIO_TOKENS_PER_SECOND)
    if media_type.startswith("video/"):
        return _capped(size / MEDIA_MIN_BYTES_PER_SECOND * VIDEO_TOKENS_PER_SECOND)
    return _capped(size)  # text, JSON, CSV...: at most one token per byte


def estimate_request(req: ChatRequest) -> int:
    """The counted input of ``req``: text estimated, media bounded from above (see the module doc)."""
    n = sum(estimate_text(p.text) for p in req.system)
    for m in req.messages:
        n += 3  # role and separators
        for p in m.content:
            if isinstance(p, TextPart):
                n += estimate_text(p.text)
            elif isinstance(p, ImagePart):
                n += estimate_image(p, req.model)
            elif isinstance(p, FilePart):
                n += estimate_file(p, req.model)
            elif isinstance(p, ToolCallPart):
                n += estimate_text(p.name) + estimate_text(p.arguments)
            elif isinstance(p, ToolResultPart):
                n += sum(estimate_text(c.text) if isinstance(c, TextPart) else
                         estimate_text(json.dumps(c.block)) if isinstance(c, OpaquePart) else
                         estimate_image(c, req.model) for c in p.content)  # fmt: skip
            elif isinstance(p, OpaquePart):  # counted whole: an upper bound for what any upstream gets
                n += estimate_text(json.dumps(p.block, ensure_ascii=False))
            elif isinstance(p, ThinkingPart):
                n += estimate_text(p.text)
    for t in req.tools:
        n += estimate_text(t.name) + estimate_text(t.description or "") + estimate_text(json.dumps(t.parameters))
    return n


def estimate_embedding(req: EmbedRequest) -> int:
    """The counted input of an embedding request: a token array counts its length, a text its estimate."""
    return sum(len(i) if isinstance(i, list) else estimate_text(i) for i in req.inputs)
