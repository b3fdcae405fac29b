"""OpenAI's Images API, both ways: ``POST /v1/images/generations`` (JSON) and ``/v1/images/edits``
(multipart) as a client door, and as an upstream (any OpenAI-compatible image API).

Errors are OpenAI's (:func:`pisces.protocols.openai_chat.render_error`): the door's protocol is
``openai``. A client's ``response_format`` is ``url`` (the gateway's own presigned S3 URL; the
default, as DALL-E's) or ``b64_json``, whatever the upstream answered: the gateway always holds the
bytes. ``stream`` (partial images) is refused with a 400.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from pisces.canonical_images import (
    SIZE_PATTERN,
    GeneratedImage,
    ImageFile,
    ImageRequest,
    ImageResponse,
    ImageUsage,
    sniff,
)
from pisces.errors import PiscesError
from pisces.media import image_size
from pisces.pipeline.multipart import FilePart, Form

NAME = "openai"
MAX_N = 10
MAX_PROMPT = 32_000  # characters (gpt-image-1's limit; DALL-E 3's is 4,000)
MAX_SIDE = 4096  # pixels: the largest side a size or an input image may have
MIN_SIDE = 16
RESPONSE_FORMATS = ("url", "b64_json")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
# the fields the door reads itself; any other is passed on to an OpenAI-compatible upstream as sent
KNOWN = {"model", "prompt", "n", "size", "quality", "style", "background", "output_format", "output_compression",
         "moderation", "response_format", "user", "stream", "image", "image[]", "mask"}  # fmt: skip
STRINGS = ("quality", "style", "background", "moderation", "user")


def _bad(message: str, param: str | None = None) -> PiscesError:
    return PiscesError("invalid_request", message, param=param)


def _int(value: Any, param: str) -> int:
    if isinstance(value, bool):
        raise _bad(f"{param}: must be an integer.", param)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value.strip()) <= 12:
        return int(value.strip())
    raise _bad(f"{param}: must be an integer.", param)


def check_size(size: str | None) -> None:
    if size is None or size == "auto":
        return
    m = SIZE_PATTERN.match(size)
    if not m or not all(MIN_SIDE <= int(side) <= MAX_SIDE for side in m.groups()):
        raise _bad(f"Invalid size '{size[:40]}'. Use 'auto' or WIDTHxHEIGHT, each side from {MIN_SIDE} to "
                   f"{MAX_SIDE} pixels (e.g. 1024x1024).", "size")  # fmt: skip


def _fields(get: Any, extra: dict[str, Any]) -> ImageRequest:
    """The canonical request from a field getter (a JSON object's or a form's)."""
    model = get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("You must provide a model parameter.", "model")
    prompt = get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _bad("prompt: must be a non-empty string.", "prompt")
    if len(prompt) > MAX_PROMPT:
        raise _bad(f"prompt: must be at most {MAX_PROMPT} characters (it has {len(prompt)}).", "prompt")
    n = 1 if get("n") is None else _int(get("n"), "n")
    if not 1 <= n <= MAX_N:
        raise _bad(f"n: {n} is out of range: from 1 to {MAX_N} images.", "n")
    size = get("size")
    if size is not None and not isinstance(size, str):
        raise _bad("size: must be a string such as '1024x1024'.", "size")
    check_size(size)
    fmt = get("response_format")
    if fmt is not None and fmt not in RESPONSE_FORMATS:
        raise _bad(f"response_format: must be 'url' or 'b64_json', not {str(fmt)[:40]!r}.", "response_format")
    out_fmt = get("output_format")
    if out_fmt is not None and out_fmt not in OUTPUT_FORMATS:
        raise _bad(f"output_format: must be one of {', '.join(OUTPUT_FORMATS)}.", "output_format")
    comp = get("output_compression")
    compression = None if comp is None else _int(comp, "output_compression")
    if compression is not None and not 0 <= compression <= 100:
        raise _bad("output_compression: must be from 0 to 100.", "output_compression")
    stream = get("stream")
    if stream not in (None, False, "false"):
        raise PiscesError("unsupported_parameter", "stream: streamed partial images are not supported by this "
                          "gateway; leave stream unset.", param="stream")  # fmt: skip
    text: dict[str, str | None] = {}
    for name in STRINGS:
        value = get(name)
        if value is not None and not isinstance(value, str):
            raise _bad(f"{name}: must be a string.", name)
        text[name] = value
    return ImageRequest(model=model, prompt=prompt, n=n, size=size, response_format=fmt, output_format=out_fmt,
                        output_compression=compression, extra=extra, **text)  # fmt: skip


def decode_generation(body: Any) -> ImageRequest:
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.")
    extra = {k: v for k, v in body.items() if k not in KNOWN}
    return _fields(body.get, extra)


def image_file(part: FilePart, param: str, max_bytes: int) -> ImageFile:
    """An uploaded image, checked: a PNG, JPEG, WebP or GIF of readable size, within the limits."""
    if not part.data:
        raise _bad(f"{param}: the file '{part.filename[:80]}' is empty.", param)
    if len(part.data) > max_bytes:
        raise _bad(f"{param}: the file '{part.filename[:80]}' is {len(part.data)} bytes; an image may be at most "
                   f"{max_bytes} bytes.", param)  # fmt: skip
    media = sniff(part.data)
    dims = image_size(part.data[:65536]) if media else None
    if media is None or dims is None:
        raise _bad(f"{param}: the file '{part.filename[:80]}' is not a readable PNG, JPEG, WebP or GIF image.",
                   param)  # fmt: skip
    w, h = dims
    if max(w, h) > MAX_SIDE:
        raise _bad(f"{param}: the image '{part.filename[:80]}' is {w}x{h} pixels; each side may be at most "
                   f"{MAX_SIDE}.", param)  # fmt: skip
    return ImageFile(data=part.data, media_type=media, filename=part.filename, width=w, height=h)


def decode_edit(form: Form, max_image_bytes: int) -> ImageRequest:
    stray = [n for n in form.names() if n in ("model", "prompt") and form.files(n)]
    if stray:
        raise _bad(f"{stray[0]}: must be a text field, not a file.", stray[0])

    def get(name: str) -> str | None:
        return form.text(name) if not form.files(name) else None

    extra = {n: form.text(n) for n in form.names() if n not in KNOWN and not form.files(n)}
    req = _fields(get, extra)
    parts = form.files("image", "image[]")
    if not parts:
        raise _bad("image: at least one image file is required.", "image")
    if len(parts) > 16:
        raise _bad("image: at most 16 images may be edited together.", "image")
    req.operation = "edit"
    req.images = [image_file(p, "image", max_image_bytes) for p in parts]
    masks = form.files("mask")
    if len(masks) > 1:
        raise _bad("mask: at most one mask.", "mask")
    if masks:
        req.mask = image_file(masks[0], "mask", max_image_bytes)
        first = req.images[0]
        if req.mask.media_type != "image/png":
            raise _bad("mask: must be a PNG (its transparent pixels say where to edit).", "mask")
        if (req.mask.width, req.mask.height) != (first.width, first.height):
            raise _bad(f"mask: its size {req.mask.width}x{req.mask.height} differs from the image's "
                       f"{first.width}x{first.height}.", "mask")  # fmt: skip
    return req


def encode_response(resp: ImageResponse, fmt: str, urls: list[str] | None, pisces: dict[str, Any]) -> dict[str, Any]:
    data: list[dict[str, Any]] = []
    for i, image in enumerate(resp.images):
        item: dict[str, Any] = {"url": urls[i]} if fmt == "url" and urls else {
            "b64_json": base64.b64encode(image.data).decode()}  # fmt: skip
        if image.revised_prompt:
            item["revised_prompt"] = image.revised_prompt
        data.append(item)
    out: dict[str, Any] = {"created": resp.created, "data": data}
    for name in ("background", "output_format", "quality", "size"):
        if getattr(resp, name):
            out[name] = getattr(resp, name)
    if resp.usage is not None:
        u = resp.usage
        out["usage"] = {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                        "total_tokens": u.total_tokens,
                        "input_tokens_details": {"text_tokens": u.input_text_tokens,
                                                 "image_tokens": u.input_image_tokens}}  # fmt: skip
    out["pisces"] = pisces
    return out


# ---------------------------------------------------------------------------------------------
# as an upstream: any OpenAI-compatible image API


def upstream_fields(req: ImageRequest, model: str) -> dict[str, Any]:
    """The request's fields for an OpenAI-compatible upstream. The gateway asks for ``b64_json``
    (it stores the bytes itself), except of GPT Image models, which always answer base64 and refuse
    the parameter."""
    body: dict[str, Any] = {"model": model, "prompt": req.prompt, "n": req.n}
    for name in ("size", "quality", "style", "background", "output_format", "output_compression", "moderation",
                 "user"):  # fmt: skip
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    if not model.lower().startswith("gpt-image"):
        body["response_format"] = "b64_json"
    body.update({k: v for k, v in req.extra.items() if k not in body})
    return body


def upstream_files(req: ImageRequest) -> list[tuple[str, tuple[str, bytes, str]]]:
    """An edit's files as httpx takes them: ``image`` for one image, ``image[]`` for several."""
    name = "image" if len(req.images) == 1 else "image[]"
    files = [(name, (im.filename, im.data, im.media_type)) for im in req.images]
    if req.mask is not None:
        files.append(("mask", (req.mask.filename, req.mask.data, req.mask.media_type)))
    return files


