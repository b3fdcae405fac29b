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

from typing import Any

from pisces.canonical import (
    ChatRequest,
    ResponseFormat,
    TextPart,
    ThinkingConfig,
    Tool,
    ToolChoice,
)
from pisces.errors import PiscesError
from pisces.protocols.anthropic_messages.blocks import (
    _cache_control,
    _err,
    _int,
    _invalid,
    _missing,
    _number,
    _obj,
    _str,
    _sub,
    decode_messages,
)

NAME = "anthropic"

# Request fields the canonical model maps; every other field goes to provider_options["anthropic"].
_MAPPED = {"model", "max_tokens", "messages", "system", "tools", "tool_choice", "temperature", "top_p", "top_k",
           "stop_sequences", "metadata", "thinking", "stream", "output_config"}  # fmt: skip
_TOOL_FIELDS = {"name", "description", "input_schema", "cache_control", "strict"}


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


def _effort(th: ThinkingConfig | None, output_config: Any) -> ThinkingConfig | None:
    """``output_config.effort`` (low/medium/high/max) is the thinking's effort too, for upstreams that have
    one (OpenAI's reasoning_effort); max and above are ``high``. Without thinking it stays Anthropic's."""
    effort = output_config.get("effort") if isinstance(output_config, dict) else None
    if th is None or not th.enabled or not isinstance(effort, str):
        return th
    th.effort = effort if effort in ("low", "medium", "high") else "high"  # type: ignore[assignment]
    return th


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
    messages = decode_messages(body.get("messages"))
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
        thinking=_effort(_thinking(body.get("thinking"), extra), body.get("output_config")),
        stream=bool(stream),
        stream_usage=bool(stream),  # Anthropic streams always report usage
        user=_metadata(body.get("metadata")),
        provider_options={NAME: extra} if extra else {},
    )


def decode_count_tokens(body: Any) -> ChatRequest:
    """A POST /v1/messages/count_tokens body: the same validation, without the required max_tokens."""
    return decode_request(body, require_max_tokens=False)
