"""The offline mock upstream: deterministic, needs no network, and behaves like a real model.

Every model a ``mock`` channel serves (``mock-echo`` in the example configuration) behaves alike:

- It answers with the text of the last user message (the tool results' text when that message
  carries tool results). An empty message gets ``(empty)``.
- When ``tool_choice`` names a tool, or requires one (OpenAI ``required``, Anthropic ``any``, Gemini
  ``ANY``), and the last user message carries no tool results, it calls that tool (the first allowed
  one when not named) with arguments filled in from the tool's JSON schema: each property gets its
  ``default``, else its first ``enum`` value, else ``"mock"`` / ``1`` / ``1.5`` / ``true`` / a
  one-item array / a filled object.
- When the last user message's text says ``pisces:call <tool_name>`` (optionally followed by the JSON
  object of arguments, e.g. ``pisces:call Bash {"command": "echo hi"}``) and the request offers that
  tool, it calls it with those arguments (or arguments from its schema, as above). This is how a
  test makes a real agent (Claude Code, the Gemini CLI) run one of its own tools. Once the tool's
  result is back, it answers with the result's text.
- ``max_tokens`` cuts the answer (finish reason ``length``); the first stop sequence found cuts it
  too (finish reason ``stop``).
- It reports usage from :mod:`pisces.tokens` estimates.
- Image models (``mock-image``) answer ``/v1/images/*`` with real PNGs: :mod:`pisces.upstreams.mock_images`.
- Streams send the text in chunks of a few words and the tool arguments in fragments of ~16
  characters, so clients see real incremental deltas.

Its embedding models (``mock-embed``) give each input a deterministic unit vector: the same text (or
token array) always gets the same vector, different ones unrelated vectors, seeded by the SHA-256 of
the input. A vector has ``dimensions`` values (:data:`EMBED_DIMENSIONS` by default), each exact in
float32, so the float and base64 encodings say the same numbers; a shorter one is the longer one's
prefix, normalised again (as OpenAI's text-embedding-3 shortens). Usage: the inputs' counted tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import struct
import time
from collections.abc import AsyncGenerator
from typing import Any

from pisces.canonical import (
    ChatRequest,
    ChatResponse,
    ContentEnd,
    Finish,
    FinishReason,
    Part,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ToolArgsDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from pisces.canonical_embeddings import EmbedInput, EmbedRequest, EmbedResponse
from pisces.canonical_images import ImageRequest, ImageResponse
from pisces.tokens import TOKEN_PATTERN, estimate_embedding, estimate_request, estimate_text
from pisces.upstreams.base import Channel, UpstreamError
from pisces.upstreams.mock_images import mock_images

ARG_FRAGMENT = 16
CALL_TRIGGER = re.compile(r"pisces:call\s+([A-Za-z0-9_.:-]+)")
WORDS_PER_CHUNK = 3
EMBED_DIMENSIONS = 256
MAX_EMBED_DIMENSIONS = 4096


def mock_vector(value: EmbedInput, dimensions: int = EMBED_DIMENSIONS) -> list[float]:
    """The mock's unit vector of one input (see the module doc)."""
    seed = hashlib.sha256(json.dumps(value).encode()).digest()  # ASCII: a lone surrogate too
    raw: list[float] = []
    block = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(seed + block.to_bytes(4, "big")).digest()
        raw += [(int.from_bytes(digest[i : i + 4], "big") / 2**32) * 2 - 1 for i in range(0, 32, 4)]
        block += 1
    raw = raw[:dimensions]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(x / norm for x in raw))))


def example_value(schema: Any) -> Any:
    """A value that satisfies a (simple) JSON schema, deterministically."""
    if not isinstance(schema, dict):
        return "mock"
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_value(schema[key][0])
    typ = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ == "object":
        return {k: example_value(v) for k, v in (schema.get("properties") or {}).items()}
    if typ == "array":
        return [example_value(schema.get("items", {}))]
    return {"string": "mock", "integer": 1, "number": 1.5, "boolean": True, "null": None}.get(typ, "mock")


def _last_user_parts(req: ChatRequest) -> list[Part]:
    for m in reversed(req.messages):
        if m.role == "user":
            return list(m.content)
    return []


def _triggered_call(req: ChatRequest, last: list[Part]) -> ToolCallPart | None:
    """The tool a ``pisces:call <name> [json]`` in the last user message asks for, if offered."""
    if req.tool_choice is not None and req.tool_choice.mode == "none":
        return None
    for p in last:
        if not isinstance(p, TextPart) or (m := CALL_TRIGGER.search(p.text)) is None:
            continue
        tool = next((t for t in req.tools if t.name == m.group(1)), None)
        if tool is None:
            return None
        rest = p.text[m.end() :].lstrip()
        try:
            args, _ = json.JSONDecoder().raw_decode(rest) if rest.startswith("{") else (None, 0)
        except ValueError:
            args = None
        if not isinstance(args, dict):
            args = example_value(tool.parameters)
        arguments = json.dumps(args, separators=(",", ":"), ensure_ascii=False)
        return ToolCallPart(id="call_" + _digest(req, tool.name), name=tool.name, arguments=arguments)
    return None


