"""Money over real HTTP: charging exactly once, holds under concurrency, Idempotency-Key, rate limits.

The gateway runs under uvicorn with moto's DynamoDB server; prices come from tests/support/config.py
(mock-echo: $1 in / $2 out per million tokens, so a token costs one or two micro-dollars;
gpt-fake: $2 / $8, cached $0.50).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable

import httpx
import openai
import pytest

from pisces.store import dynamo
from pisces.store.keys import hash_key
from pisces.store.schema import table_name
from pisces.store.usage import UsageRecord, UsageStore
from support.config import in_one_rate_window


@pytest.fixture(scope="module")
def usage(local_dynamo) -> UsageStore:
    return UsageStore(dynamo.client(), table_name("usage"))


def record_of(usage: UsageStore, request_id: str) -> UsageRecord:
    """Settlement is done before the response's last byte: the record is there when the client has it."""
    rec = usage.get(request_id)
    assert rec is not None, f"no usage record for {request_id} once its response was read"
    return rec


def wait_record(usage: UsageStore, request_id: str, seconds: float = 30) -> UsageRecord:
    """For a request the client left: the gateway settles it when it notices the hang-up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rec = usage.get(request_id)
        if rec is not None:
            return rec
        time.sleep(0.02)
    raise AssertionError(f"no usage record for {request_id} after {seconds} s")


def balance(gateway, key: str) -> int:
    rec = gateway.store.get_by_hash(hash_key(key))
    assert rec is not None
    return rec.balance


@pytest.fixture
def sdk(gateway, clients) -> Callable[[str], openai.OpenAI]:
    """An openai client of the gateway with a key (``sdk(key)``), closed when the test ends."""
    return lambda key: clients.openai(gateway.v1, key)


def ask(model: str = "mock-echo", text: str = "one two three four", **kw) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **kw}


# --- charging -------------------------------------------------------------------------------------


def test_non_stream_is_charged_once_from_upstream_usage(gateway, usage, sdk):
    key = gateway.new_key(balance=1_000_000)
    raw = sdk(key).chat.completions.with_raw_response.create(**ask("gpt-fake"))
    resp = raw.parse()
    pisces = resp.model_extra["pisces"]
    # fake upstream usage: 11 prompt (2 cached), 7 completion -> 9*2 + 2*0.5 + 7*8 = 75 micro-dollars
    assert pisces["cost"] == 75
    rec = record_of(usage, raw.headers["x-request-id"])
    assert (rec.input_tokens, rec.cached_tokens, rec.output_tokens, rec.cost) == (11, 2, 7, 75)
    assert rec.usage_source == "upstream" and rec.outcome == "ok" and rec.status == 200
    assert (rec.protocol, rec.client_model, rec.model, rec.channel, rec.stream) == (
        "openai",
        "gpt-fake",
        "gpt-fake",
        "fake",
        False,
    )
    assert rec.latency_ms > 0 and rec.key_id and rec.hold >= rec.cost
    assert balance(gateway, key) == 1_000_000 - 75
    # rate-limit headers on every admitted response (defaults: 600 rpm, 2M tpm)
    assert raw.headers["x-ratelimit-limit-requests"] == "600"
    assert raw.headers["x-ratelimit-remaining-requests"] == "599"
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    assert raw.headers["x-ratelimit-limit-tokens"] == "2000000"


def test_stream_is_charged_before_its_last_chunk(gateway, usage, sdk):
    key = gateway.new_key(balance=1_000_000)
    with sdk(key).chat.completions.with_streaming_response.create(
        **ask("mock-echo", "alpha beta gamma"), stream=True, stream_options={"include_usage": True}
    ) as raw:
        rid = raw.headers["x-request-id"]
        chunks = list(raw.parse())
    u = chunks[-1].usage
    cost = u.prompt_tokens * 1 + u.completion_tokens * 2
    assert chunks[-1].model_extra["pisces"]["cost"] == cost
    rec = record_of(usage, rid)
    assert rec.stream and rec.cost == cost and rec.usage_source == "upstream" and rec.ttft_ms is not None
    assert balance(gateway, key) == 1_000_000 - cost


def test_failed_upstream_releases_the_hold(gateway, usage, sdk):
    key = gateway.new_key(balance=1_000_000)
    with pytest.raises(openai.InternalServerError) as e:
        sdk(key).chat.completions.create(**ask("fail-500"))
    rec = record_of(usage, e.value.response.headers["x-request-id"])
    assert (rec.cost, rec.status, rec.outcome, rec.usage_source) == (0, 502, "upstream_error", "none")
    assert balance(gateway, key) == 1_000_000


def test_client_cut_stream_is_charged_for_what_was_generated(gateway, usage):
    key = gateway.new_key(balance=1_000_000)
    before = gateway.upstream.hangups
    body = ask("gated", "x", stream=True)
    with httpx.stream("POST", f"{gateway.v1}/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                      timeout=10) as r:  # fmt: skip
        rid = r.headers["x-request-id"]
        seen = b""
        for chunk in r.iter_raw():
            seen += chunk
            if b'"first"' in seen:
                break
    # the client hung up after one chunk; the gateway closed the upstream and settled
    rec = wait_record(usage, rid)
    assert rec.outcome == "client_cut" and rec.usage_source == "estimate"
    assert rec.output_tokens >= 1 and rec.input_tokens >= 1
    assert rec.cost == rec.input_tokens * 1 + rec.output_tokens * 2  # "gated" costs $1 / $2 per million
    assert balance(gateway, key) == 1_000_000 - rec.cost
    deadline = time.monotonic() + 10
    while gateway.upstream.hangups == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gateway.upstream.hangups == before + 1


def test_upstream_cut_stream_is_charged_and_says_so(gateway, usage, sdk):
    key = gateway.new_key(balance=1_000_000)
    with sdk(key).chat.completions.with_streaming_response.create(**ask("cut"), stream=True) as raw:
        rid = raw.headers["x-request-id"]
        with pytest.raises(openai.APIError):
            list(raw.parse())
    rec = record_of(usage, rid)
    assert rec.outcome == "upstream_error" and rec.usage_source == "estimate" and rec.output_tokens >= 2
    assert rec.cost == rec.input_tokens * 1 + rec.output_tokens * 2
    assert balance(gateway, key) == 1_000_000 - rec.cost


def test_200_concurrent_requests_never_overspend(gateway, usage, sdk):
    """A balance that covers about 50 requests, 200 at once: the balance never goes below minus one
    request's hold, and the usage records sum exactly to what was charged."""
    calibrate = gateway.new_key(balance=1_000_000)
    one = sdk(calibrate).chat.completions.create(**ask(max_tokens=16))
    cost = one.model_extra["pisces"]["cost"]
    start = 50 * cost
    key = gateway.new_key(balance=start, rpm=0, tpm=0)

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        f"{gateway.v1}/chat/completions",
                        json=ask(max_tokens=16),
                        headers={"Authorization": f"Bearer {key}"},
                    )
                    for _ in range(200)
                )
            )

    responses = asyncio.run(fire())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 402}, statuses
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 402]
    assert ok and refused
    assert all(r.json()["error"]["code"] == "insufficient_balance" for r in refused)
    records = [record_of(usage, r.headers["x-request-id"]) for r in ok]
    holds = max(rec.hold for rec in records)
    final = balance(gateway, key)
    assert final >= -holds
    assert sum(rec.cost for rec in records) == start - final
    assert sum(r.json()["pisces"]["cost"] for r in ok) == start - final
    # refused requests left no record and no charge
    assert all(usage.get(r.headers["x-request-id"]) is None for r in refused)


