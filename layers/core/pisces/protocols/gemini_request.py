"""Gemini generateContent requests from a client: validated, decoded to canonical.

The model and the stream flag are in the URL (``models/{model}:streamGenerateContent``), so the door
passes them in. Field names are accepted in camelCase and in snake_case, as the API's JSON parser
does (the documentation's curl examples use both). Errors name the field by its path
(``contents[0].parts[1].inlineData.data``).

Function calls carry no id in Gemini 2.x (a functionResponse finds its call by name): a call without
one gets an id made here, and each functionResponse without one takes the id of the earliest
unanswered call of that name before it, so every upstream sees matching pairs.

Lenient where the API is: one object stands for a list of one (``"parts": {...}``), and modes and
levels may be in lower case.

Kept in ``provider_options["gemini"]`` for a Gemini upstream, dropped on purpose for others:
safetySettings, cachedContent and unknown top-level fields as they are; under ``_tools`` the built-in
tools (googleSearch, codeExecution, urlContext...); under ``_generation`` the generationConfig fields
the canonical model has no place for (penalties, logprobs, responseModalities, mediaResolution...);
under ``_thinking`` the client's thinkingConfig whole (includeThoughts, thinkingLevel).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pisces.canonical import (
    ChatRequest,
    FilePart,
    ImagePart,
    Message,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)
from pisces.errors import PiscesError
from pisces.protocols.common import new_call_id
from pisces.protocols.gemini_request_config import (
    as_list,
    camel,
    decode_generation,
    decode_tool_choice,
    decode_tools,
    invalid,
    missing,
    obj,
    string,
)

NAME = "gemini"
_MAPPED = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "model"}
_DATA_FIELDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
                "codeExecutionResult")  # fmt: skip
_ROLES = {"user": "user", "model": "assistant", "function": "user", "tool": "user"}


_PLACEHOLDERS = {"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"}


def _signature(sig: str | None) -> str | None:
    """A thoughtSignature in the standard base64 alphabet. google-genai holds signatures as bytes and
    sends them URL-safe; the same bytes in the standard alphabet are what an Anthropic upstream
    issued (and must get back verbatim), and what Gemini accepts either way."""
    if not sig or sig in _PLACEHOLDERS or ("-" not in sig and "_" not in sig):
        return sig
    std = sig.replace("-", "+").replace("_", "/")
    try:  # validate: without it any string "decodes" (other characters are skipped)
        base64.b64decode(std + "=" * (-len(std) % 4), validate=True)
    except (binascii.Error, ValueError):
        return sig  # not base64: an opaque string, passed on as it came
    return std


def _base64(data: str, param: str) -> str:
    """Standard or URL-safe base64, as proto JSON accepts; passed on in the standard alphabet."""
    try:
        base64.b64decode(data, validate=True)
        return data
    except (binascii.Error, ValueError):
        pass
    try:
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        raise invalid(param, "invalid base64 data") from None
    return base64.b64encode(raw).decode()


# ---------------------------------------------------------------------------------------------
# contents


class _Calls:
    """Ids for a conversation's function calls, and the call each response answers."""

    def __init__(self) -> None:
        self.pending: dict[str, list[str]] = {}

    def call(self, name: str, given: str | None) -> str:
        cid = given or new_call_id()
        self.pending.setdefault(name, []).append(cid)
        return cid

    def answer(self, name: str, given: str | None) -> str:
        waiting = self.pending.get(name, [])
        if given:
            if given in waiting:
                waiting.remove(given)
            return given
        return waiting.pop(0) if waiting else new_call_id()


