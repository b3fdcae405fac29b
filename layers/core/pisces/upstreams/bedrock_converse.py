"""The Amazon Bedrock Converse wire format: canonical request -> Converse request, and Converse's
answer (or ConverseStream's events) -> canonical.

This is an upstream format only (no client door speaks it), so it lives beside its channel. The
shapes are botocore's ``bedrock-runtime`` shapes (bytes are ``bytes``; botocore base64s them).

Mapped: system text, text, images (inline: ``data:`` URLs or base64; Bedrock takes no http URL),
documents (inline), tool definitions and tool choice (``toolConfig``), tool calls and results
(``toolUse`` / ``toolResult``), reasoning with its signature and redacted reasoning
(``reasoningContent``), Anthropic ``cache_control`` marks (a ``cachePoint`` after the marked block),
max_tokens, temperature, top_p, stop sequences; for Anthropic models top_k and thinking through
``additionalModelRequestFields``. Dropped on purpose: seed, response_format (Converse has no JSON
mode), a tool choice of ``none`` (Converse cannot say it: without tool history the tools are not
sent; with it they must be, as ``auto``), top_k and thinking for models other than Anthropic's.

Usage: Bedrock's ``inputTokens`` leaves out cache reads and writes (as Anthropic's does); the
canonical input counts every prompt token, so input = inputTokens + cacheRead + cacheWrite.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from pisces.canonical import (
    ChatRequest,
    ChatResponse,
    ContentEnd,
    FilePart,
    Finish,
    FinishReason,
    ImagePart,
    Message,
    Part,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolArgsDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from pisces.media import b64_decode, split_data_url
from pisces.protocols.anthropic_messages.upstream import DEFAULT_MAX_TOKENS, thinking_budget
from pisces.upstreams.base import UpstreamError

IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}  # fmt: skip
DOCUMENT_FORMATS = {
    "application/pdf": "pdf", "text/csv": "csv", "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html", "text/plain": "txt", "text/markdown": "md",
}  # fmt: skip
STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length",
    "model_context_window_exceeded": "length", "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}  # fmt: skip
CACHE_POINT = {"cachePoint": {"type": "default"}}


def _invalid(message: str) -> UpstreamError:
    return UpstreamError("invalid_request", f"bedrock: {message}", retryable=False, status=400)


def is_anthropic(model: str) -> bool:
    """Anthropic's models on Bedrock: ``anthropic.claude-...`` or a profile like ``us.anthropic.claude-...``."""
    return "anthropic." in model


# ------------------------------------------------------------------------------------------------ request


def _inline(url: str | None, data: str | None, media_type: str | None) -> tuple[bytes, str | None]:
    if data is None:
        split = split_data_url(url)
        if split is None:
            raise _invalid("images and files must be inline (base64 or a data: URL); Bedrock fetches no URL")
        media_type, data = split[0] or media_type, split[1]
    raw = b64_decode(data)
    if raw is None:
        raise _invalid("inline data is not base64")
    return raw, media_type


def _image(p: ImagePart) -> dict[str, Any]:
    raw, media_type = _inline(p.url, p.data, p.media_type)
    fmt = IMAGE_FORMATS.get((media_type or "").lower())
    if fmt is None:
        raise _invalid(f"image type {media_type!r} is not one of png, jpeg, gif, webp")
    return {"image": {"format": fmt, "source": {"bytes": raw}}}


def _document(p: FilePart, n: int) -> dict[str, Any]:
    raw, media_type = _inline(p.uri, p.data, p.media_type)
    fmt = DOCUMENT_FORMATS.get((media_type or "").lower())
    if fmt is None:
        raise _invalid(f"file type {media_type!r} is not a document type Bedrock reads")
    # a document's name: letters, digits, single spaces, hyphens, parentheses, square brackets
    name = "".join(c if c.isalnum() or c in "-()[] " else "-" for c in (p.name or f"document-{n}"))
    return {"document": {"format": fmt, "name": " ".join(name.split()) or f"document-{n}", "source": {"bytes": raw}}}


def _tool_result(p: ToolResultPart) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for c in p.content:
        content.append({"text": c.text} if isinstance(c, TextPart) else _image(c))
    out: dict[str, Any] = {"toolUseId": p.tool_call_id, "content": content or [{"text": ""}]}
    if p.is_error:
        out["status"] = "error"
    return {"toolResult": out}


