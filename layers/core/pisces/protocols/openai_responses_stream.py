"""OpenAI Responses streams: canonical events to a client's SSE, and an upstream's SSE to canonical.

Wire shape (https://platform.openai.com/docs/api-reference/responses-streaming; openai-python's
``types/responses/response_stream_event.py``): ``event: <type>`` / ``data: {"type": <type>,
"sequence_number": n, ...}``. A stream is ``response.created``, ``response.in_progress``; for each
output item ``response.output_item.added``, then for a message ``response.content_part.added``,
``response.output_text.delta``... ``response.output_text.done``, ``response.content_part.done``; for a
function call ``response.function_call_arguments.delta``... ``.done``; for reasoning
``response.reasoning_summary_part.added``, ``response.reasoning_summary_text.delta``... ``.done``,
``response.reasoning_summary_part.done``; then ``response.output_item.done``. It ends with
``response.completed`` (or ``response.incomplete``) carrying the whole response and its usage; a
failure is an ``error`` event and ``response.failed``. There is no ``[DONE]``.
"""

from __future__ import annotations

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
    ThinkingPart,
    ToolArgsDelta,
    ToolCallPart,
    ToolCallStart,
    Usage,
    UsageEvent,
    merge_usage,
)
from pisces.jsonwire import dumps, loads
from pisces.protocols.openai_responses_output import (
    call_item,
    echo_of,
    encrypted_of,
    envelope,
    finish_of,
    message_item,
    new_id,
    output_text,
    reasoning_item,
    status_of,
    usage_from,
)
from pisces.protocols.sse import SSEEvent, comment