def decode_upstream(payload: Any) -> tuple[ImageResponse, dict[int, str]]:
    """An upstream's images response: the images it sent as base64, and the URLs (by position) of
    those it sent as links, for the channel to fetch. A malformed answer is an upstream error."""
    from pisces.upstreams.base import UpstreamError

    def bad(why: str) -> UpstreamError:
        return UpstreamError("upstream_error", f"upstream: the images response {why}", retryable=False)

    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise bad("has no data list")
    images: list[GeneratedImage] = []
    links: dict[int, str] = {}
    for i, item in enumerate(payload["data"]):
        if not isinstance(item, dict):
            raise bad("has a data item that is not an object")
        revised = item.get("revised_prompt") if isinstance(item.get("revised_prompt"), str) else None
        if isinstance(item.get("b64_json"), str):
            try:
                raw = base64.b64decode(item["b64_json"], validate=True)
            except (binascii.Error, ValueError):
                raise bad("has an image that is not base64") from None
            images.append(GeneratedImage(data=raw, media_type=sniff(raw) or "image/png", revised_prompt=revised))
        elif isinstance(item.get("url"), str):
            links[i] = item["url"]
            images.append(GeneratedImage(data=b"", revised_prompt=revised))
        else:
            raise bad("has an item with neither b64_json nor url")
    usage = None
    u = payload.get("usage")
    if isinstance(u, dict):
        details = u.get("input_tokens_details") if isinstance(u.get("input_tokens_details"), dict) else {}
        num = [v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0
               for v in (u.get("input_tokens"), u.get("output_tokens"), details.get("text_tokens"),
                         details.get("image_tokens"))]  # fmt: skip
        usage = ImageUsage(input_tokens=num[0], output_tokens=num[1], input_text_tokens=num[2],
                           input_image_tokens=num[3])  # fmt: skip
    created = payload.get("created")
    echo = {k: payload[k] for k in ("size", "quality", "background", "output_format")
            if isinstance(payload.get(k), str)}  # fmt: skip
    return ImageResponse(created=created if isinstance(created, int) else int(time.time()), images=images,
                         usage=usage, **echo), links  # fmt: skip
