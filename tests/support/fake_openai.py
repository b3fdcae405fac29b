"""A fake OpenAI-compatible upstream on loopback, speaking the real wire format.

Model names choose its behaviour:
  recorded   streams shared/fixtures/recorded/openai_chat_tool_call_stream.sse byte for byte
  fail-500 / fail-400 / fail-429 / fail-401   answer that HTTP error in OpenAI's error shape
  fail-quote a 401 whose message quotes credentials (``quoting(...)``: the channel's own key, whole
             and masked, Bearer tokens, an sk- key, an x-api-key header line), as a careless upstream may
  quote-mid  with stream=true, one chunk and then an error chunk quoting them; without, as fail-quote
  slow       waits 30 s before answering (longer than the test channel's read timeout)
  cut        streams two chunks and then drops the connection
  gated      streams one chunk, then waits until POST /release (or 10 s); records whether the
             gateway hung up on it (``FakeOpenAI.hangups``); without a stream, answers once released
             (``FakeOpenAI.held`` counts the requests that waited)
  anything else: "Hello from upstream: <last user text>", or a tool call to the first tool when
  tools are given and tool_choice is not "none"; usage in the stream only when asked for.
POST /v1/embeddings answers OpenAI's list of embeddings: per input a deterministic unit vector
(``fake_vector``: FAKE_EMBED_DIMENSIONS values, or ``dimensions``), as floats or, with
encoding_format base64, little-endian float32 base64; usage prompt_tokens is ``fake_embed_tokens``
(two per word, one per token id: not the gateway's own count, so a test can tell them apart);
fail-NNN answers that error.

``POST /v1/responses`` speaks OpenAI's Responses API (:mod:`support.fake_openai_responses`).
Every request (body and the headers that matter) is recorded in ``FakeOpenAI.requests``.
Its Images API (/v1/images/generations, /v1/images/edits): support.fake_openai_images.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import math
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from support.fake_openai_images import FakeImages
from support.servers import FakeUpstream, last_user_text, recorded, replay

UPSTREAM_SECRET = "sk-fake-upstream-secret-0123456789"

# what the fakes' fail-quote / quote-mid models quote besides the channel's key (see ``quoting``)
QUOTED_MASKED = f"{UPSTREAM_SECRET[:8]}{'*' * 24}{UPSTREAM_SECRET[-4:]}"  # as OpenAI shows a key
QUOTED_BEARER = "tok_live_9f8e7d6c5b4a39281706"
QUOTED_SK = "sk-ant-api03-quotedOtherKey-AAAABBBB"
QUOTED_HEADER_VALUE = "hv-5566778899aabbccddeeff"
QUOTED = (UPSTREAM_SECRET, QUOTED_MASKED, QUOTED_BEARER, QUOTED_SK, QUOTED_HEADER_VALUE)


def quoting(meaning: str) -> str:
    """An upstream's error message: ``meaning`` first, then every credential of QUOTED."""
    return (
        f"{meaning} You sent credential Bearer {UPSTREAM_SECRET} (shown as {QUOTED_MASKED}); "
        f"header x-api-key: {QUOTED_HEADER_VALUE}; Bearer {QUOTED_BEARER} has expired and {QUOTED_SK} "
        "belongs to another account."
    )


OPENAI_QUOTE_MEANING = (
    "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
)


