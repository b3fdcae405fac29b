"""Money under hostile or broken conditions, over real HTTP: reproductions of what a fault soak, a
fuzzer and a kill test found, and the fault soak itself (the ledger reconciled to the micro-dollar)."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import anthropic
import httpx
import openai
import pytest
from botocore.config import Config as BotoConfig
from botocore.session import get_session

from pisces.store import dynamo
from pisces.store.dynamo_http import AsyncDynamo
from pisces.store.keys import hash_key
from pisces.store.ledger import Admitted, Ledger, RateLimits
from pisces.store.schema import table_name
from pisces.store.usage import UsageRecord, UsageStore


@pytest.fixture(scope="module")
def usage(local_dynamo) -> UsageStore:
    return UsageStore(dynamo.client(), table_name("usage"))


def records_of(gateway, usage: UsageStore, key: str) -> list[UsageRecord]:
    rec = gateway.store.get_by_hash(hash_key(key))
    return usage.query(rec.key_id, "2000-01-01", "2100-01-01")


def balance(gateway, key: str) -> int:
    return gateway.store.get_by_hash(hash_key(key)).balance


def holds(gateway, key: str) -> list[str]:
    item = gateway.store.client.get_item(TableName=gateway.store.table, Key={"key_hash": {"S": hash_key(key)}})
    return item["Item"].get("holds", {}).get("SS", [])


ASK = {"model": "gpt-fake", "messages": [{"role": "user", "content": "one two three"}]}


def test_a_client_request_id_is_never_the_settlement_key(gateway, usage):
    """Three requests with one X-Request-Id, and a fourth from another key: each is charged once,
    under the gateway's own id, and every hold comes back."""
    shared = f"trace-{uuid.uuid4().hex[:8]}"
    key, other = gateway.new_key(balance=1_000_000), gateway.new_key(balance=1_000_000)
    responses = []
    for k in (key, key, key, other):
        r = httpx.post(f"{gateway.v1}/chat/completions", json=ASK, headers={"Authorization": f"Bearer {k}",
                       "X-Request-Id": shared}, timeout=30)  # fmt: skip
        assert r.status_code == 200 and r.headers["x-request-id"] == shared, "the client's id is echoed"
        assert r.json()["pisces"]["request_id"] == shared
        responses.append(r)
    mine = records_of(gateway, usage, key)
    assert len(mine) == 3 and len({r.request_id for r in mine}) == 3
    assert all(r.client_request_id == shared and r.request_id != shared for r in mine)
    assert balance(gateway, key) == 1_000_000 - sum(r.cost for r in mine) and holds(gateway, key) == []
    theirs = records_of(gateway, usage, other)
    assert len(theirs) == 1 and balance(gateway, other) == 1_000_000 - theirs[0].cost
    assert all(r.json()["pisces"]["cost"] == 75 for r in responses)


def test_an_answer_without_usage_is_charged_by_estimate(gateway, usage, monkeypatch, clients):
    """An upstream that reports no usage for a non-streamed answer: charged a counted estimate."""
    channel = gateway.app.state.gateway.channels["fake"]
    real = channel.complete

    async def no_usage(req, model):
        resp = await real(req, model)
        return resp.model_copy(update={"usage": type(resp.usage)()})

    monkeypatch.setattr(channel, "complete", no_usage)
    key = gateway.new_key(balance=1_000_000)
    reply = clients.openai(gateway.v1, key).chat.completions.create(**ASK)
    assert reply.choices[0].message.content
    (rec,) = records_of(gateway, usage, key)
    assert rec.usage_source == "estimate" and rec.input_tokens > 0 and rec.output_tokens > 0
    assert rec.cost == rec.input_tokens * 2 + rec.output_tokens * 8 > 0  # gpt-fake: $2 / $8 per million
    assert reply.model_extra["pisces"]["cost"] == rec.cost == 1_000_000 - balance(gateway, key)


HUGE = 10**130


