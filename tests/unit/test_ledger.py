"""Prices, money parsing, admission and settlement against moto's DynamoDB server (no gateway)."""

from __future__ import annotations

import asyncio
import time

import pytest

from pisces.canonical import ChatRequest, Message, TextPart, Usage
from pisces.config import Price, parse_config
from pisces.money import parse_usd, usd
from pisces.pipeline.billing import Billing, cost_of, max_cost
from pisces.pipeline.context import RequestContext
from pisces.store import dynamo
from pisces.store.keys import KeyStore, hash_key
from pisces.store.ledger import WINDOW_SECONDS, Admitted, Ledger, RateLimits, Refused, month_of
from pisces.store.schema import table_name
from pisces.store.usage import UsageStore

NOW = 1_790_000_000.0  # a fixed clock; windows and months are derived from it
UNLIMITED = RateLimits(0, 0)


@pytest.fixture
def ledger(local_dynamo) -> Ledger:
    return Ledger(dynamo.client(), table_name("keys"), table_name("usage"))


def new_key(key_store: KeyStore, **money) -> str:
    plaintext, _ = key_store.create(name="ledger", **{"balance": 1000, **money})
    return hash_key(plaintext)


def item(key_store: KeyStore, key_hash: str) -> dict:
    return key_store.client.get_item(TableName=key_store.table, Key={"key_hash": {"S": key_hash}})["Item"]


# --- prices and money -----------------------------------------------------------------------------


def test_cost_is_integer_micro_dollars_rounded_up():
    price = Price(input=2, output=8, cached_input=0.5, cache_write=2.5)  # USD per million = micros per token
    assert cost_of(price, Usage(input_tokens=11, cached_tokens=2, output_tokens=7)) == 9 * 2 + 2 * 0.5 + 7 * 8
    assert cost_of(price, Usage(input_tokens=10, cache_write_tokens=4)) == 6 * 2 + 4 * 2.5
    assert cost_of(Price(input="0.000001"), Usage(input_tokens=1)) == 1  # a millionth of a micro-dollar rounds up
    assert cost_of(Price(input="0.15"), Usage(input_tokens=10)) == 2  # 1.5 -> 2
    assert cost_of(Price(), Usage(input_tokens=10**9, output_tokens=10**9)) == 0
    # cached defaults to the input price; counts never exceed the prompt
    assert cost_of(Price(input=1), Usage(input_tokens=3, cached_tokens=5)) == 3


def test_max_cost_holds_the_output_cap():
    cfg = parse_config({"models": {"m": {"price": {"input": 1, "output": 2}, "max_output_tokens": 100}}})
    req = ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="one two three")])])
    assert max_cost(cfg, "m", req) >= 200  # 100 output tokens at $2/M
    assert max_cost(cfg, "m", req.model_copy(update={"max_tokens": 10})) < max_cost(cfg, "m", req)


@pytest.mark.parametrize(
    ("given", "micros"), [(10, 10_000_000), ("12.50", 12_500_000), ("0.000001", 1), (0.5, 500_000), ("1e2", 10**8)]
)
def test_parse_usd(given, micros):
    assert parse_usd(given) == micros


@pytest.mark.parametrize("bad", ["-1", -0.5, "abc", "", "NaN", "Infinity", "0.0000001", True, None, [1], {"a": 1}])
def test_parse_usd_refuses(bad):
    with pytest.raises(ValueError):
        parse_usd(bad)


def test_usd_string():
    assert [usd(1), usd(12_500_000), usd(-75), usd(0)] == ["0.000001", "12.500000", "-0.000075", "0.000000"]


# --- admission ------------------------------------------------------------------------------------