def _tool_to_call(req: ChatRequest, last: list[Part]) -> ToolCallPart | None:
    if any(isinstance(p, ToolResultPart) for p in last):
        return None  # the tool has answered: now talk
    if (call := _triggered_call(req, last)) is not None:
        return call
    tc = req.tool_choice
    if not req.tools or tc is None or tc.mode not in ("tool", "required"):
        return None
    if tc.mode == "tool":
        tool = next((t for t in req.tools if t.name == tc.name), None)
    else:
        allowed = [t for t in req.tools if not tc.allowed or t.name in tc.allowed]
        tool = allowed[0] if allowed else None
    if tool is None:
        return None
    args = json.dumps(example_value(tool.parameters), separators=(",", ":"))
    return ToolCallPart(id="call_" + _digest(req, tool.name), name=tool.name, arguments=args)


def _digest(req: ChatRequest, salt: str = "") -> str:
    """Ids derived from the request: the same request gets the same answer, ids included."""
    return hashlib.sha256((req.model_dump_json() + salt).encode()).hexdigest()[:24]


def _answer_text(last: list[Part]) -> str:
    texts = [p.text for p in last if isinstance(p, TextPart)]
    for p in last:
        if isinstance(p, ToolResultPart):
            texts.extend(c.text for c in p.content if isinstance(c, TextPart))
    return "\n".join(texts) or "(empty)"


def _limit(text: str, req: ChatRequest) -> tuple[str, FinishReason]:
    for s in req.stop:
        if s and s in text:
            text = text[: text.index(s)]
    if req.max_tokens is not None and estimate_text(text) > req.max_tokens:
        # keep whole estimated tokens: cut after the max_tokens-th one
        cut = 0
        for i, m in enumerate(TOKEN_PATTERN.finditer(text)):
            if i == req.max_tokens:
                break
            cut = m.end()
        return text[:cut], "length"
    return text, "stop"


def _chunks(text: str) -> list[str]:
    words = text.split(" ")
    return [
        " ".join(words[i : i + WORDS_PER_CHUNK]) + (" " if i + WORDS_PER_CHUNK < len(words) else "")
        for i in range(0, len(words), WORDS_PER_CHUNK)
    ]


class MockChannel(Channel):
    operations = frozenset({"chat", "embed", "images"})

    async def images(self, req: ImageRequest, model: str) -> ImageResponse:
        return await asyncio.to_thread(mock_images, req)  # a large PNG takes CPU: off the event loop

    def _respond(self, req: ChatRequest, model: str) -> ChatResponse:
        last = _last_user_parts(req)
        call = _tool_to_call(req, last)
        content: list[Part]
        if call is not None:
            content, finish = [call], "tool_calls"
            out_tokens = estimate_text(call.name) + estimate_text(call.arguments)
        else:
            text, finish = _limit(_answer_text(last), req)
            content, out_tokens = [TextPart(text=text)], estimate_text(text)
        return ChatResponse(
            id="mock-" + _digest(req),
            model=model,
            content=content,
            finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(input_tokens=estimate_request(req), output_tokens=out_tokens),
            created=int(time.time()),
        )

    async def complete(self, req: ChatRequest, model: str) -> ChatResponse:
        return self._respond(req, model)

    async def stream(self, req: ChatRequest, model: str) -> AsyncGenerator[StreamEvent, None]:
        resp = self._respond(req, model)
        yield StreamStart(id=resp.id, model=resp.model, created=resp.created)
        for i, part in enumerate(resp.content):
            if isinstance(part, TextPart):
                for chunk in _chunks(part.text):
                    yield TextDelta(index=i, text=chunk)
            elif isinstance(part, ToolCallPart):
                yield ToolCallStart(index=i, id=part.id, name=part.name)
                for j in range(0, len(part.arguments), ARG_FRAGMENT):
                    yield ToolArgsDelta(index=i, delta=part.arguments[j : j + ARG_FRAGMENT])
            yield ContentEnd(index=i)
        yield Finish(reason=resp.finish_reason)
        yield UsageEvent(usage=resp.usage)

    async def embed(self, req: EmbedRequest, model: str) -> EmbedResponse:
        dims = req.dimensions or EMBED_DIMENSIONS
        if dims > MAX_EMBED_DIMENSIONS:
            raise UpstreamError("invalid_request", f"dimensions: {dims} > {MAX_EMBED_DIMENSIONS}, the most the "
                                f"mock model {model} gives.", retryable=False, param="dimensions")  # fmt: skip
        return EmbedResponse(model=model, vectors=[mock_vector(i, dims) for i in req.inputs],
                             usage=Usage(input_tokens=estimate_embedding(req)))  # fmt: skip
