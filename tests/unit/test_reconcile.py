"""Holds on the key item and the reconciler that releases what a dead container left, exactly once
(against moto's DynamoDB server; the clock is ours, since moto never expires anything)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time

import pytest

from pisces.canonical import ChatRequest, Message, TextPart, Usage
from pisces.config import parse_config
from pisces.pipeline.billing import Billing
from pisces.pipeline.context import RequestContext
from pisces.store import dynamo
from pisces.store.keys import KeyStore, hash_key
from pisces.store.ledger import Hold, Ledger, RateLimits
from pisces.store.reconcile import DEFAULT_MAX_AGE_SECONDS, Reconciler
from pisces.store.schema import table_name
from pisces.store.usage import UsageRecord, UsageStore

UNLIMITED = RateLimits(0, 0)


@pytest.fixture
def ledger(local_dynamo) -> Ledger:
    return Ledger(dynamo.client(), table_name("keys"), table_name("usage"))


@pytest.fixture
def reconciler(local_dynamo) -> Reconciler:
    return Reconciler(dynamo.client(), table_name("keys"), table_name("usage"))


def holds_of(key_store: KeyStore, key_hash: str) -> list[str]:
    got = key_store.client.get_item(TableName=key_store.table, Key={"key_hash": {"S": key_hash}})["Item"]
    return sorted(got.get("holds", {}).get("SS", []))


def rid(name: str) -> str:
    return f"req_{name}_{time.time_ns()}"


def record(request_id: str, key_id: str, cost: int, hold: int) -> dict:
    return UsageRecord(request_id=request_id, key_id=key_id, protocol="openai", client_model="m", model="m",
                       created_at="2026-12-01T00:00:00Z", settled_at="2026-12-01T00:00:00Z", expires_at=0,
                       cost=cost, hold=hold).item()  # fmt: skip


def test_hold_tags_round_trip_and_stay_distinct():
    a, b = Hold.new(100.7, 5, "202612", "trace-1"), Hold.new(100.2, 5, "202612", "trace-1")
    assert a.tag != b.tag, "the same second, amount and client id are still two holds"
    assert Hold.parse(a.tag) == a and (a.at, a.amount, a.month, a.request_id) == (100, 5, "202612", "trace-1")
    assert Hold.parse("garbage") is None and Hold.parse("x|1|202612|n|r") is None


def test_admission_records_the_hold_and_settlement_removes_it(ledger, key_store):
    plaintext, rec = key_store.create(name="holds", balance=1000)
    kh = hash_key(plaintext)
    r1, r2 = rid("one"), rid("two")
    a = ledger.admit(kh, 100, UNLIMITED, request_id=r1)
    b = ledger.admit(kh, 200, UNLIMITED, request_id=r2)
    assert holds_of(key_store, kh) == sorted([a.hold.tag, b.hold.tag])
    assert ledger.settle(kh, 100, a.month, record(r1, rec.key_id, 10, 100), a.hold.tag)
    assert holds_of(key_store, kh) == [b.hold.tag]
    assert ledger.settle(kh, 200, b.month, record(r2, rec.key_id, 20, 200), b.hold.tag)
    assert holds_of(key_store, kh) == [], "the set disappears with its last element"
    assert key_store.get_by_hash(kh).balance == 1000 - 30


def test_reconciler_releases_only_old_holds_once_with_an_abandoned_record(ledger, key_store, reconciler):
    plaintext, rec = key_store.create(name="dead", balance=1000)
    kh = hash_key(plaintext)
    now = time.time()
    old = ledger.admit(kh, 300, UNLIMITED, now=now - DEFAULT_MAX_AGE_SECONDS - 5, request_id=rid("old"))
    young = ledger.admit(kh, 50, UNLIMITED, now=now - 10, request_id=rid("young"))
    assert key_store.get_by_hash(kh).balance == 650
    report = reconciler.run(now=now)
    assert old.hold.request_id in report.abandoned and young.hold.request_id not in report.abandoned
    assert report.young >= 1
    assert holds_of(key_store, kh) == [young.hold.tag]
    assert key_store.get_by_hash(kh).balance == 950, "the old hold is back, the young one still held"
    usage = UsageStore(ledger.client, ledger.usage_table).get(old.hold.request_id)
    assert (usage.outcome, usage.cost, usage.hold, usage.key_id, usage.usage_source) == (
        "abandoned", 0, 300, rec.key_id, "none")  # fmt: skip
    month_spend = key_store.client.get_item(TableName=key_store.table, Key={"key_hash": {"S": kh}})["Item"]
    assert int(month_spend[f"spent_{old.month}"]["N"]) == 50
    again = reconciler.run(now=now)
    assert old.hold.request_id not in again.abandoned + again.released
    assert key_store.get_by_hash(kh).balance == 950


def test_two_reconcilers_at_once_release_a_hold_exactly_once(ledger, key_store, reconciler):
    plaintext, _ = key_store.create(name="race", balance=10_000)
    kh = hash_key(plaintext)
    now = time.time()
    admitted = [ledger.admit(kh, 100, UNLIMITED, now=now - 2000, request_id=rid(f"r{i}")) for i in range(10)]
    mine = {a.hold.request_id for a in admitted}
    start = threading.Barrier(2)
    reports = []

    def one() -> None:
        start.wait()
        reports.append(Reconciler(dynamo.client(), table_name("keys"), table_name("usage")).run(now=now))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    released = [r for rep in reports for r in rep.abandoned + rep.released if r in mine]
    assert sorted(released) == sorted(mine), "each hold released by exactly one of them"
    assert key_store.get_by_hash(kh).balance == 10_000
    assert holds_of(key_store, kh) == []


def test_a_settlement_after_the_reconciler_changes_nothing(ledger, key_store, reconciler):
    """A container frozen past the age limit that wakes up and settles finds the abandoned record."""
    plaintext, rec = key_store.create(name="late", balance=1000)
    kh = hash_key(plaintext)
    a = ledger.admit(kh, 100, UNLIMITED, now=time.time() - 2000, request_id=rid("late"))
    reconciler.run()
    assert ledger.settle(kh, 100, a.month, record(a.hold.request_id, rec.key_id, 40, 100), a.hold.tag) is False
    assert key_store.get_by_hash(kh).balance == 1000


def test_a_hold_whose_record_exists_is_given_back_alone(ledger, key_store, reconciler):
    """Two requests under one client-chosen request id: the second's record cannot be written, so its
    hold would stay taken; the reconciler gives it back without a second record."""
    plaintext, rec = key_store.create(name="dup", balance=1000)
    kh = hash_key(plaintext)
    shared = rid("shared")
    first = ledger.admit(kh, 100, UNLIMITED, now=time.time() - 2000, request_id=shared)
    second = ledger.admit(kh, 100, UNLIMITED, now=time.time() - 2000, request_id=shared)
    assert ledger.settle(kh, 100, first.month, record(shared, rec.key_id, 10, 100), first.hold.tag)
    assert not ledger.settle(kh, 100, second.month, record(shared, rec.key_id, 10, 100), second.hold.tag)
    report = reconciler.run()
    assert shared in report.released
    assert key_store.get_by_hash(kh).balance == 990 and holds_of(key_store, kh) == []


class _Broken:
    """The real client whose settlement transaction fails as DynamoDB's would when unreachable."""

    def __init__(self, client) -> None:
        self.real, self.exceptions, self.calls = client, client.exceptions, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def transact_write_items(self, **kw):
        self.calls += 1
        err = {"Error": {"Code": "InternalServerError", "Message": "injected"}}
        raise self.exceptions.InternalServerError(err, "TransactWriteItems")