def test_admission_counts_and_holds_in_one_write(ledger, key_store):
    kh = new_key(key_store)
    a = ledger.admit(kh, 300, RateLimits(10, 1000), now=NOW)
    assert isinstance(a, Admitted)
    assert (a.balance, a.requests, a.tokens, a.window) == (700, 1, 0, int(NOW // WINDOW_SECONDS))
    b = ledger.admit(kh, 300, RateLimits(10, 1000), now=NOW + 1)
    assert isinstance(b, Admitted) and (b.balance, b.requests) == (400, 2)
    assert int(item(key_store, kh)[f"spent_{month_of(NOW)}"]["N"]) == 600


def test_admission_refuses_with_the_reason(ledger, key_store):
    kh = new_key(key_store)
    limits = RateLimits(requests=2, tokens=0)
    assert isinstance(ledger.admit(kh, 1, limits, now=NOW), Admitted)
    assert isinstance(ledger.admit(kh, 1, limits, now=NOW), Admitted)
    refused = ledger.admit(kh, 1, limits, now=NOW)
    assert isinstance(refused, Refused) and refused.reason == "requests" and refused.requests == 2
    assert int(item(key_store, kh)["balance"]["N"]) == 998  # a refusal holds nothing
    # the next window starts from zero (moto never expires anything: the clock is ours)
    later = ledger.admit(kh, 1, limits, now=NOW + WINDOW_SECONDS)
    assert isinstance(later, Admitted) and later.requests == 1
    assert ledger.admit("0" * 64, 1, limits, now=NOW) == Refused("unknown_key")


def test_admission_refuses_an_empty_balance_a_spent_budget_and_a_revoked_key(ledger, key_store):
    assert ledger.admit(new_key(key_store, balance=0), 1, UNLIMITED, now=NOW).reason == "balance"
    kh = new_key(key_store, monthly_budget=100)
    assert isinstance(ledger.admit(kh, 100, UNLIMITED, now=NOW), Admitted)
    assert ledger.admit(kh, 1, UNLIMITED, now=NOW).reason == "budget"
    # a new month has its own budget
    assert isinstance(ledger.admit(kh, 1, UNLIMITED, now=NOW + 40 * 86400), Admitted)
    plaintext, rec = key_store.create(name="gone", balance=10)
    key_store.revoke(rec.key_id)
    assert ledger.admit(hash_key(plaintext), 1, UNLIMITED, now=NOW).reason == "revoked"


def test_admission_may_overdraw_by_at_most_one_hold(ledger, key_store):
    kh = new_key(key_store, balance=250)
    outcomes = [ledger.admit(kh, 100, UNLIMITED, now=NOW) for _ in range(5)]
    assert [isinstance(o, Admitted) for o in outcomes] == [True, True, True, False, False]
    assert int(item(key_store, kh)["balance"]["N"]) == -50


def test_a_clock_behind_counts_in_the_newer_window(ledger, key_store):
    kh = new_key(key_store)
    ahead = ledger.admit(kh, 1, RateLimits(5, 0), now=NOW + WINDOW_SECONDS)
    behind = ledger.admit(kh, 1, RateLimits(5, 0), now=NOW)
    assert isinstance(behind, Admitted) and behind.window == ahead.window and behind.requests == 2


def test_concurrent_admissions_count_every_request(ledger, key_store):
    kh = new_key(key_store, balance=10**6)

    async def many() -> list:
        return await asyncio.gather(
            *(asyncio.to_thread(ledger.admit, kh, 1, RateLimits(30, 0), NOW) for _ in range(50))
        )

    outcomes = asyncio.run(many())
    assert sum(isinstance(o, Admitted) for o in outcomes) == 30
    assert sorted(o.requests for o in outcomes if isinstance(o, Admitted)) == list(range(1, 31))


# --- settlement -----------------------------------------------------------------------------------


def _billing(key_store: KeyStore, ledger: Ledger) -> Billing:
    cfg = parse_config({"models": {"m": {"price": {"input": 1, "output": 2}}}})
    return Billing(cfg, ledger)


def _request() -> ChatRequest:
    return ChatRequest(model="m", max_tokens=50, messages=[Message(role="user", content=[TextPart(text="hi there")])])


def test_settling_twice_charges_once(ledger, key_store):
    billing = _billing(key_store, ledger)
    plaintext, rec = key_store.create(name="twice", balance=10_000)
    ctx = RequestContext(request_id=f"req_twice_{time.time_ns()}", protocol="openai", model="m")
    ctx.usage = Usage(input_tokens=10, output_tokens=20)
    bill = asyncio.run(billing.admit(ctx, _request(), rec))
    first = asyncio.run(billing.settle(ctx, _request(), bill, 200))
    second = asyncio.run(billing.settle(ctx, _request(), bill, 200))
    assert first is not None and first.cost == 10 + 40 and second is None
    assert key_store.get_by_hash(hash_key(plaintext)).balance == 10_000 - 50
    stored = UsageStore(ledger.client, ledger.usage_table).get(ctx.request_id)
    assert stored is not None and stored.cost == 50 and stored.hold == bill.hold


def test_a_cut_stream_is_estimated_from_what_was_sent(ledger, key_store):
    billing = _billing(key_store, ledger)
    _, rec = key_store.create(name="cut", balance=10_000)
    ctx = RequestContext(request_id=f"req_cut_{time.time_ns()}", protocol="openai", model="m", stream=True)
    bill = asyncio.run(billing.admit(ctx, _request(), rec))
    ctx.first_byte, ctx.generated_tokens, ctx.error = time.perf_counter(), 7, "client_cut"
    r = billing.record(ctx, _request(), bill, 200)
    assert (r.usage_source, r.output_tokens, r.outcome) == ("estimate", 7, "client_cut")
    assert r.input_tokens > 0 and r.cost == r.input_tokens + 14
    # a failure before anything was generated costs nothing
    ctx2 = RequestContext(request_id="req_none", protocol="openai", model="m", stream=True, error="upstream_error")
    r2 = billing.record(ctx2, _request(), bill, 502)
    assert (r2.usage_source, r2.cost, r2.input_tokens) == ("none", 0, 0)


class _Racing:
    """The real client, but each write first loses one race with a transaction on the key item, as
    DynamoDB reports it (moto never does): a conflicting transaction is cancelled, a plain write refused."""

    def __init__(self, client) -> None:
        self.real, self.exceptions, self.raced = client, client.exceptions, []

    def __getattr__(self, name):
        return getattr(self.real, name)

    def update_item(self, **kw):
        if "update_item" not in self.raced:
            self.raced.append("update_item")
            err = {"Error": {"Code": "TransactionConflictException", "Message": "conflict"}}
            raise self.exceptions.TransactionConflictException(err, "UpdateItem")
        return self.real.update_item(**kw)

    def transact_write_items(self, **kw):
        if "transact_write_items" not in self.raced:
            self.raced.append("transact_write_items")
            err = {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                   "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}]}  # fmt: skip
            raise self.exceptions.TransactionCanceledException(err, "TransactWriteItems")
        return self.real.transact_write_items(**kw)


def test_writes_that_lose_a_race_with_a_transaction_are_retried(ledger, key_store):
    racing = _Racing(ledger.client)
    billing = _billing(key_store, Ledger(racing, ledger.keys_table, ledger.usage_table))
    plaintext, rec = key_store.create(name="race", balance=10_000)
    ctx = RequestContext(request_id=f"req_race_{time.time_ns()}", protocol="openai", model="m")
    ctx.usage = Usage(input_tokens=10, output_tokens=20)
    bill = asyncio.run(billing.admit(ctx, _request(), rec))
    assert asyncio.run(billing.settle(ctx, _request(), bill, 200)) is not None
    assert racing.raced == ["update_item", "transact_write_items"]
    assert key_store.get_by_hash(hash_key(plaintext)).balance == 10_000 - 50


@pytest.mark.parametrize("way", ["botocore", "event loop"])
def test_a_key_deleted_after_its_admission_gets_its_usage_record_and_is_not_made_again(
    local_dynamo, ledger, key_store, way
):
    """The key's update is conditional on the key: with the key item gone, the transaction is cancelled
    and the usage record is written alone (once), instead of an update making an item of the charge."""
    from pisces.store.dynamo_http import AsyncDynamo
    from pisces.store.usage import UsageRecord

    key_hash = new_key(key_store)
    rid = f"req_gone_{time.time_ns()}"
    adm = ledger.admit(key_hash, 40, UNLIMITED, request_id=rid)
    assert isinstance(adm, Admitted)
    key_store.client.delete_item(TableName=key_store.table, Key={"key_hash": {"S": key_hash}})
    record = UsageRecord(request_id=rid, key_id="key_gone", protocol="openai", client_model="m", model="m",
                         created_at="2026-12-07T00:00:00Z", settled_at="2026-12-07T00:00:00Z", expires_at=0,
                         cost=25, hold=40).item()  # fmt: skip
    tag = adm.hold.tag if adm.hold else None
    if way == "botocore":
        first = ledger.settle(key_hash, 40, adm.month, record, tag)
        again = ledger.settle(key_hash, 40, adm.month, record, tag)
    else:

        async def both() -> tuple[bool, bool]:
            db = AsyncDynamo(local_dynamo.endpoint, "us-east-1")
            try:
                on_loop = Ledger(ledger.client, ledger.keys_table, ledger.usage_table, db)
                return (await on_loop.settle_async(key_hash, 40, adm.month, record, tag),
                        await on_loop.settle_async(key_hash, 40, adm.month, record, tag))  # fmt: skip
            finally:
                await db.aclose()

        first, again = asyncio.run(both())
    assert (first, again) == (True, False)  # recorded once; the second settlement changes nothing
    stored = UsageStore(ledger.client, ledger.usage_table).get(rid)
    assert stored is not None and stored.cost == 25
    assert "Item" not in key_store.client.get_item(TableName=key_store.table, Key={"key_hash": {"S": key_hash}})
