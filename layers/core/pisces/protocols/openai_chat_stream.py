"""OpenAI Chat Completions streams: ``chat.completion.chunk`` SSE events <-> canonical stream events.

Also home of the wire vocabulary the whole-response codec (:mod:`pisces.protocols.openai_chat`,
which re-exports everything public here) shares with the streams: usage, finish reasons, error
types. It lives here so that module can import it without an import cycle.
"""

from __future__ import annotations

import json
import time
import uuid
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
from pisces.protocols.sse import SSEEvent, format_event

# ---------------------------------------------------------------------------------------------
# Shared wire vocabulary

_FINISH_FROM_WIRE: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",  # the deprecated functions API
    "content_filter": "content_filter",
}


def finish_from_wire(raw: Any, has_tool_calls: bool) -> tuple[FinishReason, str | None]:
    """(canonical finish reason, the upstream's own word when it is not a standard one)."""
    reason: FinishReason = _FINISH_FROM_WIRE.get(raw, "stop") if isinstance(raw, str) else "stop"
    # Some OpenAI-compatible servers (Ollama, older vLLM) say "stop" after tool calls; canonically
    # it is tool_calls, so every client door tells its client to run them.
    if reason == "stop" and has_tool_calls:
        reason = "tool_calls"
    detail = raw if isinstance(raw, str) and raw not in _FINISH_FROM_WIRE else None
    return reason, detail


def finish_to_wire(reason: FinishReason) -> str:
    return "stop" if reason == "error" else reason  # OpenAI has no "error" finish reason


def _count(d: Any, key: str) -> int:
    v = d.get(key) if isinstance(d, dict) else None
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 else 0