@pytest.mark.parametrize("door", ["openai", "anthropic", "gemini"])
def test_max_tokens_past_the_model_is_a_400_and_costs_nothing(gateway, usage, door):
    key = gateway.new_key(balance=1_000_000)
    msgs = [{"role": "user", "content": "hi"}]
    if door == "openai":
        r = httpx.post(f"{gateway.v1}/chat/completions", json={**ASK, "max_tokens": HUGE},
                       headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    elif door == "anthropic":
        body = {"model": "claude-fake", "max_tokens": HUGE, "messages": msgs}
        r = httpx.post(f"{gateway.url}/v1/messages", json=body, headers={"x-api-key": key})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    else:
        body = {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": HUGE}}
        r = httpx.post(f"{gateway.url}/v1beta/models/gemini-fake:generateContent", json=body,
                       headers={"x-goog-api-key": key})  # fmt: skip
        assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "pisces" in r.json()
    assert balance(gateway, key) == 1_000_000 and records_of(gateway, usage, key) == []
    # a million output tokens of a model without a configured maximum is still taken, and held
    ok = httpx.post(f"{gateway.v1}/chat/completions", json={**ASK, "max_tokens": 1_000_000},
                    headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert ok.status_code == 200


def test_the_anthropic_sdk_gets_the_providers_max_tokens_error(gateway, clients):
    c = clients.anthropic(gateway.url, gateway.key)
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(
            model="claude-fake", max_tokens=2_000_000, messages=[{"role": "user", "content": "x"}], stream=True
        )  # the SDK itself refuses a non-streamed request this long
    assert "max_tokens" in e.value.message


# ------------------------------------------------------------------ a DynamoDB that answers too late


class SlowOnce:
    """A TCP proxy to DynamoDB that forwards every request at once but holds the answer to the first
    UpdateItem until the client has sent another request (botocore's retry after its read timeout):
    the first attempt is applied, its answer is lost, the retry must not apply it again."""

    def __init__(self, target_port: int, marker: bytes = b"DynamoDB_20120810.UpdateItem") -> None:
        self.target, self.marker = target_port, marker
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held = False
        self.retried = threading.Event()
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections > 1:
                self.retried.set()
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target))
        with client, upstream:
            while True:
                try:
                    data = _read_http(client)
                except ConnectionError:
                    return
                upstream.sendall(data)
                answer = _read_http(upstream)
                if not self.held and self.marker in data:
                    self.held = True
                    self.retried.wait(60)  # the client gave up on this answer and tried again
                    return  # drop the answer of the applied first attempt
                client.sendall(answer)

    def close(self) -> None:
        self.sock.close()


def _read_http(sock: socket.socket) -> bytes:
    """One whole HTTP message (head and Content-Length body); ConnectionError when the peer closed."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        part = sock.recv(65536)
        if not part:
            raise ConnectionError("closed")
        buf += part
    head, _, body = buf.partition(b"\r\n\r\n")
    sizes = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    while len(body) < (sizes[0] if sizes else 0):
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@contextmanager
def slow_dynamo(local_dynamo, marker: bytes) -> Iterator[object]:
    """A DynamoDB client (read timeout 1 s, botocore's standard retries) behind :class:`SlowOnce`."""
    proxy = SlowOnce(local_dynamo.port, marker)
    cfg = BotoConfig(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=1)
    client = get_session().create_client("dynamodb", region_name="us-east-1",
                                         endpoint_url=f"http://127.0.0.1:{proxy.port}", config=cfg)  # fmt: skip
    try:
        yield client
    finally:
        proxy.close()
    assert proxy.held and proxy.retried.is_set(), "the first answer was lost and the call retried"


def test_an_admission_whose_answer_is_lost_is_applied_once(gateway, local_dynamo):
    key = gateway.new_key(balance=10_000)
    now = time.time()
    direct = Ledger(dynamo.client(), table_name("keys"), table_name("usage"))
    first = direct.admit(hash_key(key), 100, RateLimits(0, 0), now=now, request_id=f"req_a_{uuid.uuid4().hex}")
    # the key's window is open: the next admission is one UpdateItem, the one whose answer is lost
    with slow_dynamo(local_dynamo, b"DynamoDB_20120810.UpdateItem") as client:
        ledger = Ledger(client, table_name("keys"), table_name("usage"))
        outcome = ledger.admit(hash_key(key), 300, RateLimits(0, 0), now=now, request_id=f"req_b_{uuid.uuid4().hex}")
    assert isinstance(outcome, Admitted) and outcome.balance == 10_000 - 400
    assert balance(gateway, key) == 10_000 - 400, "one hold, not two"
    assert sorted(holds(gateway, key)) == sorted([first.hold.tag, outcome.hold.tag])


def test_key_creation_whose_answer_is_lost_still_returns_the_key(gateway, local_dynamo):
    """The admin API's POST /admin/keys was a 500 after the key was made, its plaintext lost."""
    from pisces.store.keys import KeyStore

    with slow_dynamo(local_dynamo, b"DynamoDB_20120810.PutItem") as client:
        plaintext, rec = KeyStore(client, table_name("keys")).create(name="lost-answer", balance=5)
    stored = gateway.store.get_by_hash(hash_key(plaintext))
    assert stored is not None and stored.key_id == rec.key_id and stored.balance == 5


# ------------------------------------------------------------------ the fault soak


SOAK_MODELS = {
    "openai": ["gpt-fake", "gpt-fake", "fail-500", "fail-429", "fail-400", "cut", "mock-echo", "claude-fake",
               "gemini-fake", "claude-fail-529", "gemini-fail-503", "claude-cut", "gemini-cut"],
    "anthropic": ["claude-fake", "claude-fake", "claude-fail-529", "claude-cut", "gpt-fake", "fail-500", "cut"],
    "gemini": ["gemini-fake", "gemini-fake", "gemini-fail-503", "gemini-cut", "gpt-fake", "fail-429", "claude-fake"],
}  # fmt: skip


def _soak_request(rng: random.Random, key: str) -> tuple[str, str, dict, dict[str, str], bool]:
    door = rng.choice(list(SOAK_MODELS))
    model = rng.choice(SOAK_MODELS[door])
    stream = rng.random() < 0.5
    text = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(rng.randint(1, 12)))
    if door == "openai":
        body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
        return "POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"}, stream
    if door == "anthropic":
        body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}], "stream": stream}
        return "POST", "/v1/messages", body, {"x-api-key": key}, stream
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    body = {"contents": [{"parts": [{"text": text}]}]}
    return "POST", f"/v1beta/models/{model}:{action}", body, {"x-goog-api-key": key}, stream


