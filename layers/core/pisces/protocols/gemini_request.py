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
import re
from typing import Any

from pisces.canonical import (
    ChatRequest,
    FilePart,
    ImagePart,
    Message,
    Part,
    ResponseFormat,
    TextPart,
    ThinkingConfig,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)
from pisces.errors import PiscesError
from pisces.protocols.gemini_stream import NAME, new_call_id

_MAPPED = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "model"}
_GEN_MAPPED = {"maxOutputTokens", "temperature", "topP", "topK", "stopSequences", "candidateCount",
               "responseMimeType", "responseSchema", "responseJsonSchema", "seed", "thinkingConfig"}  # fmt: skip
_DATA_FIELDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
                "codeExecutionResult")  # fmt: skip
_ROLES = {"user": "user", "model": "assistant", "function": "user", "tool": "user"}
_EFFORTS = {"minimal", "low", "medium", "high"}
_CAMEL = re.compile(r"_([a-z])")


def _camel(obj: dict[str, Any]) -> dict[str, Any]:
    """The object's own keys in camelCase (snake_case accepted, as the API's JSON parser does).
    The object itself when it has no snake_case key: never changed in place (the body is hashed
    for Idempotency-Key afterwards)."""
    if not any("_" in k for k in obj):
        return obj
    return {_CAMEL.sub(lambda m: m.group(1).upper(), k): v for k, v in obj.items()}


def _err(param: str, message: str, code: str = "invalid_request") -> PiscesError:
    return PiscesError(code, f"Invalid value at '{param}': {message}", param=param)


def _missing(param: str) -> PiscesError:
    field = re.split(r"[.\[]", param)[-1]
    return PiscesError("invalid_request", f"* GenerateContentRequest.{param}: {field} is not specified", param=param)


def _obj(v: Any, param: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _err(param, "Starting an object on a scalar field" if v is not None else "must be an object")
    return _camel(v)


def _list(v: Any, param: str) -> list[Any]:
    """A repeated field; one object stands for a list of one, as the API's parser (and its docs) allow."""
    if isinstance(v, dict):
        return [v]
    if not isinstance(v, list):
        raise _err(param, f"expected a list, got {json.dumps(v)[:40]}")
    return v


def _str(obj: dict[str, Any], key: str, where: str, required: bool = False) -> str | None:
    v = obj.get(key)
    if v is None:
        if required:
            raise _missing(f"{where}.{key}")
        return None
    if not isinstance(v, str):
        raise _err(f"{where}.{key}", f"expected a string, got {json.dumps(v)[:40]}")
    return v


def _int(obj: dict[str, Any], key: str, where: str, lo: int | None = None) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v):  # proto JSON takes integers as strings too
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise _err(f"{where}.{key}", f"expected an integer, got {json.dumps(v)[:40]}")
    if lo is not None and v < lo:
        raise _err(f"{where}.{key}", f"must be at least {lo}")
    return v


def _num(obj: dict[str, Any], key: str, where: str, hi: float) -> float | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise _err(f"{where}.{key}", f"expected a number, got {json.dumps(v)[:40]}")
    if not 0 <= v <= hi:
        raise _err(f"{where}.{key}", f"must be between 0 and {hi:g}")
    return float(v)


# Google's documented stand-ins for a signature: kept as they are (they are not base64 of anything)
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
        raise _err(param, "invalid base64 data") from None
    return base64.b64encode(raw).decode()


# ---------------------------------------------------------------------------------------------
# schemas: Gemini's OpenAPI subset (TYPE in capitals, nullable) -> JSON Schema

_SCHEMA_KEYS = {"format", "description", "enum", "required", "minItems", "maxItems", "minimum", "maximum",
                "minLength", "maxLength", "pattern", "title", "default", "example", "minProperties",
                "maxProperties"}  # fmt: skip


