"""Channel kind ``gemini``: the Gemini API of Google AI Studio (``base_url`` like
https://generativelanguage.googleapis.com/v1beta).

Requests and responses go through :mod:`pisces.protocols.gemini`, the same codec that serves the
Gemini client door, so safetySettings, built-in tools and a Gemini client's thinkingConfig reach the
upstream as the client sent them. The model and the stream flag are in the URL
(``models/{model}:generateContent``, ``:streamGenerateContent?alt=sse``); the key goes in
``x-goog-api-key``, never in the URL, so no proxy or access log sees it.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

from pisces.canonical_images import ImageRequest, ImageResponse
from pisces.protocols import gemini, gemini_embeddings
from pisces.upstreams import gemini_images as gi
from pisces.upstreams import images
from pisces.upstreams.base import HttpCodecChannel


class GeminiChannel(HttpCodecChannel):
    codec = gemini
    path = "/models"
    embed_codec = gemini_embeddings  # always :batchEmbedContents, whichever the client asked
    operations = frozenset({"chat", "embed", "images"})

    def embed_url(self, model: str) -> str:
        name = quote(model.removeprefix("models/"), safe="-._~")
        return f"{(self.cfg.base_url or '').rstrip('/')}{self.path}/{name}:batchEmbedContents"

    async def images(self, req: ImageRequest, model: str) -> ImageResponse:
        """Imagen through ``:predict``, Gemini's image models through ``:generateContent``
        (:mod:`pisces.upstreams.gemini_images`)."""
        name = quote(model.removeprefix("models/"), safe="-._~")
        base = f"{(self.cfg.base_url or '').rstrip('/')}{self.path}/{name}"
        if gi.is_imagen(model):
            return gi.imagen_response(await images.post(self, base + ":predict", json=gi.imagen_request(req)))
        body = gi.gemini_request(req)
        answers = await asyncio.gather(*(images.post(self, base + ":generateContent", json=body)
                                         for _ in range(req.n)))  # fmt: skip
        made = [gi.gemini_response(a) for a in answers]
        return ImageResponse(created=int(time.time()), images=[im for ims, _ in made for im in ims][: req.n],
                             usage=gi.summed([u for _, u in made]))  # fmt: skip

    def url_for(self, model: str, stream: bool) -> str:
        name = quote(model.removeprefix("models/"), safe="-._~")
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{(self.cfg.base_url or '').rstrip('/')}{self.path}/{name}:{action}"

    def status_of(self, status: int, body: bytes) -> int:
        # Gemini answers a bad key with 400 INVALID_ARGUMENT (reason API_KEY_INVALID): the gateway's
        # credential, not the client's request, so it is passed on as a refused credential (a 502)
        return 401 if status == 400 and b"API_KEY_INVALID" in body else status

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-goog-api-key": key}
