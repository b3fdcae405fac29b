"""Gemini generateContent requests, the configuration half: the field readers every part of the
decoder uses, Gemini's schemas as JSON Schema, and tools, toolConfig and generationConfig.

Readers accept camelCase and snake_case keys and one object where a list is expected, as the API's
JSON parser does, and name a bad field by its path (``generationConfig.temperature``). What the
canonical model has no place for is kept in ``extra`` (``provider_options["gemini"]``): built-in
tools under ``_tools``, unmapped generationConfig fields under ``_generation``, the client's whole
thinkingConfig under ``_thinking``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pisces.canonical import ResponseFormat, ThinkingConfig, Tool, ToolChoice
from pisces.errors import PiscesError

_GEN_MAPPED = {"maxOutputTokens", "temperature", "topP", "topK", "stopSequences", "candidateCount",
               "responseMimeType", "responseSchema", "responseJsonSchema", "seed", "thinkingConfig"}  # fmt: skip
_EFFORTS = {"minimal", "low", "medium", "high"}
_CAMEL = re.compile(r"_([a-z])")


def camel(obj: dict[str, Any]) -> dict[str, Any]:
    """The object's own keys in camelCase (snake_case accepted, as the API's JSON parser does).
    The object itself when it has no snake_case key: never changed in place (the body is hashed
    for Idempotency-Key afterwards)."""
    if not any("_" in k for k in obj):
        return obj
    return {_CAMEL.sub(lambda m: m.group(1).upper(), k): v for k, v in obj.items()}


def invalid(param: str, message: str, code: str = "invalid_request") -> PiscesError:
    return PiscesError(code, f"Invalid value at '{param}': {message}", param=param)


def missing(param: str) -> PiscesError:
    field = re.split(r"[.\[]", param)[-1]
    return PiscesError("invalid_request", f"* GenerateContentRequest.{param}: {field} is not specified", param=param)


def obj(v: Any, param: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise invalid(param, "Starting an object on a scalar field" if v is not None else "must be an object")
    return camel(v)


def as_list(v: Any, param: str) -> list[Any]:
    """A repeated field; one object stands for a list of one, as the API's parser (and its docs) allow."""
    if isinstance(v, dict):
        return [v]
    if not isinstance(v, list):
        raise invalid(param, f"expected a list, got {json.dumps(v)[:40]}")
    return v


def string(obj: dict[str, Any], key: str, where: str, required: bool = False) -> str | None:
    v = obj.get(key)
    if v is None:
        if required:
            raise missing(f"{where}.{key}")
        return None
    if not isinstance(v, str):
        raise invalid(f"{where}.{key}", f"expected a string, got {json.dumps(v)[:40]}")
    return v


def integer(obj: dict[str, Any], key: str, where: str, lo: int | None = None) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v):  # proto JSON takes integers as strings too
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise invalid(f"{where}.{key}", f"expected an integer, got {json.dumps(v)[:40]}")
    if lo is not None and v < lo:
        raise invalid(f"{where}.{key}", f"must be at least {lo}")
    return v


def number(obj: dict[str, Any], key: str, where: str, hi: float) -> float | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise invalid(f"{where}.{key}", f"expected a number, got {json.dumps(v)[:40]}")
    if not 0 <= v <= hi:
        raise invalid(f"{where}.{key}", f"must be between 0 and {hi:g}")
    return float(v)


# Google's documented stand-ins for a signature: kept as they are (they are not base64 of anything)
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
    s = camel(s)
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
# tools, generation config


def decode_tools(body: dict[str, Any], extra: dict[str, Any]) -> list[Tool]:
    if body.get("tools") is None:
        return []
    tools, builtin = [], []
    for i, t in enumerate(as_list(body["tools"], "tools")):
        tool = obj(t, f"tools[{i}]")
        decls = tool.get("functionDeclarations")
        for j, d in enumerate(as_list(decls, f"tools[{i}].functionDeclarations") if decls is not None else []):
            where = f"tools[{i}].functionDeclarations[{j}]"
            decl = obj(d, where)
            name = string(decl, "name", where, required=True) or ""
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}", name):
                raise invalid(f"{where}.name", "Invalid function name. Must start with a letter or an underscore; "
                           "a-z, A-Z, 0-9, underscores, dots, colons and dashes, at most 128 characters.")  # fmt: skip
            if decl.get("parametersJsonSchema") is not None:
                obj(decl["parametersJsonSchema"], f"{where}.parametersJsonSchema")
                params = decl["parametersJsonSchema"]  # as sent: property names are the user's
            elif decl.get("parameters") is not None:
                obj(decl["parameters"], f"{where}.parameters")
                params = json_schema(decl["parameters"])
            else:
                params = {"type": "object", "properties": {}}
            tools.append(Tool(name=name, description=string(decl, "description", where), parameters=params))
        others = {k: v for k, v in t.items() if k not in ("functionDeclarations", "function_declarations")}
        if others:  # built-in tools (googleSearch, codeExecution...): for a Gemini upstream only
            builtin.append(others)
    if builtin:
        extra["_tools"] = builtin
    return tools