def json_schema(s: Any) -> Any:
    """A Gemini ``Schema`` as JSON Schema (types lower-cased, ``nullable`` as a type union,
    ``propertyOrdering`` dropped): what every other upstream takes."""
    if not isinstance(s, dict):
        return s
    s = _camel(s)
    out: dict[str, Any] = {k: v for k, v in s.items() if k in _SCHEMA_KEYS}
    t = s.get("type")
    if isinstance(t, str) and t.upper() != "TYPE_UNSPECIFIED":
        out["type"] = [t.lower(), "null"] if s.get("nullable") is True else t.lower()
    if isinstance(s.get("properties"), dict):
        out["properties"] = {k: json_schema(v) for k, v in s["properties"].items()}
    if isinstance(s.get("items"), dict):
        out["items"] = json_schema(s["items"])
    if isinstance(s.get("anyOf"), list):
        out["anyOf"] = [json_schema(v) for v in s["anyOf"]]
    return out


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
    p = _obj(raw, where)
    present = [k for k in _DATA_FIELDS if k in p and p[k] is not None]
    if len(present) > 1:
        raise _err(where, f"a part holds one of text, inlineData, fileData, functionCall, functionResponse: {present}")
    sig = _signature(_str(p, "thoughtSignature", where))
    kind = present[0] if present else ("text" if sig else None)
    if kind is None:
        raise _missing(f"{where}.data")
    if kind == "text":
        text = _str(p, "text", where) or ""
        if p.get("thought") is True:
            return [ThinkingPart(text=text, signature=sig)]
        out: list[Part] = [ThinkingPart(signature=sig)] if sig else []
        return [*out, TextPart(text=text)] if text else out
    if kind == "inlineData":
        d = _obj(p["inlineData"], f"{where}.inlineData")
        mime = _str(d, "mimeType", f"{where}.inlineData", required=True) or ""
        data = _base64(_str(d, "data", f"{where}.inlineData", required=True) or "", f"{where}.inlineData.data")
        if mime.startswith("image/"):
            return [ImagePart(data=data, media_type=mime)]
        return [FilePart(data=data, media_type=mime)]
    if kind == "fileData":
        d = _obj(p["fileData"], f"{where}.fileData")
        uri = _str(d, "fileUri", f"{where}.fileData", required=True) or ""
        mime = _str(d, "mimeType", f"{where}.fileData")
        if mime and mime.startswith("image/") and uri.startswith(("http://", "https://")):
            return [ImagePart(url=uri, media_type=mime)]
        return [FilePart(uri=uri, media_type=mime, name=_str(d, "displayName", f"{where}.fileData"))]
    if kind == "functionCall":
        c = _obj(p["functionCall"], f"{where}.functionCall")
        name = _str(c, "name", f"{where}.functionCall", required=True) or ""
        args = c.get("args", {})
        if not isinstance(args, dict):
            raise _err(f"{where}.functionCall.args", "must be an object")
        cid = calls.call(name, _str(c, "id", f"{where}.functionCall"))
        return [ToolCallPart(id=cid, name=name, arguments=json.dumps(args, ensure_ascii=False), signature=sig)]
    if kind == "functionResponse":
        r = _obj(p["functionResponse"], f"{where}.functionResponse")
        name = _str(r, "name", f"{where}.functionResponse", required=True) or ""
        response = r.get("response", {})
        if not isinstance(response, dict):
            raise _err(f"{where}.functionResponse.response", "must be an object")
        cid = calls.answer(name, _str(r, "id", f"{where}.functionResponse"))
        is_error = set(response) == {"error"}
        text = json.dumps(response, ensure_ascii=False)
        return [ToolResultPart(tool_call_id=cid, name=name, content=[TextPart(text=text)], is_error=is_error)]
    raise PiscesError("unsupported_parameter", f"{where}.{kind}: the gateway does not carry {kind} parts.",
                      param=f"{where}.{kind}")  # fmt: skip


def _contents(body: dict[str, Any]) -> list[Message]:
    if body.get("contents") is None:
        raise _missing("contents")
    raw = _list(body["contents"], "contents")
    if not raw:
        raise _missing("contents")
    calls, out = _Calls(), []
    for i, c in enumerate(raw):
        where = f"contents[{i}]"
        content = _obj(c, where)
        role = _str(content, "role", where) or "user"
        if role not in _ROLES:
            raise _err(f"{where}.role", f"Please use a valid role: user, model (got '{role}').")
        parts_raw = content.get("parts")
        if parts_raw is None:
            raise _missing(f"{where}.parts")
        parts: list[Part] = []
        for j, p in enumerate(_list(parts_raw, f"{where}.parts")):
            parts += _part(p, f"{where}.parts[{j}]", calls)
        out.append(Message(role=_ROLES[role], content=parts))  # type: ignore[arg-type]
    return out


