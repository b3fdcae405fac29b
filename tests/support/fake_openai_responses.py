"""The fake OpenAI upstream's ``POST /v1/responses``: OpenAI's Responses API as its docs and SDK types say it.

No real recording of a Responses stream is in shared/fixtures/recorded/, so the event sequence is
built as https://platform.openai.com/docs/api-reference/responses-streaming and openai-python's
``types/responses`` give it: ``response.created``, ``response.in_progress``, a reasoning item (summary
deltas, ``encrypted_content`` on its ``output_item.done``), then a message (``content_part.added``,
``output_text.delta``..., ``.done``) or a function call (``function_call_arguments.delta``...,
``.done``), each closed by ``output_item.done``, and ``response.completed`` with usage.

Models: ``fail-<status>`` answers that HTTP error; ``fail-mid`` streams a reasoning item and then
``response.failed``; anything else answers as a model would: it calls the first function tool (a
shell tool ``exec_command`` / ``shell`` gets ``{"cmd": "echo pisces-tool-ok"}``) unless the input ends
with a function call's output or tool_choice is "none", else it says "Hello from responses:
<the last user text or function output>". Every answer carries a reasoning item whose encrypted
content is :data:`ENCRYPTED`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

ENCRYPTED = "gAAAAABfake-encrypted-reasoning-0001"
SUMMARY = "Thinking about the request."
USAGE = {"input_tokens": 21, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 9,
         "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 30}  # fmt: skip
SHELL_ARGS = '{"cmd":"echo pisces-tool-ok"}'


def _last_input_text(items: Any) -> tuple[str, bool]:
    """The text the fake answers with, and whether the input ends with a function call's output."""
    if isinstance(items, str):
        return items, False
    for item in reversed(items or []):
        if item.get("type") == "function_call_output":
            out = item.get("output")
            text = out if isinstance(out, str) else "".join(p.get("text", "") for p in out or [])
            return text, True
        if item.get("role") == "user":
            c = item.get("content")
            if isinstance(c, str):
                return c, False
            return "".join(p.get("text", "") for p in c or [] if p.get("type") == "input_text"), False
    return "", False


def _output(body: dict[str, Any]) -> list[dict[str, Any]]:
    text, answered = _last_input_text(body.get("input"))
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    reasoning = {"id": "rs_fake_1", "type": "reasoning", "encrypted_content": ENCRYPTED,
                 "summary": [{"type": "summary_text", "text": SUMMARY}]}  # fmt: skip
    if tools and not answered and body.get("tool_choice") != "none":
        name = tools[0]["name"]
        args = SHELL_ARGS if name in ("exec_command", "shell") else '{"city":"Paris","days":3}'
        call = {"id": "fc_fake_1", "type": "function_call", "status": "completed", "arguments": args,
                "call_id": "call_resp_fake_1", "name": name}  # fmt: skip
        return [reasoning, call]
    msg = {"id": "msg_fake_1", "type": "message", "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "text": f"Hello from responses: {text}", "annotations": [],
                        "logprobs": []}]}  # fmt: skip
    return [reasoning, msg]


