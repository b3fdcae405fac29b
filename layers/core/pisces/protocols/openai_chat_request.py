"""OpenAI Chat Completions requests: validated and decoded from a client, encoded for an upstream."""

from __future__ import annotations

import json
from typing import Any

from pisces.canonical import (
    ChatRequest,
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
from pisces.protocols.common import split_data_url
from pisces.protocols.openai_params import invalid, missing, opt, opt_int, opt_number

NAME = "openai"

# Request fields the canonical model maps; every other field goes to provider_options["openai"].
_MAPPED = {
    "model",
    "messages",
    "tools",
    "functions",
    "tool_choice",
    "function_call",
    "parallel_tool_calls",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "n",
    "response_format",
    "reasoning_effort",
    "stream",
    "stream_options",
    "user",
    "metadata",
}


# ---------------------------------------------------------------------------------------------
# request


def _image(url_obj: Any, param: str) -> ImagePart:
    if isinstance(url_obj, str):
        url_obj = {"url": url_obj}
    if not isinstance(url_obj, dict) or not isinstance(url_obj.get("url"), str):
        raise missing(f"{param}.url")
    url, detail = url_obj["url"], opt(url_obj, "detail", param, str, "a string")
    if inline := split_data_url(url):
        return ImagePart(data=inline[1], media_type=inline[0] or None, detail=detail)
    return ImagePart(url=url, detail=detail)


def _content_parts(content: Any, param: str, allow_images: bool = True) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(text=content)]
    if not isinstance(content, list):
        raise invalid(param, "a string or an array of content parts", content)
    parts: list[Part] = []
    for i, p in enumerate(content):
        where = f"{param}[{i}]"
        if not isinstance(p, dict):
            raise invalid(where, "an object", p)
        kind = p.get("type")
        if kind == "text":
            if not isinstance(p.get("text"), str):
                raise invalid(f"{where}.text", "a string", p.get("text"))
            parts.append(TextPart(text=p["text"]))
        elif kind == "image_url" and allow_images:
            parts.append(_image(p.get("image_url"), f"{where}.image_url"))
        elif kind == "refusal":
            parts.append(TextPart(text=str(p.get("refusal", ""))))
        else:
            raise PiscesError(
                "invalid_request",
                f"Invalid value for '{where}.type': {kind!r} is not supported here.",
                param=f"{where}.type",
            )
    return parts


def tool_calls(calls: Any, param: str) -> list[Part]:
    if not isinstance(calls, list):
        raise invalid(param, "an array", calls)
    out: list[Part] = []
    for i, c in enumerate(calls):
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise missing(f"{param}[{i}].function.name")
        args = fn.get("arguments", "{}")
        if not isinstance(args, str):
            args = json.dumps(args)
        out.append(ToolCallPart(id=str(c.get("id") or f"call_{i}"), name=fn["name"], arguments=args or "{}"))
    return out


def _messages(raw: Any) -> tuple[list[TextPart], list[Message]]:
    if raw is None:
        raise missing("messages")
    if not isinstance(raw, list):
        raise invalid("messages", "an array", raw)
    if not raw:
        raise PiscesError(
            "invalid_request",
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
        )
    system: list[TextPart] = []
    messages: list[Message] = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise invalid(where, "an object", m)
        role = m.get("role")
        if role in ("system", "developer"):
            system += [
                p for p in _content_parts(m.get("content"), f"{where}.content", False) if isinstance(p, TextPart)
            ]
        elif role == "user":
            parts = _content_parts(m.get("content"), f"{where}.content")
            if (
                messages
                and messages[-1].role == "user"
                and any(isinstance(p, ToolResultPart) for p in messages[-1].content)
            ):
                messages[-1].content.extend(parts)  # tool results then the user's words: one user turn
            else:
                messages.append(Message(role="user", content=parts, name=opt(m, "name", where, str, "a string")))
        elif role == "assistant":
            parts = _content_parts(m.get("content"), f"{where}.content", False)
            if m.get("refusal") and not parts:
                parts = [TextPart(text=str(m["refusal"]))]
            if m.get("reasoning_content"):
                parts.insert(0, ThinkingPart(text=str(m["reasoning_content"])))
            if m.get("tool_calls"):
                parts += tool_calls(m["tool_calls"], f"{where}.tool_calls")
            messages.append(Message(role="assistant", content=parts, name=opt(m, "name", where, str, "a string")))
        elif role == "tool":
            if not isinstance(m.get("tool_call_id"), str):
                raise missing(f"{where}.tool_call_id")
            content = [
                p for p in _content_parts(m.get("content"), f"{where}.content", False) if isinstance(p, TextPart)
            ]
            result = ToolResultPart(tool_call_id=m["tool_call_id"], content=content)
            if (
                messages
                and messages[-1].role == "user"
                and all(isinstance(p, ToolResultPart) for p in messages[-1].content)
                and messages[-1].content
            ):
                messages[-1].content.append(result)
            else:
                messages.append(Message(role="user", content=[result]))
        elif role is None:
            raise missing(f"{where}.role")
        else:
            raise PiscesError(
                "invalid_request",
                f"Invalid value for '{where}.role': {role!r}. Supported values are: 'system', 'developer', "
                "'user', 'assistant' and 'tool'.",
                param=f"{where}.role",
            )
    return system, messages


