"""The canonical request as OpenAI's Responses API takes it (the ``openai-responses`` upstream kind).

The gateway keeps conversation state itself (``previous_response_id`` is expanded at the door), so
the upstream is asked with ``store: false`` and the whole input, reasoning items carried by their
``encrypted_content``. Dropped on purpose: top_k, stop sequences and seed (the Responses API has
none), thinking signed by another provider (OpenAI cannot verify it), cache_control.
"""

from __future__ import annotations

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
    text_of,
)
from pisces.protocols.openai_responses_tools import BUILTIN_CHOICE, BUILTIN_TOOLS, NAME


def _user_part(p: Part) -> dict[str, Any] | None:
    if isinstance(p, TextPart):
        return {"type": "input_text", "text": p.text}
    if isinstance(p, ImagePart):
        url = p.url or f"data:{p.media_type or 'image/png'};base64,{p.data}"
        return {"type": "input_image", "image_url": url, "detail": p.detail or "auto"}
    if isinstance(p, FilePart):
        if p.data:
            return {"type": "input_file", "filename": p.name or "file",
                    "file_data": f"data:{p.media_type or 'application/pdf'};base64,{p.data}"}  # fmt: skip
        if p.uri:
            return {"type": "input_file", "file_url": p.uri}
    return None


def _items(m: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if m.role == "user":
        for p in m.content:
            if isinstance(p, ToolResultPart):
                out.append({"type": "function_call_output", "call_id": p.tool_call_id, "output": text_of(p.content)})
        parts = [x for x in (_user_part(p) for p in m.content if not isinstance(p, ToolResultPart)) if x]
        if parts or not m.content:
            out.append({"role": "user", "content": parts or [{"type": "input_text", "text": ""}]})
        return out
    texts: list[str] = []

    def flush() -> None:
        if texts:
            out.append({"type": "message", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": t, "annotations": []} for t in texts]})  # fmt: skip
            texts.clear()

    for p in m.content:
        if isinstance(p, TextPart):
            if p.text:
                texts.append(p.text)
            continue
        flush()
        if isinstance(p, ToolCallPart):
            out.append({"type": "function_call", "call_id": p.id, "name": p.name, "arguments": p.arguments})
        elif isinstance(p, ThinkingPart) and p.data and not p.signature and not p.redacted:
            out.append({"type": "reasoning", "summary": [{"type": "summary_text", "text": p.text}] if p.text else [],
                        "encrypted_content": p.data})  # fmt: skip
    flush()
    return out


def encode_request(req: ChatRequest, model: str) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "input": [i for m in req.messages for i in _items(m)], "store": False}
    if req.system:
        out["instructions"] = "\n\n".join(p.text for p in req.system)
    extra = dict(req.provider_options.get(NAME, {}))
    tools = [{"type": "function", "name": t.name, **({"description": t.description} if t.description else {}),
              "parameters": t.parameters, "strict": bool(t.strict)} for t in req.tools]  # fmt: skip
    tools += extra.pop(BUILTIN_TOOLS, [])
    if tools:
        out["tools"] = tools
    tc = req.tool_choice
    builtin_choice = extra.pop(BUILTIN_CHOICE, None)
    if builtin_choice:
        out["tool_choice"] = builtin_choice
    elif tc is not None:
        if tc.mode == "tool":
            out["tool_choice"] = {"type": "function", "name": tc.name}
        elif tc.allowed and tc.mode in ("auto", "required"):
            out["tool_choice"] = {"type": "allowed_tools", "mode": tc.mode,
                                  "tools": [{"type": "function", "name": n} for n in tc.allowed]}  # fmt: skip
        elif tc.mode != "auto" or tools:
            out["tool_choice"] = tc.mode
        if tc.parallel is not None and tools:
            out["parallel_tool_calls"] = tc.parallel
    if req.max_tokens is not None:
        out["max_output_tokens"] = req.max_tokens
    for name in ("temperature", "top_p", "user"):
        if getattr(req, name) is not None:
            out[name] = getattr(req, name)
    rf = req.response_format
    text: dict[str, Any] = dict(extra.pop("text", {}))
    if rf is not None:
        if rf.type == "json_schema":
            fmt: dict[str, Any] = {"type": "json_schema", "name": rf.name or "response", "schema": rf.json_schema or {}}
            if rf.strict is not None:
                fmt["strict"] = rf.strict
            text["format"] = fmt
        else:
            text["format"] = {"type": rf.type}
    if text:
        out["text"] = text
    reasoning: dict[str, Any] = dict(extra.pop("reasoning", {}))
    if req.thinking is not None and req.thinking.effort:
        reasoning["effort"] = req.thinking.effort
    if reasoning:
        out["reasoning"] = reasoning
    if any(isinstance(p, ThinkingPart) and p.data for m in req.messages for p in m.content) or reasoning:
        include = list(extra.pop("include", []) or [])
        out["include"] = [*include, *(["reasoning.encrypted_content"] if "reasoning.encrypted_content"
                                       not in include else [])]  # fmt: skip
    if req.stream:
        out["stream"] = True
    out.update({k: v for k, v in extra.items() if not k.startswith("_")})  # "_headers": not a field
    return out