def _system(body: dict[str, Any]) -> list[TextPart]:
    v = body.get("systemInstruction")
    if v is None:
        return []
    if isinstance(v, str):
        return [TextPart(text=v)]
    si = _obj(v, "systemInstruction")
    parts = _list(si.get("parts") or [], "systemInstruction.parts")
    out = []
    for j, p in enumerate(parts):
        text = _str(_obj(p, f"systemInstruction.parts[{j}]"), "text", f"systemInstruction.parts[{j}]")
        if text:
            out.append(TextPart(text=text))
    return out


# ---------------------------------------------------------------------------------------------
# tools, generation config


def _tools(body: dict[str, Any], extra: dict[str, Any]) -> list[Tool]:
    if body.get("tools") is None:
        return []
    tools, builtin = [], []
    for i, t in enumerate(_list(body["tools"], "tools")):
        tool = _obj(t, f"tools[{i}]")
        decls = tool.get("functionDeclarations")
        for j, d in enumerate(_list(decls, f"tools[{i}].functionDeclarations") if decls is not None else []):
            where = f"tools[{i}].functionDeclarations[{j}]"
            decl = _obj(d, where)
            name = _str(decl, "name", where, required=True) or ""
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}", name):
                raise _err(f"{where}.name", "Invalid function name. Must start with a letter or an underscore; "
                           "a-z, A-Z, 0-9, underscores, dots, colons and dashes, at most 128 characters.")  # fmt: skip
            if decl.get("parametersJsonSchema") is not None:
                _obj(decl["parametersJsonSchema"], f"{where}.parametersJsonSchema")
                params = decl["parametersJsonSchema"]  # as sent: property names are the user's
            elif decl.get("parameters") is not None:
                _obj(decl["parameters"], f"{where}.parameters")
                params = json_schema(decl["parameters"])
            else:
                params = {"type": "object", "properties": {}}
            tools.append(Tool(name=name, description=_str(decl, "description", where), parameters=params))
        others = {k: v for k, v in t.items() if k not in ("functionDeclarations", "function_declarations")}
        if others:  # built-in tools (googleSearch, codeExecution...): for a Gemini upstream only
            builtin.append(others)
    if builtin:
        extra["_tools"] = builtin
    return tools


def _tool_choice(body: dict[str, Any]) -> ToolChoice | None:
    if body.get("toolConfig") is None:
        return None
    tc = _obj(body["toolConfig"], "toolConfig")
    if tc.get("functionCallingConfig") is None:
        return None
    where = "toolConfig.functionCallingConfig"
    fc = _obj(tc["functionCallingConfig"], where)
    mode = (_str(fc, "mode", where) or "AUTO").upper()
    allowed_raw = fc.get("allowedFunctionNames")
    allowed = None
    if allowed_raw is not None:
        allowed = []
        for i, n in enumerate(_list(allowed_raw, f"{where}.allowedFunctionNames")):
            if not isinstance(n, str):
                raise _err(f"{where}.allowedFunctionNames[{i}]", f"expected a string, got {json.dumps(n)[:40]}")
            allowed.append(n)
    if mode in ("AUTO", "MODE_UNSPECIFIED", "VALIDATED"):
        return ToolChoice(mode="auto", allowed=allowed or None)
    if mode == "NONE":
        return ToolChoice(mode="none")
    if mode == "ANY":
        if allowed and len(allowed) == 1:
            return ToolChoice(mode="tool", name=allowed[0])
        return ToolChoice(mode="required", allowed=allowed or None)
    raise _err(f"{where}.mode", f"Invalid value (got '{mode}'); use AUTO, ANY or NONE.")