def test_a_failed_settlement_is_retried_then_left_to_the_reconciler(ledger, key_store, reconciler, caplog):
    broken = _Broken(ledger.client)
    cfg = parse_config({"models": {"m": {"price": {"input": 1, "output": 2}}}})
    billing = Billing(cfg, Ledger(broken, ledger.keys_table, ledger.usage_table))
    plaintext, rec = key_store.create(name="broken", balance=10_000)
    kh = hash_key(plaintext)
    ctx = RequestContext(request_id=rid("broken"), protocol="openai", model="m")
    ctx.usage = Usage(input_tokens=10, output_tokens=20)
    req = ChatRequest(model="m", max_tokens=50, messages=[Message(role="user", content=[TextPart(text="hi")])])
    bill = asyncio.run(billing.admit(ctx, req, rec))
    assert asyncio.run(billing.settle(ctx, req, bill, 200)) is None
    assert broken.calls == 3 and ctx.settle_failed, "tried three times in the request"
    assert "settlement failed" in caplog.text
    assert key_store.get_by_hash(kh).balance == 10_000 - bill.hold, "the hold stays taken: never lost"
    assert [Hold.parse(t).request_id for t in holds_of(key_store, kh)] == [ctx.request_id]
    report = reconciler.run(now=time.time() + DEFAULT_MAX_AGE_SECONDS + 1)
    assert ctx.request_id in report.abandoned
    assert key_store.get_by_hash(kh).balance == 10_000
    assert UsageStore(ledger.client, ledger.usage_table).get(ctx.request_id).outcome == "abandoned"


def test_cli_reconcile_against_moto(ledger, key_store, local_dynamo):
    plaintext, _ = key_store.create(name="cli", balance=1000)
    kh = hash_key(plaintext)
    a = ledger.admit(kh, 70, UNLIMITED, now=time.time() - 5000, request_id=rid("cli"))
    env_cmd = [sys.executable, "-m", "pisces.cli", "--endpoint-url", local_dynamo.endpoint]
    dry = subprocess.run([*env_cmd, "reconcile", "--dry-run"], capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    listed = {h["request_id"]: h for h in json.loads(dry.stdout)}
    assert listed[a.hold.request_id]["due"] is True and listed[a.hold.request_id]["amount_usd"] == "0.000070"
    assert key_store.get_by_hash(kh).balance == 930, "a dry run releases nothing"
    out = subprocess.run([*env_cmd, "reconcile"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert a.hold.request_id in json.loads(out.stdout)["request_ids"]
    assert key_store.get_by_hash(kh).balance == 1000
    bad = subprocess.run([*env_cmd, "reconcile", "--older-than", "-1"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--older-than" in bad.stderr


def test_the_scheduled_function_reconciles(ledger, key_store, monkeypatch):
    from pisces_reconciler import handler as fn

    plaintext, _ = key_store.create(name="fn", balance=1000)
    kh = hash_key(plaintext)
    a = ledger.admit(kh, 25, UNLIMITED, now=time.time() - 5000, request_id=rid("fn"))
    monkeypatch.setenv("PISCES_HOLD_MAX_AGE_SECONDS", "960")

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "reconciler", 256, "lambda-req-1"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:reconciler"

    out = fn.handler({"source": "aws.scheduler"}, Context())
    assert a.hold.request_id in out["request_ids"]
    assert key_store.get_by_hash(kh).balance == 1000
