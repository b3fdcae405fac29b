"""The canonical image operation: one request and one response type for every door and upstream.

A door decodes its wire request (OpenAI's ``/v1/images/generations`` JSON or ``/v1/images/edits``
multipart) into an :class:`ImageRequest`; an upstream kind answers it with an :class:`ImageResponse`
whose images are bytes (an upstream that answers with a URL is read by its channel, so the gateway
always holds the bytes it stores and hands out under its own URL).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ImageOperation = Literal["generate", "edit"]
ResponseFormat = Literal["url", "b64_json"]
SIZE_PATTERN = re.compile(r"^([1-9][0-9]{1,4})x([1-9][0-9]{1,4})$")
# What "auto" (or no size) means where a size must be chosen: the mock's and a fallback's default.
DEFAULT_SIZE = (1024, 1024)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageFile(_Model):
    """An input image (or mask): its bytes as uploaded, what they are, and their pixel size."""

    data: bytes
    media_type: str  # image/png, image/jpeg, image/webp, image/gif (sniffed from the bytes)
    filename: str = "image.png"
    width: int = 0
    height: int = 0


class ImageRequest(_Model):
    operation: ImageOperation = "generate"
    model: str
    prompt: str
    n: int = 1
    size: str | None = None  # "WxH" or "auto"; None: the model's default
    quality: str | None = None
    style: str | None = None
    background: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    moderation: str | None = None
    response_format: ResponseFormat | None = None  # None: the door's default (OpenAI: url, like DALL-E)
    user: str | None = None
    images: list[ImageFile] = Field(default_factory=list)  # edits: one or several
    mask: ImageFile | None = None
    # other fields the client sent that an upstream of its own protocol may take (input_fidelity...)
    extra: dict[str, Any] = Field(default_factory=dict)

    def pixels(self) -> tuple[int, int]:
        """The requested size in pixels (:data:`DEFAULT_SIZE` for "auto" or none)."""
        m = SIZE_PATTERN.match(self.size or "")
        return (int(m.group(1)), int(m.group(2))) if m else DEFAULT_SIZE


class ImageUsage(_Model):
    """Tokens as a GPT Image model reports them; Gemini's usageMetadata maps onto the same."""

    input_tokens: int = 0  # text and image input tokens together
    output_tokens: int = 0
    input_text_tokens: int = 0
    input_image_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class GeneratedImage(_Model):
    data: bytes
    media_type: str = "image/png"
    revised_prompt: str | None = None


class ImageResponse(_Model):
    created: int
    images: list[GeneratedImage] = Field(default_factory=list)
    usage: ImageUsage | None = None
    # what the upstream says it made, echoed as OpenAI's response does (GPT Image models)
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None


def extension(media_type: str) -> str:
    return {"image/jpeg": "jpeg", "image/webp": "webp", "image/gif": "gif"}.get(media_type, "png")


def sniff(data: bytes) -> str | None:
    """The media type of an image by its first bytes (PNG, JPEG, GIF, WebP); None for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None
