"""OpenAI Responses requests (``POST /v1/responses``): validated and decoded from a client.

Wire shape: https://platform.openai.com/docs/api-reference/responses/create (types in openai-python's
``src/openai/types/responses/response_create_params.py`` and ``response_input_item_param.py``).

``input`` is a string (one user message) or a list of items: messages (``role`` user, assistant,
system, developer; content a string or ``input_text`` / ``input_image`` / ``input_file`` /
``output_text`` / ``refusal`` parts), ``function_call``, ``function_call_output`` and ``reasoning``
items. Consecutive assistant items (reasoning, a message, function calls) are one assistant turn;
function call outputs and the user's words after them are one user turn, as in the canonical model.

Reasoning: a ``reasoning`` item's summary is a :class:`ThinkingPart`'s text; its ``encrypted_content``
is OpenAI's opaque reasoning, which only an ``openai-responses`` upstream can read back, so it is kept
as ``data`` with no signature (the Anthropic and Gemini encoders drop such a part on purpose). The
gateway writes another provider's signed thinking into ``encrypted_content`` with a prefix
(:data:`SIGNED` / :data:`REDACTED`), so that it returns to its provider as what it was.

Tools and tool choice are read in :mod:`.openai_responses_tools`.
"""

from __future__ import annotations

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
    ToolCallPart,
    ToolResultPart,
)
from pisces.errors import PiscesError
from pisces.protocols.common import split_data_url
from pisces.protocols.openai_params import invalid, missing, opt, opt_int, opt_number
from pisces.protocols.openai_responses_tools import (
    BUILTIN_CHOICE,
    BUILTIN_TOOLS,
    NAMESPACES,
    decode_tool_choice,
    decode_tools,
    qualified,
)

NAME = "openai-responses"

# what the gateway writes into encrypted_content for reasoning that is not OpenAI's own
SIGNED = "pisces-signed:"
REDACTED = "pisces-redacted:"

# Fields the canonical model maps, or that the door itself serves (store, previous_response_id).
_MAPPED = {
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
    "temperature", "top_p", "text", "reasoning", "stream", "stream_options", "store", "previous_response_id",
    "metadata", "user", "background",
}  # fmt: skip
_REFUSED = {
    "background": "Pisces does not run background responses: send the request without 'background'.",
    "conversation": "Pisces does not keep conversations: use 'previous_response_id' or send the whole input.",
    "prompt": "Pisces has no stored prompts: send 'instructions' and 'input' instead.",
}
EFFORTS = ("minimal", "low", "medium", "high")


def _invalid_value(param: str, message: str) -> PiscesError:
    return PiscesError("invalid_request", f"Invalid value for '{param}': {message}", param=param)


# ---------------------------------------------------------------------------------------------
# input items


def _image(p: dict[str, Any], where: str) -> ImagePart:
    url = p.get("image_url")
    if not isinstance(url, str):
        if p.get("file_id"):
            raise PiscesError("unsupported_parameter", "Pisces has no file storage: give the image as "
                              "'image_url' (a URL or a data: URL).", param=f"{where}.file_id")  # fmt: skip
        raise missing(f"{where}.image_url")
    detail = opt(p, "detail", where, str, "a string")
    if inline := split_data_url(url):
        return ImagePart(data=inline[1], media_type=inline[0] or None, detail=detail)
    return ImagePart(url=url, detail=detail)


def _file(p: dict[str, Any], where: str) -> FilePart:
    data, name = p.get("file_data"), opt(p, "filename", where, str, "a string")
    if isinstance(data, str):
        if inline := split_data_url(data):
            return FilePart(data=inline[1], media_type=inline[0] or None, name=name)
        return FilePart(data=data, media_type="application/pdf", name=name)
    if isinstance(p.get("file_url"), str):
        return FilePart(uri=p["file_url"], name=name)
    raise PiscesError("unsupported_parameter", "Pisces has no file storage: give the file as 'file_data' "
                      "(base64 or a data: URL) or 'file_url'.", param=f"{where}.file_data")  # fmt: skip