def test_fault_soak_reconciles_the_ledger_to_the_micro_dollar(gateway, usage):
    """300 requests, 12 at a time, over the three doors and every upstream kind, with upstream 4xx,
    5xx, 429s and cut streams and clients that hang up mid-stream: never a 5xx the gateway made
    itself (500), and the key's balance is exactly its start minus the sum of its usage records."""
    rng = random.Random(20261201)
    start = 10**9
    key = gateway.new_key(balance=start, rpm=0, tpm=0)
    plans = [_soak_request(rng, key) for _ in range(300)]
    hang_ups = {i for i in range(300) if plans[i][4] and rng.random() < 0.25}
    statuses: list[int] = []

    async def one(http: httpx.AsyncClient, i: int, sem: asyncio.Semaphore) -> None:
        method, path, body, headers, _ = plans[i]
        async with sem, http.stream(method, gateway.url + path, json=body, headers=headers) as r:
            statuses.append(r.status_code)
            async for _ in r.aiter_raw():
                if i in hang_ups:
                    break  # leave mid-stream

    async def soak() -> None:
        sem = asyncio.Semaphore(12)
        async with httpx.AsyncClient(timeout=60) as http:
            await asyncio.gather(*(one(http, i, sem) for i in range(300)))

    asyncio.run(soak())
    assert 500 not in statuses and len(statuses) == 300
    assert {200, 502} <= set(statuses)
    # a client that left is settled when its request notices: wait for the last hold to come back
    deadline = time.monotonic() + 60
    while holds(gateway, key) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holds(gateway, key) == [], "every hold settled"
    records = records_of(gateway, usage, key)
    assert len(records) >= statuses.count(200)
    assert start - balance(gateway, key) == sum(r.cost for r in records), "exact to the micro-dollar"
    assert all(r.cost >= 0 for r in records)


@pytest.mark.parametrize("door", ["openai", "anthropic", "gemini"])
def test_a_database_that_does_not_answer_is_a_503_with_retry_after(gateway, usage, monkeypatch, caplog, door, clients):
    """Admission's UpdateItem failing after the retries (here a DynamoDB endpoint that refuses every
    connection: EndpointConnectionError, as botocore raises it) is the door's 503 with Retry-After,
    not a 500 with a trace; nothing is charged. (A read timeout maps to the same: test_dynamo_http.)"""
    key = gateway.new_key(balance=1_000_000)
    ledger = gateway.app.state.gateway.billing.ledger
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens here once the socket is closed
    # on the gateway's own transport (closed with it)
    db = AsyncDynamo(f"http://127.0.0.1:{closed}", "us-east-1", transport=ledger.db.transport)
    monkeypatch.setattr(ledger, "db", db)
    msgs = [{"role": "user", "content": "hi"}]
    if door == "openai":
        with pytest.raises(openai.InternalServerError) as e:
            clients.openai(gateway.v1, key).chat.completions.create(**ASK)
        status, headers, body = e.value.status_code, e.value.response.headers, e.value.response.json()
        assert body["error"]["code"] == "service_unavailable"
    elif door == "anthropic":
        with pytest.raises(anthropic.APIStatusError) as e:
            clients.anthropic(gateway.url, key).messages.create(
                model="claude-fake", max_tokens=10, messages=msgs)  # fmt: skip
        status, headers, body = e.value.status_code, e.value.response.headers, e.value.response.json()
        assert body["type"] == "error"
    else:
        r = httpx.post(f"{gateway.url}/v1beta/models/gemini-fake:generateContent",
                       json={"contents": [{"parts": [{"text": "hi"}]}]}, headers={"x-goog-api-key": key})  # fmt: skip
        status, headers, body = r.status_code, r.headers, r.json()
        assert body["error"]["status"] == "UNAVAILABLE"
    assert status == 503 and headers["retry-after"] == "1" and "pisces" in body
    assert not [r for r in caplog.records if r.getMessage() == "unhandled error"], "no trace for an outage"
    monkeypatch.undo()
    assert balance(gateway, key) == 1_000_000 and records_of(gateway, usage, key) == []