# --- Idempotency-Key ------------------------------------------------------------------------------


def test_idempotent_replay_returns_the_same_body_and_charges_nothing(gateway, usage, sdk):
    key = gateway.new_key(balance=1_000_000)
    client = sdk(key)
    idem = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = client.chat.completions.with_raw_response.create(**ask("gpt-fake"), extra_headers=idem)
    record_of(usage, first.headers["x-request-id"])
    charged = balance(gateway, key)
    again = client.chat.completions.with_raw_response.create(**ask("gpt-fake"), extra_headers=idem)
    assert again.http_response.content == first.http_response.content
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert usage.get(again.headers["x-request-id"]) is None, "a replay is never settled"
    assert balance(gateway, key) == charged
    # another key's same Idempotency-Key is its own
    other = sdk(gateway.new_key()).chat.completions.with_raw_response.create(**ask("gpt-fake"), extra_headers=idem)
    assert "idempotent-replayed" not in other.headers


def test_idempotency_key_reused_with_another_body_is_422(gateway, sdk):
    client = sdk(gateway.new_key())
    idem = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    client.chat.completions.create(**ask(text="first body"), extra_headers=idem)
    with pytest.raises(openai.UnprocessableEntityError) as e:
        client.chat.completions.create(**ask(text="another body"), extra_headers=idem)
    assert e.value.code == "idempotency_key_reused" and e.value.body["param"] == "Idempotency-Key"


def test_bad_idempotency_key_is_400(gateway, sdk):
    with pytest.raises(openai.BadRequestError) as e:
        sdk(gateway.key).chat.completions.create(**ask(), extra_headers={"Idempotency-Key": "x" * 256})
    assert e.value.body["param"] == "Idempotency-Key"


