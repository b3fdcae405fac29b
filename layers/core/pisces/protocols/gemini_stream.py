"""Gemini generateContent streams, decoded from an upstream and encoded for a client; and the mappings
that responses and streams share.

Wire shape (https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent): every
chunk is a whole ``GenerateContentResponse`` whose ``candidates[0].content.parts`` hold only what is
new: text deltas, thought deltas (``"thought": true``), whole ``functionCall`` parts (Gemini never
splits arguments). ``usageMetadata`` is cumulative; ``finishReason`` arrives on the last chunk with
content, and a chunk with only usage may follow. With ``?alt=sse`` each chunk is one ``data:`` event;
without it the body is one JSON array, streamed element by element (``[{..}\\n,\\r\\n{..}]``). An
error mid-stream is a chunk ``{"error": {code, message, status}}``, which the google-genai SDK raises
as ``errors.APIError``.

Thought signatures: a ``thoughtSignature`` on a thought part stays with that thinking part; on a
``functionCall`` it is :attr:`ToolCallPart.signature`; on any other part (Gemini 3 signs text too) it
becomes a thinking part of its own with no text, placed where the signature came, and is sent back
as ``{"text": "", "thoughtSignature": ...}``, which Gemini accepts in history.
"""

from __future__ import annotations

import json
import time
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
)
from pisces.jsonwire import dumps, loads
from pisces.protocols.common import is_generated_id, new_call_id, token_count
from pisces.protocols.sse import SSEEvent

# finishReason -> canonical; stop_detail keeps Gemini's own word for the blocking reasons
FINISH_IN: dict[str, FinishReason] = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter",
                                      "RECITATION": "content_filter", "BLOCKLIST": "content_filter",
                                      "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
                                      "IMAGE_SAFETY": "content_filter", "IMAGE_PROHIBITED_CONTENT": "content_filter",
                                      "LANGUAGE": "stop", "MALFORMED_FUNCTION_CALL": "error",
                                      "UNEXPECTED_TOOL_CALL": "error", "OTHER": "stop"}  # fmt: skip
FINISH_OUT = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY",
              "error": "OTHER"}  # fmt: skip

# HTTP status -> google.rpc status (https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes).
# 402 (balance spent) is RESOURCE_EXHAUSTED, as Gemini says for a spent quota.
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "RESOURCE_EXHAUSTED", 403: "PERMISSION_DENIED",
          404: "NOT_FOUND", 405: "UNIMPLEMENTED", 409: "ABORTED", 413: "INVALID_ARGUMENT",
          422: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
          501: "UNIMPLEMENTED", 502: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
          529: "UNAVAILABLE"}  # fmt: skip
# an upstream's status word (in an error chunk mid-stream) -> the Pisces code and status passed on
ERROR_IN = {"INVALID_ARGUMENT": ("invalid_request", 400), "FAILED_PRECONDITION": ("invalid_request", 400),
            "NOT_FOUND": ("model_not_found", 404), "RESOURCE_EXHAUSTED": ("rate_limit_exceeded", 429),
            "DEADLINE_EXCEEDED": ("upstream_timeout", 504), "UNAVAILABLE": ("upstream_error", 503)}  # fmt: skip


def status_word(status: int) -> str:
    return STATUS.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")


def usage_from(meta: Any) -> Usage:
    """usageMetadata -> canonical. Gemini's candidatesTokenCount leaves out thoughts, and tool-use
    prompt tokens (from built-in tools) are input too."""
    thoughts = token_count(meta, "thoughtsTokenCount")
    return Usage(
        input_tokens=token_count(meta, "promptTokenCount") + token_count(meta, "toolUsePromptTokenCount"),
        output_tokens=token_count(meta, "candidatesTokenCount") + thoughts,
        cached_tokens=token_count(meta, "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def usage_to(u: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "promptTokenCount": u.input_tokens,
        "candidatesTokenCount": max(u.output_tokens - u.reasoning_tokens, 0),
        "totalTokenCount": u.input_tokens + u.output_tokens,
    }
    if u.cached_tokens:
        out["cachedContentTokenCount"] = u.cached_tokens
    if u.reasoning_tokens:
        out["thoughtsTokenCount"] = u.reasoning_tokens
    return out


def finish_in(reason: Any, has_tool_calls: bool) -> tuple[FinishReason, str | None]:
    """finishReason -> canonical reason and stop_detail. Gemini ends a turn of calls with STOP."""
    if not isinstance(reason, str):
        return ("tool_calls" if has_tool_calls else "stop"), None
    canonical = FINISH_IN.get(reason, "stop")
    if canonical == "stop" and has_tool_calls:
        canonical = "tool_calls"
    return canonical, reason


def finish_out(reason: FinishReason, detail: str | None) -> str:
    if detail in FINISH_IN and FINISH_IN[detail] == reason:
        return detail  # Gemini's own word came through (SAFETY, RECITATION, ...)
    return FINISH_OUT[reason]


def error_body(code: int, message: str, pisces: dict[str, Any] | None, reason: str | None = None,
               retry_after: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Gemini's error shape; ``error`` is the first key, which the google-genai SDK looks for in streams."""
    err: dict[str, Any] = {"code": code, "message": message, "status": status_word(code)}
    details: list[dict[str, Any]] = []
    if reason:
        details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason.upper(),
                        "domain": "pisces.gateway"})  # fmt: skip
    if retry_after is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after}s"})
    if details:
        err["details"] = details
    body: dict[str, Any] = {"error": err}
    if pisces is not None:
        body["pisces"] = pisces
    return body