def _content(content: Any, where: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(text=content)]
    if not isinstance(content, list):
        raise invalid(where, "a string or an array of content parts", content)
    parts: list[Part] = []
    for i, p in enumerate(content):
        at = f"{where}[{i}]"
        if not isinstance(p, dict):
            raise invalid(at, "an object", p)
        kind = p.get("type")
        if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            if not isinstance(p.get("text"), str):
                raise invalid(f"{at}.text", "a string", p.get("text"))
            parts.append(TextPart(text=p["text"]))
        elif kind == "refusal":
            parts.append(TextPart(text=str(p.get("refusal") or "")))
        elif kind == "input_image":
            parts.append(_image(p, at))
        elif kind == "input_file":
            parts.append(_file(p, at))
        else:
            raise _invalid_value(f"{at}.type", f"{kind!r} is not a content part Pisces reads (input_text, "
                                 "input_image, input_file, output_text, refusal).")  # fmt: skip
    return parts


def reasoning_part(item: dict[str, Any], where: str) -> ThinkingPart:
    summary = item.get("summary") or []
    if not isinstance(summary, list):
        raise invalid(f"{where}.summary", "an array", summary)
    text = "\n\n".join(s.get("text", "") for s in summary if isinstance(s, dict) and isinstance(s.get("text"), str))
    if not text and isinstance(item.get("content"), list):
        text = "".join(c.get("text", "") for c in item["content"] if isinstance(c, dict))
    enc = item.get("encrypted_content")
    if not isinstance(enc, str) or not enc:
        return ThinkingPart(text=text)
    if enc.startswith(SIGNED):
        return ThinkingPart(text=text, signature=enc[len(SIGNED) :])
    if enc.startswith(REDACTED):
        return ThinkingPart(redacted=True, data=enc[len(REDACTED) :])
    return ThinkingPart(text=text, data=enc)  # OpenAI's own: unsigned, so only OpenAI reads it back


def _arguments(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise invalid(where, "a string", v)
    return v or "{}"


def _tool_output(v: Any, where: str) -> list[TextPart | ImagePart]:
    if isinstance(v, str):
        return [TextPart(text=v)]
    parts = _content(v, where)
    return [p for p in parts if isinstance(p, TextPart | ImagePart)]


def decode_input(raw: Any) -> tuple[list[TextPart], list[Message]]:
    """``input`` (a string or items) as canonical system text and messages."""
    if isinstance(raw, str):
        return [], [Message(role="user", content=[TextPart(text=raw)])]
    if not isinstance(raw, list):
        raise invalid("input", "a string or an array of input items", raw)
    system: list[TextPart] = []
    messages: list[Message] = []

    def turn(role: str, parts: list[Part], merge: bool = True) -> None:
        if merge and messages and messages[-1].role == role:
            messages[-1].content.extend(parts)
        else:
            messages.append(Message(role=role, content=parts))  # type: ignore[arg-type]

    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid(where, "an object", item)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            parts = _content(item.get("content"), f"{where}.content")
            if role in ("system", "developer"):
                system += [p for p in parts if isinstance(p, TextPart)]
            elif role == "assistant":
                turn("assistant", parts)
            elif role == "user":
                # the user's words after tool outputs join them; after a user message they are a new turn
                merge = bool(messages) and any(isinstance(p, ToolResultPart) for p in messages[-1].content)
                turn("user", parts, merge)
            elif role is None:
                raise missing(f"{where}.role")
            else:
                raise _invalid_value(f"{where}.role", f"{role!r}. Supported values are: 'user', 'assistant', "
                                     "'system' and 'developer'.")  # fmt: skip
        elif kind == "function_call":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("name"), str):
                raise missing(f"{where}.call_id" if not isinstance(item.get("call_id"), str) else f"{where}.name")
            ns = item.get("namespace") if isinstance(item.get("namespace"), str) else None
            call = ToolCallPart(id=item["call_id"], name=qualified(ns, item["name"]),
                                arguments=_arguments(item.get("arguments", "{}"), f"{where}.arguments"))  # fmt: skip
            turn("assistant", [call])
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise missing(f"{where}.call_id")
            result = ToolResultPart(
                tool_call_id=item["call_id"], content=_tool_output(item.get("output"), f"{where}.output")
            )
            if messages and messages[-1].role == "user" and any(isinstance(p, ToolResultPart)
                                                                 for p in messages[-1].content):  # fmt: skip
                messages[-1].content.append(result)
            else:
                messages.append(Message(role="user", content=[result]))
        elif kind == "reasoning":
            part = reasoning_part(item, where)
            if (
                messages
                and messages[-1].role == "assistant"
                and not any(isinstance(p, ToolCallPart | TextPart) for p in messages[-1].content)
            ):
                messages[-1].content.append(part)
            else:
                messages.append(Message(role="assistant", content=[part]))
        elif kind == "item_reference":
            raise PiscesError("unsupported_parameter", "Pisces cannot resolve 'item_reference' items: send the "
                              "items themselves, or use 'previous_response_id'.", param=f"{where}.type")  # fmt: skip
        else:
            raise _invalid_value(f"{where}.type", f"{kind!r} is not an input item Pisces reads (message, "
                                 "function_call, function_call_output, reasoning).")  # fmt: skip
    return system, messages


