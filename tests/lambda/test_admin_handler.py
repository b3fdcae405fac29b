"""The admin function's Mangum handler, invoked with the API Gateway REST events in events/."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pisces.money import usd
from pisces.store import dynamo
from pisces.store.keys import MAX_AMOUNT, hash_key
from pisces.store.schema import table_name
from pisces.store.usage import UsageRecord, UsageStore
from support.loops import thread_loop

EVENTS = Path(__file__).resolve().parents[2] / "events"


class Context(SimpleNamespace):
    function_name = "pisces-admin"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:pisces-admin"
    aws_request_id = "lambda-req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def event(name: str, **changes) -> dict:
    ev = json.loads((EVENTS / f"{name}.json").read_text())
    ev.update(changes)
    return ev


@pytest.fixture
def handler(local_dynamo, monkeypatch) -> Iterator[Any]:
    """The Lambda handler, run on a loop of this test's own (Mangum's invocations use the thread's loop)."""
    monkeypatch.setenv("PISCES_ADMIN_AUTH", "iam")
    with thread_loop():
        from pisces_admin.app import handler

        yield handler


def invoke(handler, ev: dict) -> tuple[int, dict, dict]:
    out = handler(ev, Context())
    return out["statusCode"], json.loads(out["body"] or "null"), out.get("multiValueHeaders") or out["headers"]


def test_create_list_revoke_through_events(handler, key_store):
    status, body, headers = invoke(handler, event("admin_create_key"))
    assert status == 201, body
    assert {k.lower() for k in headers} >= {"x-request-id"}
    key, key_id = body["key"], body["key_id"]
    assert key.startswith("pisces-") and "key_hash" not in body
    stored = key_store.get_by_hash(hash_key(key))
    assert stored is not None and stored.key_id == key_id and stored.status == "active"
    assert stored.allowed_models == json.loads(event("admin_create_key")["body"])["models"]

    status, body, _ = invoke(handler, event("admin_list_keys"))
    assert status == 200
    listed = {k["key_id"]: k for k in body["data"]}
    assert key_id in listed and "key_hash" not in listed[key_id] and key not in json.dumps(body)

    ev = event("admin_revoke_key")
    ev["pathParameters"] = {"key_id": key_id}
    ev["path"] = ev["path"].replace(ev["path"].rsplit("/", 1)[1], key_id)
    ev["requestContext"]["path"] = ev["path"]
    status, body, _ = invoke(handler, ev)
    assert status == 200 and body["status"] == "revoked"
    assert key_store.get_by_hash(hash_key(key)).status == "revoked"

    ev["path"] = ev["path"].replace(key_id, "key_doesnotexist")
    status, body, _ = invoke(handler, ev)
    assert status == 404 and body["error"]["code"] == "not_found"


def test_without_iam_identity_is_refused(handler):
    ev = copy.deepcopy(event("admin_list_keys"))
    ev["requestContext"]["identity"] = {k: None for k in ev["requestContext"]["identity"]}
    status, body, _ = invoke(handler, ev)
    assert status == 403 and body["error"]["code"] == "admin_forbidden"


def test_bad_body_is_400(handler):
    status, body, _ = invoke(handler, event("admin_create_key", body='{"models": "not-a-list"}'))
    assert status == 400
    assert body["error"]["code"] == "invalid_request" and body["error"]["param"] == "models"


def test_local_token_mode(handler, monkeypatch):
    monkeypatch.setenv("PISCES_ADMIN_AUTH", "token")
    monkeypatch.setenv("PISCES_ADMIN_TOKEN", "admin-secret-token")
    ev = event("admin_list_keys")
    ev["headers"] = {**(ev.get("headers") or {}), "Authorization": "Bearer admin-secret-token"}
    ev["multiValueHeaders"] = {**(ev.get("multiValueHeaders") or {}), "Authorization": ["Bearer admin-secret-token"]}
    assert invoke(handler, ev)[0] == 200
    ev["headers"]["Authorization"] = "Bearer wrong"
    ev["multiValueHeaders"]["Authorization"] = ["Bearer wrong"]
    status, body, _ = invoke(handler, ev)
    assert status == 403 and "admin-secret-token" not in json.dumps(body)