def test_idempotent_stream_in_flight_is_409_then_replays_the_same_events(gateway, usage, sdk):
    key = gateway.new_key(balance=1_000_000)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"s-{uuid.uuid4()}"}
    body = ask("gated", "x", stream=True)
    url = f"{gateway.v1}/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=10) as r:
        it = r.iter_raw()
        received = [next(it)]  # the stream has started
        with pytest.raises(openai.ConflictError) as e:  # the first still runs
            sdk(key).chat.completions.create(
                **ask("gated", "x"), stream=True, extra_headers={"Idempotency-Key": headers["Idempotency-Key"]}
            )
        assert e.value.code == "idempotency_in_progress"
        httpx.post(f"{gateway.upstream.url}/release")
        received += list(it)
        rid = r.headers["x-request-id"]
    original = b"".join(received)
    assert original.rstrip().endswith(b"data: [DONE]")
    record_of(usage, rid)
    charged = balance(gateway, key)
    replay = httpx.post(url, json=body, headers=headers, timeout=10)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["content-type"].startswith("text/event-stream")
    # the same events byte for byte; the live stream may also carry keep-alive comments (": keep-alive")
    # sent while the gated upstream was silent, which are no event and are not stored
    assert without_keep_alives(replay.content) == without_keep_alives(original)
    assert balance(gateway, key) == charged


def without_keep_alives(raw: bytes) -> bytes:
    return b"".join(e + b"\n\n" for e in raw.split(b"\n\n") if e and not e.startswith(b":"))


def test_failed_request_releases_its_idempotency_key(gateway, sdk):
    client = sdk(gateway.new_key())
    idem = {"Idempotency-Key": f"f-{uuid.uuid4()}"}
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**ask("fail-500"), extra_headers=idem)
    with pytest.raises(openai.InternalServerError):  # runs again (not 409, not a replay of the failure)
        client.chat.completions.create(**ask("fail-500"), extra_headers=idem)


# --- balance, budget, rate limits -----------------------------------------------------------------


def test_empty_balance_is_402(gateway, sdk):
    with pytest.raises(openai.APIStatusError) as e:
        sdk(gateway.new_key(balance=0)).chat.completions.create(**ask())
    assert e.value.status_code == 402 and e.value.code == "insufficient_balance"
    assert e.value.body and json.dumps(e.value.response.json()["pisces"])


def test_monthly_budget_spent_is_402(gateway, usage, sdk):
    key = gateway.new_key(balance=1_000_000, monthly_budget=1)
    raw = sdk(key).chat.completions.with_raw_response.create(**ask())
    record_of(usage, raw.headers["x-request-id"])
    with pytest.raises(openai.APIStatusError) as e:
        sdk(key).chat.completions.create(**ask())
    assert e.value.status_code == 402 and "budget" in e.value.message


def test_requests_per_minute_limit_is_429_with_retry_after(gateway, sdk):
    client = sdk(gateway.new_key(rpm=2))
    in_one_rate_window()
    first = client.chat.completions.with_raw_response.create(**ask())
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    second = client.chat.completions.with_raw_response.create(**ask())
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(**ask())
    h = e.value.response.headers
    assert e.value.code == "rate_limit_exceeded"
    assert 1 <= int(h["retry-after"]) <= 60
    assert h["x-ratelimit-limit-requests"] == "2" and h["x-ratelimit-remaining-requests"] == "0"


def test_tokens_per_minute_limit_counts_settled_tokens(gateway, usage, sdk):
    client = sdk(gateway.new_key(tpm=5))
    raw = client.chat.completions.with_raw_response.create(**ask(text="a b c d e f g h"))
    record_of(usage, raw.headers["x-request-id"])  # its tokens now count in the window
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(**ask())
    assert e.value.response.headers["x-ratelimit-limit-tokens"] == "5"


# --- GET /v1/usage --------------------------------------------------------------------------------


