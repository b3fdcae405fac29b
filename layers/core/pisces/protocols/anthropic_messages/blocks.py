"""Anthropic Messages content: the messages and content blocks of a client request, validated as the
Messages API does (errors name the parameter by its dotted path, in the API's wording) and decoded to
canonical parts.

What the canonical model says, it says: text, images, documents (their ``citations``, ``context`` and
``cache_control`` ride on the :class:`~pisces.canonical.FilePart`), tool use and results, thinking.
System messages (``role: "system"`` anywhere in ``messages``, and ``mid_conv_system`` blocks, which split
their message there) become canonical ``system`` messages at their place. Every other block the API
accepts (search results, server tool use and its results, container uploads, text with citations, tool
references inside tool results, documents of content blocks) becomes an :class:`~pisces.canonical.OpaquePart`:
whole for an Anthropic upstream, its text (or nothing) for the others.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from pisces.canonical import (
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

NAME = "anthropic"

# blocks only Anthropic can say: kept whole (server tools' use and results, uploads)
SERVER_BLOCKS = frozenset({
    "server_tool_use", "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
    "bash_code_execution_tool_result", "text_editor_code_execution_tool_result", "tool_search_tool_result",
    "container_upload", "mcp_tool_use", "mcp_tool_result", "tool_reference", "tool_addition", "tool_removal",
})  # fmt: skip
_BLOCK_TYPES = ("'text', 'image', 'document', 'search_result', 'tool_use', 'tool_result', 'thinking', "
                "'redacted_thinking', 'mid_conv_system' and the server tool blocks")  # fmt: skip
ROLES = ("user", "assistant", "system")


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


def _opaque(block: dict[str, Any], text: str = "") -> OpaquePart:
    return OpaquePart(protocol=NAME, block=block, text=text)


def _image(block: dict[str, Any], where: str) -> ImagePart | OpaquePart:
    src = _sub(block, "source", where)
    kind, cc, param = src.get("type"), _cache_control(block, where), f"{where}.source"
    if kind == "base64":
        return ImagePart(data=_str(src, "data", param), media_type=_str(src, "media_type", param), cache_control=cc)
    if kind == "url":
        return ImagePart(url=_str(src, "url", param), cache_control=cc)
    if kind == "file":  # the Files API (files-api beta): only Anthropic can read it
        _str(src, "file_id", param)
        return _opaque(block)
    raise _invalid(f"{param}.type", "'base64', 'url' or 'file'")


def _texts(raw: Any, where: str) -> str:
    """The text of a list of text blocks (a search result's content, a content document's)."""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, list):
        raise _missing(where) if raw is None else _invalid(where, "a valid list")
    out = []
    for i, b in enumerate(raw):
        b = _obj(b, f"{where}.{i}")
        if b.get("type") == "text":
            out.append(_str(b, "text", f"{where}.{i}") or "")
    return "\n".join(out)


def _document(block: dict[str, Any], where: str) -> Part:
    src, param = _sub(block, "source", where), f"{where}.source"
    title = _str(block, "title", where, required=False)
    context = _str(block, "context", where, required=False)
    citations = block.get("citations")
    keep = {"cache_control": _cache_control(block, where), "context": context,
            "citations": None if citations is None else _obj(citations, f"{where}.citations")}  # fmt: skip
    kind = src.get("type")
    if kind == "base64":
        return FilePart(data=_str(src, "data", param), media_type=_str(src, "media_type", param), name=title, **keep)
    if kind == "text":  # plain text, carried base64 like every inline file
        text = _str(src, "data", param) or ""
        return FilePart(data=base64.b64encode(text.encode()).decode(), media_type="text/plain", name=title, **keep)
    if kind == "url":
        return FilePart(uri=_str(src, "url", param), media_type="application/pdf", name=title, **keep)
    if kind == "content":  # a document made of content blocks: its text for other upstreams
        return _opaque(block, "\n".join(x for x in (title, _texts(src.get("content"), f"{param}.content")) if x))
    if kind == "file":  # the Files API: only Anthropic can read it
        _str(src, "file_id", param)
        return _opaque(block)
    raise _invalid(f"{param}.type", "'base64', 'text', 'content', 'url' or 'file'")


def _search_result(block: dict[str, Any], where: str) -> OpaquePart:
    source, title = _str(block, "source", where) or "", _str(block, "title", where) or ""
    return _opaque(block, "\n".join(x for x in (title, source, _texts(block.get("content"), f"{where}.content")) if x))


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
            if kind == "text" and b.get("citations") is None:
                content.append(TextPart(text=_str(b, "text", w) or "", cache_control=_cache_control(b, w)))
            elif kind == "text":
                content.append(_opaque(b, _str(b, "text", w) or ""))
            elif kind == "image":
                content.append(_image(b, w))
            elif kind == "document" and isinstance(b.get("source"), dict) and b["source"].get("type") == "text" \
                    and set(b) <= {"type", "source"}:  # fmt: skip
                content.append(TextPart(text=_str(b["source"], "data", f"{w}.source") or ""))
            elif kind == "document":
                doc = _document(b, w)
                content.append(doc if isinstance(doc, OpaquePart) else _opaque(b, _text_of_file(doc)))
            elif kind == "search_result":
                content.append(_search_result(b, w))
            elif kind == "tool_reference":  # tool search: loads a deferred tool, only Anthropic has them
                content.append(_opaque(b, ""))
                _str(b, "tool_name", w)
            elif kind is None:
                raise _missing(f"{w}.type")
            else:
                raise _invalid(f"{w}.type", "'text', 'image', 'document', 'search_result' or 'tool_reference'")
    elif raw is not None:
        raise _invalid(f"{where}.content", "a valid string or a valid list")
    is_error = block.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise _invalid(f"{where}.is_error", "a valid boolean")
    return ToolResultPart(tool_call_id=tool_use_id, content=content, is_error=bool(is_error),
                          cache_control=_cache_control(block, where))  # fmt: skip


def _text_of_file(part: FilePart) -> str:
    if part.media_type == "text/plain" and part.data is not None:
        return base64.b64decode(part.data).decode(errors="replace")
    return ""


def _block(block: Any, where: str) -> Part:
    block = _obj(block, where)
    kind = block.get("type")
    if kind == "text":
        text = _str(block, "text", where) or ""
        if block.get("citations") is not None:  # cited text (a turn given back): whole for Anthropic
            return _opaque(block, text)
        return TextPart(text=text, cache_control=_cache_control(block, where))
    if kind == "image":
        return _image(block, where)
    if kind == "document":
        return _document(block, where)
    if kind == "search_result":
        return _search_result(block, where)
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
    if isinstance(kind, str) and kind in SERVER_BLOCKS:
        return _opaque(block)
    if kind is None:
        raise _missing(f"{where}.type")
    if isinstance(kind, str):
        message = f"content block type {kind!r} is not supported (supported: {_BLOCK_TYPES})"
        raise _err(f"{where}.type", message, "unsupported_parameter")
    raise _invalid(f"{where}.type", "a valid string")


def _content(raw: Any, where: str) -> list[Any]:
    if isinstance(raw, str):
        return [TextPart(text=raw)]
    if not isinstance(raw, list):
        raise _missing(where) if raw is None else _invalid(where, "a valid string or a valid list")
    return list(raw)


def _system_parts(raw: Any, where: str) -> list[Part]:
    """A system message's content: text blocks (and Anthropic's tool_addition/tool_removal, kept whole)."""
    parts: list[Part] = []
    for i, b in enumerate(raw if isinstance(raw, list) else [raw]):
        w = f"{where}.{i}"
        if isinstance(b, TextPart):
            parts.append(b)
            continue
        b = _obj(b, w)
        kind = b.get("type")
        if kind == "text":
            parts.append(TextPart(text=_str(b, "text", w) or "", cache_control=_cache_control(b, w)))
        elif isinstance(kind, str) and kind in SERVER_BLOCKS:
            parts.append(_opaque(b))
        else:
            raise _invalid(f"{w}.type", "'text'")
    return parts


def decode_messages(raw: Any) -> list[Message]:
    """``messages`` -> canonical messages; a ``mid_conv_system`` block splits its message into the part
    before, a system message and the part after."""
    if raw is None:
        raise _missing("messages")
    if not isinstance(raw, list):
        raise _invalid("messages", "a valid list")
    if not raw:
        raise _err("messages", "at least one message is required")
    out: list[Message] = []
    for i, m in enumerate(raw):
        where = f"messages.{i}"
        m = _obj(m, where)
        role = m.get("role")
        if role is None:
            raise _missing(f"{where}.role")
        if role not in ROLES:
            raise _invalid(f"{where}.role", "'user', 'assistant' or 'system'")
        blocks, cwhere = _content(m.get("content"), f"{where}.content"), f"{where}.content"
        if role == "system":
            out.append(Message(role="system", content=_system_parts(blocks, cwhere)))
            continue
        parts: list[Part] = []
        for j, b in enumerate(blocks):
            if isinstance(b, dict) and b.get("type") == "mid_conv_system":
                w = f"{cwhere}.{j}"
                if parts:
                    out.append(Message(role=role, content=parts))
                system = _system_parts(_sub_list(b, w), f"{w}.content")
                if (cc := _cache_control(b, w)) and system and isinstance(system[-1], TextPart):
                    system[-1].cache_control = cc  # the block's breakpoint is its last text's
                out.append(Message(role="system", content=system))
                parts = []
            else:
                parts.append(b if isinstance(b, TextPart) else _block(b, f"{cwhere}.{j}"))
        if parts or not blocks:
            out.append(Message(role=role, content=parts))
    return out


def _sub_list(block: dict[str, Any], where: str) -> list[Any]:
    v = block.get("content")
    if v is None:
        raise _missing(f"{where}.content")
    if not isinstance(v, list):
        raise _invalid(f"{where}.content", "a valid list")
    return v
