"""OpenAI Chat Completions: the client door's wire format and the OpenAI-compatible upstream's.

Client requests are validated and decoded in :mod:`.openai_chat_request`, streams in
:mod:`.openai_chat_stream`; here are requests for an upstream, responses and errors. This module is
the codec the registry names.
Fields OpenAI has and the canonical model lacks (frequency_penalty, logit_bias, logprobs, ...) travel
in ``provider_options["openai"]`` and reach only an OpenAI-compatible upstream.
"""

from __future__ import annotations

from typing import Any

from pisces.canonical import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    text_of,
)
from pisces.errors import PiscesError
from pisces.protocols.common import error_message
from pisces.protocols.openai_chat_request import NAME, decode_request, tool_calls
from pisces.protocols.openai_chat_stream import (
    FINISH_OUT,
    StreamDecoder,
    StreamEncoder,
    completion_id,
    error_type,
    finish_in,
    usage_from,
    usage_to,
)

__all__ = [
    "NAME",
    "StreamDecoder",
    "StreamEncoder",
    "decode_request",
    "decode_response",
    "encode_model",
    "encode_model_list",
    "encode_request",
    "encode_response",
    "render_error",
    "upstream_error_message",
]


# ---------------------------------------------------------------------------------------------
# request, for an upstream


def _user_content(parts: list[Part]) -> str | list[dict[str, Any]]:
    if all(isinstance(p, TextPart | OpaquePart) for p in parts):
        return text_of(parts)  # another protocol's opaque blocks: their text, or nothing
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, TextPart | OpaquePart) and p.text:
            out.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            url = p.url or f"data:{p.media_type or 'image/png'};base64,{p.data}"
            out.append({"type": "image_url", "image_url": {"url": url, **({"detail": p.detail} if p.detail else {})}})
        # files: OpenAI chat takes only images here; other files are dropped on purpose
    return out


def encode_request(req: ChatRequest, model: str) -> dict[str, Any]:
    """The canonical request as an OpenAI-compatible upstream takes it.

    Dropped on purpose: top_k (OpenAI has none), thinking parts of earlier turns (chat completions
    cannot take them back), images inside tool results (tool messages carry text only), cache_control.
    """
    msgs: list[dict[str, Any]] = []
    if req.system:
        msgs.append({"role": "system", "content": "\n\n".join(p.text for p in req.system)})
    for m in req.messages:
        if m.role == "system":  # a system message at its place (developer is OpenAI's newer name for it)
            if text := text_of(m.content):
                msgs.append({"role": "system", "content": text})
            continue
        if m.role == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": text_of(m.content) or None}
            calls = [p for p in m.content if isinstance(p, ToolCallPart)]
            if calls:
                msg["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ]
            if m.name:
                msg["name"] = m.name
            msgs.append(msg)
            continue
        rest = [p for p in m.content if not isinstance(p, ToolResultPart)]
        for p in m.content:
            if isinstance(p, ToolResultPart):
                msgs.append({"role": "tool", "tool_call_id": p.tool_call_id, "content": text_of(p.content)})
        if rest or not m.content:
            msg = {"role": "user", "content": _user_content(rest)}
            if m.name:
                msg["name"] = m.name
            msgs.append(msg)
    out: dict[str, Any] = {"model": model, "messages": msgs}
    if req.tools:
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    **({"description": t.description} if t.description is not None else {}),
                    "parameters": t.parameters,
                    **({"strict": t.strict} if t.strict is not None else {}),
                },
            }
            for t in req.tools
        ]
    tc = req.tool_choice
    if tc is not None:
        if tc.mode == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": tc.name}}
        elif tc.mode != "auto" or req.tools:
            out["tool_choice"] = tc.mode
        if tc.parallel is not None and req.tools:
            out["parallel_tool_calls"] = tc.parallel
    if req.max_tokens is not None:
        out["max_tokens"] = req.max_tokens
    for name in ("temperature", "top_p", "seed", "user"):
        if getattr(req, name) is not None:
            out[name] = getattr(req, name)
    if req.stop:
        out["stop"] = req.stop
    if req.metadata and _store_on(req):
        # OpenAI refuses metadata unless store is on ("The 'metadata' parameter is only allowed when
        # 'store' is enabled."): sent only with the client's own store=true, dropped on purpose otherwise
        out["metadata"] = req.metadata
    rf = req.response_format
    if rf is not None:
        if rf.type == "json_schema":
            js: dict[str, Any] = {"name": rf.name or "response", "schema": rf.json_schema or {}}
            if rf.strict is not None:
                js["strict"] = rf.strict
            out["response_format"] = {"type": "json_schema", "json_schema": js}
        else:
            out["response_format"] = {"type": rf.type}
    if req.thinking is not None and req.thinking.effort:
        out["reasoning_effort"] = req.thinking.effort
    if req.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # always: the gateway bills from it
    extra = dict(req.provider_options.get(NAME, {}))
    if "max_completion_tokens" in extra:
        extra["max_completion_tokens"] = out.pop("max_tokens", extra["max_completion_tokens"])
    out.update(extra)
    return out