def _block(p: Part, n: int) -> dict[str, Any] | None:
    if isinstance(p, TextPart):
        return {"text": p.text} if p.text else None  # Converse refuses an empty text block
    if isinstance(p, ImagePart):
        return _image(p)
    if isinstance(p, FilePart):
        return _document(p, n)
    if isinstance(p, ToolCallPart):
        try:
            args = json.loads(p.arguments or "{}")
        except ValueError:
            raise _invalid(f"tool call {p.id} has arguments that are not JSON") from None
        return {"toolUse": {"toolUseId": p.id, "name": p.name, "input": args}}
    if isinstance(p, ToolResultPart):
        return _tool_result(p)
    if isinstance(p, ThinkingPart):
        if p.redacted:
            return {"reasoningContent": {"redactedContent": b64_decode(p.data or "") or b""}}
        text: dict[str, Any] = {"text": p.text}
        if p.signature:
            text["signature"] = p.signature
        return {"reasoningContent": {"reasoningText": text}}
    return None


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Converse wants turns that alternate, beginning with the user's: consecutive turns of one
    role are joined (OpenAI's several tool messages are one user turn of tool results)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        content: list[dict[str, Any]] = []
        for n, p in enumerate(m.content):
            block = _block(p, n)
            if block is not None:
                content.append(block)
                if getattr(p, "cache_control", None):
                    content.append(dict(CACHE_POINT))
        if not content:
            continue
        if out and out[-1]["role"] == m.role:
            out[-1]["content"].extend(content)
        else:
            out.append({"role": m.role, "content": content})
    return out


def _tool_config(req: ChatRequest, has_tool_history: bool) -> dict[str, Any] | None:
    tc = req.tool_choice
    if not req.tools or (tc is not None and tc.mode == "none" and not has_tool_history):
        return None
    tools: list[dict[str, Any]] = []
    allowed = set(tc.allowed) if tc is not None and tc.allowed else None
    for t in req.tools:
        if allowed is not None and t.name not in allowed:
            continue
        spec: dict[str, Any] = {"name": t.name, "inputSchema": {"json": t.parameters}}
        if t.description:
            spec["description"] = t.description
        tools.append({"toolSpec": spec})
        if t.cache_control:
            tools.append(dict(CACHE_POINT))
    out: dict[str, Any] = {"tools": tools}
    if tc is not None and tc.mode == "required":
        out["toolChoice"] = {"any": {}}
    elif tc is not None and tc.mode == "tool" and tc.name:
        out["toolChoice"] = {"tool": {"name": tc.name}}
    elif tc is not None and tc.mode == "auto":
        out["toolChoice"] = {"auto": {}}
    return out


def _thinking(req: ChatRequest, inference: dict[str, Any], extra: dict[str, Any]) -> None:
    th = req.thinking
    if th is None or not th.enabled:
        return
    budget, max_tokens = thinking_budget(req)  # Anthropic's models: the anthropic codec's budgets
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    if budget is None:
        return  # no room to think within the client's max_tokens: thinking dropped on purpose
    extra["thinking"] = {"type": "enabled", "budget_tokens": budget}
    inference.pop("temperature", None)  # Anthropic refuses a temperature with thinking
    inference.pop("topP", None)


def encode_request(req: ChatRequest, model: str) -> dict[str, Any]:
    """The keyword arguments of botocore's ``converse`` / ``converse_stream`` for ``req``."""
    system: list[dict[str, Any]] = []
    for s in req.system:
        if s.text:
            system.append({"text": s.text})
            if s.cache_control:
                system.append(dict(CACHE_POINT))
    messages = _messages(req.messages)
    if not messages:
        raise _invalid("the conversation has no message with content")
    history = any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])
    inference: dict[str, Any] = {}
    if req.max_tokens is not None:
        inference["maxTokens"] = req.max_tokens
    if req.temperature is not None:
        inference["temperature"] = req.temperature
    if req.top_p is not None:
        inference["topP"] = req.top_p
    if req.stop:
        inference["stopSequences"] = req.stop[:4]
    extra: dict[str, Any] = {}
    if is_anthropic(model):
        if req.top_k is not None:
            extra["top_k"] = req.top_k
        _thinking(req, inference, extra)
        if "maxTokens" not in inference:
            inference["maxTokens"] = DEFAULT_MAX_TOKENS  # Anthropic's models require one
    kwargs: dict[str, Any] = {"modelId": model, "messages": messages}
    if system:
        kwargs["system"] = system
    if inference:
        kwargs["inferenceConfig"] = inference
    tools = _tool_config(req, history)
    if tools is not None:
        kwargs["toolConfig"] = tools
    if extra:
        kwargs["additionalModelRequestFields"] = extra
    return kwargs