def _tools(body: dict[str, Any]) -> list[Tool]:
    raw, legacy = body.get("tools"), body.get("functions")
    if raw is None and legacy is not None:
        raw = [{"type": "function", "function": f} for f in legacy] if isinstance(legacy, list) else legacy
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise invalid("tools", "an array", raw)
    tools = []
    for i, t in enumerate(raw):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise missing(f"tools[{i}].function.name")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise invalid(f"tools[{i}].function.parameters", "an object", params)
        tools.append(
            Tool(
                name=fn["name"],
                description=opt(fn, "description", f"tools[{i}].function", str, "a string"),
                parameters=params or {"type": "object", "properties": {}},
                strict=opt(fn, "strict", f"tools[{i}].function", bool, "a boolean"),
            )
        )
    return tools


def _tool_choice(body: dict[str, Any]) -> ToolChoice | None:
    tc = body.get("tool_choice", body.get("function_call"))
    parallel = body.get("parallel_tool_calls")
    if tc is None:
        return ToolChoice(parallel=parallel) if isinstance(parallel, bool) else None
    if tc in ("auto", "none", "required"):
        return ToolChoice(mode=tc, parallel=parallel if isinstance(parallel, bool) else None)
    if isinstance(tc, dict):
        fn = tc.get("function") if "function" in tc else tc
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str):
            return ToolChoice(mode="tool", name=name, parallel=parallel if isinstance(parallel, bool) else None)
    raise PiscesError(
        "invalid_request",
        "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or "
        '{"type": "function", "function": {"name": ...}}.',
        param="tool_choice",
    )


def _response_format(rf: Any) -> ResponseFormat | None:
    if rf is None:
        return None
    if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
        raise PiscesError(
            "invalid_request",
            "Invalid 'response_format': type must be 'text', 'json_object' or 'json_schema'.",
            param="response_format",
        )
    if rf["type"] != "json_schema":
        return ResponseFormat(type=rf["type"])
    js = rf.get("json_schema")
    if not isinstance(js, dict):
        raise missing("response_format.json_schema")
    where = "response_format.json_schema"
    return ResponseFormat(
        type="json_schema",
        name=opt(js, "name", where, str, "a string"),
        json_schema=opt(js, "schema", where, dict, "an object"),
        strict=opt(js, "strict", where, bool, "a boolean"),
    )


def decode_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise PiscesError("invalid_request", "The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        raise missing("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "a non-empty string", model)
    system, messages = _messages(body.get("messages"))
    n = opt_int(body, "n", 1)
    if n is not None and n > 1:
        raise PiscesError("unsupported_parameter", "Pisces supports only n=1 (one choice per request).", param="n")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise invalid("stop", "a string or an array of strings", stop)
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream", "a boolean", stream)
    so = body.get("stream_options")
    if so is not None and not isinstance(so, dict):
        raise invalid("stream_options", "an object", so)
    meta = body.get("metadata")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise invalid("metadata", "an object of strings", meta)
    effort = body.get("reasoning_effort")
    thinking = ThinkingConfig(effort=effort) if effort in ("minimal", "low", "medium", "high") else None
    max_tokens = opt_int(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = opt_int(body, "max_tokens", 1)
    extra = {k: v for k, v in body.items() if k not in _MAPPED}
    if "max_completion_tokens" in body:
        extra["max_completion_tokens"] = body["max_completion_tokens"]  # keep the client's spelling upstream
    if effort is not None and thinking is None:
        extra["reasoning_effort"] = effort
    return ChatRequest(
        model=model,
        system=system,
        messages=messages,
        tools=_tools(body),
        tool_choice=_tool_choice(body),
        max_tokens=max_tokens,
        temperature=opt_number(body, "temperature", 0, 2),
        top_p=opt_number(body, "top_p", 0, 1),
        stop=stop or [],
        seed=opt_int(body, "seed"),
        response_format=_response_format(body.get("response_format")),
        thinking=thinking,
        stream=bool(stream),
        stream_usage=bool((so or {}).get("include_usage")),
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        metadata=meta or {},
        provider_options={NAME: extra} if extra else {},
    )
