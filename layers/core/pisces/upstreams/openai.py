"""Channel kind ``openai``: any OpenAI-compatible chat completions API (OpenAI, DeepSeek, vLLM, Ollama...).

Requests and responses go through :mod:`pisces.protocols.openai_chat`, the same codec that serves
the OpenAI client door. Streams are decoded chunk by chunk as they arrive, never buffered.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator

import httpx

from pisces.canonical import ChatRequest, ChatResponse, ErrorEvent, StreamEvent
from pisces.protocols import openai_chat
from pisces.protocols.sse import SSEParser
from pisces.upstreams.base import Channel, UpstreamError, status_error, transport_error
from pisces.upstreams.credentials import resolve_api_key


class OpenAIChannel(Channel):
    @property
    def url(self) -> str:
        return (self.cfg.base_url or "").rstrip("/") + "/chat/completions"

    async def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json", **self.cfg.headers}
        key = await resolve_api_key(self.cfg)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def _send(self, body: dict, stream: bool) -> httpx.Response:
        attempts = 1 + self.cfg.retries
        for attempt in range(attempts):
            try:
                request = self.http.build_request(
                    "POST", self.url, content=json.dumps(body), headers=await self._headers(), timeout=self.timeout()
                )
                resp = await self.http.send(request, stream=stream)
            except httpx.HTTPError as exc:
                err = transport_error(exc, self.name)
                if err.retryable and attempt + 1 < attempts:
                    continue
                raise err from None
            if resp.status_code >= 400:
                raw = await resp.aread()
                await resp.aclose()
                raise status_error(
                    resp.status_code, openai_chat.upstream_error_message(raw), resp.headers.get("retry-after")
                )
            return resp
        raise AssertionError("unreachable")

    async def complete(self, req: ChatRequest, model: str) -> ChatResponse:
        body = openai_chat.encode_request(req.model_copy(update={"stream": False}), model)
        resp = await self._send(body, stream=False)
        try:
            payload = resp.json()
        except ValueError:
            raise UpstreamError("upstream_error", "upstream: the response is not JSON", retryable=False) from None
        return openai_chat.decode_response(payload)

    async def stream(self, req: ChatRequest, model: str) -> AsyncGenerator[StreamEvent, None]:
        body = openai_chat.encode_request(req.model_copy(update={"stream": True}), model)
        resp = await self._send(body, stream=True)
        parser, decoder = SSEParser(), openai_chat.StreamDecoder()
        try:
            async for chunk in resp.aiter_raw():
                for sse in parser.feed(chunk):
                    for ev in decoder.feed(sse):
                        yield ev
            for sse in parser.close():
                for ev in decoder.feed(sse):
                    yield ev
            for ev in decoder.close():
                yield ev
        except httpx.HTTPError as exc:
            err = transport_error(exc, self.name)
            yield ErrorEvent(code=err.code, message=err.message, status=err.status)
        finally:
            await resp.aclose()
