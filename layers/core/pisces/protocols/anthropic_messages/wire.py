"""Anthropic Messages mappings shared by responses and streams: stop reasons, error types, usage,
message ids, SSE event framing, the blocks only Anthropic can say."""

from __future__ import annotations

import re
import uuid
from typing import Any

from pisces.canonical import FinishReason, Usage
from pisces.jsonwire import dumps
from pisces.protocols.common import token_count

# ---------------------------------------------------------------------------------------------
# mappings shared by responses and streams

# stop_reason -> canonical finish reason. stop_detail keeps Anthropic's own word; for a stop sequence
# it is "stop_sequence:<the sequence>" so that an Anthropic client gets both back.
FINISH_IN: dict[str, FinishReason] = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
                                      "max_tokens": "length", "model_context_window_exceeded": "length",
                                      "tool_use": "tool_calls", "refusal": "content_filter"}  # fmt: skip
FINISH_OUT = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal",
              "error": "end_turn"}  # fmt: skip
STOP_SEQUENCE = "stop_sequence"
# answer blocks only Anthropic can say (with every *_tool_result): kept whole for an Anthropic client
SERVER_BLOCKS = ("server_tool_use", "mcp_tool_use", "mcp_tool_result", "container_upload")

# Anthropic's error "type" by HTTP status (https://docs.claude.com/en/api/errors): the one table behind
# render_error and stream error events. Other 4xx are invalid_request_error, other 5xx api_error.
# 503 (no channel can serve now) is overloaded_error: the client should back off and retry.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error"}  # fmt: skip

# An upstream's error type (in an ``event: error`` mid-stream) -> the Pisces code and status passed on.
# Errors caused by the gateway's own credential or account are the gateway's fault: upstream_error.
ERROR_IN = {"invalid_request_error": ("invalid_request", 400), "not_found_error": ("model_not_found", 404),
            "request_too_large": ("request_too_large", 413), "rate_limit_error": ("rate_limit_exceeded", 429),
            "timeout_error": ("upstream_timeout", 504), "overloaded_error": ("upstream_error", 529)}  # fmt: skip


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def finish_in(stop_reason: Any, stop_sequence: Any = None) -> tuple[FinishReason, str | None]:
    """Anthropic's stop_reason (and matched sequence) -> canonical reason and stop_detail."""
    if not isinstance(stop_reason, str):
        return "stop", None
    detail = stop_reason
    if stop_reason == STOP_SEQUENCE and isinstance(stop_sequence, str):
        detail = f"{STOP_SEQUENCE}:{stop_sequence}"
    return FINISH_IN.get(stop_reason, "stop"), detail


def finish_out(reason: FinishReason, detail: str | None) -> tuple[str, str | None]:
    """Canonical reason and stop_detail -> Anthropic's stop_reason and stop_sequence."""
    if reason == "stop" and detail:
        if detail == STOP_SEQUENCE or detail.startswith(STOP_SEQUENCE + ":"):
            return STOP_SEQUENCE, detail[len(STOP_SEQUENCE) + 1 :] or None
        if detail == "pause_turn":
            return "pause_turn", None
    if reason == "length" and detail == "model_context_window_exceeded":
        return detail, None
    return FINISH_OUT.get(reason, "end_turn"), None


def usage_from(u: Any) -> Usage:
    """Anthropic usage -> canonical. Anthropic's input_tokens leaves out cache reads and writes; the
    canonical input counts every prompt token: input + cache_read + cache_creation."""
    if not isinstance(u, dict):
        return Usage()
    read, write = token_count(u, "cache_read_input_tokens"), token_count(u, "cache_creation_input_tokens")
    return Usage(
        input_tokens=token_count(u, "input_tokens") + read + write,
        output_tokens=token_count(u, "output_tokens"),
        cached_tokens=read,
        cache_write_tokens=write,
        reasoning_tokens=token_count(u.get("output_tokens_details"), "thinking_tokens"),
    )


def usage_to(u: Usage) -> dict[str, Any]:
    """Canonical usage -> Anthropic's four counters (and the thinking tokens when known)."""
    out: dict[str, Any] = {
        "input_tokens": max(0, u.input_tokens - u.cached_tokens - u.cache_write_tokens),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_tokens,
    }
    if u.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return out


def message_id(raw: str) -> str:
    """An Anthropic-looking id (``msg_…``) for any canonical id."""
    if raw.startswith("msg_"):
        return raw
    return "msg_" + (re.sub(r"[^A-Za-z0-9]", "", raw) or uuid.uuid4().hex[:24])


def event_bytes(body: dict[str, Any]) -> bytes:
    """One SSE event as the Messages API writes it: ``event: <type>`` then its JSON."""
    return b"event: " + body["type"].encode() + b"\ndata: " + dumps(body) + b"\n\n"
