"""GET /v1/usage/requests over real HTTP: a key's own settled requests, newest first, in cursor pages,
looked up by request id; errors in OpenAI's shape (the official SDK's exception classes)."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest


def _chat(gateway, key: str, text: str = "hello", request_id: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if request_id:
        headers["X-Request-Id"] = request_id
    body = {"model": "mock-echo", "messages": [{"role": "user", "content": text}]}
    r = httpx.post(f"{gateway.v1}/chat/completions", headers=headers, json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r


def _get(gateway, key: str, **params: str) -> httpx.Response:
    return httpx.get(f"{gateway.v1}/usage/requests", params=params, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def five(gateway):
    """A fresh key with five settled requests (their ids, oldest first) and another key with one."""
    key = gateway.new_key(name="requests")
    ids = [_chat(gateway, key, f"message {i}").headers["x-request-id"] for i in range(5)]
    other = gateway.new_key(name="other")
    other_id = _chat(gateway, other, "someone else").headers["x-request-id"]
    return key, ids, other, other_id


def test_newest_first_with_every_field(gateway, five):
    key, ids, _, other_id = five
    r = _get(gateway, key)
    assert r.status_code == 200 and r.headers["x-request-id"]
    body = r.json()
    assert body["object"] == "list" and body["has_more"] is False and body["next_cursor"] is None
    data = body["data"]
    assert {d["request_id"] for d in data} == set(ids) and other_id not in {d["request_id"] for d in data}
    times = [d["created_at"] for d in data]
    assert times == sorted(times, reverse=True)
    assert body["first_id"] == data[0]["request_id"] and body["last_id"] == data[-1]["request_id"]
    for d in data:
        assert d["object"] == "usage.request" and d["model"] == "mock-echo" and d["channel"] == "mock"
        assert d["status"] == 200 and d["outcome"] == "ok" and d["protocol"] == "openai"
        assert d["input_tokens"] > 0 and d["output_tokens"] > 0 and d["cost"] > 0
        assert d["cost_usd"] == f"0.{d['cost']:06d}" and d["latency_ms"] > 0
        assert "key_id" not in d and "key_hash" not in d and "expires_at" not in d
    assert body["pisces"]["request_id"] == r.headers["x-request-id"]


def test_cursor_pages_cover_everything_once(gateway, five):
    key, ids, _, _ = five
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        body = _get(gateway, key, **params).json()
        pages += 1
        assert len(body["data"]) <= 2
        seen += [d["request_id"] for d in body["data"]]
        if not body["has_more"]:
            assert body["next_cursor"] is None
            break
        after = body["next_cursor"]
        assert after and len(body["data"]) == 2
    assert pages == 3 and sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    whole = [d["request_id"] for d in _get(gateway, key, limit="100").json()["data"]]
    assert seen == whole  # the pages, in order, are the one list


def test_lookup_by_request_id_and_client_request_id(gateway, five):
    key, ids, other, other_id = five
    found = _get(gateway, key, request_id=ids[2]).json()
    assert [d["request_id"] for d in found["data"]] == [ids[2]] and found["has_more"] is False
    # another key's request is not found (the same empty list as an unknown id: nothing leaks)
    assert _get(gateway, key, request_id=other_id).json()["data"] == []
    assert _get(gateway, other, request_id=ids[2]).json()["data"] == []
    assert _get(gateway, key, request_id="req_" + uuid.uuid4().hex).json()["data"] == []
    # a client's own X-Request-Id: echoed on the response, and the way to find its record
    mine = "my-trace-" + uuid.uuid4().hex[:8]
    r = _chat(gateway, key, "traced", request_id=mine)
    assert r.headers["x-request-id"] == mine
    data = _get(gateway, key, request_id=mine).json()["data"]
    assert len(data) == 1 and data[0]["client_request_id"] == mine and data[0]["request_id"] != mine
    assert _get(gateway, other, request_id=mine).json()["data"] == []


@pytest.mark.parametrize(
    ("params", "param"),
    [({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "ten"}, "limit"),
     ({"after": "not-a-cursor"}, "after"), ({"after": "eyJyIjoxfQ"}, "after")],
)  # fmt: skip
def test_bad_parameters_are_openai_400s(gateway, five, params, param, clients):
    key = five[0]
    client = clients.openai(gateway.v1, key)
    with pytest.raises(openai.BadRequestError) as e:
        client.get("/usage/requests", cast_to=object, options={"params": params})
    body = e.value.response.json()
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param
    assert body["pisces"]["request_id"] == e.value.response.headers["x-request-id"]


def test_bad_key_is_openai_401(gateway, clients):
    client = clients.openai(gateway.v1, "pisces-not-a-real-key")
    with pytest.raises(openai.AuthenticationError) as e:
        client.get("/usage/requests", cast_to=object)
    body = e.value.response.json()
    assert body["error"]["code"] and body["pisces"]["protocol"] == "openai"
    assert httpx.get(f"{gateway.v1}/usage/requests").status_code == 401


def test_head_is_get_without_body(gateway, five):
    r = httpx.head(f"{gateway.v1}/usage/requests", headers={"Authorization": f"Bearer {five[0]}"})
    assert r.status_code == 200 and r.content == b"" and r.headers["content-type"].startswith("application/json")


def test_usage_reports_this_month_and_rate_limits(gateway):
    key = gateway.new_key(name="budgeted", monthly_budget=5_000_000, rpm=50, tpm=100_000)
    before = httpx.get(f"{gateway.v1}/usage", headers={"Authorization": f"Bearer {key}"}).json()
    assert before["this_month"]["spent"] == 0 and before["this_month"]["remaining"] == 5_000_000
    costs = [_chat(gateway, key, f"spend {i}").json()["pisces"]["cost"] for i in range(3)]
    u = httpx.get(f"{gateway.v1}/usage", headers={"Authorization": f"Bearer {key}"}).json()
    m, rl = u["this_month"], u["rate_limits"]
    assert m["spent"] == sum(costs) == u["total"]["cost"] and m["remaining"] == 5_000_000 - sum(costs)
    assert m["month"] == u["to"][:7] and m["spent_usd"] == f"0.{sum(costs):06d}"
    assert rl["requests_per_minute"] == 50 and rl["tokens_per_minute"] == 100_000
    # the minute may have turned between the requests: at most 3 counted, and >= 1 of them if it did
    assert 1 <= rl["requests_this_minute"] <= 3 and 0 < rl["resets_in_seconds"] <= 60
