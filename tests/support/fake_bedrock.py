"""A fake Amazon Bedrock runtime on loopback, speaking the real wire formats that botocore's
``bedrock-runtime`` client reads:

- ``POST /model/{modelId}/converse``: Converse's JSON (``output.message``, ``stopReason``, ``usage``);
  errors as restJson: the status, ``x-amzn-ErrorType`` and ``{"message": ...}``.
- ``POST /model/{modelId}/converse-stream``: ``application/vnd.amazon.eventstream``, binary frames
  built by :func:`frame` (prelude: total length, headers length, prelude CRC32; headers
  ``:event-type``, ``:content-type``, ``:message-type``; the JSON payload; the message CRC32), the
  events in ConverseStream's order: messageStart, contentBlockStart/Delta/Stop, messageStop, metadata.

Model ids choose its behaviour:
  ``fake.throttled``       429 ThrottlingException (Converse and ConverseStream alike)
  ``fake.denied``          403 AccessDeniedException
  ``fake.invalid``         400 ValidationException
  ``fake.stream-throttled`` ConverseStream: HTTP 200, then a throttlingException as its first frame
  ``fake.stream-fails``    ConverseStream: messageStart, one text delta, then a modelStreamErrorException
  ``fake.gated``           ConverseStream: messageStart and a first text delta, then waits until
                           ``POST /release`` (or GATE_SECONDS) before the rest
  anything else: "Hello from Bedrock: <last user text>"; with ``toolConfig`` (and no tool result in the
  last turn) a toolUse of the first tool with :data:`TOOL_INPUT`; after a tool result, "Tool said: <its
  text>"; with ``additionalModelRequestFields.thinking`` a signed reasoningContent block first.
Usage is :data:`USAGE` (Bedrock's inputTokens leave out the cache reads and writes). Every request
(model id, body, the SigV4 Authorization header) is recorded in ``FakeBedrock.requests``.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

THOUGHT = "The user wants a greeting. I greet back."
THOUGHT_SIGNATURE = "ErcBCkgIAhABGAIiQBedrockSignedReasoning0123456789abcdef"
TOOL_INPUT = {"city": "Paris", "days": 3}
USAGE = {"inputTokens": 11, "outputTokens": 7, "totalTokens": 26, "cacheReadInputTokens": 5,
         "cacheWriteInputTokens": 3}  # fmt: skip
ERRORS = {
    "fake.throttled": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "fake.denied": (403, "AccessDeniedException",
                    "You don't have access to the model with the specified model ID."),
    "fake.invalid": (400, "ValidationException", "The provided model identifier is invalid."),
}  # fmt: skip
EVENTSTREAM = "application/vnd.amazon.eventstream"
GATE_SECONDS = 60.0  # longer than a test waits for gated streams: a gateway that needs the cap fails


# ------------------------------------------------------------------------------------ event-stream frames


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack(">B", len(n)) + n + struct.pack(">BH", 7, len(v)) + v  # 7: a string value


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, prelude CRC32), headers,
    payload, message CRC32 (of everything before it)."""
    hdrs = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(hdrs) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hdrs))
    head = prelude + struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF) + hdrs + payload
    return head + struct.pack(">I", binascii.crc32(head) & 0xFFFFFFFF)


def event(kind: str, body: dict[str, Any]) -> bytes:
    # Bedrock pads every event with "p" (so that sizes do not tell the text); botocore ignores it
    payload = json.dumps({**body, "p": "abcdefghij"[: 1 + len(kind) % 10]}).encode()
    return frame({":event-type": kind, ":content-type": "application/json", ":message-type": "event"}, payload)


def exception(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, json.dumps({"message": message}).encode())


# ------------------------------------------------------------------------------------ answers


