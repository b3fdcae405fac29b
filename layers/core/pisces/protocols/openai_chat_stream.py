"""OpenAI chat.completion.chunk streams: decoded from an upstream, encoded for a client.

Wire shape (https://platform.openai.com/docs/api-reference/chat-streaming): ``data: {chunk}`` events,
the first delta carrying the role, content deltas, tool-call deltas keyed by ``index`` (id and name
in the first, argument fragments after), a chunk with ``finish_reason``, with
``stream_options.include_usage`` a last chunk with ``choices: []`` and ``usage``, then
``data: [DONE]``. An error mid-stream is a ``data: {"error": {...}}`` event, which the openai SDK
raises as ``APIError``.
"""

from __future__ import annotations

from typing import Any

from pisces.canonical import (
    ContentEnd,
    ErrorEvent,
    Finish,
    FinishReason,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolArgsDelta,
    ToolCallStart,
    Usage,
    UsageEvent,
    merge_usage,
)
from pisces.jsonwire import dumps, loads
from pisces.protocols.common import token_count
from pisces.protocols.sse import SSEEvent, comment

FINISH_IN: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
FINISH_OUT = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter",
              "error": "stop"}  # fmt: skip


def finish_in(reason: Any, has_tool_calls: bool = False) -> FinishReason:
    """OpenAI's finish_reason in canonical form. Some compatible servers (Ollama) end a turn of tool
    calls with "stop": a turn that made tool calls finished for tool_calls, whatever it says."""
    canonical = FINISH_IN.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if has_tool_calls and canonical == "stop" else canonical