# ---------------------------------------------------------------------------------------------
# tools, tool choice, text format, reasoning


def _text_format(text: Any) -> tuple[ResponseFormat | None, dict[str, Any]]:
    """``text.format`` as the canonical response format; the rest of ``text`` (verbosity) is OpenAI's."""
    if text is None:
        return None, {}
    if not isinstance(text, dict):
        raise invalid("text", "an object", text)
    rest = {k: v for k, v in text.items() if k != "format"}
    fmt = text.get("format")
    if fmt is None:
        return None, rest
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise _invalid_value("text.format.type", "expected 'text', 'json_object' or 'json_schema'.")
    if fmt["type"] != "json_schema":
        return ResponseFormat(type=fmt["type"]), rest
    if not isinstance(fmt.get("name"), str):
        raise missing("text.format.name")
    if not isinstance(fmt.get("schema"), dict):
        raise missing("text.format.schema")
    return ResponseFormat(type="json_schema", name=fmt["name"], json_schema=fmt["schema"],
                          strict=opt(fmt, "strict", "text.format", bool, "a boolean")), rest  # fmt: skip


def _reasoning(raw: Any) -> tuple[ThinkingConfig | None, dict[str, Any]]:
    if raw is None:
        return None, {}
    if not isinstance(raw, dict):
        raise invalid("reasoning", "an object", raw)
    effort = raw.get("effort")
    if effort is not None and not isinstance(effort, str):
        raise invalid("reasoning.effort", "a string", effort)
    rest = {k: v for k, v in raw.items() if k != "effort" or effort not in EFFORTS}
    return (ThinkingConfig(effort=effort) if effort in EFFORTS else None), rest


# ---------------------------------------------------------------------------------------------
# the request


def decode_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise PiscesError("invalid_request", "The request body must be a JSON object.")
    for name, why in _REFUSED.items():
        if body.get(name):
            raise PiscesError("unsupported_parameter", why, param=name)
    model = body.get("model")
    if model is None:
        raise missing("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "a non-empty string", model)
    if body.get("input") is None and not body.get("previous_response_id"):
        raise missing("input")
    system, messages = decode_input(body["input"]) if body.get("input") is not None else ([], [])
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid("instructions", "a string", instructions)
    for name in ("stream", "store"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise invalid(name, "a boolean", body[name])
    prev = body.get("previous_response_id")
    if prev is not None and not isinstance(prev, str):
        raise invalid("previous_response_id", "a string", prev)
    meta = body.get("metadata")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise invalid("metadata", "an object of strings", meta)
    tools, builtin = decode_tools(body.get("tools"))
    choice, builtin_choice = decode_tool_choice(body)
    fmt, text_rest = _text_format(body.get("text"))
    thinking, reasoning_rest = _reasoning(body.get("reasoning"))
    extra: dict[str, Any] = {k: v for k, v in body.items() if k not in _MAPPED and k not in _REFUSED}
    if text_rest:
        extra["text"] = text_rest
    if reasoning_rest:
        extra["reasoning"] = reasoning_rest
    if builtin:
        extra[BUILTIN_TOOLS] = builtin
    namespaces = [t["name"] for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "namespace"
                  and isinstance(t.get("name"), str)]  # fmt: skip
    if namespaces:
        extra[NAMESPACES] = namespaces
    if builtin_choice:
        extra[BUILTIN_CHOICE] = builtin_choice
    return ChatRequest(
        model=model,
        system=([TextPart(text=instructions)] if instructions else []) + system,
        messages=messages,
        tools=tools,
        tool_choice=choice,
        max_tokens=opt_int(body, "max_output_tokens", 1),
        temperature=opt_number(body, "temperature", 0, 2),
        top_p=opt_number(body, "top_p", 0, 1),
        response_format=fmt,
        thinking=thinking,
        stream=bool(body.get("stream")),
        stream_usage=True,  # response.completed always carries usage
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        metadata=meta or {},
        provider_options={NAME: extra} if extra else {},
    )