def _chunk(cid: str, model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


class FakeOpenAI(FakeUpstream):
    def __init__(self) -> None:
        super().__init__("/v1/chat/completions", self.chat)
        self.images = FakeImages(self)
        self.app.post("/v1/embeddings")(self.embeddings)
        self.app.post("/v1/responses")(self.responses)  # OpenAI's Responses API: support.fake_openai_responses

    async def responses(self, request: Request) -> Response:
        from support.fake_openai_responses import responses

        return await responses(self, request)

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"body": body, "authorization": request.headers.get("authorization")})
        if request.headers.get("authorization") != f"Bearer {UPSTREAM_SECRET}":
            return JSONResponse(
                {
                    "error": {
                        "message": "Incorrect API key provided",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                        "param": None,
                    }
                },
                status_code=401,
            )
        model = body.get("model", "")
        if model == "quote-mid" and body.get("stream"):
            return StreamingResponse(self._quote_mid(model), media_type="text/event-stream")
        if model in ("fail-quote", "quote-mid"):
            err = {"message": quoting(OPENAI_QUOTE_MEANING), "type": "invalid_request_error",
                   "code": "invalid_api_key", "param": None}  # fmt: skip
            return JSONResponse({"error": err}, status_code=401)
        if model.startswith("fail-"):
            status = int(model.split("-")[1])
            headers = {"retry-after": "7"} if status == 429 else {}
            return JSONResponse(
                {
                    "error": {
                        "message": f"upstream says {status}",
                        "type": "invalid_request_error",
                        "code": None,
                        "param": None,
                    }
                },
                status_code=status,
                headers=headers,
            )
        if model == "slow":
            await asyncio.sleep(30)
        if model == "gated" and body.get("stream"):
            self.gate.clear()
            return StreamingResponse(self._gated(), media_type="text/event-stream")
        if model == "gated":  # a complete answer, once POST /release says so (or 10 s)
            self.gate.clear()
            self.held += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gate.wait(), 10)
        if model == "recorded" and body.get("stream"):
            return StreamingResponse(
                replay(recorded("openai_chat_tool_call_stream.sse")), media_type="text/event-stream"
            )
        text = f"Hello from upstream: {last_user_text(body.get('messages', []))}"
        tools = body.get("tools") or []
        call = None
        if tools and body.get("tool_choice") != "none":
            call = {
                "id": "call_fake_1",
                "type": "function",
                "function": {"name": tools[0]["function"]["name"], "arguments": '{"city": "Paris", "days": 3}'},
            }
        usage = {
            "prompt_tokens": 11,
            "completion_tokens": 7,
            "total_tokens": 18,
            "prompt_tokens_details": {"cached_tokens": 2},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if call else text, "refusal": None}
            if call:
                message["tool_calls"] = [call]
            return JSONResponse(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "logprobs": None,
                            "finish_reason": "tool_calls" if call else "stop",
                        }
                    ],
                    "usage": usage,
                }
            )
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        return StreamingResponse(
            self._stream(model, text, call, usage if include_usage else None), media_type="text/event-stream"
        )

    async def _quote_mid(self, model: str) -> AsyncIterator[bytes]:
        yield _chunk("chatcmpl-quote", model, {"role": "assistant", "content": "partial"})
        err = {"message": quoting("The server had an error while processing your request."), "type": "server_error"}
        yield f"data: {json.dumps({'error': err})}\n\n".encode()

    async def _gated(self) -> AsyncIterator[bytes]:
        try:
            yield _chunk("chatcmpl-gated", "gated", {"role": "assistant", "content": "first"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gate.wait(), 10)
            yield _chunk("chatcmpl-gated", "gated", {"content": " second"})
            yield _chunk("chatcmpl-gated", "gated", {}, "stop")
            yield b"data: [DONE]\n\n"
        except (asyncio.CancelledError, GeneratorExit):
            self.hangups += 1
            raise

    async def _stream(
        self, model: str, text: str, call: dict[str, Any] | None, usage: dict[str, Any] | None
    ) -> AsyncIterator[bytes]:
        cid = f"chatcmpl-fake-{time.time_ns()}"
        yield _chunk(cid, model, {"role": "assistant", "content": ""})
        if call:
            fn = call["function"]
            yield _chunk(
                cid,
                model,
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": fn["name"], "arguments": ""},
                        }
                    ]
                },
            )
            args = fn["arguments"]
            for i in range(0, len(args), 5):
                yield _chunk(cid, model, {"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 5]}}]})
        else:
            for i, word in enumerate(text.split(" ")):
                yield _chunk(cid, model, {"content": ("" if i == 0 else " ") + word})
                if model == "cut" and i == 1:
                    raise RuntimeError("connection dropped on purpose")
        yield _chunk(cid, model, {}, "tool_calls" if call else "stop")
        if usage:
            chunk = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"body": body, "authorization": request.headers.get("authorization"),
                              "path": request.url.path})  # fmt: skip
        if request.headers.get("authorization") != f"Bearer {UPSTREAM_SECRET}":
            err = {"message": "Incorrect API key provided", "type": "invalid_request_error",
                   "code": "invalid_api_key", "param": None}  # fmt: skip
            return JSONResponse({"error": err}, status_code=401)
        model = body.get("model", "")
        if model.startswith("fail-"):
            status = int(model.split("-")[1])
            err = {"message": f"upstream says {status}", "type": "invalid_request_error", "code": None, "param": None}
            return JSONResponse({"error": err}, status_code=status)
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) or (raw and all(isinstance(t, int) for t in raw)) else raw
        if not inputs:
            err = {"message": "'$.input' is invalid.", "type": "invalid_request_error", "code": None, "param": None}
            return JSONResponse({"error": err}, status_code=400)
        dims = body.get("dimensions") or FAKE_EMBED_DIMENSIONS
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i, item in enumerate(inputs):
            vec = fake_vector(item, dims)
            emb: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = fake_embed_tokens(inputs)
        return JSONResponse({"object": "list", "data": data, "model": f"{model}-v1",
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})  # fmt: skip


FAKE_EMBED_DIMENSIONS = 8


def fake_vector(item: Any, dims: int = FAKE_EMBED_DIMENSIONS) -> list[float]:
    """The fake upstreams' unit vector of one input (a text or a token array), float32-exact."""
    seed = hashlib.sha256(b"fake:" + json.dumps(item).encode()).digest()
    raw = [(seed[i % 32] - 127.5) / 127.5 + i / 1000 for i in range(dims)]
    norm = math.sqrt(sum(x * x for x in raw))
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *(x / norm for x in raw))))


def fake_embed_tokens(inputs: list[Any]) -> int:
    """What the fake reports as prompt_tokens: two per word of a text, one per token id."""
    return sum(2 * len(i.split()) if isinstance(i, str) else len(i) for i in inputs)