# ------------------------------------------------------------------ money: top-up, limits, usage


def for_key(name: str, key_id: str, *, body: object = ..., raw_body: str | None = None, query: object = ...) -> dict:
    """The sample event ``name`` aimed at ``key_id``, optionally with another JSON body or query string."""
    ev = copy.deepcopy(event(name))
    ev["path"] = ev["path"].replace("key_REPLACE", key_id)
    ev["requestContext"]["path"] = ev["requestContext"]["path"].replace("key_REPLACE", key_id)
    ev["pathParameters"] = {"key_id": key_id}
    if body is not ...:
        ev["body"] = json.dumps(body)
    if raw_body is not None:
        ev["body"] = raw_body
    if query is not ...:
        ev["queryStringParameters"] = query
        ev["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    return ev


@pytest.fixture(scope="module")
def usage_store(local_dynamo) -> UsageStore:
    return UsageStore(dynamo.client(), table_name("usage"))


def test_sample_events_change_the_key(handler, key_store):
    _, rec = key_store.create(name="money")

    status, body, headers = invoke(handler, for_key("admin_top_up", rec.key_id))
    assert status == 200, body
    assert {k.lower() for k in headers} >= {"x-request-id"}
    assert body["key_id"] == rec.key_id and "key_hash" not in body
    assert body["balance"] == 10_500_000 and body["balance_usd"] == "10.500000"
    assert key_store.get_by_id(rec.key_id).balance == 10_500_000

    status, body, _ = invoke(handler, for_key("admin_update_key", rec.key_id))  # budget 100.00, rpm 60, tpm null
    assert status == 200, body
    assert (body["monthly_budget"], body["monthly_budget_usd"], body["rpm"], body["tpm"]) == (
        100_000_000,
        "100.000000",
        60,
        None,
    )
    assert body["balance"] == 10_500_000

    status, body, _ = invoke(handler, for_key("admin_key_usage", rec.key_id))  # January 2025
    assert status == 200, body
    assert body["object"] == "usage" and (body["from"], body["to"]) == ("2025-01-01", "2025-01-31")
    assert body["data"] == [] and body["total"]["cost"] == 0 and body["balance_usd"] == "10.500000"


@pytest.mark.parametrize(
    ("amount", "added"),
    [("0.000001", 1), ("10.50", 10_500_000), (2, 2_000_000), (0.25, 250_000), ("1e-6", 1), (" 3 ", 3_000_000)],
)
def test_top_up_adds_exactly_the_amount(handler, key_store, amount, added):
    _, rec = key_store.create(name="top-up", balance=7)
    status, body, _ = invoke(handler, for_key("admin_top_up", rec.key_id, body={"amount": amount}))
    assert status == 200, body
    assert body["balance"] == 7 + added and body["balance_usd"] == usd(7 + added)
    assert key_store.get_by_id(rec.key_id).balance == 7 + added


BAD_AMOUNTS = {
    "negative": '{"amount": "-1"}',
    "negative number": '{"amount": -0.5}',
    "zero": '{"amount": 0}',
    "zero string": '{"amount": "0.000000"}',
    "seven decimals": '{"amount": "0.0000001"}',
    "seven decimals number": '{"amount": 1.0000001}',
    "words": '{"amount": "ten"}',
    "empty string": '{"amount": ""}',
    "comma": '{"amount": "10,50"}',
    "dollar sign": '{"amount": "$5"}',
    "NaN string": '{"amount": "NaN"}',
    "NaN literal": '{"amount": NaN}',
    "Infinity string": '{"amount": "Infinity"}',
    "Infinity literal": '{"amount": Infinity}',
    "overflowing number": '{"amount": 1e400}',
    "too large": json.dumps({"amount": usd(MAX_AMOUNT + 1)}),
    "true": '{"amount": true}',
    "false": '{"amount": false}',
    "null": '{"amount": null}',
    "list": '{"amount": ["1"]}',
    "object": '{"amount": {"usd": 1}}',
    "missing": '{"value": "1"}',
    "empty object": "{}",
    "no body": "",
}


@pytest.mark.parametrize("raw", BAD_AMOUNTS.values(), ids=BAD_AMOUNTS.keys())
def test_bad_top_up_amount_is_400_naming_amount(handler, key_store, raw):
    _, rec = key_store.create(name="bad-top-up", balance=5)
    status, body, _ = invoke(handler, for_key("admin_top_up", rec.key_id, raw_body=raw))
    assert status == 400, body
    assert body["error"]["code"] == "invalid_request" and body["error"]["param"] == "amount", body
    assert body["request_id"] and body["error"]["message"]
    assert key_store.get_by_id(rec.key_id).balance == 5


def test_top_up_of_an_unknown_key_is_404(handler):
    status, body, _ = invoke(handler, for_key("admin_top_up", "key_doesnotexist"))
    assert status == 404 and body["error"]["code"] == "not_found" and body["error"]["param"] == "key_id"


def test_top_up_body_that_is_not_json(handler, key_store):
    _, rec = key_store.create(name="not-json")
    status, body, _ = invoke(handler, for_key("admin_top_up", rec.key_id, raw_body='{"amount": '))
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, body, _ = invoke(handler, for_key("admin_top_up", rec.key_id, raw_body='["10"]'))
    assert status == 400 and body["error"]["code"] == "invalid_request"


def _invoke_on_own_loop(handler, ev: dict) -> tuple[int, dict, dict]:
    """Mangum runs the app on the thread's event loop: worker threads have none until given one."""
    with thread_loop():
        return invoke(handler, ev)


def test_concurrent_top_ups_are_atomic(handler, key_store):
    _, rec = key_store.create(name="concurrent", balance=1)
    amounts = [i * 1_000_001 + 1 for i in range(20)]  # 0.000001, 1.000002, 2.000003, ...
    events = [for_key("admin_top_up", rec.key_id, body={"amount": usd(a)}) for a in amounts]
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda ev: _invoke_on_own_loop(handler, ev), events))
    assert [status for status, _, _ in results] == [200] * 20, results
    expected = 1 + sum(amounts)
    assert key_store.get_by_id(rec.key_id).balance == expected
    # every answer saw a balance that some order of the top-ups produces; the largest is the final one
    assert max(body["balance"] for _, body, _ in results) == expected
    assert len({body["balance"] for _, body, _ in results}) == 20


