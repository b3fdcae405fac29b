"""A seeded fuzz of the chat doors (OpenAI chat and Responses, Anthropic, Gemini), in-process: no body a
client can send is a 5xx.

Each door gets FUZZ_BODIES bodies made from a few valid requests by random mutation: wrong types in
any field, deleted and unknown fields, deep nesting, huge and non-finite numbers, lone surrogates,
random bytes, truncated JSON. They go through :class:`Lifecycle` (the road every door takes) on a
Gateway whose only reachable model is the mock (``mock-echo``); every other name is unknown, so no
request leaves the process. Every reply must be below 500, every error in the door's own shape, every
request logged exactly once, and every log line writable as UTF-8.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pisces.pipeline.gateway import Gateway
from pisces.pipeline.lifecycle import Incoming, Lifecycle, Reply
from pisces.pipeline.logs import logger
from support.config import TEST_BALANCE, gateway_config

FUZZ_SEED = 20240611
FUZZ_BODIES = 10_000  # per door
MOCK_SHARE = 0.02  # of bodies that name the mock (each one admitted reaches DynamoDB: ~40 ms under moto)

UNKNOWN_MODELS = ["no-such-model", "", " ", "MOCK-ECH0", "mock-echo ", "models/mock-echo", "../etc", "é-模型",
                  "x" * 300]  # fmt: skip


# ------------------------------------------------------------------------------------------ valid bases


def openai_base(model: str) -> dict[str, Any]:
    schema = {"type": "object", "required": ["city"],
              "properties": {"city": {"type": "string", "enum": ["Paris"]}, "days": {"type": "integer"}}}  # fmt: skip
    tool = {"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": schema}}
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello there"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "user", "content": "and tomorrow?"},
        ],
        "max_tokens": 12,
        "temperature": 0.5,
        "top_p": 1,
        "stop": ["\n\n"],
        "tools": [tool],
        "tool_choice": "auto",
        "stream": False,
        "stream_options": {"include_usage": True},
        "response_format": {"type": "text"},
        "seed": 7,
        "user": "fuzz",
        "n": 1,
        "reasoning_effort": "low",
        "metadata": {"k": "v"},
    }  # fmt: skip


def anthropic_base(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 12,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hello"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": "iVBO"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "sig"},
                                              {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": [{"type": "text", "text": "sunny"}]}]},
            {"role": "assistant", "content": "Sunny."},
            {"role": "user", "content": "and tomorrow?"},
        ],
        "tools": [{"name": "get_weather", "description": "weather",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "auto"},
        "temperature": 0.5,
        "top_k": 5,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "stream": False,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "fuzz"},
    }  # fmt: skip


def gemini_base(model: str) -> dict[str, Any]:
    del model  # Gemini's model is in the URL
    return {
        "contents": [
            {"role": "user", "parts": [{"text": "Hello"}, {"inlineData": {"mimeType": "image/png", "data": "iVBO"}}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"sky": "sunny"}}}]},
            {"role": "user", "parts": [{"text": "and tomorrow?"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "weather",
                                             "parameters": {"type": "OBJECT",
                                                            "properties": {"city": {"type": "STRING"}}}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "generationConfig": {"maxOutputTokens": 12, "temperature": 0.5, "topP": 0.9, "topK": 5,
                             "stopSequences": ["END"], "candidateCount": 1, "responseMimeType": "text/plain",
                             "thinkingConfig": {"thinkingBudget": 0}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }  # fmt: skip


def responses_base(model: str) -> dict[str, Any]:
    schema = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
    return {
        "model": model,
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": "No lists."},
            {"role": "user", "content": [{"type": "input_text", "text": "Hello there"},
                                         {"type": "input_image", "image_url": "data:image/png;base64,iVBO"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "hm"}],
             "encrypted_content": "gAAAA"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny."}]},
            {"role": "user", "content": "and tomorrow?"},
        ],
        "tools": [{"type": "function", "name": "get_weather", "parameters": schema, "strict": False},
                  {"type": "namespace", "name": "crm", "tools": [{"type": "function", "name": "find"}]}],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "max_output_tokens": 12,
        "temperature": 0.5,
        "text": {"format": {"type": "json_schema", "name": "w", "schema": schema}},
        "reasoning": {"effort": "low", "summary": "auto"},
        "store": False,
        "stream": False,
        "metadata": {"k": "v"},
    }  # fmt: skip


BASES = {"openai": openai_base, "anthropic": anthropic_base, "gemini": gemini_base,
         "openai-responses": responses_base}  # fmt: skip


# ------------------------------------------------------------------------------------------ mutations


WORDS = ["", " ", "x", "0", "1", "true", "null", "user", "assistant", "system", "tool", "model", "function", "auto",
         "none", "required", "any", "text", "image", "tool_use", "ANY"]  # fmt: skip
BLOCK_TYPES = ["text", "image", "image_url", "tool_use", "tool_result", "thinking", "document", "input_audio", "file",
               "refusal", "function", "json_schema", "bogus"]  # fmt: skip


def deep(rng: random.Random, depth: int) -> Any:
    value: Any = rng.choice([1, "x", None, {}, []])
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"a": value}
    return value


def weird(rng: random.Random, level: int = 0) -> Any:
    """A value of any type and size, valid JSON or (in the text mutations) not."""
    r = rng.randrange(24)
    if r == 0:
        return None
    if r == 1:
        return rng.choice([True, False])
    if r == 2:
        return rng.choice([0, -1, 1, 2, 3, 255, 2**31, 2**63, -(2**63), 10**38, 10**39])
    if r == 3:
        return rng.choice([0.0, -0.0, 0.5, -1.5, 1e-300, 1e300, 1.7976931348623157e308, 3.0])
    if r == 4:
        return 10 ** rng.randrange(1, 100) * rng.choice([1, -1])  # up to the 100 digits allowed
    if r == 5:
        return rng.choice(WORDS)
    if r == 6:
        return "".join(chr(rng.choice([0, 9, 10, 0x7F, 0xE9, 0x4E2D, 0x1F600, 0xFFFF, 0x10FFFF, 0x41]))
                       for _ in range(rng.randrange(1, 12)))  # fmt: skip
    if r == 7:
        return "w" * rng.choice([1000, 20_000])
    if r == 8:
        return deep(rng, rng.randrange(1, 90))
    if r == 9:
        return []
    if r == 10:
        return {}
    if r == 11 and level < 3:
        return [weird(rng, level + 1) for _ in range(rng.randrange(1, 4))]
    if r == 12 and level < 3:
        return {rng.choice(["type", "text", "role", "content", "name", "x"]): weird(rng, level + 1)}
    if r == 13:
        return {"type": rng.choice(BLOCK_TYPES)}
    if r == 14:
        return [{"role": rng.choice(["user", "assistant", "system", "tool", "developer", "model", "x"]),
                 "content": weird(rng, level + 1) if level < 3 else "x"}]  # fmt: skip
    if r == 15:
        return "mock-echo"
    if r == 16:
        schema = weird(rng, level + 1) if level < 3 else {}
        return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    return rng.choice([None, "", 0, [], {}, "x", -5, 1.5, True])


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


def mutate_tree(rng: random.Random, body: Any) -> Any:
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        where = rng.choice(paths(body))
        if not where:
            if rng.random() < 0.1:
                body = weird(rng)
            continue
        parent = body
        for step in where[:-1]:
            parent = parent[step]
        last = where[-1]
        action = rng.randrange(4)
        if action == 0 and isinstance(parent, dict):
            del parent[last]
        elif action == 1 and isinstance(parent, dict):
            parent[rng.choice(["x", "extra", "type", "content", "text", "role", "model"])] = weird(rng)
        elif action == 2 and isinstance(parent, list):
            parent.append(weird(rng))
        else:
            parent[last] = weird(rng)
    return body


def mutate_text(rng: random.Random, text: bytes) -> bytes:
    r = rng.randrange(14)
    if r == 0 and text:
        return text[: rng.randrange(len(text))]  # truncated
    if r == 1:
        i = rng.randrange(len(text) + 1)
        return text[:i] + rng.randbytes(rng.randrange(1, 8)) + text[i:]
    if r == 2 and text:
        i = rng.randrange(len(text))
        return text[:i] + bytes([rng.randrange(256)]) + text[i + 1 :]
    if r == 3:
        return rng.randbytes(rng.randrange(0, 200))
    if r == 4:
        n = rng.choice([10, 63, 64, 65, 100, 999, 2000, 5000])
        return b"[" * n + text + b"]" * n
    if r == 5:
        n = rng.choice([64, 65, 2000])
        return b'{"model":"mock-echo","x":' + b'{"a":' * n + b"1" + b"}" * n + b"}"
    if r == 6:  # a number of any size where a number was
        big = rng.choice([b"9" * rng.choice([99, 100, 101, 4300, 4301, 10_000]), b"1e400", b"-1e400", b"NaN",
                          b"Infinity", b"-Infinity", b"1" + b"0" * 400 + b".5", b"1e-400", b"-0"])  # fmt: skip
        return text.replace(b"12", big, 1) if b"12" in text else text.replace(b"{", b'{"n":' + big + b",", 1)
    if r == 7:  # a lone surrogate, escaped (as a JSON text) or raw (as bytes, not UTF-8)
        sur = rng.choice([b"\\ud800", b"\\udfff", b"\\ud83d", b"\\ude00x", b"\\ud83d\\ude00", b"\xed\xa0\x80"])
        if b'"mock-echo"' in text and rng.random() < 0.5:
            return text.replace(b'"mock-echo"', b'"' + sur + b'"', 1)
        i = text.find(b'"', rng.randrange(len(text) + 1))
        return text if i < 0 else text[: i + 1] + sur + text[i + 1 :]
    if r == 8:
        return rng.choice([b"", b" ", b"\n", b"null", b"[]", b"{}", b"0", b'"x"', b"true", b"[{}]", b"\xef\xbb\xbf{}"])
    if r == 9:
        return text.decode().encode(rng.choice(["utf-16", "utf-16-le", "utf-32", "utf-8-sig"]))
    if r == 10:
        return text.replace(b":", b"::", 1) if rng.random() < 0.5 else text + b"}"
    return text


def fuzz_bodies(door: str, seed: int, n: int) -> list[tuple[str, bytes]]:
    """``n`` (model, body) pairs: the model is the URL's for Gemini, else the base body's."""
    rng = random.Random(f"{seed}:{door}")
    out = []
    for _ in range(n):
        model = "mock-echo" if rng.random() < MOCK_SHARE else rng.choice(UNKNOWN_MODELS)
        body: Any = BASES[door](model)
        if rng.random() < 0.3:
            body["stream"] = True
        if rng.random() < 0.9:
            body = mutate_tree(rng, body)
        try:
            text = json.dumps(body, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        except (ValueError, RecursionError):
            text = b"{}"
        if rng.random() < 0.45:
            text = mutate_text(rng, text)
        out.append((model, text))
    return out


# ------------------------------------------------------------------------------------------ the doors


def shape_ok(door: str, status: int, body: Any) -> bool:
    if not isinstance(body, dict) or not isinstance(body.get("pisces"), dict) or not body["pisces"].get("request_id"):
        return False
    err = body.get("error")
    if not isinstance(err, dict):
        return False
    if door in ("openai", "openai-responses"):
        return set(err) == {"message", "type", "param", "code"} and isinstance(err["message"], str)
    if door == "anthropic":
        return body.get("type") == "error" and isinstance(err.get("type"), str) and isinstance(err.get("message"), str)
    return err.get("code") == status and isinstance(err.get("message"), str) and isinstance(err.get("status"), str)


class Writable(logging.Handler):
    """Formats every pisces record as Powertools writes it to CloudWatch, and encodes it as UTF-8."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.requests = 0
        self.unhandled: list[str] = []
        self.unwritable: list[str] = []
        self.setFormatter(logger.registered_formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.format(record).encode("utf-8")
        except Exception as e:  # the line would be lost ("--- Logging error ---")
            self.unwritable.append(f"{record.getMessage()}: {e!r}")
        if record.getMessage() == "request":
            self.requests += 1
        elif record.getMessage() == "unhandled error":
            self.unhandled.append(self.format(record)[:2000])


async def chunks(data: bytes, rng: random.Random) -> AsyncIterator[bytes]:
    cut = rng.randrange(len(data) + 1) if data and rng.random() < 0.3 else len(data)
    yield data[:cut]
    if cut < len(data):
        yield data[cut:]


async def send(life: Lifecycle, door: str, key: str, model: str, body: bytes, i: int, rng: random.Random) -> Reply:
    headers = {"content-type": "application/json"}
    query: dict[str, str] = {}
    if door == "openai":
        headers["authorization"] = f"Bearer {key}"
        path = "/v1/chat/completions"
    elif door == "openai-responses":
        headers["authorization"] = f"Bearer {key}"
        path = "/v1/responses"
    elif door == "anthropic":
        headers |= {"x-api-key": key, "anthropic-version": "2023-06-01"}
        path = "/v1/messages"
    else:
        headers["x-goog-api-key"] = key
        action = rng.choice(["generateContent", "streamGenerateContent"])
        if rng.random() < 0.5:
            query["alt"] = "sse"
        path = f"/v1beta/models/{model}:{action}"
    if rng.random() < 0.5:
        headers["content-length"] = str(len(body))
    incoming = Incoming("POST", path, headers, query, chunks(body, rng), f"req_fuzz_{door}_{i}")
    if door == "gemini":
        return await life.gemini(incoming, path.removeprefix("/v1beta/models/"))
    return await life.chat(incoming, door)


@pytest.fixture
async def fuzz_gateway(key_store, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")  # the EMF lines are not under test here
    gw = Gateway(gateway_config("http://127.0.0.1:9", requests_per_minute=0, tokens_per_minute=0), key_store)
    key, _ = key_store.create(name="fuzz", balance=TEST_BALANCE, rpm=0, tpm=0)
    yield gw, key
    await gw.aclose()


async def test_fuzz_doors(fuzz_gateway):
    gw, key = fuzz_gateway
    handler = Writable()
    std = logging.getLogger(logger.name)
    std.addHandler(handler)
    failures: list[str] = []
    statuses: dict[int, int] = {}
    timings = {}
    try:
        for door in BASES:
            rng = random.Random(f"{FUZZ_SEED}:{door}:wire")
            started = time.perf_counter()
            for i, (model, body) in enumerate(fuzz_bodies(door, FUZZ_SEED, FUZZ_BODIES)):
                reply = await send(gw.lifecycle, door, key, model, body, i, rng)
                statuses[reply.status] = statuses.get(reply.status, 0) + 1
                if isinstance(reply.body, bytes):
                    payload = reply.body
                else:
                    payload = b"".join([chunk async for chunk in reply.body])
                    if b"internal_error" in payload:
                        failures.append(f"{door} #{i}: a stream ended in internal_error: {body[:300]!r}")
                if reply.status >= 500:
                    failures.append(f"{door} #{i}: {reply.status} {payload[:300]!r} for {body[:300]!r}")
                elif reply.status >= 400 and not shape_ok(door, reply.status, json.loads(payload)):
                    failures.append(f"{door} #{i}: not {door}'s error shape: {payload[:300]!r}")
            timings[door] = round(time.perf_counter() - started, 1)
    finally:
        std.removeHandler(handler)
    print(f"fuzz: {FUZZ_BODIES} bodies per door, seconds {timings}, statuses {dict(sorted(statuses.items()))}")
    assert not failures, f"{len(failures)} failures, first: " + "\n".join(failures[:10])
    assert not handler.unhandled, handler.unhandled[:3]
    assert not handler.unwritable, handler.unwritable[:3]
    assert handler.requests == len(BASES) * FUZZ_BODIES, "one log line per request"
    assert statuses.get(200, 0) > 0.003 * len(BASES) * FUZZ_BODIES, "some bodies must reach the mock (and be answered)"
