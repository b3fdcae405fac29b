"""A fake Google AI Studio (Gemini API) upstream on loopback, speaking the real wire format:
POST /v1beta/models/{model}:generateContent and /v1beta/models/{model}:streamGenerateContent (and the
same under /v1).

Model names choose its behaviour:
  recorded-call   with :streamGenerateContent?alt=sse, replay shared/fixtures/recorded/
             gemini_stream_function_call.sse byte for byte; otherwise answer the one response it holds
  fail-400 / fail-403 / fail-404 / fail-429 / fail-500 / fail-503   answer that HTTP error in Google's
             error shape (429 with retry-after: 7 and a RetryInfo detail)
  fail-quote Google's 400 API_KEY_INVALID, its message quoting credentials (support.fake_openai.quoting)
  quote-mid  when streamed, one chunk and then an error chunk quoting them; otherwise as fail-quote
  slow       waits 30 s before answering (longer than a test channel's read timeout)
  cut        streams one chunk and then drops the connection
  gated      streams up to its first text chunk, then waits until POST /release (or 10 s)
  anything else: "Hello from upstream: <last user text>", or a functionCall of the first declared
  function (the first of allowedFunctionNames if given) with a thoughtSignature, when tools declare
  functions, functionCallingConfig.mode is not NONE and the last user turn is no functionResponse;
  with thinkingConfig.includeThoughts, a thought part first.
Streams: with ?alt=sse, ``data: <json>`` events separated by CRLF CRLF; without, one JSON array sent
piece by piece (``[{...}\\n,\\r\\n{...}\\n]``), as the real API does. One chunk per word; intermediate
chunks carry only promptTokenCount/totalTokenCount, the last one finishReason and the full usage.
:embedContent and :batchEmbedContents answer ``{embedding: {values}}`` / ``{embeddings: [{values}]}``:
per text the fake's unit vector (``support.fake_openai.fake_vector`` of the text, GEMINI_EMBED_DIMENSIONS
values or outputDimensionality), no usage (the real API reports none); fail-NNN answers that error.
A wrong ``x-goog-api-key`` gets Google's 400 INVALID_ARGUMENT "API key not valid", a missing one its
403 PERMISSION_DENIED. Every request is recorded in ``FakeGemini.requests``. Image models (Imagen's
:predict, gemini-2.5-flash-image): support.fake_gemini_images.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from support import fake_gemini_images as gemini_images
from support.fake_openai import UPSTREAM_SECRET, fake_vector, quoting
from support.servers import FakeUpstream, recorded, replay

__all__ = ["RECORDED_CALL", "SIGNATURE", "THOUGHT", "TOOL_ARGS", "UPSTREAM_SECRET", "USAGE", "FakeGemini"]

STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
            429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}  # fmt: skip
USAGE: dict[str, Any] = {"promptTokenCount": 11, "candidatesTokenCount": 7, "totalTokenCount": 22,
                         "thoughtsTokenCount": 4, "cachedContentTokenCount": 2,
                         "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 11}]}  # fmt: skip
TOOL_ARGS = {"city": "Paris", "days": 3}
THOUGHT = "**Greeting back** The user greets me, so I greet them back."
SIGNATURE = "CikBcsjafFK168IbtVtoxVV0Tsn8O+eU45rzJahzwuKGmMbdMdfpmNpgBwplAXLI2nyA/pIFcnZwFm+7WFmL"
RESPONSE_ID = "fake-resp-1"
RECORDED_FILE = "gemini_stream_function_call.sse"
# the one GenerateContentResponse the recorded stream holds
RECORDED_CALL: dict[str, Any] = json.loads(recorded(RECORDED_FILE).decode().split("data: ", 1)[1])


def _dumps(body: Any, indent: int | None = None) -> str:
    # Google's own spacing: a space after ':' but none after ','
    return json.dumps(body, ensure_ascii=False, indent=indent, separators=(",", ": "))


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(body, indent=2) + "\n", status, headers, "application/json; charset=UTF-8")


def _error(status: int, message: str, *details: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": STATUSES.get(status, "UNKNOWN")}
    if details:
        error["details"] = list(details)
    return _json({"error": error}, status, headers)


def _get(obj: Any, camel: str, snake: str) -> Any:
    """A field under its camelCase or snake_case name (the API accepts both, its docs use both)."""
    return obj.get(camel, obj.get(snake)) if isinstance(obj, dict) else None


def _many(value: Any) -> list[Any]:
    """A repeated field, also when given as one value (the API and its REST samples allow that)."""
    return value if isinstance(value, list) else [] if value is None else [value]


def _last_user_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    for content in reversed(_many(body.get("contents"))):
        # function results come back as role "user" (some samples use "tool" or "function")
        if isinstance(content, dict) and content.get("role", "user") in ("user", "tool", "function"):
            return [p for p in _many(content.get("parts")) if isinstance(p, dict)]
    return []


def _user_text(parts: list[dict[str, Any]]) -> str:
    answers = [_get(p, "functionResponse", "function_response") for p in parts]
    if any(answers):
        return "".join(json.dumps(a.get("response")) for a in answers if isinstance(a, dict))
    return "".join(p["text"] for p in parts if isinstance(p.get("text"), str))


def _chunk(model: str, parts: list[dict[str, Any]], usage: dict[str, Any], finish: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish:
        candidate["finishReason"] = "STOP"
    candidate["index"] = 0
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": RESPONSE_ID}


class FakeGemini(FakeUpstream):
    def __init__(self) -> None:
        super().__init__("/v1beta/models/{model_action:path}", self.models)
        self.app.post("/v1/models/{model_action:path}")(self.models)  # google-genai >= 3 defaults to v1

    async def models(self, model_action: str, request: Request) -> Response:
        model, _, action = model_action.rpartition(":")
        body = await request.json()
        headers = {h: request.headers.get(h) for h in ("x-goog-api-key", "authorization", "content-type")}
        self.requests.append({"body": body, "model": model, "action": action, "path": request.url.path,
                              "query": dict(request.query_params), **headers})  # fmt: skip
        key = request.headers.get("x-goog-api-key")
        if not key:
            return _error(403, "Method doesn't allow unregistered callers (callers without established identity)."
                          " Please use API Key or other form of API consumer identity to call this API.")  # fmt: skip
        if key != UPSTREAM_SECRET:
            info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"}}  # fmt: skip
            return _error(400, "API key not valid. Please pass a valid API key.", info)
        if model == "quote-mid" and action == "streamGenerateContent":
            parts = [{"text": "partial"}]
            err = {"error": {"code": 500, "message": quoting("Internal error encountered."), "status": "INTERNAL"}}
            chunks = [_chunk(model, parts, {"promptTokenCount": 1, "totalTokenCount": 1}, False), err]
            return StreamingResponse(self._stream(chunks, request.query_params.get("alt") == "sse", quoted=True),
                                     media_type="text/event-stream")  # fmt: skip
        if model in ("fail-quote", "quote-mid"):
            info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com"}  # fmt: skip
            return _error(400, quoting("API key not valid. Please pass a valid API key."), info)
        if action == "predict" and model.startswith("imagen"):
            return _json(gemini_images.predict(body))
        if action == "generateContent" and model in gemini_images.IMAGE_MODELS:
            answer = gemini_images.generate(body)
            if answer is not None:
                return _json(answer)
        if action in ("embedContent", "batchEmbedContents"):
            return self._embed(model, action, body)
        if not model or action not in ("generateContent", "streamGenerateContent"):
            return _error(404, f"models/{model_action} is not found for API version v1beta.")
        if model.startswith("fail-"):
            status = int(model.split("-")[1])
            if status == 429:
                retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
                return _error(429, "upstream says 429", retry, headers={"retry-after": "7"})
            return _error(status, f"upstream says {status}")
        if model == "slow":
            await asyncio.sleep(30)
        sse = request.query_params.get("alt") == "sse"
        if model == "recorded-call":
            if action == "generateContent":
                return _json(RECORDED_CALL)
            if sse:
                return StreamingResponse(replay(recorded(RECORDED_FILE)), media_type="text/event-stream")
            return StreamingResponse(self._stream([RECORDED_CALL], sse=False), media_type="application/json")
        parts = self._answer(body)
        if action == "generateContent":
            return _json(_chunk(model, parts, dict(USAGE), finish=True))
        if model == "gated":
            self.gate.clear()
        chunks = self._chunks(model, parts)
        stream = self._stream(chunks, sse, cut=model == "cut", gated=model == "gated")
        return StreamingResponse(stream, media_type="text/event-stream" if sse else "application/json")

    def _answer(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        declared = [d for tool in _many(body.get("tools"))
                    for d in _many(_get(tool, "functionDeclarations", "function_declarations"))]  # fmt: skip
        calling = _get(_get(body, "toolConfig", "tool_config"), "functionCallingConfig", "function_calling_config")
        mode = str(_get(calling, "mode", "mode") or "AUTO").upper()
        allowed = _many(_get(calling, "allowedFunctionNames", "allowed_function_names"))
        user = _last_user_parts(body)
        answered = any(_get(p, "functionResponse", "function_response") for p in user)
        parts: list[dict[str, Any]]
        if declared and mode != "NONE" and not answered:
            name = allowed[0] if allowed else declared[0].get("name")
            parts = [{"functionCall": {"name": name, "args": TOOL_ARGS}, "thoughtSignature": SIGNATURE}]
        else:
            parts = [{"text": f"Hello from upstream: {_user_text(user)}"}]
        thinking = _get(_get(body, "generationConfig", "generation_config"), "thinkingConfig", "thinking_config")
        if _get(thinking, "includeThoughts", "include_thoughts"):
            parts.insert(0, {"text": THOUGHT, "thought": True})
        return parts

    def _chunks(self, model: str, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The stream of one answer: a thought part alone, then each word of the text (a functionCall
        comes whole); every chunk a GenerateContentResponse holding only its delta."""
        deltas: list[dict[str, Any]] = []
        for part in parts:
            if "text" in part and not part.get("thought"):
                words = part["text"].split(" ")
                deltas += [{"text": (" " if i else "") + word} for i, word in enumerate(words)]
            else:
                deltas.append(part)
        partial = {"promptTokenCount": USAGE["promptTokenCount"], "totalTokenCount": USAGE["promptTokenCount"]}
        last = len(deltas) - 1
        return [_chunk(model, [d], dict(USAGE if i == last else partial), i == last) for i, d in enumerate(deltas)]

    async def _stream(
        self, chunks: list[dict[str, Any]], sse: bool, cut: bool = False, gated: bool = False, quoted: bool = False
    ) -> AsyncIterator[bytes]:
        for i, chunk in enumerate(chunks):
            if sse:
                yield f"data: {_dumps(chunk)}\r\n\r\n".encode()
            else:
                yield (("[" if i == 0 else ",\r\n") + _dumps(chunk, indent=2) + "\n").encode()
            if cut:
                raise RuntimeError("connection dropped on purpose")
            if quoted:
                continue
            part = chunk["candidates"][0]["content"]["parts"][0]
            if gated and "text" in part and not part.get("thought"):
                gated = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.gate.wait(), 10)
        if not sse:
            yield b"]"

    def _embed(self, model: str, action: str, body: dict[str, Any]) -> Response:
        if model.startswith("fail-"):
            return _error(int(model.split("-")[1]), f"upstream says {model.split('-')[1]}")
        requests = body.get("requests") if action == "batchEmbedContents" else [body]
        if not isinstance(requests, list) or not requests:
            return _error(400, "* BatchEmbedContentsRequest.requests: requests is not specified")
        values = []
        for i, r in enumerate(requests):
            if action == "batchEmbedContents" and r.get("model") != f"models/{model}":
                return _error(400, f"* BatchEmbedContentsRequest.requests[{i}].model: must be models/{model}")
            text = "".join(p.get("text", "") for p in _many((r.get("content") or {}).get("parts")))
            if not text:
                return _error(400, f"* BatchEmbedContentsRequest.requests[{i}].content: contents is not specified")
            values.append(fake_vector(text, r.get("outputDimensionality") or GEMINI_EMBED_DIMENSIONS))
        if action == "embedContent":
            return _json({"embedding": {"values": values[0]}})
        return _json({"embeddings": [{"values": v} for v in values]})


GEMINI_EMBED_DIMENSIONS = 12