def test_create_key_with_money(handler, key_store):
    body = {"name": "funded", "models": [], "balance": "5.25", "monthly_budget": 20, "rpm": 10, "tpm": 0}
    status, out, _ = invoke(handler, event("admin_create_key", body=json.dumps(body)))
    assert status == 201, out
    assert (out["balance"], out["balance_usd"], out["monthly_budget"], out["rpm"], out["tpm"]) == (
        5_250_000,
        "5.250000",
        20_000_000,
        10,
        0,
    )
    stored = key_store.get_by_id(out["key_id"])
    assert (stored.balance, stored.monthly_budget, stored.rpm, stored.tpm) == (5_250_000, 20_000_000, 10, 0)

    status, out, _ = invoke(handler, event("admin_create_key", body='{"name": "plain"}'))
    assert status == 201 and (out["balance"], out["balance_usd"], out["monthly_budget"], out["rpm"]) == (
        0,
        "0.000000",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"balance": "-1"}, "balance"),
        ({"balance": "abc"}, "balance"),
        ({"balance": True}, "balance"),
        ({"monthly_budget": "1.0000001"}, "monthly_budget"),
        ({"rpm": -1}, "rpm"),
        ({"rpm": "60"}, "rpm"),
        ({"tpm": 1.5}, "tpm"),
    ],
)
def test_create_key_with_bad_money_is_400(handler, body, param):
    status, out, _ = invoke(handler, event("admin_create_key", body=json.dumps(body)))
    assert status == 400 and out["error"]["code"] == "invalid_request" and out["error"]["param"] == param, out