def decode_tool_choice(body: dict[str, Any]) -> ToolChoice | None:
    if body.get("toolConfig") is None:
        return None
    tc = obj(body["toolConfig"], "toolConfig")
    if tc.get("functionCallingConfig") is None:
        return None
    where = "toolConfig.functionCallingConfig"
    fc = obj(tc["functionCallingConfig"], where)
    mode = (string(fc, "mode", where) or "AUTO").upper()
    allowed_raw = fc.get("allowedFunctionNames")
    allowed = None
    if allowed_raw is not None:
        allowed = []
        for i, n in enumerate(as_list(allowed_raw, f"{where}.allowedFunctionNames")):
            if not isinstance(n, str):
                raise invalid(f"{where}.allowedFunctionNames[{i}]", f"expected a string, got {json.dumps(n)[:40]}")
            allowed.append(n)
    if mode in ("AUTO", "MODE_UNSPECIFIED", "VALIDATED"):
        return ToolChoice(mode="auto", allowed=allowed or None)
    if mode == "NONE":
        return ToolChoice(mode="none")
    if mode == "ANY":
        if allowed and len(allowed) == 1:
            return ToolChoice(mode="tool", name=allowed[0])
        return ToolChoice(mode="required", allowed=allowed or None)
    raise invalid(f"{where}.mode", f"Invalid value (got '{mode}'); use AUTO, ANY or NONE.")


def _thinking(gc: dict[str, Any], extra: dict[str, Any]) -> ThinkingConfig | None:
    if gc.get("thinkingConfig") is None:
        return None
    where = "generationConfig.thinkingConfig"
    tc = obj(gc["thinkingConfig"], where)
    extra["_thinking"] = tc
    budget = integer(tc, "thinkingBudget", where, lo=-1)
    level = string(tc, "thinkingLevel", where)
    effort = level.lower() if level else None
    if effort is not None and effort not in _EFFORTS:
        raise invalid(f"{where}.thinkingLevel", f"Invalid value (got '{level}'); use MINIMAL, LOW, MEDIUM or HIGH.")
    if budget == 0:
        return ThinkingConfig(enabled=False)
    if budget is None and effort is None and tc.get("includeThoughts") is not True:
        return None
    return ThinkingConfig(enabled=True, budget_tokens=budget if budget and budget > 0 else None,
                          effort=effort)  # type: ignore[arg-type]  # fmt: skip


def decode_generation(body: dict[str, Any], req: dict[str, Any], extra: dict[str, Any]) -> None:
    if body.get("generationConfig") is None:
        return
    where = "generationConfig"
    gc = obj(body["generationConfig"], where)
    req["max_tokens"] = integer(gc, "maxOutputTokens", where, lo=1)
    req["temperature"] = number(gc, "temperature", where, 2.0)
    req["top_p"] = number(gc, "topP", where, 1.0)
    req["top_k"] = integer(gc, "topK", where, lo=1)
    req["seed"] = integer(gc, "seed", where)
    n = integer(gc, "candidateCount", where, lo=1)
    if n is not None and n > 1:
        raise PiscesError("unsupported_parameter", "generationConfig.candidateCount: the gateway answers with one "
                          "candidate; send candidateCount 1 or leave it out.",
                          param="generationConfig.candidateCount")  # fmt: skip
    if gc.get("stopSequences") is not None:
        stops = as_list(gc["stopSequences"], f"{where}.stopSequences")
        if len(stops) > 5 or not all(isinstance(s, str) for s in stops):
            raise invalid(f"{where}.stopSequences", "at most 5 strings")
        req["stop"] = stops
    mime = string(gc, "responseMimeType", where)
    if gc.get("responseJsonSchema") is not None:
        obj(gc["responseJsonSchema"], f"{where}.responseJsonSchema")
        req["response_format"] = ResponseFormat(type="json_schema", json_schema=gc["responseJsonSchema"])
    elif gc.get("responseSchema") is not None:
        obj(gc["responseSchema"], f"{where}.responseSchema")
        req["response_format"] = ResponseFormat(type="json_schema", json_schema=json_schema(gc["responseSchema"]))
    elif mime == "application/json":
        req["response_format"] = ResponseFormat(type="json_object")
    if mime not in (None, "application/json", "text/plain"):
        extra.setdefault("_generation", {})["responseMimeType"] = mime  # text/x.enum: Gemini's own
    req["thinking"] = _thinking(gc, extra)
    rest = {k: v for k, v in gc.items() if k not in _GEN_MAPPED}
    if rest:
        extra.setdefault("_generation", {}).update(rest)
