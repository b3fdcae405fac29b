"""Gemini generateContent: the client door's wire format and the ``gemini`` upstream's.

Client requests are validated and decoded in :mod:`.gemini_request`, streams in :mod:`.gemini_stream`
(with the mappings both share); here are requests for an upstream, responses, errors, token counts
and the models API shape. This module is the codec the registry names.

Requests for an upstream send tool schemas as ``parametersJsonSchema`` and structured output as
``responseJsonSchema`` (JSON Schema, as every other protocol states them), and send a functionCall's
id only when the call had one of its own. Gemini 3 refuses a function call in history without its
thought signature; a call from another provider has none, so the first call of each model turn
without one carries the documented ``skip_thought_signature_validator`` placeholder.
"""

from __future__ import annotations

import json
import mimetypes
import time
from typing import Any

from pisces.canonical import (
    ChatRequest,
    ChatResponse,
    FilePart,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)
from pisces.errors import PiscesError
from pisces.protocols.common import error_message, is_generated_id, json_object, new_call_id, split_data_url
from pisces.protocols.gemini_request import NAME, decode_count_tokens, decode_request
from pisces.protocols.gemini_stream import (
    FINISH_IN,
    StreamDecoder,
    StreamEncoder,
    call_args,
    candidate_of,
    error_body,
    finish_in,
    finish_out,
    parts_of,
    usage_from,
    usage_to,
)

__all__ = [
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

SKIP_SIGNATURE = "skip_thought_signature_validator"  # https://ai.google.dev/gemini-api/docs/thought-signatures
EFFORT_BUDGET = {"minimal": 512, "low": 2048, "medium": 8192, "high": 24576}
TOOL_MODE = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}
METHODS = ["generateContent", "streamGenerateContent", "countTokens"]
EMBED_METHODS = ["embedContent", "batchEmbedContents"]  # an embedding model's


# ---------------------------------------------------------------------------------------------
# request, for an upstream


def _own_id(cid: str) -> bool:
    return bool(cid) and not is_generated_id(cid)


def _media(part: ImagePart | FilePart) -> dict[str, Any]:
    """inlineData for bytes (a data: URL included), fileData for a URI."""
    url = part.url if isinstance(part, ImagePart) else part.uri
    data, mime = part.data, part.media_type
    if data is None and (inline := split_data_url(url)):
        mime, data = inline
    if data is not None:
        return {"inlineData": {"mimeType": mime or "application/octet-stream", "data": data}}
    mime = mime or mimetypes.guess_type(url or "")[0] or ("image/jpeg" if isinstance(part, ImagePart) else None)
    file: dict[str, Any] = {"fileUri": url or ""}
    if mime:
        file["mimeType"] = mime
    return {"fileData": file}


def _response(p: ToolResultPart) -> dict[str, Any]:
    """A tool result as functionResponse.response (an object): JSON objects as they are, text wrapped."""
    text = "".join(c.text for c in p.content if isinstance(c, TextPart | OpaquePart))
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    return {"error" if p.is_error else "result": value if value is not None else text}


def _parts(m: Message, names: dict[str, str]) -> list[dict[str, Any]]:
    """Canonical parts -> Gemini parts. Dropped on purpose: thinking without a signature (another
    provider's reasoning: Gemini cannot use it), redacted thinking, empty text."""
    out: list[dict[str, Any]] = []
    signed = any(isinstance(p, ToolCallPart) and p.signature for p in m.content)
    for p in m.content:
        if isinstance(p, TextPart | OpaquePart) and p.text:  # opaque: another protocol's block, as its text
            out.append({"text": p.text})
        elif isinstance(p, ImagePart | FilePart):
            out.append(_media(p))
        elif isinstance(p, ToolCallPart):
            names[p.id] = p.name
            call: dict[str, Any] = {"name": p.name, "args": json_object(p.arguments)}
            if _own_id(p.id):
                call["id"] = p.id
            part: dict[str, Any] = {"functionCall": call}
            if p.signature or not signed:
                part["thoughtSignature"] = p.signature or SKIP_SIGNATURE
                signed = True
            out.append(part)
        elif isinstance(p, ToolResultPart):
            resp: dict[str, Any] = {"name": p.name or names.get(p.tool_call_id, ""), "response": _response(p)}
            if _own_id(p.tool_call_id):
                resp["id"] = p.tool_call_id
            out.append({"functionResponse": resp})
            out += [_media(c) for c in p.content if isinstance(c, ImagePart)]
        elif isinstance(p, ThinkingPart) and p.signature and not p.redacted:
            thought: dict[str, Any] = {"text": p.text}
            if p.text:
                thought["thought"] = True
            thought["thoughtSignature"] = p.signature
            out.append(thought)
    return out