def test_patch_sets_and_clears_limits(handler, key_store):
    _, rec = key_store.create(name="limits", balance=3, rpm=5)

    def patch(body: dict) -> tuple[int, dict]:
        status, out, _ = invoke(handler, for_key("admin_update_key", rec.key_id, body=body))
        return status, out

    status, out = patch({"monthly_budget": "12.345678", "tpm": 1000})
    assert status == 200, out
    assert (out["monthly_budget"], out["monthly_budget_usd"], out["rpm"], out["tpm"], out["balance"]) == (
        12_345_678,
        "12.345678",
        5,  # not sent: unchanged
        1000,
        3,
    )
    status, out = patch({"rpm": 0})
    assert (status, out["rpm"], out["tpm"], out["monthly_budget"]) == (200, 0, 1000, 12_345_678)
    status, out = patch({"monthly_budget": None, "rpm": None, "tpm": None})
    assert status == 200 and (out["monthly_budget"], out["monthly_budget_usd"], out["rpm"], out["tpm"]) == (
        None,
        None,
        None,
        None,
    )
    stored = key_store.get_by_id(rec.key_id)
    assert (stored.monthly_budget, stored.rpm, stored.tpm, stored.balance) == (None, None, None, 3)
    status, out = patch({})
    assert status == 200 and out["key_id"] == rec.key_id


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"rpm": -1}, "rpm"),
        ({"rpm": 2.5}, "rpm"),
        ({"rpm": "60"}, "rpm"),
        ({"rpm": True}, "rpm"),
        ({"tpm": -3}, "tpm"),
        ({"tpm": 10**13}, "tpm"),
        ({"monthly_budget": "-0.01"}, "monthly_budget"),
        ({"monthly_budget": "abc"}, "monthly_budget"),
        ({"monthly_budget": "NaN"}, "monthly_budget"),
        ({"monthly_budget": "0.0000001"}, "monthly_budget"),
        ({"budget": 5}, "budget"),
    ],
)
def test_patch_with_bad_values_is_400(handler, key_store, body, param):
    _, rec = key_store.create(name="bad-limits", rpm=7)
    status, out, _ = invoke(handler, for_key("admin_update_key", rec.key_id, body=body))
    assert status == 400 and out["error"]["code"] == "invalid_request" and out["error"]["param"] == param, out
    assert key_store.get_by_id(rec.key_id).rpm == 7


def test_patch_of_an_unknown_key_is_404(handler):
    status, out, _ = invoke(handler, for_key("admin_update_key", "key_doesnotexist"))
    assert status == 404 and out["error"]["code"] == "not_found"


def usage(key_id: str, created_at: str, model: str, cost: int, tokens: tuple[int, int, int] = (0, 0, 0)) -> UsageRecord:
    return UsageRecord(
        request_id=f"req_{key_id}_{created_at}_{model}",
        key_id=key_id,
        protocol="openai",
        client_model=model,
        model=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cached_tokens=tokens[2],
        cost=cost,
        created_at=created_at,
        settled_at=created_at,
        expires_at=2_000_000_000,
    )