def _response(body: dict[str, Any], status: str, output: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
    return {"id": "resp_fake_upstream", "object": "response", "created_at": 1741476542, "status": status,
            "background": False, "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"), "model": body.get("model"), "output": output,
            "parallel_tool_calls": True, "previous_response_id": None, "reasoning": {"effort": "low",
            "summary": "auto"}, "store": body.get("store", True), "temperature": 1.0,
            "text": {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [], "top_p": 1.0, "truncation": "disabled", "usage": usage,
            "user": None, "metadata": {}}  # fmt: skip


class _Events:
    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


async def _stream(body: dict[str, Any], output: list[dict[str, Any]], fail_mid: bool) -> AsyncIterator[bytes]:
    ev = _Events()
    start = _response(body, "in_progress", [], None)
    yield ev("response.created", response=start)
    yield ev("response.in_progress", response=start)
    for oi, item in enumerate(output):
        if item["type"] == "reasoning":
            yield ev("response.output_item.added", output_index=oi, item={**item, "summary": [],
                                                                          "encrypted_content": None})  # fmt: skip
            part = {"type": "summary_text", "text": ""}
            yield ev("response.reasoning_summary_part.added", item_id=item["id"], output_index=oi, summary_index=0,
                     part=part)  # fmt: skip
            for word in SUMMARY.split(" "):
                yield ev("response.reasoning_summary_text.delta", item_id=item["id"], output_index=oi,
                         summary_index=0, delta=word + " ", obfuscation="x")  # fmt: skip
            yield ev("response.reasoning_summary_text.done", item_id=item["id"], output_index=oi, summary_index=0,
                     text=SUMMARY)  # fmt: skip
            yield ev("response.reasoning_summary_part.done", item_id=item["id"], output_index=oi, summary_index=0,
                     part={"type": "summary_text", "text": SUMMARY})  # fmt: skip
            yield ev("response.output_item.done", output_index=oi, item=item)
            if fail_mid:
                failed = _response(body, "failed", output[:1], None)
                failed["error"] = {"code": "server_error", "message": "The model failed mid-response."}
                yield ev("response.failed", response=failed)
                return
        elif item["type"] == "message":
            yield ev("response.output_item.added", output_index=oi, item={**item, "status": "in_progress",
                                                                          "content": []})  # fmt: skip
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            yield ev("response.content_part.added", item_id=item["id"], output_index=oi, content_index=0, part=part)
            text = item["content"][0]["text"]
            for i, word in enumerate(text.split(" ")):
                yield ev("response.output_text.delta", item_id=item["id"], output_index=oi, content_index=0,
                         delta=("" if i == 0 else " ") + word, logprobs=[], obfuscation="x")  # fmt: skip
            yield ev("response.output_text.done", item_id=item["id"], output_index=oi, content_index=0, text=text,
                     logprobs=[])  # fmt: skip
            yield ev("response.content_part.done", item_id=item["id"], output_index=oi, content_index=0,
                     part={**part, "text": text})  # fmt: skip
            yield ev("response.output_item.done", output_index=oi, item=item)
        else:
            yield ev("response.output_item.added", output_index=oi, item={**item, "status": "in_progress",
                                                                          "arguments": ""})  # fmt: skip
            args = item["arguments"]
            for i in range(0, len(args), 6):
                yield ev("response.function_call_arguments.delta", item_id=item["id"], output_index=oi,
                         delta=args[i : i + 6], obfuscation="x")  # fmt: skip
            yield ev("response.function_call_arguments.done", item_id=item["id"], output_index=oi, arguments=args)
            yield ev("response.output_item.done", output_index=oi, item=item)
    yield ev("response.completed", response=_response(body, "completed", output, USAGE))


async def responses(fake: Any, request: Request) -> Response:
    body = await request.json()
    fake.requests.append({"body": body, "authorization": request.headers.get("authorization"),
                          "path": "/v1/responses"})  # fmt: skip
    from support.fake_openai import UPSTREAM_SECRET

    if request.headers.get("authorization") != f"Bearer {UPSTREAM_SECRET}":
        err = {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key",
               "param": None}  # fmt: skip
        return JSONResponse({"error": err}, status_code=401)
    model = str(body.get("model") or "")
    if model.startswith("fail-") and model[5:].isdigit():
        status = int(model[5:])
        err = {"message": f"responses upstream says {status}", "type": "invalid_request_error", "param": None,
               "code": None}  # fmt: skip
        return JSONResponse({"error": err}, status_code=status)
    output = _output(body)
    if body.get("stream"):
        return StreamingResponse(_stream(body, output, model == "fail-mid"), media_type="text/event-stream")
    return JSONResponse(_response(body, "completed", output, USAGE))
