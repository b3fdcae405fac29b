"""A seeded fuzz of the embeddings doors (OpenAI's /v1/embeddings, Gemini's :embedContent and
:batchEmbedContents), in-process, with test_fuzz_doors' mutations: no body a client can send is a 5xx,
every error is in the door's shape, every request is logged once, in writable UTF-8. The only
reachable embedding model is the mock (``mock-embed``); the other names are unknown or chat models."""

from __future__ import annotations

import json
import logging
import random
import time
from typing import Any

import pytest
from test_fuzz_doors import Writable, chunks, mutate_text, mutate_tree, shape_ok

from pisces.pipeline.gateway import Gateway
from pisces.pipeline.lifecycle import Incoming, Lifecycle, Reply
from pisces.pipeline.logs import logger
from support.config import TEST_BALANCE, gateway_config

FUZZ_SEED = 20261202
FUZZ_BODIES = 3_000  # per door
MOCK_SHARE = 0.1
MODELS = ["no-such-model", "", "mock-echo", "MOCK-EMB3D", "models/mock-embed", "é-模型", "x" * 300]


def openai_base(model: str) -> dict[str, Any]:
    return {"model": model, "input": ["The food was delicious", [1, 2, 3]], "dimensions": 12,
            "encoding_format": "base64", "user": "fuzz"}  # fmt: skip


def gemini_base(model: str) -> dict[str, Any]:
    one = {"model": f"models/{model}", "content": {"parts": [{"text": "Hello"}, {"text": "world"}]},
           "taskType": "RETRIEVAL_DOCUMENT", "title": "T", "outputDimensionality": 12}  # fmt: skip
    return {"requests": [one, {**one, "taskType": "RETRIEVAL_QUERY"}]}


def bodies(door: str, n: int) -> list[tuple[str, bytes]]:
    rng = random.Random(f"{FUZZ_SEED}:{door}")
    out = []
    for _ in range(n):
        model = "mock-embed" if rng.random() < MOCK_SHARE else rng.choice(MODELS)
        body: Any = (openai_base if door == "openai" else gemini_base)(model)
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


async def send(life: Lifecycle, door: str, key: str, model: str, body: bytes, i: int, rng: random.Random) -> Reply:
    headers = {"content-type": "application/json"}
    if door == "openai":
        headers["authorization"] = f"Bearer {key}"
        incoming = Incoming("POST", "/v1/embeddings", headers, {}, chunks(body, rng), f"req_fuzz_embed_{i}")
        return await life.embed(incoming, "openai")
    headers["x-goog-api-key"] = key
    action = rng.choice(["embedContent", "batchEmbedContents"])
    path = f"/v1beta/models/{model}:{action}"
    incoming = Incoming("POST", path, headers, {}, chunks(body, rng), f"req_fuzz_gembed_{i}")
    return await life.gemini(incoming, path.removeprefix("/v1beta/models/"))


@pytest.fixture
async def fuzz_gateway(key_store, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    gw = Gateway(gateway_config("http://127.0.0.1:9", requests_per_minute=0, tokens_per_minute=0), key_store)
    key, _ = key_store.create(name="fuzz-embed", balance=TEST_BALANCE, rpm=0, tpm=0)
    yield gw, key
    await gw.aclose()


async def test_fuzz_embeddings_doors(fuzz_gateway):
    gw, key = fuzz_gateway
    handler = Writable()
    std = logging.getLogger(logger.name)
    std.addHandler(handler)
    failures: list[str] = []
    statuses: dict[int, int] = {}
    timings = {}
    try:
        for door in ("openai", "gemini"):
            rng = random.Random(f"{FUZZ_SEED}:{door}:wire")
            started = time.perf_counter()
            for i, (model, body) in enumerate(bodies(door, FUZZ_BODIES)):
                reply = await send(gw.lifecycle, door, key, model, body, i, rng)
                assert isinstance(reply.body, bytes), "embeddings are never streamed"
                statuses[reply.status] = statuses.get(reply.status, 0) + 1
                if reply.status >= 500:
                    failures.append(f"{door} #{i}: {reply.status} {reply.body[:300]!r} for {body[:300]!r}")
                elif reply.status >= 400 and not shape_ok(door, reply.status, json.loads(reply.body)):
                    failures.append(f"{door} #{i}: not {door}'s error shape: {reply.body[:300]!r}")
            timings[door] = round(time.perf_counter() - started, 1)
    finally:
        std.removeHandler(handler)
    print(f"fuzz: {FUZZ_BODIES} bodies per door, seconds {timings}, statuses {dict(sorted(statuses.items()))}")
    assert not failures, f"{len(failures)} failures, first: " + "\n".join(failures[:10])
    assert not handler.unhandled, handler.unhandled[:3]
    assert not handler.unwritable, handler.unwritable[:3]
    assert handler.requests == 2 * FUZZ_BODIES, "one log line per request"
    assert statuses.get(200, 0) > 0.01 * 2 * FUZZ_BODIES, "some bodies must reach the mock (and be answered)"
