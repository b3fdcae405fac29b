"""Anthropic Messages requests for an ``anthropic`` upstream: the canonical request as the Messages API
takes it.

Requests always carry ``max_tokens``, which the Messages API requires: the client's own, else
:data:`DEFAULT_MAX_TOKENS` (4096), plus the thinking budget when thinking is on without one. ``system``
messages keep their place in ``messages`` (the API's mid-conversation system messages); opaque parts of
Anthropic's (server tool blocks, search results...) go back as they came; another protocol's opaque
parts go as their text.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pisces.canonical import (
    ChatRequest,
    FilePart,
    ImagePart,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)
from pisces.protocols.anthropic_messages.request import NAME
from pisces.protocols.common import json_object, split_data_url

# request headers of the client door that an Anthropic upstream receives too (Claude Code sends betas)
FORWARDED_HEADERS = ("anthropic-beta",)
DEFAULT_MAX_TOKENS = 4096  # max_tokens for an upstream when the client gave none (it is required)
# thinking budgets for a reasoning effort (OpenAI reasoning_effort) when no budget is given
EFFORT_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384}
MIN_THINKING_BUDGET = 1024
TOOL_CHOICE_OUT = {"auto": "auto", "required": "any", "tool": "tool", "none": "none"}

_IMAGE_MAGIC = {"/9j/": "image/jpeg", "iVBOR": "image/png", "R0lGOD": "image/gif", "UklGR": "image/webp"}


# ---------------------------------------------------------------------------------------------
# request, for an upstream


def _cc(block: dict[str, Any], part: Any) -> dict[str, Any]:
    if getattr(part, "cache_control", None) is not None:
        block["cache_control"] = part.cache_control
    return block


def _image(p: ImagePart) -> dict[str, Any]:
    data, media_type = p.data, p.media_type
    if data is None and (inline := split_data_url(p.url)):
        media_type, data = inline
    if data is not None:
        if not media_type:  # Anthropic requires it: guess from the bytes, as a browser would
            media_type = next((t for magic, t in _IMAGE_MAGIC.items() if data.startswith(magic)), "image/png")
        return _cc({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}, p)
    return _cc({"type": "image", "source": {"type": "url", "url": p.url or ""}}, p)


def _text_of_document(part: FilePart) -> str | None:
    """The text of a plain-text document part (carried base64), or None when it is not one."""
    if part.media_type != "text/plain" or part.data is None:
        return None
    try:
        return base64.b64decode(part.data, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def _document(p: FilePart) -> dict[str, Any] | None:
    """A PDF or plain-text document. Other files (Gemini's gs:// URIs, audio...) are dropped on purpose:
    Anthropic documents take only those."""
    text = _text_of_document(p)
    if text is not None:
        source: dict[str, Any] = {"type": "text", "media_type": "text/plain", "data": text}
    elif p.data is not None and p.media_type == "application/pdf":
        source = {"type": "base64", "media_type": "application/pdf", "data": p.data}
    elif p.uri and p.uri.startswith(("http://", "https://")) and p.media_type in (None, "application/pdf"):
        source = {"type": "url", "url": p.uri}
    else:
        return None
    block: dict[str, Any] = {"type": "document", "source": source}
    if p.name:
        block["title"] = p.name
    if p.context is not None:
        block["context"] = p.context
    if p.citations is not None:
        block["citations"] = p.citations
    return _cc(block, p)


def _opaque(p: OpaquePart) -> dict[str, Any] | None:
    """Anthropic's own block as it came; another protocol's as its text (or nothing)."""
    if p.protocol == NAME:
        return p.block
    return {"type": "text", "text": p.text} if p.text else None


def _tool_result(p: ToolResultPart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": p.tool_call_id}
    if len(p.content) == 1 and isinstance(p.content[0], TextPart) and p.content[0].cache_control is None:
        block["content"] = p.content[0].text
    elif p.content:
        content = []
        for c in p.content:
            if isinstance(c, ImagePart):
                content.append(_image(c))
            elif isinstance(c, OpaquePart):
                if (op := _opaque(c)) is not None:
                    content.append(op)
            else:
                content.append(_cc({"type": "text", "text": c.text}, c))
        if content:
            block["content"] = content
    if p.is_error:
        block["is_error"] = True
    return _cc(block, p)


def _blocks(parts: list[Part]) -> list[dict[str, Any]]:
    """Canonical parts -> content blocks. Dropped on purpose: empty text (the API refuses it), thinking
    without a signature (from other providers: the API cannot verify it), Gemini's thought signatures
    on tool calls, and files Anthropic cannot read. Tool results go first, as the API requires."""
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, TextPart) and p.text:
            out.append(_cc({"type": "text", "text": p.text}, p))
        elif isinstance(p, ImagePart):
            out.append(_image(p))
        elif isinstance(p, FilePart):
            doc = _document(p)
            if doc is not None:
                out.append(doc)
        elif isinstance(p, ToolCallPart):
            out.append(_cc({"type": "tool_use", "id": p.id, "name": p.name, "input": json_object(p.arguments)}, p))
        elif isinstance(p, ToolResultPart):
            out.append(_tool_result(p))
        elif isinstance(p, ThinkingPart):
            if p.redacted:
                out.append({"type": "redacted_thinking", "data": p.data or ""})
            elif p.signature:
                out.append({"type": "thinking", "thinking": p.text, "signature": p.signature})
        elif isinstance(p, OpaquePart) and (op := _opaque(p)) is not None:
            out.append(op)
    return sorted(out, key=lambda b: b["type"] != "tool_result")  # stable: otherwise in order


def _system(req: ChatRequest) -> str | list[dict[str, Any]] | None:
    parts = [p for p in req.system if p.text]
    if not parts:
        return None
    if len(parts) == 1 and parts[0].cache_control is None:
        return parts[0].text
    return [_cc({"type": "text", "text": p.text}, p) for p in parts]


def _tools(req: ChatRequest, extra: dict[str, Any]) -> list[dict[str, Any]]:
    tool_extras = extra.pop("_tool_extras", None)
    tool_extras = tool_extras if isinstance(tool_extras, dict) else {}
    tools: list[dict[str, Any]] = []
    for t in req.tools:
        tool: dict[str, Any] = {"name": t.name}
        if t.description is not None:
            tool["description"] = t.description
        tool["input_schema"] = t.parameters
        if t.strict is not None:
            tool["strict"] = t.strict
        _cc(tool, t)
        if isinstance(tool_extras.get(t.name), dict):
            tool.update(tool_extras[t.name])
        tools.append(tool)
    server = extra.pop("_server_tools", None)
    for entry in server if isinstance(server, list) else []:
        if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int) and isinstance(entry[1], dict):
            tools.insert(min(entry[0], len(tools)), entry[1])  # back in the client's order: caching keys on it
    return tools


def thinking_budget(req: ChatRequest) -> tuple[int | None, int | None]:
    """Extended thinking for a request that asks for it, as Anthropic's models take it (here and on
    Bedrock): its budget (None: dropped on purpose, no room to think within the client's max_tokens)
    and the max_tokens to send when the client gave none (None: the client's stands)."""
    th = req.thinking
    assert th is not None and th.enabled
    budget, max_tokens = th.budget_tokens, None
    if budget is None:  # a reasoning effort (or just "on"): a budget of ours, fitted under max_tokens
        budget = EFFORT_BUDGET.get(th.effort or "medium", EFFORT_BUDGET["medium"])
        if req.max_tokens is None:
            max_tokens = budget + DEFAULT_MAX_TOKENS
        elif budget >= req.max_tokens:
            budget = req.max_tokens - 1
        if budget < MIN_THINKING_BUDGET:
            return None, max_tokens
    elif req.max_tokens is None:
        max_tokens = budget + DEFAULT_MAX_TOKENS
    return budget, max_tokens


def _thinking(req: ChatRequest, out: dict[str, Any]) -> None:
    th = req.thinking
    if th is None:
        return
    if not th.enabled:
        out["thinking"] = {"type": "disabled"}
        return
    budget, max_tokens = thinking_budget(req)
    if max_tokens is not None:
        out["max_tokens"] = max_tokens
    if budget is not None:
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}


def encode_request(req: ChatRequest, model: str) -> dict[str, Any]:
    """The canonical request as the Messages API takes it.

    Dropped on purpose: seed (Anthropic has none), response_format json_object (no schema-less JSON
    mode; json_schema maps to ``output_config.format``), metadata other than the user (the API
    refuses other keys), tool_choice.allowed (no such narrowing), ``Message.name``. Temperatures above
    1 (OpenAI's 0-2 scale) are sent as 1, Anthropic's maximum.
    """
    extra = dict(req.provider_options.get(NAME, {}))
    max_tokens = DEFAULT_MAX_TOKENS if req.max_tokens is None else req.max_tokens
    out: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    system = _system(req)
    if system is not None:
        out["system"] = system
    messages = []
    for m in req.messages:
        blocks = _blocks(m.content)
        if blocks:  # a system message keeps its place: the API's mid-conversation system message
            messages.append({"role": m.role, "content": blocks})
    out["messages"] = messages
    tools = _tools(req, extra)
    if tools:
        out["tools"] = tools
        tc = req.tool_choice
        if tc is not None:
            choice: dict[str, Any] = {"type": TOOL_CHOICE_OUT[tc.mode]}
            if tc.mode == "tool":
                choice["name"] = tc.name or ""
            if tc.parallel is not None and tc.mode != "none":
                choice["disable_parallel_tool_use"] = not tc.parallel
            out["tool_choice"] = choice
    _thinking(req, out)
    if req.temperature is not None:
        out["temperature"] = min(req.temperature, 1.0)
    for name in ("top_p", "top_k"):
        if getattr(req, name) is not None:
            out[name] = getattr(req, name)
    if req.stop:
        out["stop_sequences"] = req.stop
    if req.user:
        out["metadata"] = {"user_id": req.user}
    rf = req.response_format
    if rf is not None and rf.type == "json_schema" and rf.json_schema is not None:
        out["output_config"] = {"format": {"type": "json_schema", "schema": rf.json_schema}}
    if req.stream:
        out["stream"] = True
    for key, value in extra.items():
        if key.startswith("_"):
            continue  # Pisces' own bookkeeping, never a wire field
        if key == "output_config" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
