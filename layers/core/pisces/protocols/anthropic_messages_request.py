"""Anthropic Messages requests from a client: validated as the Messages API does, decoded to canonical.

Errors name the parameter with the API's own dotted path and wording (``messages.0.content.1.source:
Field required``). Fields the canonical model cannot say travel in ``provider_options["anthropic"]``
and reach only an Anthropic upstream: unknown top-level fields (service_tier, container,
context_management, mcp_servers, ...) as they are, and under Pisces' own ``_``-prefixed keys the
server tools with their positions (``_server_tools``) and the extra fields of custom tools
(``_tool_extras``, by tool name). ``thinking`` configurations other than plain enabled/disabled
(adaptive, display) are kept there whole as well, and ``output_config`` apart from its format.
"""

from __future__ import annotations

import base64
import json
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

NAME = "anthropic"

# Request fields the canonical model maps; every other field goes to provider_options["anthropic"].
_MAPPED = {"model", "max_tokens", "messages", "system", "tools", "tool_choice", "temperature", "top_p", "top_k",
           "stop_sequences", "metadata", "thinking", "stream", "output_config"}  # fmt: skip
_TOOL_FIELDS = {"name", "description", "input_schema", "cache_control", "strict"}
_BLOCK_TYPES = "'text', 'image', 'document', 'tool_use', 'tool_result', 'thinking', 'redacted_thinking'"


# ---------------------------------------------------------------------------------------------
# validation helpers: the API's own wording (pydantic's), the parameter named by its dotted path


def _err(param: str, message: str, code: str = "invalid_request") -> PiscesError:
    return PiscesError(code, f"{param}: {message}", param=param)


def _missing(param: str) -> PiscesError:
    return _err(param, "Field required")