def usage_from_wire(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    # DeepSeek reports cache hits as prompt_cache_hit_tokens instead of prompt_tokens_details
    cached = _count(u.get("prompt_tokens_details"), "cached_tokens") or _count(u, "prompt_cache_hit_tokens")
    return Usage(
        input_tokens=_count(u, "prompt_tokens"),
        output_tokens=_count(u, "completion_tokens"),
        cached_tokens=cached,
        reasoning_tokens=_count(u.get("completion_tokens_details"), "reasoning_tokens"),
    )


def usage_to_wire(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


# OpenAI's own error ``type`` per HTTP status, as api.openai.com answers (and the openai SDK shows):
#   400, 404, 405, 409, 413, 422  invalid_request_error (an unknown model: 404, code model_not_found)
#   401  invalid_request_error: OpenAI answers a bad key with this type and code invalid_api_key
#   402  insufficient_quota: OpenAI's type for a spent balance (it sends it with HTTP 429)
#   403  request_forbidden (e.g. code unsupported_country_region_territory)
#   429  requests: OpenAI's type for request-rate limits (code rate_limit_exceeded)
#   5xx  server_error
_ERROR_TYPES = {402: "insufficient_quota", 403: "request_forbidden", 429: "requests"}


def error_type(status: int) -> str:
    return "server_error" if status >= 500 else _ERROR_TYPES.get(status, "invalid_request_error")


def error_body(message: str, status: int, code: str, param: str | None, pisces: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}, "pisces": pisces}


def error_message_of(obj: Any) -> str | None:
    """The message in an OpenAI-shaped error body (also ``{"detail": ...}`` and Gemini-style lists)."""
    if isinstance(obj, list) and obj:
        obj = obj[0]
    if not isinstance(obj, dict):
        return None
    err = obj.get("error", obj)
    if isinstance(err, str) and err:
        return err
    if isinstance(err, dict):
        for key in ("message", "detail", "msg"):
            v = err.get(key)
            if isinstance(v, str) and v:
                return v
    return None


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _sse(obj: dict[str, Any]) -> bytes:
    return format_event(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


# ---------------------------------------------------------------------------------------------
# Upstream stream -> canonical events


class StreamDecoder:
    """Upstream ``chat.completion.chunk`` SSE events -> canonical stream events.

    Every content part gets the next canonical index as it first appears; a new part ends the open
    ones. Usage and Finish are emitted in the order they arrive (OpenAI sends usage last).
    """

    def __init__(self) -> None:
        self._started = False
        self._next = 0  # the next canonical part index
        self._open: list[int] = []  # parts started and not yet ended
        self._text: int | None = None  # the open text part
        self._thinking: int | None = None  # the open thinking part
        self._tools: dict[int, int] = {}  # OpenAI tool_call index -> canonical part index
        self._finished = False
        self._done = False  # [DONE] or an error ended the stream
        self._closed = False

    def feed(self, ev: SSEEvent) -> list[StreamEvent]:
        if self._done:
            return []
        data = ev.data.strip()
        if not data:
            return []
        if data == "[DONE]":
            self._done = True
            return self._end_all()
        try:
            chunk = json.loads(data)
        except ValueError:
            return self._fail(f"malformed stream event: {data[:200]}")
        if not isinstance(chunk, dict):
            return self._fail(f"malformed stream event: {data[:200]}")
        if chunk.get("error") is not None or ev.event == "error":
            return self._fail(error_message_of(chunk) or "error in stream")
        try:
            return self._chunk(chunk)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a shape no server should send
            return self._fail(f"malformed chat.completion.chunk ({type(exc).__name__})")

    def close(self) -> list[StreamEvent]:
        if self._closed:
            return []
        self._closed = True
        out = self._end_all()
        if not self._finished and not self._done:  # no finish_reason and no [DONE]: cut off, never a fake Finish
            out.append(ErrorEvent(code="upstream_error", message="upstream stream ended early"))
        return out

    def _fail(self, message: str) -> list[StreamEvent]:
        self._done, self._open = True, []
        return [ErrorEvent(code="upstream_error", message=f"upstream: {message}")]

    def _end_all(self) -> list[StreamEvent]:
        out: list[StreamEvent] = [ContentEnd(index=i) for i in self._open]
        self._open, self._text, self._thinking = [], None, None
        return out

    def _begin(self, out: list[StreamEvent]) -> int:
        out += self._end_all()
        index, self._next = self._next, self._next + 1
        self._open.append(index)
        return index

    def _chunk(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            created = chunk.get("created")
            out.append(
                StreamStart(
                    id=str(chunk.get("id") or ""),
                    model=str(chunk.get("model") or ""),
                    created=created if isinstance(created, int) and not isinstance(created, bool) else 0,
                )
            )
        finish: Any = None
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # n > 1 is refused at the door: only choice 0 exists
            delta = choice.get("delta")
            if isinstance(delta, dict):
                out += self._delta(delta)
            finish = choice.get("finish_reason") or finish
        usage = usage_from_wire(chunk.get("usage"))
        if usage is not None:
            out.append(UsageEvent(usage=usage))
        if finish is not None and not self._finished:
            self._finished = True
            out += self._end_all()
            reason, detail = finish_from_wire(finish, bool(self._tools))
            out.append(Finish(reason=reason, stop_detail=detail))
        return out

    def _delta(self, delta: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        thinking = delta.get("reasoning_content")  # DeepSeek, vLLM
        if not isinstance(thinking, str):
            thinking = delta.get("reasoning")  # vLLM >= 0.10, OpenRouter
        if isinstance(thinking, str) and thinking:
            if self._thinking is None:
                self._thinking = self._begin(out)
            out.append(ThinkingDelta(index=self._thinking, text=thinking))
        for key in ("content", "refusal"):  # a refusal is what the model said: canonical text
            text = delta.get(key)
            if isinstance(text, str) and text:
                if self._text is None:
                    self._text = self._begin(out)
                out.append(TextDelta(index=self._text, text=text))
        calls = delta.get("tool_calls")
        for pos, call in enumerate(calls if isinstance(calls, list) else []):
            if not isinstance(call, dict):
                continue
            k = call.get("index", pos)
            k = k if isinstance(k, int) else pos
            fn = call.get("function") if isinstance(call.get("function"), dict) else {}
            if k not in self._tools:
                self._tools[k] = index = self._begin(out)
                out.append(ToolCallStart(index=index, id=str(call.get("id") or new_call_id()), name=str(fn.get("name") or "")))
            args = fn.get("arguments")
            if isinstance(args, dict):  # a few servers send the arguments as an object
                args = json.dumps(args, ensure_ascii=False)
            if isinstance(args, str) and args:
                out.append(ToolArgsDelta(index=self._tools[k], delta=args))
        return out


# ---------------------------------------------------------------------------------------------
# Canonical events -> client stream


class StreamEncoder:
    """Canonical stream events -> ``chat.completion.chunk`` SSE bytes, as api.openai.com writes them.

    The first chunk carries the ``pisces`` object. With ``include_usage`` every chunk has
    ``"usage": null`` and a last chunk with ``"choices": []`` carries the usage, after the finish
    chunk whatever order the upstream reported them in.
    """

    def __init__(self, pisces: dict[str, Any], include_usage: bool = False) -> None:
        self.pisces = pisces
        self.include_usage = include_usage
        self._id, self._model, self._created = "", "", 0
        self._started = False
        self._tools: dict[int, int] = {}  # canonical part index -> OpenAI tool_calls index
        self._usage: Usage | None = None
        self._failed = False
        self._closed = False

    def encode(self, ev: StreamEvent) -> bytes:
        if self._closed or self._failed:
            return b""
        if isinstance(ev, ErrorEvent):
            # what OpenAI-compatible servers send mid-stream; the openai SDK raises APIError on it
            self._failed = True
            return _sse(error_body(ev.message, ev.status, ev.code, None, self.pisces))
        if isinstance(ev, StreamStart):
            if self._started:
                return b""
            self._id, self._model, self._created = ev.id, ev.model, ev.created
            if ev.usage is not None:
                self._usage = ev.usage
            return self._first()
        head = b"" if self._started else self._first()  # a stream without StreamStart still opens properly
        if isinstance(ev, TextDelta) and ev.text:
            return head + self._chunk({"content": ev.text})
        if isinstance(ev, ThinkingDelta) and ev.text:  # DeepSeek's field; signatures have no place here
            return head + self._chunk({"reasoning_content": ev.text})
        if isinstance(ev, ToolCallStart):
            self._tools[ev.index] = k = len(self._tools)
            call = {"index": k, "id": ev.id, "type": "function", "function": {"name": ev.name, "arguments": ""}}
            return head + self._chunk({"tool_calls": [call]})
        if isinstance(ev, ToolArgsDelta) and ev.delta and ev.index in self._tools:
            call = {"index": self._tools[ev.index], "function": {"arguments": ev.delta}}
            return head + self._chunk({"tool_calls": [call]})
        if isinstance(ev, UsageEvent):
            self._usage = merge_usage(self._usage, ev.usage)
        elif isinstance(ev, Finish):
            return head + self._chunk({}, finish_to_wire(ev.reason))
        return head

    def close(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        out = b""
        if self.include_usage and self._usage is not None and self._started and not self._failed:
            out = _sse({**self._base(), "choices": [], "usage": usage_to_wire(self._usage)})
        return out + b"data: [DONE]\n\n"

    def _base(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created or int(time.time()),
            "model": self._model,
            "system_fingerprint": None,
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None, first: bool = False) -> bytes:
        body = {**self._base(), "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
        if self.include_usage:
            body["usage"] = None
        if first:
            body["pisces"] = self.pisces
        return _sse(body)

    def _first(self) -> bytes:
        self._started = True
        if not self._id:
            self._id = f"chatcmpl-{uuid.uuid4().hex}"
        if not self._created:
            self._created = int(time.time())
        return self._chunk({"role": "assistant", "content": ""}, first=True)
