"""Channel kind ``openai-responses``: OpenAI's Responses API (``POST {base_url}/responses``), for
models OpenAI serves only there (and for its built-in tools and encrypted reasoning).

Requests and responses go through :mod:`pisces.protocols.openai_responses`, the codec that serves
the Responses client door; streams are decoded event by event as they arrive.
"""

from __future__ import annotations

from pisces.protocols import openai_responses
from pisces.upstreams.base import HttpCodecChannel


class OpenAIResponsesChannel(HttpCodecChannel):
    codec = openai_responses
    path = "/responses"

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}
