"""Channel kind ``openai``: any OpenAI-compatible chat completions API (OpenAI, DeepSeek, vLLM, Ollama...).

Chat requests and responses go through :mod:`pisces.protocols.openai_chat`, the same codec that serves
the OpenAI client door; :class:`~pisces.upstreams.base.HttpCodecChannel` sends them and decodes
streams chunk by chunk as they arrive, never buffered. Embeddings go to ``{base_url}/embeddings``
through :mod:`pisces.protocols.openai_embeddings`.
"""

from __future__ import annotations

from pisces.canonical_images import ImageRequest, ImageResponse
from pisces.protocols import openai_chat, openai_embeddings, openai_images
from pisces.upstreams import images
from pisces.upstreams.base import HttpCodecChannel


class OpenAIChannel(HttpCodecChannel):
    codec = openai_chat
    path = "/chat/completions"
    embed_codec = openai_embeddings  # POST {base_url}/embeddings
    operations = frozenset({"chat", "embed", "images"})

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def images(self, req: ImageRequest, model: str) -> ImageResponse:
        """``/images/generations`` (JSON) or ``/images/edits`` (multipart) through
        :mod:`pisces.protocols.openai_images`; images it links to are read from its own URLs."""
        base = (self.cfg.base_url or "").rstrip("/")
        fields = openai_images.upstream_fields(req, model)
        if req.operation == "edit":
            form = {k: str(v) for k, v in fields.items()}
            payload = await images.post(self, base + "/images/edits", data=form,
                                        files=openai_images.upstream_files(req))  # fmt: skip
        else:
            payload = await images.post(self, base + "/images/generations", json=fields)
        resp, links = openai_images.decode_upstream(payload)
        for i, url in links.items():
            data, media = await images.fetch_image(self, url)
            resp.images[i] = resp.images[i].model_copy(update={"data": data, "media_type": media})
        return resp
