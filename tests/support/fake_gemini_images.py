"""The fake Gemini API's image models, as the real API answers them:

  models/{imagen-*}:predict   ``{"instances": [{"prompt"}], "parameters": {"sampleCount", "aspectRatio"}}``
                              -> ``{"predictions": [{"bytesBase64Encoded", "mimeType"}]}`` (no usage)
  models/gemini-2.5-flash-image:generateContent   with generationConfig.responseModalities containing
                              IMAGE: a text part and one inlineData PNG part, and usageMetadata with the
                              prompt's IMAGE tokens (258 per input image) and 1290 output tokens
Images are support.media.png, their size from the aspect ratio (1024 on the long side).
"""

from __future__ import annotations

import base64
from typing import Any

from support.media import png

IMAGE_MODELS = ("gemini-2.5-flash-image",)
OUTPUT_TOKENS = 1290
TEXT_TOKENS = 9
IMAGE_INPUT_TOKENS = 258


def _size(ratio: Any) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in str(ratio).split(":"))
    except ValueError:
        return 1024, 1024
    return (1024, max(16, 1024 * h // w)) if w >= h else (max(16, 1024 * w // h), 1024)


def _b64(w: int, h: int) -> str:
    return base64.b64encode(png(w, h)).decode()


def predict(body: dict[str, Any]) -> dict[str, Any]:
    params = body.get("parameters") or {}
    w, h = _size(params.get("aspectRatio", "1:1"))
    n = int(params.get("sampleCount") or 4)
    return {"predictions": [{"mimeType": "image/png", "bytesBase64Encoded": _b64(w, h)} for _ in range(n)]}


def generate(body: dict[str, Any]) -> dict[str, Any] | None:
    """The answer, or None when the request does not ask for images (the caller answers text)."""
    config = body.get("generationConfig") or {}
    if "IMAGE" not in (config.get("responseModalities") or []):
        return None
    w, h = _size((config.get("imageConfig") or {}).get("aspectRatio", "1:1"))
    parts = [p for c in body.get("contents") or [] for p in c.get("parts") or []]
    inputs = sum(1 for p in parts if "inlineData" in p)
    prompt = TEXT_TOKENS + IMAGE_INPUT_TOKENS * inputs
    details = [{"modality": "TEXT", "tokenCount": TEXT_TOKENS}]
    if inputs:
        details.append({"modality": "IMAGE", "tokenCount": IMAGE_INPUT_TOKENS * inputs})
    answer = [{"text": "Here is your image."}, {"inlineData": {"mimeType": "image/png", "data": _b64(w, h)}}]
    return {"candidates": [{"content": {"parts": answer, "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": OUTPUT_TOKENS,
                              "totalTokenCount": prompt + OUTPUT_TOKENS, "promptTokensDetails": details},
            "modelVersion": "gemini-2.5-flash-image", "responseId": "fake-image-1"}  # fmt: skip