# ------------------------------------------------------------------------------------------------ answer


def decode_usage(u: dict[str, Any] | None) -> Usage:
    u = u or {}
    read, write = int(u.get("cacheReadInputTokens") or 0), int(u.get("cacheWriteInputTokens") or 0)
    return Usage(
        input_tokens=int(u.get("inputTokens") or 0) + read + write,
        output_tokens=int(u.get("outputTokens") or 0),
        cached_tokens=read,
        cache_write_tokens=write,
    )


def _b64(raw: Any) -> str:
    return base64.b64encode(raw if isinstance(raw, bytes) else str(raw).encode()).decode()


def _part(block: dict[str, Any]) -> Part | None:
    if "text" in block:
        return TextPart(text=block["text"])
    if "toolUse" in block:
        tu = block["toolUse"]
        return ToolCallPart(id=tu["toolUseId"], name=tu["name"], arguments=json.dumps(tu.get("input") or {}))
    if "reasoningContent" in block:
        rc = block["reasoningContent"]
        if "redactedContent" in rc:
            return ThinkingPart(redacted=True, data=_b64(rc["redactedContent"]))
        rt = rc.get("reasoningText") or {}
        return ThinkingPart(text=rt.get("text", ""), signature=rt.get("signature"))
    return None  # an image or document the model made: Converse models answer none today


def decode_response(payload: dict[str, Any], model: str, request_id: str, created: int) -> ChatResponse:
    message = (payload.get("output") or {}).get("message") or {}
    content = [p for p in (_part(b) for b in message.get("content") or []) if p is not None]
    reason = payload.get("stopReason") or "end_turn"
    return ChatResponse(
        id=request_id,
        model=model,
        content=content,
        finish_reason=STOP_REASONS.get(reason, "stop"),
        stop_detail=reason,
        usage=decode_usage(payload.get("usage")),
        created=created,
    )


class StreamDecoder:
    """ConverseStream's events (as botocore parses them: ``{"contentBlockDelta": {...}}``) ->
    canonical events. The finish waits for the ``metadata`` event, so that usage comes before it."""

    def __init__(self) -> None:
        self.finish: Finish | None = None
        self.started: set[int] = set()

    def feed(self, event: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if "contentBlockStart" in event:
            ev = event["contentBlockStart"]
            tu = (ev.get("start") or {}).get("toolUse")
            if tu is not None:
                i = int(ev.get("contentBlockIndex", 0))
                self.started.add(i)
                out.append(ToolCallStart(index=i, id=tu["toolUseId"], name=tu["name"]))
        elif "contentBlockDelta" in event:
            ev = event["contentBlockDelta"]
            i, delta = int(ev.get("contentBlockIndex", 0)), ev.get("delta") or {}
            self.started.add(i)
            if "text" in delta:
                out.append(TextDelta(index=i, text=delta["text"]))
            elif "toolUse" in delta:
                out.append(ToolArgsDelta(index=i, delta=delta["toolUse"].get("input", "")))
            elif "reasoningContent" in delta:
                rc = delta["reasoningContent"]
                if "redactedContent" in rc:
                    out.append(ThinkingDelta(index=i, redacted_data=_b64(rc["redactedContent"])))
                else:
                    out.append(ThinkingDelta(index=i, text=rc.get("text", ""), signature=rc.get("signature")))
        elif "contentBlockStop" in event:
            i = int(event["contentBlockStop"].get("contentBlockIndex", 0))
            if i in self.started:
                out.append(ContentEnd(index=i))
        elif "messageStop" in event:
            reason = event["messageStop"].get("stopReason") or "end_turn"
            self.finish = Finish(reason=STOP_REASONS.get(reason, "stop"), stop_detail=reason)
        elif "metadata" in event:
            out.append(UsageEvent(usage=decode_usage(event["metadata"].get("usage"))))
            out += self.close()
        return out

    def close(self) -> list[StreamEvent]:
        finish, self.finish = self.finish, None
        return [finish] if finish is not None else []