# OpenAI's error "type" by status, as its API returns them (401 invalid key is invalid_request_error
# with code invalid_api_key; 429 is "requests"/"tokens" for rate limits, insufficient_quota for money).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    402: "insufficient_quota",
    403: "permission_error",
    429: "requests",
}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def usage_from(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    pd, cd = u.get("prompt_tokens_details"), u.get("completion_tokens_details")
    return Usage(
        input_tokens=token_count(u, "prompt_tokens"),
        output_tokens=token_count(u, "completion_tokens"),
        cached_tokens=token_count(pd, "cached_tokens")
        or token_count(u, "prompt_cache_hit_tokens"),  # the latter: DeepSeek
        reasoning_tokens=token_count(cd, "reasoning_tokens"),
    )


def usage_to(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }  # fmt: skip


def completion_id(raw: str) -> str:
    return raw if raw.startswith("chatcmpl") else f"chatcmpl-{raw}"


class StreamDecoder:
    """Upstream chunks -> canonical events. Feed it parsed SSE events; ``close`` at end of stream."""

    def __init__(self) -> None:
        self.started = False
        self.finished = False
        self.done = False
        self.next_index = 0
        self.open: list[int] = []  # canonical parts not yet ended, in order
        self.text_index: int | None = None
        self.thinking_index: int | None = None
        self.tools: dict[int, int] = {}  # OpenAI tool_call index -> canonical part index

    def _new_part(self, out: list[StreamEvent]) -> int:
        out += self._end_open()
        i, self.next_index = self.next_index, self.next_index + 1
        self.open.append(i)
        return i

    def _end_open(self) -> list[StreamEvent]:
        ended: list[StreamEvent] = [ContentEnd(index=i) for i in self.open]
        self.open, self.text_index, self.thinking_index = [], None, None
        return ended

    def feed(self, ev: SSEEvent) -> list[StreamEvent]:
        data = ev.data.strip()
        if not data:
            return []
        if data == "[DONE]":
            self.done = True
            return []
        try:
            chunk = loads(data)
        except ValueError:
            self.done = True
            return [*self._end_open(), ErrorEvent(code="upstream_error", message="upstream: an event is not JSON")]
        if not isinstance(chunk, dict):
            return []
        if chunk.get("error"):
            err = chunk["error"]
            msg = err.get("message") if isinstance(err, dict) else str(err)
            self.done = True
            return [*self._end_open(), ErrorEvent(code="upstream_error", message=f"upstream: {msg}")]
        try:
            return self._chunk(chunk)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a chunk of a shape no server should send
            self.done = True
            return [
                *self._end_open(),
                ErrorEvent(code="upstream_error", message=f"upstream: malformed chunk ({type(exc).__name__})"),
            ]

    def _chunk(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if not self.started:
            self.started = True
            created = chunk.get("created")
            out.append(StreamStart(id=str(chunk.get("id") or ""), model=str(chunk.get("model") or ""),
                                   created=created if isinstance(created, int) and created > 0 else 0))  # fmt: skip
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                if self.thinking_index is None:
                    self.thinking_index = self._new_part(out)
                out.append(ThinkingDelta(index=self.thinking_index, text=reasoning))
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self.text_index is None:
                    self.text_index = self._new_part(out)
                out.append(TextDelta(index=self.text_index, text=text))
            for tc in delta.get("tool_calls") or []:
                self._tool_delta(tc, out)
            if choice.get("finish_reason"):
                out += self._end_open()
                self.finished = True
                reason = choice["finish_reason"]
                out.append(Finish(reason=finish_in(reason, has_tool_calls=bool(self.tools)), stop_detail=reason))
        if chunk.get("usage"):
            out.append(UsageEvent(usage=usage_from(chunk["usage"])))
        return out

    def _tool_delta(self, tc: Any, out: list[StreamEvent]) -> None:
        if not isinstance(tc, dict):
            return
        oi = tc.get("index", len(self.tools))
        fn = tc.get("function") or {}
        if oi not in self.tools:
            self.tools[oi] = self._new_part(out)
            out.append(ToolCallStart(index=self.tools[oi], id=str(tc.get("id") or f"call_{oi}"),
                                     name=str(fn.get("name") or "")))  # fmt: skip
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            out.append(ToolArgsDelta(index=self.tools[oi], delta=args))

    def close(self) -> list[StreamEvent]:
        out = self._end_open()
        if not self.finished and not self.done:
            self.done = True  # a second close() says nothing more
            out.append(ErrorEvent(code="upstream_error", message="upstream stream ended early"))
        return out


class StreamEncoder:
    """Canonical events -> the client's ``data: {chunk}`` SSE bytes, exactly as OpenAI sends them."""

    def __init__(self, pisces: dict[str, Any], include_usage: bool = False) -> None:
        self.pisces = pisces
        self.include_usage = include_usage
        self.id, self.model, self.created = "chatcmpl-pisces", "", 0
        self.sent_first = False
        self.tool_k: dict[int, int] = {}
        self.usage: Usage | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            body["usage"] = None
        if not self.sent_first:
            self.sent_first = True
            body["pisces"] = self.pisces
        return _data(body)

    def encode(self, ev: StreamEvent) -> bytes:
        if isinstance(ev, StreamStart):
            self.id, self.model, self.created = completion_id(ev.id or "pisces"), ev.model, ev.created
            if ev.usage is not None:
                self.usage = merge_usage(self.usage, ev.usage)
            return self._chunk({"role": "assistant", "content": ""})
        if isinstance(ev, TextDelta):
            return self._chunk({"content": ev.text})
        if isinstance(ev, ThinkingDelta):
            return self._chunk({"reasoning_content": ev.text}) if ev.text else b""
        if isinstance(ev, ToolCallStart):
            k = self.tool_k[ev.index] = len(self.tool_k)
            call = {"index": k, "id": ev.id, "type": "function", "function": {"name": ev.name, "arguments": ""}}
            return self._chunk({"tool_calls": [call]})
        if isinstance(ev, ToolArgsDelta):
            k = self.tool_k.get(ev.index, 0)
            return self._chunk({"tool_calls": [{"index": k, "function": {"arguments": ev.delta}}]})
        if isinstance(ev, UsageEvent):
            self.usage = merge_usage(self.usage, ev.usage)
            return b""
        if isinstance(ev, Finish):
            return self._chunk({}, FINISH_OUT[ev.reason])
        if isinstance(ev, ErrorEvent):
            self.sent_first = True
            err = {"message": ev.message, "type": error_type(ev.status), "param": None, "code": ev.code}
            return _data({"error": err, "pisces": self.pisces})
        return b""  # ContentEnd: OpenAI has no such chunk

    def heartbeat(self) -> bytes:
        """An SSE comment, which the door sends while the upstream is silent: the openai SDKs (Python
        and Node) skip lines that start with ':'. (No ``id:`` line is ever sent, which would make the
        Python SDK turn the blank line after a comment into an empty event.)"""
        return comment("keep-alive")

    def close(self) -> bytes:
        tail = b""
        if self.include_usage and self.usage is not None:
            tail = _data({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                          "model": self.model, "system_fingerprint": None, "choices": [],
                          "usage": usage_to(self.usage), "pisces": self.pisces})  # fmt: skip
        return tail + b"data: [DONE]\n\n"


def _data(body: dict[str, Any]) -> bytes:
    return b"data: " + dumps(body) + b"\n\n"
