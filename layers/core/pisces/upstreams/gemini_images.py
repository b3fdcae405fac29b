"""The image operation on the Gemini API: Gemini's image-output models through ``generateContent``
(``responseModalities: [TEXT, IMAGE]``, the images come back as ``inlineData`` parts) and Imagen
through ``models/{model}:predict`` (``instances``/``parameters``, ``predictions[].bytesBase64Encoded``).

Both take an aspect ratio, not pixels: a requested ``WxH`` is sent as the nearest ratio the API has.
A Gemini model makes one image per call, so ``n`` images are ``n`` concurrent calls (their usage
summed); Imagen makes ``sampleCount`` in one. Imagen on the Gemini API cannot edit: an edit for it is
a 400. An edit on a Gemini model sends the images (and the mask, described as one) as inline parts.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from typing import Any

from pisces.canonical_images import SIZE_PATTERN, GeneratedImage, ImageRequest, ImageResponse, ImageUsage, sniff
from pisces.upstreams.base import UpstreamError

GEMINI_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
IMAGEN_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")


def is_imagen(model: str) -> bool:
    return model.removeprefix("models/").startswith("imagen")


def aspect_ratio(size: str | None, ratios: tuple[str, ...]) -> str | None:
    m = SIZE_PATTERN.match(size or "")
    if not m:
        return None
    want = math.log(int(m.group(1)) / int(m.group(2)))

    def distance(r: str) -> float:
        w, h = r.split(":")
        return abs(math.log(int(w) / int(h)) - want)

    return min(ratios, key=distance)


def _bad(why: str) -> UpstreamError:
    return UpstreamError("upstream_error", f"upstream: {why}", retryable=False)


def _image(data: Any, mime: Any) -> GeneratedImage:
    try:
        raw = base64.b64decode(data if isinstance(data, str) else "", validate=True)
    except (binascii.Error, ValueError):
        raise _bad("an image in its response is not base64") from None
    media = sniff(raw)
    if not raw or media is None:
        raise _bad("an image in its response is not an image")
    return GeneratedImage(data=raw, media_type=media if not isinstance(mime, str) else mime.split(";")[0] or media)


# ------------------------------------------------------------------ Imagen: :predict


def imagen_request(req: ImageRequest) -> dict[str, Any]:
    if req.operation == "edit":
        raise UpstreamError("invalid_request", "Imagen models cannot edit images on the Gemini API; use a Gemini "
                            "image model.", retryable=False, status=400)  # fmt: skip
    params: dict[str, Any] = {"sampleCount": req.n}
    ratio = aspect_ratio(req.size, IMAGEN_RATIOS)
    if ratio:
        params["aspectRatio"] = ratio
    if req.output_format in ("png", "jpeg"):
        params["outputOptions"] = {"mimeType": f"image/{req.output_format}"}
    return {"instances": [{"prompt": req.prompt}], "parameters": params}


def imagen_response(payload: Any) -> ImageResponse:
    preds = payload.get("predictions") if isinstance(payload, dict) else None
    if not isinstance(preds, list):
        raise _bad("the Imagen response has no predictions (the prompt may have been filtered)")
    images = [_image(p.get("bytesBase64Encoded"), p.get("mimeType")) for p in preds
              if isinstance(p, dict) and p.get("bytesBase64Encoded")]  # fmt: skip
    if not images:
        raise _bad("the Imagen response holds no image (the prompt may have been filtered)")
    return ImageResponse(created=int(time.time()), images=images)


# ------------------------------------------------------------------ Gemini: generateContent


def gemini_request(req: ImageRequest) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": req.prompt}]
    for im in req.images:
        parts.append({"inlineData": {"mimeType": im.media_type, "data": base64.b64encode(im.data).decode()}})
    if req.mask is not None:
        parts.append({"text": "The next image is a mask: edit only where it is transparent."})
        parts.append({"inlineData": {"mimeType": req.mask.media_type,
                                     "data": base64.b64encode(req.mask.data).decode()}})  # fmt: skip
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    ratio = aspect_ratio(req.size, GEMINI_RATIOS)
    if ratio:
        config["imageConfig"] = {"aspectRatio": ratio}
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}


def _count(obj: Any, name: str) -> int:
    v = obj.get(name) if isinstance(obj, dict) else None
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def gemini_response(payload: Any) -> tuple[list[GeneratedImage], ImageUsage]:
    """The images of one generateContent answer and its usage (image input tokens by modality)."""
    cands = payload.get("candidates") if isinstance(payload, dict) else None
    images: list[GeneratedImage] = []
    finish = None
    for cand in cands if isinstance(cands, list) else []:
        finish = cand.get("finishReason") if isinstance(cand, dict) else None
        content = cand.get("content") if isinstance(cand, dict) else None
        for part in (content or {}).get("parts") or []:
            inline = part.get("inlineData") or part.get("inline_data") if isinstance(part, dict) else None
            if isinstance(inline, dict) and not part.get("thought"):
                images.append(_image(inline.get("data"), inline.get("mimeType") or inline.get("mime_type")))
    if not images:
        why = f" (finishReason {finish})" if isinstance(finish, str) else ""
        raise _bad(f"the model answered without an image{why}")
    meta = payload.get("usageMetadata") or {}
    image_in = sum(_count(d, "tokenCount") for d in meta.get("promptTokensDetails") or []
                   if isinstance(d, dict) and d.get("modality") == "IMAGE")  # fmt: skip
    prompt = _count(meta, "promptTokenCount")
    usage = ImageUsage(
        input_tokens=prompt,
        input_image_tokens=image_in,
        input_text_tokens=max(0, prompt - image_in),
        output_tokens=_count(meta, "candidatesTokenCount") + _count(meta, "thoughtsTokenCount"),
    )
    return images, usage


def summed(usages: list[ImageUsage]) -> ImageUsage:
    return ImageUsage(**{f: sum(getattr(u, f) for u in usages) for f in ImageUsage.model_fields})