def _invalid(param: str, expected: str) -> PiscesError:
    return _err(param, f"Input should be {expected}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _obj(v: Any, param: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _invalid(param, "a valid dictionary")
    return v


def _sub(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """A required object field."""
    v, param = obj.get(key), f"{where}.{key}" if where else key
    if v is None:
        raise _missing(param)
    return _obj(v, param)


def _str(obj: dict[str, Any], key: str, where: str, required: bool = True) -> str | None:
    v = obj.get(key)
    param = f"{where}.{key}" if where else key
    if v is None:
        if required:
            raise _missing(param)
        return None
    if not isinstance(v, str):
        raise _invalid(param, "a valid string")
    return v


def _cache_control(obj: dict[str, Any], where: str) -> dict[str, Any] | None:
    v = obj.get("cache_control")
    return None if v is None else _obj(v, f"{where}.cache_control")


def _number(body: dict[str, Any], name: str, hi: float) -> float | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise _invalid(name, "a valid number")
    if v < 0:
        raise _invalid(name, "greater than or equal to 0")
    if v > hi:
        raise _invalid(name, f"less than or equal to {hi:g}")
    return float(v)


def _int(obj: dict[str, Any], key: str, minimum: int, where: str = "", required: bool = False) -> int | None:
    v, param = obj.get(key), f"{where}.{key}" if where else key
    if v is None:
        if required:
            raise _missing(param)
        return None
    if not _is_int(v):
        raise _invalid(param, "a valid integer")
    if v < minimum:
        raise _invalid(param, f"greater than or equal to {minimum}")
    return v


# ---------------------------------------------------------------------------------------------
# content blocks


def _image(block: dict[str, Any], where: str) -> ImagePart:
    src = _sub(block, "source", where)
    kind, cc, param = src.get("type"), _cache_control(block, where), f"{where}.source"
    if kind == "base64":
        return ImagePart(data=_str(src, "data", param), media_type=_str(src, "media_type", param), cache_control=cc)
    if kind == "url":
        return ImagePart(url=_str(src, "url", param), cache_control=cc)
    raise _err(f"{where}.source.type", f"image source type {kind!r} is not supported by Pisces (use 'base64' or 'url')",
               "unsupported_parameter")  # fmt: skip


def _document(block: dict[str, Any], where: str) -> FilePart:
    src, param = _sub(block, "source", where), f"{where}.source"
    title = _str(block, "title", where, required=False)
    kind = src.get("type")
    if kind == "base64":
        return FilePart(data=_str(src, "data", param), media_type=_str(src, "media_type", param), name=title)
    if kind == "text":  # plain text, carried base64 like every inline file
        text = _str(src, "data", param) or ""
        return FilePart(data=base64.b64encode(text.encode()).decode(), media_type="text/plain", name=title)
    if kind == "url":
        return FilePart(uri=_str(src, "url", param), media_type="application/pdf", name=title)
    raise _err(f"{param}.type", f"document source type {kind!r} is not supported by Pisces", "unsupported_parameter")


def _tool_result(block: dict[str, Any], where: str) -> ToolResultPart:
    tool_use_id = _str(block, "tool_use_id", where) or ""
    raw, content = block.get("content"), []
    if isinstance(raw, str):
        content = [TextPart(text=raw)]
    elif isinstance(raw, list):
        for i, b in enumerate(raw):
            w = f"{where}.content.{i}"
            b = _obj(b, w)
            kind = b.get("type")
            if kind == "text":
                content.append(TextPart(text=_str(b, "text", w) or "", cache_control=_cache_control(b, w)))
            elif kind == "image":
                content.append(_image(b, w))
            elif kind == "document" and isinstance(b.get("source"), dict) and b["source"].get("type") == "text":
                content.append(TextPart(text=_str(b["source"], "data", f"{w}.source") or ""))
            else:
                raise _err(f"{w}.type", f"tool_result content of type {kind!r} is not supported by Pisces "
                           "(use 'text', 'image' or a text 'document')", "unsupported_parameter")  # fmt: skip
    elif raw is not None:
        raise _invalid(f"{where}.content", "a valid string or a valid list")
    is_error = block.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise _invalid(f"{where}.is_error", "a valid boolean")
    return ToolResultPart(tool_call_id=tool_use_id, content=content, is_error=bool(is_error),
                          cache_control=_cache_control(block, where))  # fmt: skip


def _block(block: Any, where: str) -> Part:
    block = _obj(block, where)
    kind = block.get("type")
    if kind == "text":
        return TextPart(text=_str(block, "text", where) or "", cache_control=_cache_control(block, where))
    if kind == "image":
        return _image(block, where)
    if kind == "document":
        return _document(block, where)
    if kind == "tool_use":
        return ToolCallPart(id=_str(block, "id", where) or "", name=_str(block, "name", where) or "",
                            arguments=json.dumps(_sub(block, "input", where), ensure_ascii=False),
                            cache_control=_cache_control(block, where))  # fmt: skip
    if kind == "tool_result":
        return _tool_result(block, where)
    if kind == "thinking":
        return ThinkingPart(text=_str(block, "thinking", where) or "", signature=_str(block, "signature", where))
    if kind == "redacted_thinking":
        return ThinkingPart(redacted=True, data=_str(block, "data", where))
    if kind is None:
        raise _missing(f"{where}.type")
    if isinstance(kind, str):
        message = f"content block type {kind!r} is not supported by Pisces (supported: {_BLOCK_TYPES})"
        raise _err(f"{where}.type", message, "unsupported_parameter")
    raise _invalid(f"{where}.type", "a valid string")


def _content(raw: Any, where: str) -> list[Part]:
    if isinstance(raw, str):
        return [TextPart(text=raw)]
    if not isinstance(raw, list):
        raise _missing(where) if raw is None else _invalid(where, "a valid string or a valid list")
    return [_block(b, f"{where}.{i}") for i, b in enumerate(raw)]


def _messages(raw: Any) -> list[Message]:
    if raw is None:
        raise _missing("messages")
    if not isinstance(raw, list):
        raise _invalid("messages", "a valid list")
    if not raw:
        raise _err("messages", "at least one message is required")
    out = []
    for i, m in enumerate(raw):
        where = f"messages.{i}"
        m = _obj(m, where)
        role = m.get("role")
        if role is None:
            raise _missing(f"{where}.role")
        if role not in ("user", "assistant"):
            raise _invalid(f"{where}.role", "'user' or 'assistant'")
        out.append(Message(role=role, content=_content(m.get("content"), f"{where}.content")))
    return out


def _system(raw: Any) -> list[TextPart]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [TextPart(text=raw)] if raw else []
    if not isinstance(raw, list):
        raise _invalid("system", "a valid string or a valid list")
    parts = []
    for i, b in enumerate(raw):
        where = f"system.{i}"
        b = _obj(b, where)
        if b.get("type") != "text":
            raise _invalid(f"{where}.type", "'text'")
        parts.append(TextPart(text=_str(b, "text", where) or "", cache_control=_cache_control(b, where)))
    return parts


# ---------------------------------------------------------------------------------------------
# tools, tool choice, thinking


def _tools(raw: Any, extra: dict[str, Any]) -> list[Tool]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _invalid("tools", "a valid list")
    tools: list[Tool] = []
    server: list[list[Any]] = []
    extras: dict[str, dict[str, Any]] = {}
    for i, t in enumerate(raw):
        where = f"tools.{i}"
        t = _obj(t, where)
        kind = t.get("type")
        if kind is not None and not isinstance(kind, str):
            raise _invalid(f"{where}.type", "a valid string")
        if kind not in (None, "custom"):
            server.append([i, t])  # a server tool (web search, code execution, MCP...): only Anthropic runs it
            continue
        name = _str(t, "name", where) or ""
        schema = _sub(t, "input_schema", where)
        strict = t.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise _invalid(f"{where}.strict", "a valid boolean")
        tools.append(Tool(name=name, description=_str(t, "description", where, required=False),
                          parameters=schema, strict=strict,
                          cache_control=_cache_control(t, where)))  # fmt: skip
        rest = {k: v for k, v in t.items() if k not in _TOOL_FIELDS}
        if rest:
            extras[name] = rest
    if server:
        extra["_server_tools"] = server
    if extras:
        extra["_tool_extras"] = extras
    return tools


def _tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    raw = _obj(raw, "tool_choice")
    kind = raw.get("type")
    modes = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}
    if not isinstance(kind, str) or kind not in modes:
        raise _invalid("tool_choice.type", "'auto', 'any', 'tool' or 'none'")
    disable = raw.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise _invalid("tool_choice.disable_parallel_tool_use", "a valid boolean")
    name = _str(raw, "name", "tool_choice") if kind == "tool" else None
    return ToolChoice(mode=modes[kind], name=name, parallel=None if disable is None else not disable)  # type: ignore[arg-type]


def _thinking(raw: Any, extra: dict[str, Any]) -> ThinkingConfig | None:
    if raw is None:
        return None
    raw = _obj(raw, "thinking")
    kind = raw.get("type")
    if kind == "enabled":
        budget = _int(raw, "budget_tokens", 1024, "thinking", required=True)
        if set(raw) != {"type", "budget_tokens"}:
            extra["thinking"] = raw  # display and the like: Anthropic's own, kept whole
        return ThinkingConfig(enabled=True, budget_tokens=budget)
    if kind == "disabled":
        return ThinkingConfig(enabled=False)
    if kind in ("adaptive", "between_tools"):
        extra["thinking"] = raw  # the model decides: no budget to map; kept whole for Anthropic
        return ThinkingConfig(enabled=True)
    raise _invalid("thinking.type", "'enabled', 'disabled' or 'adaptive'")


def _output_config(raw: Any, extra: dict[str, Any]) -> ResponseFormat | None:
    if raw is None:
        return None
    raw = _obj(raw, "output_config")
    rest = {k: v for k, v in raw.items() if k != "format"}
    if rest:
        extra["output_config"] = rest  # effort and future settings: Anthropic's own
    fmt = raw.get("format")
    if fmt is None:
        return None
    fmt = _obj(fmt, "output_config.format")
    if fmt.get("type") != "json_schema":
        raise _invalid("output_config.format.type", "'json_schema'")
    return ResponseFormat(type="json_schema", json_schema=_sub(fmt, "schema", "output_config.format"))


def _metadata(raw: Any) -> str | None:
    if raw is None:
        return None
    raw = _obj(raw, "metadata")
    for key in raw:
        if key != "user_id":
            raise _err(f"metadata.{key}", "Extra inputs are not permitted")
    return _str(raw, "user_id", "metadata", required=False)


# ---------------------------------------------------------------------------------------------
# the request


def decode_request(body: Any, *, require_max_tokens: bool = True) -> ChatRequest:
    """A POST /v1/messages body -> canonical, or a ``PiscesError`` (400) naming the parameter."""
    if not isinstance(body, dict):
        raise PiscesError("invalid_request", "The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str):
        raise _invalid("model", "a valid string")
    if not 1 <= len(model) <= 256:
        raise _err("model", "String should have between 1 and 256 characters")
    max_tokens = _int(body, "max_tokens", 0, required=require_max_tokens)  # 0: only warm the prompt cache
    messages = _messages(body.get("messages"))
    stop = body.get("stop_sequences")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise _invalid("stop_sequences", "a valid list of strings")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("stream", "a valid boolean")
    extra: dict[str, Any] = {k: v for k, v in body.items() if k not in _MAPPED}
    return ChatRequest(
        model=model,
        system=_system(body.get("system")),
        messages=messages,
        tools=_tools(body.get("tools"), extra),
        tool_choice=_tool_choice(body.get("tool_choice")),
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1),
        top_p=_number(body, "top_p", 1),
        top_k=_int(body, "top_k", 0),
        stop=stop or [],
        response_format=_output_config(body.get("output_config"), extra),
        thinking=_thinking(body.get("thinking"), extra),
        stream=bool(stream),
        stream_usage=bool(stream),  # Anthropic streams always report usage
        user=_metadata(body.get("metadata")),
        provider_options={NAME: extra} if extra else {},
    )


def decode_count_tokens(body: Any) -> ChatRequest:
    """A POST /v1/messages/count_tokens body: the same validation, without the required max_tokens."""
    return decode_request(body, require_max_tokens=False)
