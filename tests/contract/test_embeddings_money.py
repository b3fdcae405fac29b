"""Embeddings' money over real HTTP: charged per input token exactly once (the upstream's count, or
the gateway's when it reports none), nothing for a failure or an Idempotency-Key replay, balances exact.

Prices (tests/support/config.py EMBED_PRICES, USD per million input tokens): mock-embed $1 (a token
is a micro-dollar), text-embedding-fake $0.50, gemini-embedding-fake $0.25.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Callable

import httpx
import openai
import pytest

from pisces.store import dynamo
from pisces.store.keys import hash_key
from pisces.store.schema import table_name
from pisces.store.usage import UsageRecord, UsageStore
from pisces.tokens import estimate_text
from support.fake_openai import fake_embed_tokens

BALANCE = 10_000_000  # $10


@pytest.fixture(scope="module")
def usage(local_dynamo) -> UsageStore:
    return UsageStore(dynamo.client(), table_name("usage"))


def record_of(usage: UsageStore, request_id: str) -> UsageRecord:
    rec = usage.get(request_id)
    assert rec is not None, "settled before the response's last byte"
    return rec


def balance(gateway, key: str) -> int:
    rec = gateway.store.get_by_hash(hash_key(key))
    assert rec is not None
    return rec.balance


def holds(gateway, key: str) -> list[str]:
    """The outstanding holds recorded on the key item (what a reconciler would release)."""
    item = gateway.store.client.get_item(TableName=gateway.store.table, Key={"key_hash": {"S": hash_key(key)}})
    return item["Item"].get("holds", {}).get("SS", [])


@pytest.fixture
def sdk(gateway, clients) -> Callable[[str], openai.OpenAI]:
    """An openai client of the gateway with a key (``sdk(key)``), closed when the test ends."""
    return lambda key: clients.openai(gateway.v1, key)


def test_the_upstream_count_is_charged_once(gateway, usage, sdk):
    key = gateway.new_key(balance=BALANCE)
    texts = ["one two three", "four five six seven", "eight"] * 50  # 400 words: the fake counts two a word
    raw = sdk(key).embeddings.with_raw_response.create(model="text-embedding-fake", input=texts)
    resp = raw.parse()
    tokens = fake_embed_tokens(texts)
    assert resp.usage.prompt_tokens == tokens == 800
    cost = math.ceil(tokens * 0.5)  # $0.50 per million: half a micro-dollar a token
    rec = record_of(usage, raw.headers["x-request-id"])
    assert (rec.input_tokens, rec.output_tokens, rec.cost, rec.usage_source) == (tokens, 0, cost, "upstream")
    assert rec.outcome == "ok" and rec.status == 200 and rec.model == "text-embedding-fake"
    assert rec.channel == "fake-embeddings" and rec.stream is False and rec.hold >= cost
    assert (resp.model_extra or {})["pisces"]["cost"] == cost
    assert balance(gateway, key) == BALANCE - cost and holds(gateway, key) == [], "exactly once, no hold left"


def test_the_mock_charges_its_count(gateway, usage, sdk):
    key = gateway.new_key(balance=BALANCE)
    text = "Pisces charges every input token it embeds"
    raw = sdk(key).embeddings.with_raw_response.create(model="mock-embed", input=[text, [1, 2, 3, 4]])
    n = estimate_text(text) + 4
    rec = record_of(usage, raw.headers["x-request-id"])
    assert raw.parse().usage.prompt_tokens == rec.input_tokens == n and rec.cost == n  # $1 per million
    assert balance(gateway, key) == BALANCE - n


def test_a_gemini_upstream_without_usage_is_charged_the_count(gateway, usage):
    key = gateway.new_key(balance=BALANCE)
    texts = ["alpha beta gamma delta"] * 40
    r = httpx.post(f"{gateway.v1}/embeddings", json={"model": "gemini-embedding-fake", "input": texts},
                   headers={"Authorization": f"Bearer {key}"}, timeout=15)  # fmt: skip
    assert r.status_code == 200, r.text
    n = sum(estimate_text(t) for t in texts)
    rec = record_of(usage, r.headers["x-request-id"])
    assert rec.usage_source == "estimate" and rec.input_tokens == n
    assert r.json()["usage"]["prompt_tokens"] == n, "the answer says what was charged"
    assert rec.cost == math.ceil(n * 0.25) == r.json()["pisces"]["cost"]
    assert balance(gateway, key) == BALANCE - rec.cost


def test_a_failure_charges_nothing_and_leaves_no_hold(gateway, usage, sdk):
    key = gateway.new_key(balance=BALANCE)
    with pytest.raises(openai.APIStatusError) as e:
        sdk(key).embeddings.create(model="embed-fail-500", input="x")
    rec = record_of(usage, e.value.response.headers["x-request-id"])
    assert rec.cost == 0 and rec.outcome == "upstream_error" and rec.status == 502
    assert balance(gateway, key) == BALANCE and holds(gateway, key) == []
    with pytest.raises(openai.BadRequestError):
        sdk(key).embeddings.create(model="mock-echo", input="x")  # refused before admission
    assert balance(gateway, key) == BALANCE


def test_an_idempotency_key_replay_charges_nothing(gateway, usage):
    key = gateway.new_key(balance=BALANCE)
    idem = f"embed-{uuid.uuid4()}"
    body = {"model": "text-embedding-fake", "input": ["replay me please", "and me"], "encoding_format": "base64"}
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idem}
    before = len(gateway.upstream.requests)
    first = httpx.post(f"{gateway.v1}/embeddings", json=body, headers=headers, timeout=15)
    second = httpx.post(f"{gateway.v1}/embeddings", json=body, headers=headers, timeout=15)
    assert first.status_code == second.status_code == 200
    assert second.headers.get("idempotent-replayed") == "true" and "idempotent-replayed" not in first.headers
    assert second.content == first.content, "the stored answer, byte for byte"
    assert len(gateway.upstream.requests) == before + 1, "the upstream was asked once"
    cost = math.ceil(fake_embed_tokens(body["input"]) * 0.5)
    assert record_of(usage, first.headers["x-request-id"]).cost == cost
    assert usage.get(second.headers["x-request-id"]) is None, "a replay writes no usage record"
    assert balance(gateway, key) == BALANCE - cost
    other = httpx.post(f"{gateway.v1}/embeddings", json={**body, "input": "else"}, headers=headers, timeout=15)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"


def test_an_empty_balance_is_refused(gateway, sdk):
    key = gateway.new_key(balance=0)
    with pytest.raises(openai.APIStatusError) as e:
        sdk(key).embeddings.create(model="mock-embed", input="x")
    assert e.value.status_code == 402 and e.value.body["code"] == "insufficient_balance"


async def test_concurrent_requests_sum_exactly(gateway, usage):
    key = gateway.new_key(balance=BALANCE)
    texts = [f"text number {i} " * (i + 1) for i in range(20)]
    async with openai.AsyncOpenAI(base_url=gateway.v1, api_key=key, max_retries=0) as client:
        raws = await asyncio.gather(*(client.embeddings.with_raw_response.create(model="mock-embed", input=t)
                                      for t in texts))  # fmt: skip
    records = [record_of(usage, r.headers["x-request-id"]) for r in raws]
    assert [r.input_tokens for r in records] == [estimate_text(t) for t in texts]
    assert balance(gateway, key) == BALANCE - sum(r.cost for r in records)
    assert holds(gateway, key) == []


def test_the_log_line_says_what_was_charged(gateway, usage, caplog):
    import logging

    from pisces.pipeline.logs import logger

    caplog.set_level(logging.INFO)
    key = gateway.new_key(balance=BALANCE)
    r = httpx.post(f"{gateway.v1}/embeddings", json={"model": "gemini-embedding-fake", "input": "five words in a row"},
                   headers={"Authorization": f"Bearer {key}"}, timeout=15)  # fmt: skip
    rid = r.headers["x-request-id"]
    lines = [json.loads(logger.registered_formatter.format(x)) for x in caplog.records if x.name.startswith("pisces")]
    line = next(x for x in lines if x.get("message") == "request" and x.get("request_id") == rid)
    rec = record_of(usage, rid)
    assert line["input_tokens"] == rec.input_tokens == estimate_text("five words in a row")
    assert line["output_tokens"] == 0
    assert line["cost_micros"] == rec.cost and line["path"] == "/v1/embeddings" and line["status"] == 200
