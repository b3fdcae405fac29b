"""A fake Anthropic Messages upstream on loopback, speaking the real wire format (POST /v1/messages).

Model names choose its behaviour:
  recorded-text / recorded-tool   with stream=true, replay shared/fixtures/recorded/
             anthropic_messages_text_stream.sse / anthropic_messages_tool_use_stream.sse byte for byte;
             without, answer the message those streams make
  fail-400 / fail-401 / fail-429 / fail-500 / fail-529   answer that HTTP error in Anthropic's error
             shape (429 with retry-after: 7)
  fail-quote a 401 whose message quotes credentials (support.fake_openai.quoting)
  quote-mid  with stream=true, message_start and a text delta, then an ``event: error`` quoting them;
             without, as fail-quote
  slow       waits 30 s before answering (longer than a test channel's read timeout)
  cut        streams two events and then drops the connection
  gated      streams up to its first text delta, then waits until POST /release (or 10 s)
  anything else: "Hello from upstream: <last user text>", or a tool_use of the first tool when tools
  are given and tool_choice is not "none"; with thinking enabled, a signed thinking block first.
  Usage is always there, as the real API sends it:
  message_start carries the input side (with cache counters), message_delta the cumulative counts.
A wrong or missing ``x-api-key`` gets a 401 in Anthropic's shape. Every request (body and the
headers that matter) is recorded in ``FakeAnthropic.requests``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from support.fake_openai import UPSTREAM_SECRET, quoting
from support.servers import FakeUpstream, last_user_text, recorded, replay

__all__ = ["RECORDED", "UPSTREAM_SECRET", "USAGE", "FakeAnthropic"]

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}  # fmt: skip
USAGE = {"input_tokens": 9, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 2, "output_tokens": 7}
TOOL_INPUT = {"city": "Paris", "days": 3}
# with thinking enabled, answers start with this thinking block
THOUGHT = "The user greets me. I greet back."
THOUGHT_SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYd"  # valid base64, as Anthropic's are

# the messages the two recordings stream, as a non-streaming answer
RECORDED: dict[str, tuple[str, dict[str, Any]]] = {
    "recorded-text": (
        "anthropic_messages_text_stream.sse",
        {"id": "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK", "type": "message", "role": "assistant",
         "model": "claude-3-opus-latest", "content": [{"type": "text", "text": "Hello there!"}],
         "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 11, "output_tokens": 6}},
    ),
    "recorded-tool": (
        "anthropic_messages_tool_use_stream.sse",
        {"id": "msg_019Q1hrJbZG26Fb9BQhrkHEr", "type": "message", "role": "assistant",
         "model": "claude-sonnet-4-20250514",
         "content": [{"type": "text", "text": "I'll check the current weather in Paris for you."},
                     {"type": "tool_use", "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn", "name": "get_weather",
                      "input": {"location": "Paris"}}],
         "stop_reason": "tool_use", "stop_sequence": None,
         "usage": {"input_tokens": 377, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                   "output_tokens": 65}},
    ),
}  # fmt: skip


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
            "request_id": "req_fake_upstream"}  # fmt: skip
    return JSONResponse(body, status_code=status, headers=headers)


def _event(body: dict[str, Any]) -> bytes:
    return f"event: {body['type']}\ndata: {json.dumps(body)}\n\n".encode()


class FakeAnthropic(FakeUpstream):
    def __init__(self) -> None:
        super().__init__("/v1/messages", self.messages)

    async def messages(self, request: Request) -> Response:
        body = await request.json()
        names = ("x-api-key", "anthropic-version", "anthropic-beta", "content-type", "authorization")
        self.requests.append({"body": body, **{h: request.headers.get(h) for h in names}})
        if request.headers.get("x-api-key") != UPSTREAM_SECRET:
            return _error(401, "invalid x-api-key")
        model = str(body.get("model", ""))
        if model == "quote-mid" and body.get("stream"):
            return StreamingResponse(self._quote_mid(self._answer(model, body)), media_type="text/event-stream")
        if model in ("fail-quote", "quote-mid"):
            return _error(401, quoting("invalid x-api-key."))
        if model.startswith("fail-"):
            status = int(model.split("-")[1])
            return _error(status, f"upstream says {status}", {"retry-after": "7"} if status == 429 else None)
        if model == "slow":
            await asyncio.sleep(30)
        if model in RECORDED:
            name, message = RECORDED[model]
            if body.get("stream"):
                return StreamingResponse(replay(recorded(name)), media_type="text/event-stream")
            return JSONResponse(message)
        message = self._answer(model, body)
        if not body.get("stream"):
            return JSONResponse(message)
        if model == "gated":
            self.gate.clear()
        return StreamingResponse(self._stream(message, cut=model == "cut", gated=model == "gated"),
                                 media_type="text/event-stream")  # fmt: skip

    def _answer(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and "input_schema" in t]
        choice = (body.get("tool_choice") or {}).get("type")
        if tools and choice != "none":
            content = [{"type": "tool_use", "id": "toolu_fake_1", "name": tools[0]["name"], "input": TOOL_INPUT}]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": f"Hello from upstream: {last_user_text(body.get('messages', []))}"}]
            stop = "end_turn"
        if (body.get("thinking") or {}).get("type") == "enabled":
            content.insert(0, {"type": "thinking", "thinking": THOUGHT, "signature": THOUGHT_SIGNATURE})
        return {"id": "msg_fake_01", "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stop, "stop_sequence": None, "usage": dict(USAGE)}  # fmt: skip

    async def _quote_mid(self, message: dict[str, Any]) -> AsyncIterator[bytes]:
        yield _event({"type": "message_start", "message": {**message, "content": [], "stop_reason": None}})
        yield _event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        yield _event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "partial"}})
        err = {"type": "api_error", "message": quoting("Internal server error.")}
        yield _event({"type": "error", "error": err})

    async def _stream(self, message: dict[str, Any], cut: bool, gated: bool) -> AsyncIterator[bytes]:
        start = {**message, "content": [], "stop_reason": None, "usage": {**USAGE, "output_tokens": 1}}
        yield _event({"type": "message_start", "message": start})
        if not cut:
            yield _event({"type": "ping"})
        for i, block in enumerate(message["content"]):
            if block["type"] == "text":
                yield _event({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
                if cut:
                    raise RuntimeError("connection dropped on purpose")
                for j, word in enumerate(block["text"].split(" ")):
                    delta = {"type": "text_delta", "text": ("" if j == 0 else " ") + word}
                    yield _event({"type": "content_block_delta", "index": i, "delta": delta})
                    if gated and j == 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self.gate.wait(), 10)
            elif block["type"] == "thinking":
                start_block = {"type": "thinking", "thinking": "", "signature": ""}
                yield _event({"type": "content_block_start", "index": i, "content_block": start_block})
                for word in block["thinking"].split(" "):
                    delta = {"type": "thinking_delta", "thinking": word + " "}
                    yield _event({"type": "content_block_delta", "index": i, "delta": delta})
                delta = {"type": "signature_delta", "signature": block["signature"]}
                yield _event({"type": "content_block_delta", "index": i, "delta": delta})
            else:
                yield _event({"type": "content_block_start", "index": i, "content_block": {**block, "input": {}}})
                args = json.dumps(block["input"])
                for j in range(0, len(args), 5):
                    delta = {"type": "input_json_delta", "partial_json": args[j : j + 5]}
                    yield _event({"type": "content_block_delta", "index": i, "delta": delta})
            yield _event({"type": "content_block_stop", "index": i})
        delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
        yield _event({"type": "message_delta", "delta": delta, "usage": dict(USAGE)})
        yield _event({"type": "message_stop"})