def test_usage_shows_the_keys_own_balance_and_spend(gateway, usage, sdk):
    key = gateway.new_key(balance=1_000_000)
    client = sdk(key)
    ids = [client.chat.completions.with_raw_response.create(**ask("gpt-fake")).headers["x-request-id"]
           for _ in range(2)]  # fmt: skip
    ids.append(client.chat.completions.with_raw_response.create(**ask()).headers["x-request-id"])
    records = [record_of(usage, rid) for rid in ids]
    body = httpx.get(f"{gateway.v1}/usage", headers={"Authorization": f"Bearer {key}"}).json()
    spent = sum(r.cost for r in records)
    assert body["object"] == "usage" and body["balance"] == 1_000_000 - spent
    assert body["balance_usd"] == f"0.{1_000_000 - spent:06d}" and body["pisces"]["request_id"]
    assert body["total"]["requests"] == 3 and body["total"]["cost"] == spent
    by_model = {row["model"]: row for row in body["data"]}
    assert by_model["gpt-fake"]["requests"] == 2 and by_model["gpt-fake"]["cost"] == 150
    assert by_model["gpt-fake"]["input_tokens"] == 22 and by_model["gpt-fake"]["output_tokens"] == 14
    # another key sees only its own
    other = httpx.get(f"{gateway.v1}/usage", headers={"Authorization": f"Bearer {gateway.new_key()}"}).json()
    assert other["total"]["requests"] == 0
    # a date range that ends before today is empty; a bad date is a 400 naming it
    empty = httpx.get(f"{gateway.v1}/usage?from=2020-01-01&to=2020-01-31", headers={"Authorization": f"Bearer {key}"})
    assert empty.json()["total"]["requests"] == 0
    bad = httpx.get(f"{gateway.v1}/usage?from=yesterday", headers={"Authorization": f"Bearer {key}"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "from"
    assert httpx.get(f"{gateway.v1}/usage").status_code == 401


def test_concurrent_first_uses_of_one_idempotency_key_run_once(gateway, usage):
    key = gateway.new_key(balance=1_000_000)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"c-{uuid.uuid4()}"}

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as http:
            return await asyncio.gather(
                *(http.post(f"{gateway.v1}/chat/completions", json=ask("gpt-fake"), headers=headers) for _ in range(8))
            )

    responses = asyncio.run(fire())
    ran = [r for r in responses if r.status_code == 200 and "idempotent-replayed" not in r.headers]
    replayed = [r for r in responses if r.status_code == 200 and "idempotent-replayed" in r.headers]
    busy = [r for r in responses if r.status_code == 409]
    assert len(ran) == 1 and len(ran) + len(replayed) + len(busy) == 8
    assert all(r.content == ran[0].content for r in replayed)
    assert all(r.json()["error"]["code"] == "idempotency_in_progress" for r in busy)
    rec = record_of(usage, ran[0].headers["x-request-id"])
    assert balance(gateway, key) == 1_000_000 - rec.cost  # charged once


@pytest.mark.parametrize("stream", [False, True])
def test_one_dynamodb_round_trip_before_the_upstream_and_settlement_before_the_end(gateway, stream, monkeypatch, sdk):
    """With the key cached: admission's one UpdateItem, then the upstream, then settlement's one
    transaction, all before the client has the whole response. Only this request's calls are counted
    (the session's gateway may still be settling another test's request): DynamoDB calls that name
    this key, upstream requests that carry this request's text."""
    gw = gateway.app.state.gateway
    key = gateway.new_key(balance=1_000_000)
    mine, text = hash_key(key), f"round trip {uuid.uuid4().hex}"
    client = sdk(key)
    # the session's key cache lives 0.5 s, which a loaded machine can spend between two requests
    monkeypatch.setattr(gw.auth.cache, "ttl", 600.0)
    client.chat.completions.create(**ask("gpt-fake"))  # the key is now cached
    seen: list[str] = []

    to_dynamo = gw.db.transport.exchange

    async def on_dynamo(method: str, url: str, headers: dict, body: bytes, timeouts: dict) -> object:
        if mine.encode() in body:  # the hot path's DynamoDB, on the event loop
            seen.append(headers["x-amz-target"].rsplit(".", 1)[-1])
        return await to_dynamo(method, url, headers, body, timeouts)

    to_upstream = gw.http.direct.open  # the channels' calls go straight out (pisces.httppool.Wire, pisces.h1)

    async def on_upstream(method: str, url: str, headers: dict, body: bytes, timeouts: dict) -> object:
        if text.encode() in body:
            seen.append("upstream")
        return await to_upstream(method, url, headers, body, timeouts)

    def on_botocore(model: object, params: object = None, **kw: object) -> None:  # must not be used
        if mine in json.dumps(params, default=str):
            seen.append("botocore " + getattr(model, "name", "?"))

    events = gw.keys.client.meta.events
    events.register("before-call.dynamodb", on_botocore)
    monkeypatch.setattr(gw.db.transport, "exchange", on_dynamo)
    monkeypatch.setattr(gw.http.direct, "open", on_upstream)
    try:
        if stream:
            list(client.chat.completions.create(**ask("gpt-fake", text), stream=True))
        else:
            client.chat.completions.create(**ask("gpt-fake", text))
        done = list(seen)
    finally:
        events.unregister("before-call.dynamodb", on_botocore)
    assert done == ["UpdateItem", "upstream", "TransactWriteItems"]
