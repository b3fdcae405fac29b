"""Anthropic Messages streams: decoded from an upstream, encoded for a client (the mappings they share
with responses are in :mod:`.wire`).

Wire shape (https://docs.claude.com/en/docs/build-with-claude/streaming): named SSE events:
``message_start`` (a message with empty content, the input usage), ``ping``, per content block
``content_block_start`` / ``content_block_delta`` (``text_delta``, ``input_json_delta`` fragments,
``thinking_delta``, ``signature_delta``) / ``content_block_stop``, then ``message_delta`` (stop
reason and sequence, cumulative usage) and ``message_stop``. An error mid-stream is ``event: error``
(the anthropic SDK raises it). Unknown event and block types are skipped, as the documentation asks.
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
    OpaqueBlock,
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
from pisces.jsonwire import loads
from pisces.protocols.anthropic_messages.wire import (
    ERROR_IN,
    SERVER_BLOCKS,
    error_type,
    event_bytes,
    finish_in,
    finish_out,
    message_id,
    usage_from,
    usage_to,
)
from pisces.protocols.sse import SSEEvent

# ---------------------------------------------------------------------------------------------
# upstream events -> canonical


class StreamDecoder:
    """Upstream Messages events -> canonical events. Feed it parsed SSE events; ``close`` at end of stream.

    Canonical part indexes are Anthropic's block indexes. Server tool use and results, which only
    Anthropic can say, are gathered (their input's JSON fragments too) and sent whole as one
    :class:`OpaqueBlock` when they stop; every other protocol's encoder skips it.
    """

    def __init__(self) -> None:
        self.started = False
        self.finished = False
        self.done = False
        self.kinds: dict[int, str] = {}  # block index -> text | thinking | redacted | tool
        self.open: list[int] = []
        self.raw_usage: dict[str, Any] = {}
        self.opaque: dict[int, tuple[dict[str, Any], list[str]]] = {}  # server blocks: the block, its input JSON

    def _usage(self, u: Any) -> Usage:
        if isinstance(u, dict):
            # counts in message_delta are cumulative: they replace, and absent ones keep their value
            self.raw_usage.update({k: v for k, v in u.items() if v is not None})
        return usage_from(self.raw_usage)

    def _end_open(self) -> list[StreamEvent]:
        ended: list[StreamEvent] = [ContentEnd(index=i) for i in self.open]
        self.open = []
        return ended

    def _fail(self, message: str, code: str = "upstream_error", status: int = 502) -> list[StreamEvent]:
        self.done = True
        return [*self._end_open(), ErrorEvent(code=code, message=message, status=status)]

    def feed(self, ev: SSEEvent) -> list[StreamEvent]:
        if self.done or not ev.data.strip():
            return []
        try:
            body = loads(ev.data)
        except ValueError:
            return self._fail("upstream: an event is not JSON")
        if not isinstance(body, dict):
            return []
        kind = body.get("type") if isinstance(body.get("type"), str) else ev.event
        try:
            return self._event(kind, body)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a shape no server should send
            return self._fail(f"upstream: malformed {kind} event ({type(exc).__name__})")

    def _event(self, kind: Any, body: dict[str, Any]) -> list[StreamEvent]:
        if kind == "message_start":
            return self._start(body.get("message") or {})
        if kind == "content_block_start":
            return self._block_start(body["index"], body.get("content_block") or {})
        if kind == "content_block_delta":
            return self._delta(body["index"], body.get("delta") or {})
        if kind == "content_block_stop":
            ended = [i for i in self.open if i == body["index"]]
            self.open = [i for i in self.open if i not in ended]
            return [*self._opaque_end(body["index"]), *(ContentEnd(index=i) for i in ended)]
        if kind == "message_delta":
            out: list[StreamEvent] = []
            if "usage" in body:
                out.append(UsageEvent(usage=self._usage(body["usage"])))
            delta = body.get("delta") or {}
            if delta.get("stop_reason") and not self.finished:
                self.finished = True
                reason, detail = finish_in(delta["stop_reason"], delta.get("stop_sequence"))
                out = [*self._end_open(), *out, Finish(reason=reason, stop_detail=detail)]
            return out
        if kind == "message_stop":
            self.done = True
            out = self._end_open()
            if not self.finished:
                self.finished = True
                out.append(Finish(reason="stop"))
            return out
        if kind == "error":
            err = body.get("error") if isinstance(body.get("error"), dict) else {}
            code, status = ERROR_IN.get(err.get("type"), ("upstream_error", 502))
            return self._fail(f"upstream: {err.get('message') or err.get('type') or 'error'}", code, status)
        return []  # ping, and event types added after this was written

    def _start(self, msg: dict[str, Any]) -> list[StreamEvent]:
        if self.started:
            return []
        self.started = True
        usage = self._usage(msg.get("usage")) if isinstance(msg.get("usage"), dict) else None
        return [StreamStart(id=str(msg.get("id") or ""), model=str(msg.get("model") or ""),
                            created=int(time.time()), usage=usage)]  # fmt: skip

    def _block_start(self, i: int, block: dict[str, Any]) -> list[StreamEvent]:
        if not isinstance(i, int) or isinstance(i, bool):
            raise TypeError("index")
        kind = block.get("type")
        out: list[StreamEvent] = []
        if kind == "text":
            self.kinds[i] = "text"
            if block.get("text"):
                out.append(TextDelta(index=i, text=str(block["text"])))
        elif kind == "thinking":
            self.kinds[i] = "thinking"
            if block.get("thinking") or block.get("signature"):
                out.append(ThinkingDelta(index=i, text=str(block.get("thinking") or ""),
                                         signature=block.get("signature") or None))  # fmt: skip
        elif kind == "redacted_thinking":
            self.kinds[i] = "redacted"
            out.append(ThinkingDelta(index=i, redacted_data=str(block.get("data") or "")))
        elif kind == "tool_use":
            self.kinds[i] = "tool"
            tool_id, name = str(block.get("id") or f"toolu_{i}"), str(block.get("name") or "")
            out.append(ToolCallStart(index=i, id=tool_id, name=name))
            if isinstance(block.get("input"), dict) and block["input"]:  # a whole input up front, no deltas
                out.append(ToolArgsDelta(index=i, delta=json.dumps(block["input"], ensure_ascii=False)))
        elif isinstance(kind, str) and (kind in SERVER_BLOCKS or kind.endswith("_tool_result")):
            self.kinds[i] = "opaque"  # server tool use and results: whole, when the block stops
            self.opaque[i] = (dict(block), [])
            return []
        else:
            return []  # block types added after this was written
        self.open.append(i)
        return out

    def _opaque_end(self, i: int) -> list[StreamEvent]:
        if i not in self.opaque:
            return []
        block, fragments = self.opaque.pop(i)
        if fragments:
            block["input"] = json.loads("".join(fragments) or "{}")
        return [OpaqueBlock(index=i, protocol="anthropic", block=block)]

    def _delta(self, i: int, delta: dict[str, Any]) -> list[StreamEvent]:
        kind, block = delta.get("type"), self.kinds.get(i)
        if kind == "text_delta" and block == "text" and delta.get("text"):
            return [TextDelta(index=i, text=str(delta["text"]))]
        if kind == "input_json_delta" and block == "tool" and delta.get("partial_json"):
            return [ToolArgsDelta(index=i, delta=str(delta["partial_json"]))]
        if kind == "input_json_delta" and block == "opaque" and i in self.opaque:
            self.opaque[i][1].append(str(delta.get("partial_json") or ""))
            return []
        if kind == "thinking_delta" and block == "thinking" and delta.get("thinking"):
            return [ThinkingDelta(index=i, text=str(delta["thinking"]))]
        if kind == "signature_delta" and block == "thinking" and delta.get("signature"):
            return [ThinkingDelta(index=i, signature=str(delta["signature"]))]
        return []  # citations_delta and anything newer

    def close(self) -> list[StreamEvent]:
        out = self._end_open()
        if not self.finished and not self.done:
            self.done = True  # a second close() says nothing more
            out.append(ErrorEvent(code="upstream_error", message="upstream stream ended early"))
        return out


# ---------------------------------------------------------------------------------------------
# canonical -> client events


class StreamEncoder:
    """Canonical events -> the client's Messages SSE bytes, exactly as the Messages API sends them.

    Canonical streams from other providers come in other orders (usage after the finish, no
    ContentEnd, a finish before its usage): blocks are opened and closed here as needed, and
    ``message_delta`` (stop reason and final usage) and ``message_stop`` are sent once, by ``close``.
    """

    def __init__(self, pisces: dict[str, Any], include_usage: bool = False) -> None:
        self.pisces = pisces
        self.include_usage = include_usage  # Anthropic streams always carry usage: nothing to switch
        self.id, self.model = "msg_pisces", ""
        self.started = False
        self.ended = False
        self.usage: Usage | None = None
        self.finish: tuple[FinishReason, str | None] | None = None
        self.blocks: dict[int, tuple[int, str]] = {}  # canonical index -> (Anthropic index, kind)
        self.current: int | None = None  # the canonical index of the open block
        self.next_block = 0

    def heartbeat(self) -> bytes:
        """A ``ping``, which the door sends while the upstream is silent (SDKs skip it)."""
        return event_bytes({"type": "ping"})

    def _message_start(self) -> bytes:
        self.started = True
        usage = usage_to(self.usage or Usage())
        usage.pop("output_tokens_details", None)
        message = {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                   "stop_reason": None, "stop_sequence": None, "usage": usage, "pisces": self.pisces}  # fmt: skip
        return event_bytes({"type": "message_start", "message": message}) + self.heartbeat()

    def _close_current(self) -> bytes:
        if self.current is None:
            return b""
        i, self.current = self.blocks[self.current][0], None
        return event_bytes({"type": "content_block_stop", "index": i})

    def _open(self, index: int, kind: str, block: dict[str, Any]) -> bytes:
        out = b"" if self.started else self._message_start()
        out += self._close_current()
        self.blocks[index] = (self.next_block, kind)
        self.current, self.next_block = index, self.next_block + 1
        start = {"type": "content_block_start", "index": self.blocks[index][0], "content_block": block}
        return out + event_bytes(start)

    def _ensure(self, index: int, kind: str, block: dict[str, Any]) -> bytes:
        """The block for ``index`` open, of ``kind``: a closed or other block is followed by a new one."""
        if self.current == index and self.blocks[index][1] == kind:
            return b""
        return self._open(index, kind, block)

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return event_bytes({"type": "content_block_delta", "index": self.blocks[index][0], "delta": delta})

    def encode(self, ev: StreamEvent) -> bytes:
        if self.ended:
            return b""
        if isinstance(ev, StreamStart):
            if ev.usage is not None:
                self.usage = merge_usage(self.usage, ev.usage)
            if self.started:
                return b""
            self.id, self.model = message_id(ev.id), ev.model
            return self._message_start()
        if isinstance(ev, TextDelta):
            if not ev.text:
                return b""
            out = self._ensure(ev.index, "text", {"type": "text", "text": ""})
            return out + self._delta(ev.index, {"type": "text_delta", "text": ev.text})
        if isinstance(ev, ThinkingDelta):
            return self._thinking(ev)
        if isinstance(ev, ToolCallStart):
            return self._open(ev.index, "tool", {"type": "tool_use", "id": ev.id, "name": ev.name, "input": {}})
        if isinstance(ev, ToolArgsDelta):
            if not ev.delta or self.blocks.get(ev.index, (0, ""))[1] != "tool":
                return b""
            # Fragments go out as they come. A fragment for a tool block already closed (an upstream
            # interleaving parallel calls) still goes to that block's index, where SDKs fold it in.
            return self._delta(ev.index, {"type": "input_json_delta", "partial_json": ev.delta})
        if isinstance(ev, OpaqueBlock):  # Anthropic's own, whole: opened and closed at once
            if ev.protocol != "anthropic":
                return b""
            return self._open(ev.index, "opaque", ev.block) + self._close_current()
        if isinstance(ev, ContentEnd):
            return self._close_current() if self.current == ev.index else b""
        if isinstance(ev, UsageEvent):
            self.usage = merge_usage(self.usage, ev.usage)
            return b""
        if isinstance(ev, Finish):
            self.finish = (ev.reason, ev.stop_detail)
            return b"" if not self.started else self._close_current()
        if isinstance(ev, ErrorEvent):
            self.ended = True
            err = {"type": error_type(ev.status), "message": ev.message}
            return event_bytes({"type": "error", "error": err, "request_id": self.pisces.get("request_id"),
                                "pisces": self.pisces})  # fmt: skip
        return b""

    def _thinking(self, ev: ThinkingDelta) -> bytes:
        if ev.redacted_data is not None:
            return self._open(ev.index, "redacted", {"type": "redacted_thinking", "data": ev.redacted_data})
        out = b""
        if ev.text:
            out += self._ensure(ev.index, "thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta(ev.index, {"type": "thinking_delta", "thinking": ev.text})
        if ev.signature:
            out += self._ensure(ev.index, "thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta(ev.index, {"type": "signature_delta", "signature": ev.signature})
        return out

    def close(self) -> bytes:
        """The end of the message: open block closed, ``message_delta`` with the final stop reason and
        cumulative usage, ``message_stop``. After an error event, nothing (the error ended the stream)."""
        if self.ended:
            return b""
        self.ended = True
        out = (b"" if self.started else self._message_start()) + self._close_current()
        # a stream cut without a finish still ends as a message: the client keeps what it received
        stop_reason, stop_sequence = finish_out(*(self.finish or ("stop", None)))
        usage = usage_to(self.usage or Usage())
        delta = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
        # the pisces object again, as it is now (the door adds the cost once it is known)
        out += event_bytes({"type": "message_delta", "delta": delta, "usage": usage, "pisces": self.pisces})
        return out + event_bytes({"type": "message_stop"})