class StreamEncoder:
    """Canonical events -> the client's Responses SSE. ``final`` is the response object sent last."""

    def __init__(
        self,
        pisces: dict[str, Any],
        include_usage: bool = True,
        *,
        rid: str | None = None,
        echo: dict[str, Any] | None = None,
        openai_origin: bool = False,
        namespaces: list[str] | None = None,
    ) -> None:
        self.pisces = pisces
        self.namespaces = namespaces or []
        self.rid = rid or new_id("resp")
        self.echo = echo or echo_of(None)
        self.openai_origin = openai_origin
        self.model, self.created = "", int(time.time())
        self.seq = 0
        self.items: list[dict[str, Any]] = []  # output items, in output_index order
        self.open: dict[int, tuple[int, dict[str, Any]]] = {}  # canonical index -> (output_index, item)
        self.thinking: dict[int, ThinkingPart] = {}
        self.usage: Usage | None = None
        self.reason: FinishReason | None = None
        self.final: dict[str, Any] | None = None
        self.ended = False

    def _ev(self, kind: str, **fields: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return f"event: {kind}\ndata: ".encode() + _json(body) + b"\n\n"

    def _response(self, status: str, **kw: Any) -> dict[str, Any]:
        return envelope(self.rid, self.echo, self.model, self.created, status, [dict(i) for i in self.items],
                        self.usage if status != "in_progress" else None, self.pisces, **kw)  # fmt: skip

    def _add(self, index: int, item: dict[str, Any]) -> bytes:
        out_index = len(self.items)
        self.items.append(item)
        self.open[index] = (out_index, item)
        return self._ev("response.output_item.added", output_index=out_index, item=dict(item, content=[])
                        if item["type"] == "message" else dict(item))  # fmt: skip

    def encode(self, ev: StreamEvent) -> bytes:
        if isinstance(ev, StreamStart):
            self.model = ev.model
            self.created = ev.created or self.created
            if ev.usage is not None:
                self.usage = merge_usage(self.usage, ev.usage)
            first = self._response("in_progress")
            return self._ev("response.created", response=first) + self._ev("response.in_progress", response=first)
        if isinstance(ev, TextDelta):
            out = b""
            if ev.index not in self.open:
                item = message_item(new_id("msg"), [""], status="in_progress")
                out += self._add(ev.index, item)
                oi = self.open[ev.index][0]
                out += self._ev("response.content_part.added", item_id=item["id"], output_index=oi,
                                content_index=0, part=output_text(""))  # fmt: skip
            oi, item = self.open[ev.index]
            item["content"][0]["text"] += ev.text
            return out + self._ev("response.output_text.delta", item_id=item["id"], output_index=oi, content_index=0,
                                  delta=ev.text, logprobs=[])  # fmt: skip
        if isinstance(ev, ThinkingDelta):
            return self._thinking(ev)
        if isinstance(ev, ToolCallStart):
            call = ToolCallPart(id=ev.id, name=ev.name, arguments="")
            return self._add(ev.index, call_item(new_id("fc"), call, "in_progress", self.namespaces))
        if isinstance(ev, ToolArgsDelta):
            if ev.index not in self.open:
                return b""
            oi, item = self.open[ev.index]
            item["arguments"] += ev.delta
            return self._ev("response.function_call_arguments.delta", item_id=item["id"], output_index=oi,
                            delta=ev.delta)  # fmt: skip
        if isinstance(ev, ContentEnd):
            return self._done(ev.index)
        if isinstance(ev, UsageEvent):
            self.usage = merge_usage(self.usage, ev.usage)
        elif isinstance(ev, Finish):
            self.reason = ev.reason
        elif isinstance(ev, ErrorEvent):
            return self._failed(ev)
        return b""

    def _thinking(self, ev: ThinkingDelta) -> bytes:
        out = b""
        if ev.index not in self.open:
            self.thinking[ev.index] = ThinkingPart()
            out += self._add(ev.index, reasoning_item(new_id("rs"), "", None))
        part, (oi, item) = self.thinking[ev.index], self.open[ev.index]
        if ev.signature:
            part.signature = (part.signature or "") + ev.signature
        if ev.redacted_data is not None:
            part.data = ev.redacted_data
        if ev.text:
            if not part.text:
                item["summary"] = [{"type": "summary_text", "text": ""}]
                out += self._ev("response.reasoning_summary_part.added", item_id=item["id"], output_index=oi,
                                summary_index=0, part={"type": "summary_text", "text": ""})  # fmt: skip
            part.text += ev.text
            item["summary"][0]["text"] = part.text
            out += self._ev("response.reasoning_summary_text.delta", item_id=item["id"], output_index=oi,
                            summary_index=0, delta=ev.text)  # fmt: skip
        return out

    def _done(self, index: int) -> bytes:
        if index not in self.open:
            return b""
        oi, item = self.open.pop(index)
        out, iid = b"", item["id"]
        if item["type"] == "message":
            part = item["content"][0]
            out += self._ev("response.output_text.done", item_id=iid, output_index=oi, content_index=0,
                            text=part["text"], logprobs=[])  # fmt: skip
            out += self._ev("response.content_part.done", item_id=iid, output_index=oi, content_index=0, part=part)
            item["status"] = "completed"
        elif item["type"] == "function_call":
            item["arguments"] = item["arguments"] or "{}"
            out += self._ev("response.function_call_arguments.done", item_id=iid, output_index=oi,
                            arguments=item["arguments"], name=item["name"])  # fmt: skip
            item["status"] = "completed"
        else:
            part = self.thinking.pop(index, ThinkingPart())
            if part.text:
                summary = {"type": "summary_text", "text": part.text}
                out += self._ev("response.reasoning_summary_text.done", item_id=iid, output_index=oi,
                                summary_index=0, text=part.text)  # fmt: skip
                out += self._ev("response.reasoning_summary_part.done", item_id=iid, output_index=oi,
                                summary_index=0, part=summary)  # fmt: skip
            enc = encrypted_of(part, self.openai_origin)
            if enc:
                item["encrypted_content"] = enc
        return out + self._ev("response.output_item.done", output_index=oi, item=item)

    def _failed(self, ev: ErrorEvent) -> bytes:
        self.ended = True
        out = b"".join(self._done(i) for i in list(self.open))
        out += self._ev("error", code=ev.code, message=ev.message, param=None)
        # response.error.code is one of OpenAI's own codes (the SDKs check them); the error event says ours
        code = "rate_limit_exceeded" if ev.code == "rate_limit_exceeded" else "server_error"
        self.final = self._response("failed", error={"code": code, "message": ev.message})
        return out + self._ev("response.failed", response=self.final)

    def heartbeat(self) -> bytes:
        return comment("keep-alive")  # the SDKs skip comment lines

    def close(self) -> bytes:
        if self.ended:
            return b""
        self.ended = True
        out = b"".join(self._done(i) for i in list(self.open))
        status, incomplete = status_of(self.reason or "stop")
        self.final = self._response(status, incomplete=incomplete)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._ev(kind, response=self.final)


def _json(body: dict[str, Any]) -> bytes:
    return dumps(body)


class StreamDecoder:
    """An upstream's Responses SSE -> canonical events. Feed it parsed SSE events; ``close`` at the end."""

    def __init__(self) -> None:
        self.next_index = 0
        self.index: dict[Any, int] = {}  # output_index (and content_index for text) -> canonical index
        self.calls = False
        self.done = False

    def _part(self, key: Any) -> tuple[int, bool]:
        if key in self.index:
            return self.index[key], False
        self.index[key], self.next_index = self.next_index, self.next_index + 1
        return self.index[key], True

    def feed(self, sse: SSEEvent) -> list[StreamEvent]:
        if self.done or not sse.data.strip() or sse.data.strip() == "[DONE]":
            return []
        try:
            ev = loads(sse.data)
        except ValueError:
            self.done = True
            return [ErrorEvent(code="upstream_error", message="upstream: an event is not JSON")]
        if not isinstance(ev, dict):
            return []
        try:
            return self._event(str(ev.get("type") or sse.event or ""), ev)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            self.done = True
            return [ErrorEvent(code="upstream_error", message=f"upstream: malformed event ({type(exc).__name__})")]

    def _event(self, kind: str, ev: dict[str, Any]) -> list[StreamEvent]:
        oi = ev.get("output_index")
        if kind == "response.created":
            r = ev.get("response") or {}
            created = r.get("created_at")
            return [StreamStart(id=str(r.get("id") or ""), model=str(r.get("model") or ""),
                                created=int(created) if isinstance(created, int | float) else 0)]  # fmt: skip
        if kind == "response.output_item.added":
            item = ev.get("item") or {}
            if item.get("type") == "function_call":
                i, _ = self._part(oi)
                self.calls = True
                return [ToolCallStart(index=i, id=str(item.get("call_id") or item.get("id") or ""),
                                      name=str(item.get("name") or ""))]  # fmt: skip
            return []
        if kind in ("response.output_text.delta", "response.refusal.delta"):
            i, _ = self._part((oi, ev.get("content_index", 0)))
            return [TextDelta(index=i, text=str(ev.get("delta") or ""))]
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            i, _ = self._part(oi)
            return [ThinkingDelta(index=i, text=str(ev.get("delta") or ""))]
        if kind == "response.function_call_arguments.delta":
            i, _ = self._part(oi)
            return [ToolArgsDelta(index=i, delta=str(ev.get("delta") or ""))]
        if kind == "response.output_item.done":
            return self._item_done(oi, ev.get("item") or {})
        if kind in ("response.completed", "response.incomplete"):
            r = ev.get("response") or {}
            self.done = True
            return [UsageEvent(usage=usage_from(r.get("usage"))), Finish(reason=finish_of(r, self.calls),
                                                                         stop_detail=r.get("status"))]  # fmt: skip
        if kind in ("response.failed", "error"):
            self.done = True
            err = (ev.get("response") or {}).get("error") or ev
            said = err.get("message") or "the response failed"
            return [ErrorEvent(code="upstream_error", message=f"upstream: {said}")]
        return []

    def _item_done(self, oi: Any, item: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        kind = item.get("type")
        if kind == "reasoning":
            i, new = self._part(oi)
            enc = item.get("encrypted_content")
            if new or (isinstance(enc, str) and enc):
                out.append(ThinkingDelta(index=i, redacted_data=enc if isinstance(enc, str) and enc else None))
            return [*out, ContentEnd(index=i)]
        if kind == "message":
            keys = [k for k in self.index if isinstance(k, tuple) and k[0] == oi]
            return [ContentEnd(index=self.index[k]) for k in keys]
        if kind == "function_call" and oi in self.index:
            return [ContentEnd(index=self.index[oi])]
        return out

    def close(self) -> list[StreamEvent]:
        if self.done:
            return []
        self.done = True
        return [ErrorEvent(code="upstream_error", message="upstream stream ended early")]