def _store_on(req: ChatRequest) -> bool:
    return req.provider_options.get(NAME, {}).get("store") is True


# ---------------------------------------------------------------------------------------------
# response


def decode_response(body: Any) -> ChatResponse:
    try:
        choice = body["choices"][0]
        msg = choice.get("message") or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        raise PiscesError("upstream_error", "upstream: the response has no choices") from None
    try:
        return _decode_choice(body, choice, msg)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:  # ValueError: pydantic's too
        raise PiscesError("upstream_error", f"upstream: malformed chat.completion ({type(e).__name__})") from None


def _decode_choice(body: dict[str, Any], choice: dict[str, Any], msg: dict[str, Any]) -> ChatResponse:
    content: list[Part] = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append(ThinkingPart(text=reasoning))
    text = msg.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if text:
        content.append(TextPart(text=str(text)))
    elif msg.get("refusal"):
        content.append(TextPart(text=str(msg["refusal"])))
    try:
        content += tool_calls(msg.get("tool_calls") or [], "choices[0].message.tool_calls")
    except PiscesError as e:
        raise PiscesError("upstream_error", f"upstream: malformed tool call ({e.message})") from None
    return ChatResponse(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        content=content,
        finish_reason=finish_in(
            choice.get("finish_reason"), has_tool_calls=any(isinstance(p, ToolCallPart) for p in content)
        ),
        stop_detail=choice.get("finish_reason"),
        usage=usage_from(body.get("usage")),
        created=body["created"] if isinstance(body.get("created"), int) and body["created"] > 0 else 0,
    )


def encode_response(resp: ChatResponse, pisces: dict[str, Any]) -> dict[str, Any]:
    calls = resp.tool_calls
    message: dict[str, Any] = {
        "role": "assistant",
        "content": resp.text if (resp.text or not calls) else None,
        "refusal": None,
        "annotations": [],
    }
    reasoning = "".join(p.text for p in resp.content if isinstance(p, ThinkingPart))
    if reasoning:
        message["reasoning_content"] = reasoning  # DeepSeek's field; the openai SDK keeps it as an extra
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
        ]
    return {
        "id": completion_id(resp.id),
        "object": "chat.completion",
        "created": resp.created,
        "model": resp.model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": FINISH_OUT[resp.finish_reason]}
        ],
        "usage": usage_to(resp.usage),
        "system_fingerprint": None,
        "pisces": pisces,
    }


# ---------------------------------------------------------------------------------------------
# errors


def render_error(err: PiscesError, pisces: dict[str, Any]) -> dict[str, Any]:
    return {
        "error": {"message": err.message, "type": error_type(err.status), "param": err.param, "code": err.code},
        "pisces": pisces,
    }


def upstream_error_message(body: bytes) -> str:
    return error_message(body)


# ---------------------------------------------------------------------------------------------
# models (GET /v1/models in the OpenAI list shape)


def encode_model(model_id: str, owner: str, kind: str = "chat") -> dict[str, Any]:
    """``kind`` (chat, embedding) has no place in OpenAI's model object."""
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


def encode_model_list(models: list[dict[str, Any]], pisces: dict[str, Any]) -> dict[str, Any]:
    return {"object": "list", "data": models, "pisces": pisces}
