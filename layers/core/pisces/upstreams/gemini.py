"""Channel kind ``gemini``: the Gemini API of Google AI Studio (``base_url`` like
https://generativelanguage.googleapis.com/v1beta).

Requests and responses go through :mod:`pisces.protocols.gemini`, the same codec that serves the
Gemini client door, so safetySettings, built-in tools and a Gemini client's thinkingConfig reach the
upstream as the client sent them. The model and the stream flag are in the URL
(``models/{model}:generateContent``, ``:streamGenerateContent?alt=sse``); the key goes in
``x-goog-api-key``, never in the URL, so no proxy or access log sees it.
"""

from __future__ import annotations

from urllib.parse import quote

from pisces.protocols import gemini, gemini_embeddings
from pisces.upstreams.base import HttpCodecChannel


class GeminiChannel(HttpCodecChannel):
    codec = gemini
    path = "/models"
    embed_codec = gemini_embeddings  # always :batchEmbedContents, whichever the client asked
    operations = frozenset({"chat", "embed"})

    def embed_url(self, model: str) -> str:
        name = quote(model.removeprefix("models/"), safe="-._~")
        return f"{(self.cfg.base_url or '').rstrip('/')}{self.path}/{name}:batchEmbedContents"

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
