"""Channel kind ``openai``: any OpenAI-compatible chat completions API (OpenAI, DeepSeek, vLLM, Ollama...).

Embeddings go to ``{base_url}/embeddings`` through :mod:`pisces.protocols.openai_embeddings`.
Requests and responses go through :mod:`pisces.protocols.openai_chat`, the same codec that serves
the OpenAI client door; :class:`~pisces.upstreams.base.HttpCodecChannel` sends them and decodes
streams chunk by chunk as they arrive, never buffered.
"""

from __future__ import annotations

from pisces.protocols import openai_chat, openai_embeddings
from pisces.upstreams.base import HttpCodecChannel


class OpenAIChannel(HttpCodecChannel):
    codec = openai_chat
    path = "/chat/completions"
    embed_codec = openai_embeddings  # POST {base_url}/embeddings
    operations = frozenset({"chat", "embed"})

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}