def _generation_config(req: ChatRequest, extra: dict[str, Any]) -> dict[str, Any]:
    gc: dict[str, Any] = {}
    for name, key in (("max_tokens", "maxOutputTokens"), ("temperature", "temperature"), ("top_p", "topP"),
                      ("top_k", "topK"), ("seed", "seed")):  # fmt: skip
        if getattr(req, name) is not None:
            gc[key] = getattr(req, name)
    if req.stop:
        gc["stopSequences"] = req.stop[:5]
    rf = req.response_format
    if rf is not None and rf.type != "text":
        gc["responseMimeType"] = "application/json"
        if rf.type == "json_schema" and rf.json_schema is not None:
            gc["responseJsonSchema"] = rf.json_schema
    th = req.thinking
    if isinstance(extra.get("_thinking"), dict):
        gc["thinkingConfig"] = extra["_thinking"]  # a Gemini client's own, whole
    elif th is not None and not th.enabled:
        gc["thinkingConfig"] = {"thinkingBudget": 0}
    elif th is not None:
        budget = th.budget_tokens or (EFFORT_BUDGET[th.effort] if th.effort else -1)
        gc["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True}
    if isinstance(extra.get("_generation"), dict):
        gc.update(extra["_generation"])
    return gc


def encode_request(req: ChatRequest, model: str) -> dict[str, Any]:
    """The canonical request as generateContent takes it (the model and the stream flag go in the URL).

    Dropped on purpose: ``user`` and ``metadata`` (the Gemini API has no such fields), parallel tool
    call settings, ``Message.name``; stop sequences beyond Gemini's five.
    """
    extra = dict(req.provider_options.get(NAME, {}))
    names: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    merge_next = False
    for m in req.messages:
        parts = _parts(m, names)
        if not parts:
            continue
        role = "model" if m.role == "assistant" else "user"
        # A system message becomes user text at its place (docs/operations.md, "System messages"), one
        # turn with the user's next to it: Gemini has no role for it, and systemInstruction has no place.
        if contents and "user" == role == contents[-1]["role"] and (m.role == "system" or merge_next):
            contents[-1]["parts"] += parts
        else:
            contents.append({"role": role, "parts": parts})
        merge_next = m.role == "system"
    out: dict[str, Any] = {"contents": contents}
    system = [{"text": p.text} for p in req.system if p.text]
    if system:
        out["systemInstruction"] = {"parts": system}
    tools: list[dict[str, Any]] = []
    if req.tools:
        decls = []
        for t in req.tools:
            decl: dict[str, Any] = {"name": t.name}
            if t.description:
                decl["description"] = t.description
            decl["parametersJsonSchema"] = t.parameters
            decls.append(decl)
        tools.append({"functionDeclarations": decls})
    tools += [t for t in extra.get("_tools") or [] if isinstance(t, dict)]
    if tools:
        out["tools"] = tools
    tc = req.tool_choice
    if tc is not None and req.tools:
        fcc: dict[str, Any] = {"mode": TOOL_MODE[tc.mode]}
        allowed = [tc.name or ""] if tc.mode == "tool" else tc.allowed
        if allowed and tc.mode != "none":
            fcc["allowedFunctionNames"] = allowed
        out["toolConfig"] = {"functionCallingConfig": fcc}
    gc = _generation_config(req, extra)
    if gc:
        out["generationConfig"] = gc
    for key, value in extra.items():
        if not key.startswith("_"):
            out[key] = value  # safetySettings, cachedContent, and fields the gateway does not know
    return out


# ---------------------------------------------------------------------------------------------
# response


def parts_in(parts: list[dict[str, Any]]) -> list[Part]:
    """Gemini response parts -> canonical (see :mod:`.gemini_stream` for thought signatures).
    Consecutive thought parts make one thinking part; unknown parts (executableCode...) are skipped."""
    out: list[Part] = []
    for p in parts:
        sig = p.get("thoughtSignature") if isinstance(p.get("thoughtSignature"), str) else None
        if isinstance(p.get("functionCall"), dict):
            call = p["functionCall"]
            out.append(ToolCallPart(id=str(call.get("id") or new_call_id()), name=str(call.get("name") or ""),
                                    arguments=call_args(call), signature=sig))  # fmt: skip
            continue
        text = p.get("text") if isinstance(p.get("text"), str) else None
        if text is None and not sig:
            continue
        if p.get("thought") is True:
            last = out[-1] if out else None
            if isinstance(last, ThinkingPart) and last.text and not last.signature:
                last.text += text or ""
                last.signature = sig
            else:
                out.append(ThinkingPart(text=text or "", signature=sig))
            continue
        if sig:
            out.append(ThinkingPart(signature=sig))
        if text:
            out.append(TextPart(text=text))
    return out


def decode_response(body: Any) -> ChatResponse:
    if isinstance(body, list) and body and isinstance(body[0], dict):
        raise PiscesError("upstream_error", "upstream: a stream where one response was expected")
    if not isinstance(body, dict) or not ("candidates" in body or "promptFeedback" in body):
        raise PiscesError("upstream_error", "upstream: the response is not a GenerateContentResponse")
    cand = candidate_of(body)
    content = parts_in(parts_of(cand))
    reason, detail = finish_in(cand.get("finishReason"), any(isinstance(p, ToolCallPart) for p in content))
    feedback = body.get("promptFeedback")
    if not cand and isinstance(feedback, dict) and feedback.get("blockReason"):
        blocked = str(feedback["blockReason"])
        reason, detail = "content_filter", blocked if blocked in FINISH_IN else "SAFETY"
    return ChatResponse(
        id=str(body.get("responseId") or ""),
        model=str(body.get("modelVersion") or ""),
        content=content,
        finish_reason=reason,
        stop_detail=detail,
        usage=usage_from(body.get("usageMetadata")),
        created=int(time.time()),
    )


def _response_parts(parts: list[Part]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, TextPart) and p.text:
            out.append({"text": p.text})
        elif isinstance(p, ThinkingPart) and not p.redacted and (p.text or p.signature):
            part: dict[str, Any] = {"text": p.text}
            if p.text:
                part["thought"] = True
            if p.signature:
                part["thoughtSignature"] = p.signature
            out.append(part)
        elif isinstance(p, ToolCallPart):
            call: dict[str, Any] = {"name": p.name, "args": json_object(p.arguments)}
            if _own_id(p.id):
                call["id"] = p.id
            fc: dict[str, Any] = {"functionCall": call}
            if p.signature:
                fc["thoughtSignature"] = p.signature
            out.append(fc)
    return out


def encode_response(resp: ChatResponse, pisces: dict[str, Any]) -> dict[str, Any]:
    candidate = {
        "content": {"parts": _response_parts(resp.content), "role": "model"},
        "finishReason": finish_out(resp.finish_reason, resp.stop_detail),
        "index": 0,
    }
    return {
        "candidates": [candidate],
        "usageMetadata": usage_to(resp.usage),
        "modelVersion": resp.model,
        "responseId": resp.id,
        "pisces": pisces,
    }


# ---------------------------------------------------------------------------------------------
# errors, token counts, models


def render_error(err: PiscesError, pisces: dict[str, Any]) -> dict[str, Any]:
    return error_body(err.status, err.message, pisces, err.code, err.retry_after)


def upstream_error_message(body: bytes) -> str:
    """Gemini's error body; its streaming endpoint without alt=sse wraps it in an array."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        return error_message(json.dumps(payload[0]).encode())
    return error_message(body)


def encode_count(tokens: int, pisces: dict[str, Any]) -> dict[str, Any]:
    """countTokens' answer."""
    return {"totalTokens": tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}],
            "pisces": pisces}  # fmt: skip


def encode_model(model_id: str, owner: str, kind: str = "chat") -> dict[str, Any]:
    """One model as models.list shows it; ``owner`` (the serving channel's kind) goes in the description,
    ``kind`` (chat, embedding) says its methods."""
    methods = EMBED_METHODS if kind == "embedding" else METHODS
    return {"name": f"models/{model_id}", "baseModelId": model_id, "version": "pisces", "displayName": model_id,
            "description": f"{model_id}, served by Pisces ({owner})",
            "supportedGenerationMethods": methods}  # fmt: skip


def encode_model_list(models: list[dict[str, Any]], pisces: dict[str, Any]) -> dict[str, Any]:
    return {"models": models, "pisces": pisces}
