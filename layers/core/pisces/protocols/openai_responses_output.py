"""OpenAI Responses ``response`` objects: canonical answers as output items, and back.

Wire shape: https://platform.openai.com/docs/api-reference/responses/object (openai-python's
``types/responses/response.py``, ``response_output_item.py``, ``response_usage.py``). A response
echoes the request's parameters (instructions, tools, text, reasoning, ...): :func:`echo_of` takes
them from the client's body, :func:`envelope` writes them around the output.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pisces.canonical import (
    ChatResponse,
    FinishReason,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    Usage,
)
from pisces.errors import PiscesError
from pisces.protocols.common import token_count
from pisces.protocols.openai_responses_request import NAME, REDACTED, SIGNED
from pisces.protocols.openai_responses_tools import qualified, split_qualified

# What a response says of its request when the request did not say it (OpenAI's defaults).
DEFAULTS: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "service_tier": "default",
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "tool_choice": "auto",
    "tools": [],
    "top_logprobs": 0,
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
    "metadata": {},
}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def echo_of(body: Any) -> dict[str, Any]:
    """The request parameters a response repeats, as the client sent them (defaults for the rest)."""
    out = {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v) for k, v in DEFAULTS.items()}
    if isinstance(body, dict):
        for k in DEFAULTS:
            if body.get(k) is not None:
                out[k] = body[k]
        if isinstance(body.get("text"), dict):
            out["text"] = {**DEFAULTS["text"], **body["text"]}
        if isinstance(body.get("reasoning"), dict):
            out["reasoning"] = {**DEFAULTS["reasoning"], **body["reasoning"]}
    return out


# ---------------------------------------------------------------------------------------------
# usage and status


def usage_to(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": u.cache_write_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def usage_from(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    return Usage(
        input_tokens=token_count(u, "input_tokens"),
        output_tokens=token_count(u, "output_tokens"),
        cached_tokens=token_count(u.get("input_tokens_details"), "cached_tokens"),
        reasoning_tokens=token_count(u.get("output_tokens_details"), "reasoning_tokens"),
    )


def status_of(reason: FinishReason) -> tuple[str, dict[str, str] | None]:
    """A canonical finish reason as the response's ``status`` and ``incomplete_details``."""
    if reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def finish_of(body: dict[str, Any], has_calls: bool) -> FinishReason:
    reason = (body.get("incomplete_details") or {}).get("reason") if body.get("status") == "incomplete" else None
    if reason == "max_output_tokens":
        return "length"
    if reason == "content_filter":
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


# ---------------------------------------------------------------------------------------------
# output items


def encrypted_of(p: ThinkingPart, openai_origin: bool) -> str | None:
    """What a reasoning item's ``encrypted_content`` says of a thinking part: OpenAI's own opaque
    reasoning as it is; another provider's signed or redacted thinking marked as such."""
    if p.signature:
        return SIGNED + p.signature
    if p.data:
        return p.data if openai_origin else REDACTED + p.data
    return None


def reasoning_item(item_id: str, text: str, encrypted: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": item_id, "type": "reasoning",
                            "summary": [{"type": "summary_text", "text": text}] if text else []}  # fmt: skip
    if encrypted:
        item["encrypted_content"] = encrypted
    return item


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, texts: list[str], status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [output_text(t) for t in texts]}  # fmt: skip


def call_item(
    item_id: str,
    call: ToolCallPart,
    status: str = "completed",
    namespaces: list[str] = [],  # noqa: B006
) -> dict[str, Any]:
    ns, name = split_qualified(call.name, namespaces)
    item = {"id": item_id, "type": "function_call", "status": status, "arguments": call.arguments,
            "call_id": call.id, "name": name}  # fmt: skip
    if ns:
        item["namespace"] = ns
    return item


def output_items(content: list[Part], openai_origin: bool, namespaces: list[str] = []) -> list[dict[str, Any]]:  # noqa: B006
    out: list[dict[str, Any]] = []
    for p in content:
        if isinstance(p, TextPart):
            if out and out[-1]["type"] == "message":
                out[-1]["content"].append(output_text(p.text))
            else:
                out.append(message_item(new_id("msg"), [p.text]))
        elif isinstance(p, ToolCallPart):
            out.append(call_item(new_id("fc"), p, namespaces=namespaces))
        elif isinstance(p, ThinkingPart):
            out.append(reasoning_item(new_id("rs"), p.text, encrypted_of(p, openai_origin)))
    return out


def envelope(
    rid: str,
    echo: dict[str, Any],
    model: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None,
    pisces: dict[str, Any],
    *,
    error: dict[str, Any] | None = None,
    incomplete: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        **echo,
        "model": model,
        "output": output,
        "usage": usage_to(usage) if usage is not None else None,
        "pisces": pisces,
    }


def encode_response(
    resp: ChatResponse,
    pisces: dict[str, Any],
    *,
    rid: str | None = None,
    echo: dict[str, Any] | None = None,
    openai_origin: bool = False,
    namespaces: list[str] = [],  # noqa: B006
) -> dict[str, Any]:
    status, incomplete = status_of(resp.finish_reason)
    return envelope(rid or new_id("resp"), echo or echo_of(None), resp.model, resp.created or int(time.time()),
                    status, output_items(resp.content, openai_origin, namespaces), resp.usage, pisces,
                    incomplete=incomplete)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# an upstream's response


def parts_of(output: Any) -> list[Part]:
    """An upstream's output items as canonical parts (built-in tool calls are not the client's: dropped)."""
    from pisces.protocols.openai_responses_request import reasoning_part

    parts: list[Part] = []
    for i, item in enumerate(output if isinstance(output, list) else []):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            for c in item.get("content") or []:
                if isinstance(c, dict) and c.get("type") in ("output_text", "refusal"):
                    parts.append(TextPart(text=str(c.get("text") or c.get("refusal") or "")))
        elif kind == "function_call":
            ns = item.get("namespace") if isinstance(item.get("namespace"), str) else None
            parts.append(ToolCallPart(id=str(item.get("call_id") or item.get("id") or f"call_{i}"),
                                      name=qualified(ns, str(item.get("name") or "")),
                                      arguments=str(item.get("arguments") or "{}")))  # fmt: skip
        elif kind == "reasoning":
            parts.append(reasoning_part(item, f"output[{i}]"))
    return parts


def decode_response(body: Any) -> ChatResponse:
    if not isinstance(body, dict) or not isinstance(body.get("output"), list):
        raise PiscesError("upstream_error", "upstream: the response has no output")
    try:
        content = parts_of(body["output"])
    except PiscesError as e:
        raise PiscesError("upstream_error", f"upstream: malformed output ({e.message})") from None
    created = body.get("created_at")
    return ChatResponse(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        content=content,
        finish_reason=finish_of(body, any(isinstance(p, ToolCallPart) for p in content)),
        stop_detail=body.get("status") if isinstance(body.get("status"), str) else None,
        usage=usage_from(body.get("usage")),
        created=int(created) if isinstance(created, int | float) and created > 0 else 0,
    )


__all__ = ["NAME", "decode_response", "echo_of", "encode_response", "envelope", "usage_from", "usage_to"]
