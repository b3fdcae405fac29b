"""OpenAI Responses tools: function tools, namespaces of them, tool choice, and built-in tools.

Function tools are canonical tools; a ``namespace`` of function tools (Codex CLI sends
``multi_agent_v1``) is flattened, ``<namespace>__<name>``, and a call's name split back into its
``namespace`` and ``name`` on the way out. Built-in tools (web_search, file_search,
code_interpreter, ...) are OpenAI's to run: kept in ``provider_options["openai-responses"]`` and
refused by the door unless every channel for the model is an ``openai-responses`` upstream
(:func:`check_builtin_tools`).
"""

from __future__ import annotations

from typing import Any

from pisces.canonical import ChatRequest, Tool, ToolChoice
from pisces.errors import PiscesError
from pisces.protocols.openai_params import invalid, missing, opt

NAME = "openai-responses"

# provider_options[NAME] keys the gateway itself reads (never sent upstream as they are)
BUILTIN_TOOLS = "_builtin_tools"
BUILTIN_CHOICE = "_builtin_tool_choice"
NAMESPACES = "_namespaces"  # the request's tool namespaces: a call's name says which it is in
NAMESPACE_SEP = "__"


def _invalid_value(param: str, message: str) -> PiscesError:
    return PiscesError("invalid_request", f"Invalid value for '{param}': {message}", param=param)


def qualified(namespace: str | None, name: str) -> str:
    """A namespaced function's canonical tool name (every provider allows ``[A-Za-z0-9_-]``, not dots)."""
    return f"{namespace}{NAMESPACE_SEP}{name}" if namespace else name


def split_qualified(name: str, namespaces: list[str]) -> tuple[str | None, str]:
    """A canonical tool name as (namespace, name) when it is one of the request's namespaced functions."""
    for ns in namespaces:
        if name.startswith(ns + NAMESPACE_SEP):
            return ns, name[len(ns) + len(NAMESPACE_SEP) :]
    return None, name


def decode_tools(raw: Any) -> tuple[list[Tool], list[dict[str, Any]]]:
    """Function tools, and namespaces of them flattened (``crm`` + ``find`` is ``crm__find``), as
    canonical tools; anything else is a built-in tool, only OpenAI's to run."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        raise invalid("tools", "an array", raw)
    flat: list[tuple[str, dict[str, Any]]] = []
    for i, t in enumerate(raw):
        if isinstance(t, dict) and t.get("type") == "namespace" and isinstance(t.get("name"), str):
            inner = t.get("tools") if isinstance(t.get("tools"), list) else []
            nested = [x for x in inner if isinstance(x, dict) and x.get("type") == "function"]
            if len(nested) == len(inner):
                flat += [(f"tools[{i}].tools[{j}]", {**x, "name": qualified(t["name"], str(x.get("name")))})
                         for j, x in enumerate(nested)]  # fmt: skip
                continue
        flat.append((f"tools[{i}]", t))
    tools, builtin = [], []
    for where, t in flat:
        if not isinstance(t, dict):
            raise invalid(where, "an object", t)
        if t.get("type") != "function":
            if not isinstance(t.get("type"), str):
                raise missing(f"{where}.type")
            builtin.append(t)
            continue
        if not isinstance(t.get("name"), str) or not t["name"]:
            raise missing(f"{where}.name")
        params = t.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise invalid(f"{where}.parameters", "an object", params)
        tools.append(Tool(name=t["name"], description=opt(t, "description", where, str, "a string"),
                          parameters=params or {"type": "object", "properties": {}},
                          strict=opt(t, "strict", where, bool, "a boolean")))  # fmt: skip
    return tools, builtin


def decode_tool_choice(body: dict[str, Any]) -> tuple[ToolChoice | None, dict[str, Any] | None]:
    tc, parallel = body.get("tool_choice"), body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise invalid("parallel_tool_calls", "a boolean", parallel)
    if tc is None:
        return (ToolChoice(parallel=parallel) if parallel is not None else None), None
    if tc in ("auto", "none", "required"):
        return ToolChoice(mode=tc, parallel=parallel), None
    if isinstance(tc, dict):
        if tc.get("type") == "function" and isinstance(tc.get("name"), str):
            return ToolChoice(mode="tool", name=tc["name"], parallel=parallel), None
        if tc.get("type") == "allowed_tools" and tc.get("mode") in ("auto", "required"):
            names = [t["name"] for t in tc.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("name"), str)]
            return ToolChoice(mode=tc["mode"], allowed=names or None, parallel=parallel), None
        if isinstance(tc.get("type"), str) and tc["type"] not in ("function", "allowed_tools"):
            return ToolChoice(mode="auto", parallel=parallel), tc  # a built-in tool: only OpenAI can honour it
    raise _invalid_value("tool_choice", "expected 'none', 'auto', 'required', {\"type\": \"function\", \"name\": "
                         "...} or {\"type\": \"allowed_tools\", ...}.")  # fmt: skip


def check_builtin_tools(req: ChatRequest, kinds: list[str]) -> None:
    """Built-in tools are OpenAI's to run: refused unless every channel for the model is OpenAI's Responses."""
    opts = req.provider_options.get(NAME, {})
    builtin = [t.get("type") for t in opts.get(BUILTIN_TOOLS, [])]
    if opts.get(BUILTIN_CHOICE):
        builtin.append(opts[BUILTIN_CHOICE].get("type"))
    if builtin and any(k != NAME for k in kinds):
        raise PiscesError("unsupported_parameter", f"The built-in tool {builtin[0]!r} runs only on an OpenAI "
                          f"Responses upstream, and the model '{req.model}' is served by another provider. Use "
                          "function tools.", param="tools")  # fmt: skip