def _part(raw: Any, where: str, calls: _Calls) -> list[Part]:
    p = obj(raw, where)
    present = [k for k in _DATA_FIELDS if k in p and p[k] is not None]
    if len(present) > 1:
        raise invalid(where, f"a part holds one data field (text, inlineData, fileData, functionCall...): {present}")
    sig = _signature(string(p, "thoughtSignature", where))
    kind = present[0] if present else ("text" if sig else None)
    if kind is None:
        raise missing(f"{where}.data")
    if kind == "text":
        text = string(p, "text", where) or ""
        if p.get("thought") is True:
            return [ThinkingPart(text=text, signature=sig)]
        out: list[Part] = [ThinkingPart(signature=sig)] if sig else []
        return [*out, TextPart(text=text)] if text else out
    if kind == "inlineData":
        d = obj(p["inlineData"], f"{where}.inlineData")
        mime = string(d, "mimeType", f"{where}.inlineData", required=True) or ""
        data = _base64(string(d, "data", f"{where}.inlineData", required=True) or "", f"{where}.inlineData.data")
        if mime.startswith("image/"):
            return [ImagePart(data=data, media_type=mime)]
        return [FilePart(data=data, media_type=mime)]
    if kind == "fileData":
        d = obj(p["fileData"], f"{where}.fileData")
        uri = string(d, "fileUri", f"{where}.fileData", required=True) or ""
        mime = string(d, "mimeType", f"{where}.fileData")
        if mime and mime.startswith("image/") and uri.startswith(("http://", "https://")):
            return [ImagePart(url=uri, media_type=mime)]
        return [FilePart(uri=uri, media_type=mime, name=string(d, "displayName", f"{where}.fileData"))]
    if kind == "functionCall":
        c = obj(p["functionCall"], f"{where}.functionCall")
        name = string(c, "name", f"{where}.functionCall", required=True) or ""
        args = c.get("args", {})
        if not isinstance(args, dict):
            raise invalid(f"{where}.functionCall.args", "must be an object")
        cid = calls.call(name, string(c, "id", f"{where}.functionCall"))
        return [ToolCallPart(id=cid, name=name, arguments=json.dumps(args, ensure_ascii=False), signature=sig)]
    if kind == "functionResponse":
        r = obj(p["functionResponse"], f"{where}.functionResponse")
        name = string(r, "name", f"{where}.functionResponse", required=True) or ""
        response = r.get("response", {})
        if not isinstance(response, dict):
            raise invalid(f"{where}.functionResponse.response", "must be an object")
        cid = calls.answer(name, string(r, "id", f"{where}.functionResponse"))
        is_error = set(response) == {"error"}
        text = json.dumps(response, ensure_ascii=False)
        return [ToolResultPart(tool_call_id=cid, name=name, content=[TextPart(text=text)], is_error=is_error)]
    raise PiscesError("unsupported_parameter", f"{where}.{kind}: the gateway does not carry {kind} parts.",
                      param=f"{where}.{kind}")  # fmt: skip


def _contents(body: dict[str, Any]) -> list[Message]:
    if body.get("contents") is None:
        raise missing("contents")
    raw = as_list(body["contents"], "contents")
    if not raw:
        raise missing("contents")
    calls, out = _Calls(), []
    for i, c in enumerate(raw):
        where = f"contents[{i}]"
        content = obj(c, where)
        role = string(content, "role", where) or "user"
        if role not in _ROLES:
            raise invalid(f"{where}.role", f"Please use a valid role: user, model (got '{role}').")
        parts_raw = content.get("parts")
        if parts_raw is None:
            raise missing(f"{where}.parts")
        raw_parts = as_list(parts_raw, f"{where}.parts")
        if not raw_parts:  # the API refuses an empty turn; dropping it would change the conversation
            raise invalid(f"{where}.parts", "contents.parts must not be empty.")
        parts: list[Part] = []
        for j, p in enumerate(raw_parts):
            parts += _part(p, f"{where}.parts[{j}]", calls)
        out.append(Message(role=_ROLES[role], content=parts))  # type: ignore[arg-type]
    return out


def _system(body: dict[str, Any]) -> list[TextPart]:
    v = body.get("systemInstruction")
    if v is None:
        return []
    if isinstance(v, str):
        return [TextPart(text=v)]
    si = obj(v, "systemInstruction")
    parts = as_list(si.get("parts") or [], "systemInstruction.parts")
    out = []
    for j, p in enumerate(parts):
        text = string(obj(p, f"systemInstruction.parts[{j}]"), "text", f"systemInstruction.parts[{j}]")
        if text:
            out.append(TextPart(text=text))
    return out


def decode_request(body: Any, model: str = "", stream: bool = False) -> ChatRequest:
    """A generateContent body (the model and the stream flag come from the URL)."""
    if not isinstance(body, dict):
        raise PiscesError("invalid_request", "Invalid JSON payload received. The body must be a JSON object.")
    body = camel(body)
    extra: dict[str, Any] = {k: v for k, v in body.items() if k not in _MAPPED}
    req: dict[str, Any] = {"model": model, "stream": stream}
    req["messages"] = _contents(body)
    req["system"] = _system(body)
    req["tools"] = decode_tools(body, extra)
    req["tool_choice"] = decode_tool_choice(body)
    decode_generation(body, req, extra)
    out = ChatRequest(**{k: v for k, v in req.items() if v is not None})
    if extra:
        out.provider_options[NAME] = extra
    return out


def decode_count_tokens(body: Any, model: str = "") -> ChatRequest:
    """A countTokens body: ``contents``, or a whole ``generateContentRequest``."""
    if isinstance(body, dict) and isinstance(camel(body).get("generateContentRequest"), dict):
        return decode_request(camel(body)["generateContentRequest"], model)
    if isinstance(body, dict) and not body.get("contents"):
        raise PiscesError("invalid_request", "* CountTokensRequest: contents or generateContentRequest is required.",
                          param="contents")  # fmt: skip
    return decode_request(body, model)