def _thinking(gc: dict[str, Any], extra: dict[str, Any]) -> ThinkingConfig | None:
    if gc.get("thinkingConfig") is None:
        return None
    where = "generationConfig.thinkingConfig"
    tc = _obj(gc["thinkingConfig"], where)
    extra["_thinking"] = tc
    budget = _int(tc, "thinkingBudget", where, lo=-1)
    level = _str(tc, "thinkingLevel", where)
    effort = level.lower() if level else None
    if effort is not None and effort not in _EFFORTS:
        raise _err(f"{where}.thinkingLevel", f"Invalid value (got '{level}'); use MINIMAL, LOW, MEDIUM or HIGH.")
    if budget == 0:
        return ThinkingConfig(enabled=False)
    if budget is None and effort is None and tc.get("includeThoughts") is not True:
        return None
    return ThinkingConfig(enabled=True, budget_tokens=budget if budget and budget > 0 else None,
                          effort=effort)  # type: ignore[arg-type]  # fmt: skip


def _generation(body: dict[str, Any], req: dict[str, Any], extra: dict[str, Any]) -> None:
    if body.get("generationConfig") is None:
        return
    where = "generationConfig"
    gc = _obj(body["generationConfig"], where)
    req["max_tokens"] = _int(gc, "maxOutputTokens", where, lo=1)
    req["temperature"] = _num(gc, "temperature", where, 2.0)
    req["top_p"] = _num(gc, "topP", where, 1.0)
    req["top_k"] = _int(gc, "topK", where, lo=1)
    req["seed"] = _int(gc, "seed", where)
    n = _int(gc, "candidateCount", where, lo=1)
    if n is not None and n > 1:
        raise PiscesError("unsupported_parameter", "generationConfig.candidateCount: the gateway answers with one "
                          "candidate; send candidateCount 1 or leave it out.",
                          param="generationConfig.candidateCount")  # fmt: skip
    if gc.get("stopSequences") is not None:
        stops = _list(gc["stopSequences"], f"{where}.stopSequences")
        if len(stops) > 5 or not all(isinstance(s, str) for s in stops):
            raise _err(f"{where}.stopSequences", "at most 5 strings")
        req["stop"] = stops
    mime = _str(gc, "responseMimeType", where)
    if gc.get("responseJsonSchema") is not None:
        _obj(gc["responseJsonSchema"], f"{where}.responseJsonSchema")
        req["response_format"] = ResponseFormat(type="json_schema", json_schema=gc["responseJsonSchema"])
    elif gc.get("responseSchema") is not None:
        _obj(gc["responseSchema"], f"{where}.responseSchema")
        req["response_format"] = ResponseFormat(type="json_schema", json_schema=json_schema(gc["responseSchema"]))
    elif mime == "application/json":
        req["response_format"] = ResponseFormat(type="json_object")
    if mime not in (None, "application/json", "text/plain"):
        extra.setdefault("_generation", {})["responseMimeType"] = mime  # text/x.enum: Gemini's own
    req["thinking"] = _thinking(gc, extra)
    rest = {k: v for k, v in gc.items() if k not in _GEN_MAPPED}
    if rest:
        extra.setdefault("_generation", {}).update(rest)


def decode_request(body: Any, model: str = "", stream: bool = False) -> ChatRequest:
    """A generateContent body (the model and the stream flag come from the URL)."""
    if not isinstance(body, dict):
        raise PiscesError("invalid_request", "Invalid JSON payload received. The body must be a JSON object.")
    body = _camel(body)
    extra: dict[str, Any] = {k: v for k, v in body.items() if k not in _MAPPED}
    req: dict[str, Any] = {"model": model, "stream": stream}
    req["messages"] = _contents(body)
    req["system"] = _system(body)
    req["tools"] = _tools(body, extra)
    req["tool_choice"] = _tool_choice(body)
    _generation(body, req, extra)
    out = ChatRequest(**{k: v for k, v in req.items() if v is not None})
    if extra:
        out.provider_options[NAME] = extra
    return out


def decode_count_tokens(body: Any, model: str = "") -> ChatRequest:
    """A countTokens body: ``contents``, or a whole ``generateContentRequest``."""
    if isinstance(body, dict) and isinstance(_camel(body).get("generateContentRequest"), dict):
        return decode_request(_camel(body)["generateContentRequest"], model)
    if isinstance(body, dict) and not body.get("contents"):
        raise PiscesError("invalid_request", "* CountTokensRequest: contents or generateContentRequest is required.",
                          param="contents")  # fmt: skip
    return decode_request(body, model)