def test_usage_report_by_day_and_model(handler, key_store, usage_store):
    _, rec = key_store.create(name="usage", balance=42_000_000, monthly_budget=50_000_000)
    _, other = key_store.create(name="other")
    records = [
        usage(rec.key_id, "2024-12-31T23:59:59.999Z", "gpt-a", 1_000_000),  # before from: out
        usage(rec.key_id, "2025-01-01T00:00:00.000Z", "gpt-a", 1, (10, 20, 3)),  # from's first instant: in
        usage(rec.key_id, "2025-01-01T12:00:00.000Z", "gpt-a", 333_333, (100, 200, 0)),
        usage(rec.key_id, "2025-01-01T13:30:00.123Z", "gpt-b", 1_500_000, (7, 8, 9)),
        usage(rec.key_id, "2025-01-02T23:59:59.999Z", "gpt-a", 2, (1, 1, 1)),  # to's last instant: in
        usage(rec.key_id, "2025-01-03T00:00:00.000Z", "gpt-a", 5_000_000),  # the day after to: out
        usage(other.key_id, "2025-01-01T12:00:00.000Z", "gpt-a", 9_999_999),  # another key: out
    ]
    for r in records:
        usage_store.client.put_item(TableName=usage_store.table, Item=r.item())

    ev = for_key("admin_key_usage", rec.key_id, query={"from": "2025-01-01", "to": "2025-01-02"})
    status, body, _ = invoke(handler, ev)
    assert status == 200, body
    assert {k: body[k] for k in ("object", "key_id", "balance", "balance_usd", "monthly_budget", "from", "to")} == {
        "object": "usage",
        "key_id": rec.key_id,
        "balance": 42_000_000,
        "balance_usd": "42.000000",
        "monthly_budget": 50_000_000,
        "from": "2025-01-01",
        "to": "2025-01-02",
    }
    assert body["data"] == [
        {
            "date": "2025-01-01",
            "model": "gpt-a",
            "requests": 2,
            "input_tokens": 110,
            "output_tokens": 220,
            "cached_tokens": 3,
            "cost": 333_334,
            "cost_usd": "0.333334",
        },
        {
            "date": "2025-01-01",
            "model": "gpt-b",
            "requests": 1,
            "input_tokens": 7,
            "output_tokens": 8,
            "cached_tokens": 9,
            "cost": 1_500_000,
            "cost_usd": "1.500000",
        },
        {
            "date": "2025-01-02",
            "model": "gpt-a",
            "requests": 1,
            "input_tokens": 1,
            "output_tokens": 1,
            "cached_tokens": 1,
            "cost": 2,
            "cost_usd": "0.000002",
        },
    ]
    assert body["total"] == {
        "requests": 4,
        "input_tokens": 118,
        "output_tokens": 229,
        "cached_tokens": 13,
        "cost": 1_833_336,
        "cost_usd": "1.833336",
    }

    # one day: the previous day's last millisecond and the next day's first are both outside
    ev = for_key("admin_key_usage", rec.key_id, query={"from": "2025-01-02", "to": "2025-01-02"})
    status, body, _ = invoke(handler, ev)
    assert status == 200 and [(r["date"], r["requests"]) for r in body["data"]] == [("2025-01-02", 1)]
    assert body["total"]["cost"] == 2


def test_usage_defaults_to_the_last_30_days(handler, key_store, usage_store):
    _, rec = key_store.create(name="recent")
    now = datetime.now(UTC)
    for days, cost in ((0, 5), (29, 7), (30, 1_000)):  # the 30th day back is outside the default range
        at = (now - timedelta(days=days)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        usage_store.client.put_item(TableName=usage_store.table, Item=usage(rec.key_id, at, "m", cost).item())
    status, body, _ = invoke(handler, for_key("admin_key_usage", rec.key_id, query=None))
    assert status == 200, body
    today = now.date()
    if body["to"] == today.isoformat():  # unless midnight UTC passed in between
        assert body["from"] == (today - timedelta(days=29)).isoformat()
        assert (body["total"]["requests"], body["total"]["cost"]) == (2, 12)


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"from": "2025-13-01"}, "from"),
        ({"from": "2025-1-1"}, "from"),
        ({"from": "20250101"}, "from"),
        ({"from": "2025-01-01T00:00:00Z"}, "from"),
        ({"to": "2025-02-30"}, "to"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2025-02-01", "to": "2025-01-31"}, "from"),
    ],
)
def test_usage_with_bad_dates_is_400(handler, key_store, query, param):
    _, rec = key_store.create(name="dates")
    status, body, _ = invoke(handler, for_key("admin_key_usage", rec.key_id, query=query))
    assert status == 400 and body["error"]["code"] == "invalid_request" and body["error"]["param"] == param, body


def test_usage_of_an_unknown_key_is_404(handler):
    status, body, _ = invoke(handler, for_key("admin_key_usage", "key_doesnotexist"))
    assert status == 404 and body["error"]["code"] == "not_found"