def error_event(err: Any) -> ErrorEvent:
    """An upstream's ``{"error": {...}}`` (an error chunk, or an error body) -> an ErrorEvent."""
    e = err if isinstance(err, dict) else {}
    message = f"upstream: {e.get('message') or 'the stream failed'}"
    code, status = ERROR_IN.get(str(e.get("status") or ""), ("upstream_error", 502))
    return ErrorEvent(code=code, message=message, status=status)


def candidate_of(body: Any) -> dict[str, Any]:
    cands = body.get("candidates") if isinstance(body, dict) else None
    return cands[0] if isinstance(cands, list) and cands and isinstance(cands[0], dict) else {}


def parts_of(cand: dict[str, Any]) -> list[dict[str, Any]]:
    content = cand.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def call_args(call: dict[str, Any]) -> str:
    args = call.get("args")
    return json.dumps(args if isinstance(args, dict) else {}, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# decoding an upstream's stream


class StreamDecoder:
    """Gemini chunks (SSE ``data:`` events) -> canonical events. Consecutive deltas of one kind (text,
    thought) make one canonical part; every functionCall is a part of its own. Finish is emitted when
    the stream ends (a usage-only chunk may follow the one with ``finishReason``); a stream that ends
    without a finishReason gets none, so the gateway sees it was cut."""

    def __init__(self) -> None:
        self.started = False
        self.index = -1
        self.open: str | None = None  # "text" | "thought" | None
        self.usage: Usage | None = None
        self.finish: str | None = None
        self.calls = False
        self.done = False

    def _next(self, kind: str | None) -> list[StreamEvent]:
        out: list[StreamEvent] = [ContentEnd(index=self.index)] if self.open else []
        self.index += 1
        self.open = kind
        return out

    def feed(self, sse: SSEEvent) -> list[StreamEvent]:
        if self.done or not sse.data.strip():
            return []
        try:
            body = loads(sse.data)
        except ValueError:
            return []  # not a chunk (a comment line): skipped, as the SDK does
        if isinstance(body, list):  # one element of an array stream served as one event
            return [ev for item in body for ev in self._chunk(item)]
        return self._chunk(body)

    def _chunk(self, body: Any) -> list[StreamEvent]:
        if not isinstance(body, dict):
            return []
        if "error" in body:
            self.done = True
            return [error_event(body["error"])]
        out: list[StreamEvent] = []
        if not self.started:
            self.started = True
            out.append(StreamStart(id=str(body.get("responseId") or ""), model=str(body.get("modelVersion") or ""),
                                   created=int(time.time())))  # fmt: skip
        cand = candidate_of(body)
        for p in parts_of(cand):
            out += self._part(p)
        if "usageMetadata" in body:
            self.usage = usage_from(body["usageMetadata"])
        if isinstance(cand.get("finishReason"), str):
            self.finish = cand["finishReason"]
        feedback = body.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason") and not cand:
            self.finish = "SAFETY"
        return out

    def _part(self, p: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        sig = p.get("thoughtSignature") if isinstance(p.get("thoughtSignature"), str) else None
        if isinstance(p.get("functionCall"), dict):
            call = p["functionCall"]
            out += self._next(None)
            cid = str(call.get("id") or new_call_id())
            out.append(ToolCallStart(index=self.index, id=cid, name=str(call.get("name") or ""), signature=sig))
            out.append(ToolArgsDelta(index=self.index, delta=call_args(call)))
            out.append(ContentEnd(index=self.index))
            self.calls = True
            return out
        text = p.get("text") if isinstance(p.get("text"), str) else ""
        if p.get("thought") is True:
            if self.open != "thought":
                out += self._next("thought")
            out.append(ThinkingDelta(index=self.index, text=text, signature=sig))
            return out
        if sig:  # a signature on a text part: a thinking part of its own, with no text
            out += self._next(None)
            out += [ThinkingDelta(index=self.index, signature=sig), ContentEnd(index=self.index)]
        if text:
            if self.open != "text":
                out += self._next("text")
            out.append(TextDelta(index=self.index, text=text))
        return out

    def close(self) -> list[StreamEvent]:
        if self.done or not self.started:
            return []
        self.done = True
        out: list[StreamEvent] = [ContentEnd(index=self.index)] if self.open else []
        if self.usage is not None:
            out.append(UsageEvent(usage=self.usage))
        if self.finish is not None:
            reason, detail = finish_in(self.finish, self.calls)
            out.append(Finish(reason=reason, stop_detail=detail))
        return out


# ---------------------------------------------------------------------------------------------
# encoding a stream for a client


class StreamEncoder:
    """Canonical events -> Gemini chunks, one per delta, as ``data:`` events (``sse=True``, for
    ``?alt=sse``) or as the elements of one JSON array. The ``pisces`` object rides on the first chunk
    and on the last (with the cost); usage and finishReason on the last."""

    def __init__(self, pisces: dict[str, Any], include_usage: bool = False, sse: bool = True) -> None:
        self.pisces = pisces
        self.sse = sse
        self.id = ""
        self.model = ""
        self.sent = 0
        self.usage: Usage | None = None
        self.finish: Finish | None = None
        self.thought_text: set[int] = set()  # thinking parts that have text: their parts say thought: true
        self.calls: dict[int, dict[str, Any]] = {}
        self.closed = False  # the last chunk (or an error) is out: nothing more but the array's end
        self.ended = False

    def _frame(self, body: dict[str, Any]) -> bytes:
        data = dumps(body)
        self.sent += 1
        if self.sse:
            return b"data: " + data + b"\r\n\r\n"
        return (b"[" if self.sent == 1 else b",\r\n") + data

    def _chunk(self, parts: list[dict[str, Any]], last: bool = False) -> bytes:
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        body: dict[str, Any] = {"candidates": [cand]}
        if last:
            if self.finish is not None:  # a stream that ended without one was cut: it does not say STOP
                cand["finishReason"] = finish_out(self.finish.reason, self.finish.stop_detail)
            if self.usage is not None:
                body["usageMetadata"] = usage_to(self.usage)
        body["modelVersion"] = self.model
        body["responseId"] = self.id
        if last or self.sent == 0:
            body["pisces"] = self.pisces
        return self._frame(body)

    def encode(self, ev: StreamEvent) -> bytes:
        if self.closed:
            return b""
        if isinstance(ev, StreamStart):
            self.id, self.model = ev.id, ev.model
            if ev.usage is not None:
                self.usage = ev.usage
        elif isinstance(ev, TextDelta) and ev.text:
            return self._chunk([{"text": ev.text}])
        elif isinstance(ev, ThinkingDelta) and (ev.text or ev.signature):
            part: dict[str, Any] = {"text": ev.text}
            if ev.text:
                self.thought_text.add(ev.index)
            if ev.index in self.thought_text:
                part["thought"] = True
            if ev.signature:
                part["thoughtSignature"] = ev.signature
            return self._chunk([part])
        elif isinstance(ev, ToolCallStart):
            call: dict[str, Any] = {"name": ev.name, "args": ""}
            if not is_generated_id(ev.id):
                call["id"] = ev.id
            self.calls[ev.index] = {"call": call, "signature": ev.signature}
        elif isinstance(ev, ToolArgsDelta) and ev.index in self.calls:
            self.calls[ev.index]["call"]["args"] += ev.delta
        elif isinstance(ev, ContentEnd) and ev.index in self.calls:
            return self._call(self.calls.pop(ev.index))
        elif isinstance(ev, UsageEvent):
            self.usage = ev.usage
        elif isinstance(ev, Finish):
            self.finish = ev
        elif isinstance(ev, ErrorEvent):
            self.closed = True
            return self._frame(error_body(ev.status, ev.message, self.pisces, ev.code))
        return b""

    def _call(self, pending: dict[str, Any]) -> bytes:
        """A function call goes out whole, once its arguments are complete (Gemini never splits them)."""
        call = pending["call"]
        try:
            args = json.loads(call["args"] or "{}")
        except ValueError:
            args = {}
        call["args"] = args if isinstance(args, dict) else {}
        part: dict[str, Any] = {"functionCall": call}
        if pending["signature"]:
            part["thoughtSignature"] = pending["signature"]
        return self._chunk([part])

    def heartbeat(self) -> bytes:
        """What the door sends while the upstream is silent. Gemini has no keep-alive event, and an SSE
        comment breaks google-genai (Python reads any non-``data:`` line as JSON) and @google/genai
        before 1.32 (an anchored ``data:`` regex): but both skip blank lines, so SSE gets an empty
        event (``\r\n\r\n``); a JSON array gets whitespace between its elements, which JSON allows."""
        return b"\r\n\r\n" if self.sse else b"\n"

    def close(self) -> bytes:
        """The last chunk (finishReason, usage, pisces with cost), then the array's end; once."""
        if self.ended:
            return b""
        self.ended = True
        out = b""
        if not self.closed:  # after an error chunk, nothing but the array's end
            for index in sorted(self.calls):  # a call whose ContentEnd never came
                out += self._call(self.calls.pop(index))
            self.closed = True
            out += self._chunk([{"text": ""}], last=True)
        if not self.sse:
            out += b"[]" if self.sent == 0 else b"]"
        return out