def _last_user(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for m in reversed(messages):
        if m.get("role") == "user":
            return m.get("content") or []
    return []


def answer(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The content blocks and stop reason of the fake's answer to a Converse request."""
    last = _last_user(body.get("messages") or [])
    blocks: list[dict[str, Any]] = []
    if (body.get("additionalModelRequestFields") or {}).get("thinking"):
        blocks.append({"reasoningContent": {"reasoningText": {"text": THOUGHT, "signature": THOUGHT_SIGNATURE}}})
    results = [b["toolResult"] for b in last if "toolResult" in b]
    tools = [t["toolSpec"] for t in (body.get("toolConfig") or {}).get("tools", []) if "toolSpec" in t]
    if results:
        said = "".join(c.get("text", "") for r in results for c in r.get("content", []))
        blocks.append({"text": f"Tool said: {said}"})
        return blocks, "end_turn"
    if tools:
        blocks.append({"toolUse": {"toolUseId": "tooluse_fake0001", "name": tools[0]["name"], "input": TOOL_INPUT}})
        return blocks, "tool_use"
    text = "".join(b.get("text", "") for b in last)
    images = sum(1 for b in last if "image" in b)
    blocks.append({"text": f"Hello from Bedrock: {text}" + (f" [{images} image(s)]" if images else "")})
    return blocks, "end_turn"


def stream_frames(blocks: list[dict[str, Any]], stop: str) -> list[bytes]:
    out = [event("messageStart", {"role": "assistant"})]
    for i, b in enumerate(blocks):
        if "toolUse" in b:
            tu = b["toolUse"]
            out.append(event("contentBlockStart", {"contentBlockIndex": i,
                                                   "start": {"toolUse": {"toolUseId": tu["toolUseId"],
                                                                         "name": tu["name"]}}}))  # fmt: skip
            args = json.dumps(tu["input"])
            for j in range(0, len(args), 9):
                out.append(
                    event(
                        "contentBlockDelta", {"contentBlockIndex": i, "delta": {"toolUse": {"input": args[j : j + 9]}}}
                    )
                )
        elif "reasoningContent" in b:
            rt = b["reasoningContent"]["reasoningText"]
            for j in range(0, len(rt["text"]), 12):
                piece = {"reasoningContent": {"text": rt["text"][j : j + 12]}}
                out.append(event("contentBlockDelta", {"contentBlockIndex": i, "delta": piece}))
            out.append(
                event(
                    "contentBlockDelta",
                    {"contentBlockIndex": i, "delta": {"reasoningContent": {"signature": rt["signature"]}}},
                )
            )
        else:
            words = b["text"].split(" ")
            for j in range(0, len(words), 2):
                chunk = " ".join(words[j : j + 2]) + (" " if j + 2 < len(words) else "")
                out.append(event("contentBlockDelta", {"contentBlockIndex": i, "delta": {"text": chunk}}))
        out.append(event("contentBlockStop", {"contentBlockIndex": i}))
    out.append(event("messageStop", {"stopReason": stop}))
    out.append(event("metadata", {"usage": USAGE, "metrics": {"latencyMs": 42}}))
    return out  # fmt: skip


class FakeBedrock:
    def __init__(self) -> None:
        self.url = ""  # set by support.servers.serving
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/model/{model_id:path}/converse")(self.converse)
        self.app.post("/model/{model_id:path}/converse-stream")(self.converse_stream)
        self.app.post("/release")(self.release)
        self.gate = asyncio.Event()

    async def release(self) -> dict[str, bool]:
        self.gate.set()
        return {"released": True}

    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    async def _record(self, model_id: str, request: Request, stream: bool) -> dict[str, Any]:
        body = await request.json()
        self.requests.append({"model": model_id, "body": body, "stream": stream,
                              "authorization": request.headers.get("authorization", "")})  # fmt: skip
        return body

    @staticmethod
    def _error(model_id: str) -> Response | None:
        if model_id not in ERRORS:
            return None
        status, kind, message = ERRORS[model_id]
        headers = {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                   "x-amzn-RequestId": "fake-error-request"}  # fmt: skip
        return JSONResponse({"message": message}, status_code=status, headers=headers)

    async def converse(self, model_id: str, request: Request) -> Response:
        body = await self._record(model_id, request, stream=False)
        if (err := self._error(model_id)) is not None:
            return err
        blocks, stop = answer(body)
        payload = {"output": {"message": {"role": "assistant", "content": blocks}}, "stopReason": stop,
                   "usage": USAGE, "metrics": {"latencyMs": 42}}  # fmt: skip
        return JSONResponse(payload, headers={"x-amzn-RequestId": f"fake-req-{len(self.requests)}"})

    async def converse_stream(self, model_id: str, request: Request) -> Response:
        body = await self._record(model_id, request, stream=True)
        if (err := self._error(model_id)) is not None:
            return err
        if model_id == "fake.stream-throttled":
            frames = [exception("throttlingException", "Too many tokens, please wait before trying again.")]
        elif model_id == "fake.stream-fails":
            frames = [event("messageStart", {"role": "assistant"}),
                      event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Partial "}}),
                      exception("modelStreamErrorException", "The model stream failed.")]  # fmt: skip
        else:
            frames = stream_frames(*answer(body))
        gated_after = 2 if model_id == "fake.gated" else None

        async def send() -> AsyncIterator[bytes]:
            for n, f in enumerate(frames):
                if n == gated_after:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.gate.wait(), GATE_SECONDS)
                # split frames across writes, as a network does: the parser must buffer
                for j in range(0, len(f), 53):
                    yield f[j : j + 53]
                await asyncio.sleep(0)

        headers = {"x-amzn-RequestId": f"fake-req-{len(self.requests)}"}
        return StreamingResponse(send(), media_type=EVENTSTREAM, headers=headers)
