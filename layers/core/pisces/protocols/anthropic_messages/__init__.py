"""Anthropic Messages: the client door's wire format and the ``anthropic`` upstream's.

Client requests are validated and decoded in :mod:`.request` (content blocks in
:mod:`.blocks`), requests for an upstream encoded in :mod:`.upstream`,
streams in :mod:`.stream`; here are responses, errors and the Models API shape. This
module is the codec the registry names.

Usage: the canonical ``input_tokens`` counts every prompt token, Anthropic's leaves out cache reads
and writes, so canonical input = input + cache_read + cache_creation (and back on the way out).
"""

from __future__ import annotations

import json
import time
from typing import Any

from pisces.canonical import (
    ChatResponse,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
)
from pisces.errors import PiscesError
from pisces.protocols.anthropic_messages.request import NAME, decode_count_tokens, decode_request
from pisces.protocols.anthropic_messages.stream import StreamDecoder, StreamEncoder
from pisces.protocols.anthropic_messages.upstream import DEFAULT_MAX_TOKENS, FORWARDED_HEADERS, encode_request
from pisces.protocols.anthropic_messages.wire import (
    SERVER_BLOCKS,
    error_type,
    finish_in,
    finish_out,
    message_id,
    usage_from,
    usage_to,
)
from pisces.protocols.common import error_message, json_object

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "FORWARDED_HEADERS",
    "NAME",
    "StreamDecoder",
    "StreamEncoder",
    "decode_count_tokens",
    "decode_request",
    "decode_response",
    "encode_count",
    "encode_model",
    "encode_model_list",
    "encode_request",
    "encode_response",
    "render_error",
    "upstream_error_message",
]

MODEL_CREATED_AT = "2024-01-01T00:00:00Z"  # the Models API wants a date; the gateway knows none


# ---------------------------------------------------------------------------------------------
# response


def decode_response(body: Any) -> ChatResponse:
    if not isinstance(body, dict) or not isinstance(body.get("content"), list):
        raise PiscesError("upstream_error", "upstream: the response is not a message")
    try:
        return _decode_message(body)
    except (KeyError, TypeError, AttributeError, ValueError) as e:  # ValueError: pydantic's too
        raise PiscesError("upstream_error", f"upstream: malformed message ({type(e).__name__})") from None


def _decode_message(body: dict[str, Any]) -> ChatResponse:
    content: list[Part] = []
    for b in body["content"]:
        kind = b.get("type")
        if kind == "text":
            content.append(TextPart(text=str(b.get("text") or "")))
        elif kind == "thinking":
            content.append(ThinkingPart(text=str(b.get("thinking") or ""), signature=b.get("signature") or None))
        elif kind == "redacted_thinking":
            content.append(ThinkingPart(redacted=True, data=str(b.get("data") or "")))
        elif kind == "tool_use":
            args = json.dumps(b.get("input") if isinstance(b.get("input"), dict) else {}, ensure_ascii=False)
            content.append(ToolCallPart(id=str(b.get("id") or ""), name=str(b.get("name") or ""), arguments=args))
        elif isinstance(kind, str) and (kind in SERVER_BLOCKS or kind.endswith("_tool_result")):
            content.append(OpaquePart(protocol=NAME, block=b))  # server tool use and results: Anthropic's own
    reason, detail = finish_in(body.get("stop_reason"), body.get("stop_sequence"))
    return ChatResponse(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        content=content,
        finish_reason=reason,
        stop_detail=detail,
        usage=usage_from(body.get("usage")),
        created=int(time.time()),  # the Messages API sends no timestamp: the answer is from now
    )


def _response_blocks(parts: list[Part]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, TextPart) and p.text:
            out.append({"type": "text", "text": p.text})
        elif isinstance(p, ThinkingPart):
            if p.redacted:
                out.append({"type": "redacted_thinking", "data": p.data or ""})
            else:
                out.append({"type": "thinking", "thinking": p.text, "signature": p.signature or ""})
        elif isinstance(p, ToolCallPart):
            out.append({"type": "tool_use", "id": p.id, "name": p.name, "input": json_object(p.arguments)})
        elif isinstance(p, OpaquePart) and p.protocol == NAME:
            out.append(p.block)
        elif isinstance(p, OpaquePart) and p.text:
            out.append({"type": "text", "text": p.text})
    return out


def encode_response(resp: ChatResponse, pisces: dict[str, Any]) -> dict[str, Any]:
    stop_reason, stop_sequence = finish_out(resp.finish_reason, resp.stop_detail)
    return {
        "id": message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": _response_blocks(resp.content),
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_to(resp.usage),
        "pisces": pisces,
    }


# ---------------------------------------------------------------------------------------------
# errors


def render_error(err: PiscesError, pisces: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type(err.status), "message": err.message},
        "request_id": pisces.get("request_id"),
        "pisces": pisces,
    }


def upstream_error_message(body: bytes) -> str:
    return error_message(body)


def encode_count(tokens: int, pisces: dict[str, Any]) -> dict[str, Any]:
    """count_tokens' answer."""
    return {"input_tokens": tokens, "pisces": pisces}


# ---------------------------------------------------------------------------------------------
# models (GET /v1/models in the Models API shape)


def encode_model(model_id: str, owner: str) -> dict[str, Any]:
    """One model as the Models API lists it. ``owner`` has no place in this shape and is left out."""
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": MODEL_CREATED_AT,
            "lifecycle": "active"}  # fmt: skip


def encode_model_list(models: list[dict[str, Any]], pisces: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": models,
        "has_more": False,
        "first_id": models[0]["id"] if models else None,
        "last_id": models[-1]["id"] if models else None,
        "pisces": pisces,
    }
