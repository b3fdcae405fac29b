"""The overdraft bound for image requests, over real HTTP: 200 concurrent image requests on a key
whose balance covers about 20 end no lower than minus one request's hold, with every admitted one
charged exactly what its usage record says and the rest refused with a 402.

Three upstreams: ``vision-fake``, an OpenAI-compatible fake started here that bills the image as
OpenAI bills gpt-4o (the 512 px tile rule, read from the PNG it is sent: 765 tokens for 1024x1024,
where admission used to count 85); ``gpt-fake`` (tests/support/fake_openai.py: a fixed 11 prompt
tokens, which holds cover trivially); and the mock (its usage is the gateway's own estimate).
"""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse

from pisces.config import parse_config
from pisces.store import dynamo
from pisces.store.keys import hash_key
from pisces.store.schema import table_name
from pisces.store.usage import UsageRecord, UsageStore
from support.media import png
from support.servers import GATEWAY_HTTP, FakeUpstream, ServerThread, serving

CONCURRENT = 200
COVERED = 20  # the balance covers about this many requests


IMAGE = png(1024, 1024)
IMAGE_URL = "data:image/png;base64," + base64.b64encode(IMAGE).decode()


def gpt4o_image_tokens(width: int, height: int, detail: str = "auto") -> int:
    """OpenAI's published rule for gpt-4o, written out here (not pisces.tokens): 85 at low detail;
    else fit in 2048x2048, shortest side to 768, 170 a 512 px tile, plus 85."""
    if detail == "low":
        return 85
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    if min(w, h) > 768:
        w, h = w * 768 / min(w, h), h * 768 / min(w, h)
    return 85 + 170 * math.ceil(int(w) / 512) * math.ceil(int(h) / 512)


class BillingOpenAI(FakeUpstream):
    """An OpenAI-compatible upstream whose usage is what OpenAI would bill: the images by the tile
    rule (their size read from the PNG header), the text by words, the answer "ok" as one token."""

    def __init__(self) -> None:
        super().__init__("/v1/chat/completions", self.chat)

    async def chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        prompt = 0
        for m in body["messages"]:
            prompt += 4
            content = m["content"]
            for part in [{"type": "text", "text": content}] if isinstance(content, str) else content:
                if part["type"] == "text":
                    prompt += len(part["text"].split())
                elif part["type"] == "image_url":
                    data = base64.b64decode(part["image_url"]["url"].partition(";base64,")[2])
                    assert data[12:16] == b"IHDR", "the fake reads PNGs only"
                    width, height = struct.unpack(">II", data[16:24])
                    prompt += gpt4o_image_tokens(width, height, part["image_url"].get("detail", "auto"))
        self.requests.append({"prompt_tokens": prompt})
        usage = {"prompt_tokens": prompt, "completion_tokens": 1, "total_tokens": prompt + 1}
        message = {"role": "assistant", "content": "ok", "refusal": None}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        return JSONResponse({"id": "chatcmpl-vision", "object": "chat.completion", "created": 1700000000,
                             "model": body["model"], "choices": [choice], "usage": usage})  # fmt: skip


@pytest.fixture(scope="module")
def usage(local_dynamo) -> UsageStore:
    return UsageStore(dynamo.client(), table_name("usage"))


@pytest.fixture(scope="module")
def vision_v1(gateway) -> Iterator[str]:
    """A second gateway on the same DynamoDB (keys and usage), whose one channel is BillingOpenAI.
    It reads the upstream key from PISCES_TEST_UPSTREAM_KEY, which the ``gateway`` fixture sets."""
    from pisces_gateway.app import create_app

    with serving(BillingOpenAI()) as upstream:
        config = parse_config(
            {
                "channels": [
                    {
                        "name": "vision",
                        "kind": "openai",
                        "base_url": f"{upstream.url}/v1",
                        "api_key_env": "PISCES_TEST_UPSTREAM_KEY",
                        "models": ["vision-fake"],
                    }
                ],
                "models": {"vision-fake": {"price": {"input": 2, "output": 8}}},  # gpt-4o's order of price
                "limits": {"max_body_bytes": 65536, "key_cache_seconds": 0.5},
            }
        )
        server = ServerThread(create_app(config, gateway.store), http=GATEWAY_HTTP).start()
        try:
            yield f"{server.url}/v1"
        finally:
            server.stop()


def balance(gateway, key: str) -> int:
    rec = gateway.store.get_by_hash(hash_key(key))
    assert rec is not None
    return rec.balance


def record_of(usage: UsageStore, request_id: str) -> UsageRecord:
    """Settlement is done before the response's last byte: the record is there when the client has it."""
    rec = usage.get(request_id)
    assert rec is not None, f"no usage record for {request_id} once its response was read"
    return rec


def ask(model: str) -> dict[str, Any]:
    content = [{"type": "text", "text": "What is in this picture?"},
               {"type": "image_url", "image_url": {"url": IMAGE_URL, "detail": "high"}}]  # fmt: skip
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 16}


@pytest.mark.parametrize("model", ["vision-fake", "gpt-fake", "mock-echo"])
def test_200_concurrent_image_requests_never_overdraw_more_than_one_hold(gateway, usage, vision_v1, model, clients):
    v1 = vision_v1 if model == "vision-fake" else gateway.v1
    # calibrate: what one image request really costs, as its upstream bills it
    calibrate = gateway.new_key(balance=10_000_000)
    raw = clients.openai(v1, calibrate).chat.completions.with_raw_response
    one = raw.create(**ask(model))
    cost = one.parse().model_extra["pisces"]["cost"]
    first = record_of(usage, one.headers["x-request-id"])
    assert first.usage_source == "upstream" and first.cost == cost > 0
    if model == "vision-fake":  # the image is billed as gpt-4o bills it, far above the old 85
        assert first.input_tokens >= gpt4o_image_tokens(1024, 1024) == 765
    assert first.hold >= cost, "the hold covers what the request really cost"

    start = COVERED * cost
    key = gateway.new_key(balance=start, rpm=0, tpm=0)

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=CONCURRENT)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:
            return await asyncio.gather(*(http.post(f"{v1}/chat/completions", json=ask(model),
                                                    headers={"Authorization": f"Bearer {key}"})
                                          for _ in range(CONCURRENT)))  # fmt: skip

    responses = asyncio.run(fire())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 402}, statuses
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 402]
    assert ok and refused
    assert len(ok) <= COVERED, f"{len(ok)} admitted on a balance that covers {COVERED}"
    assert all(r.json()["error"]["code"] == "insufficient_balance" for r in refused)
    records = [record_of(usage, r.headers["x-request-id"]) for r in ok]
    assert all(rec.hold >= rec.cost for rec in records), "every hold covers its request's real cost"
    largest_hold = max(rec.hold for rec in records)
    final = balance(gateway, key)
    assert final >= -largest_hold, f"balance {final} is below minus one hold ({largest_hold})"
    assert sum(rec.cost for rec in records) == start - final
    assert sum(r.json()["pisces"]["cost"] for r in ok) == start - final
    assert all(usage.get(r.headers["x-request-id"]) is None for r in refused)  # no record, no charge
