"""A protocol door answers alike whether the middleware serves it from the request's scope (its table,
pisces_gateway.routes.Doors) or Starlette's router does (the table emptied): over real HTTP, the same
status, headers and body, errors, streams and replays included, the request id and the answer's own ids
and times aside."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

VOLATILE = re.compile(rb'"(id|created|created_at|timestamp|responseId|request_id|message_id)":\s*("[^"]*"|\d+)')


def shape(r: httpx.Response, rid: str) -> tuple[int, dict[str, str], bytes]:
    """The response as this test compares it: status, headers (not the date, the request id or the length
    of a body with ids in it; a rate limit's reset time a placeholder), the body with each id and time a
    placeholder."""
    assert r.headers["x-request-id"] == rid
    headers = {k: "*" if k.startswith("x-ratelimit-reset") else v for k, v in r.headers.items()
               if k not in ("date", "content-length", "x-request-id")}  # fmt: skip
    return r.status_code, headers, VOLATILE.sub(rb'"\1": "*"', r.content)


def both(gateway, monkeypatch, call: Callable[[str], httpx.Response]) -> list[tuple[int, dict[str, str], bytes]]:
    """``call``'s response shape with the doors served from the scope, then by the router."""
    seen = []
    for served in ("doors", "router"):
        with monkeypatch.context() as m:
            if served == "router":
                m.setattr(gateway.app.doors, "exact", {})
                m.setattr(gateway.app.doors, "prefixed", [])
            rid = f"doors-{served}-{uuid.uuid4().hex[:8]}"
            r = call(rid)
            seen.append(shape(r, rid))
    return seen


def post(gateway, path: str, body: Any, key: str | None = None, **headers: str) -> Callable[[str], httpx.Response]:
    def call(rid: str) -> httpx.Response:  # a new key each time: its rate limits' counts start alike
        auth = {"authorization": f"Bearer {key or gateway.new_key()}"} if key != "" else {}
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {**auth, "x-request-id": rid, "content-type": "application/json", **headers}
        return httpx.post(f"{gateway.url}{path}", content=content, headers=sent, timeout=30)

    return call


CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "Say hello."}]}
CASES = {
    "openai": ("/v1/chat/completions", CHAT, {}),
    "openai stream": ("/v1/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}}, {}),
    "anthropic": (
        "/v1/messages",
        {"model": "claude-fake", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]},
        {},
    ),
    "gemini (a trailing path parameter)": (
        "/v1beta/models/gemini-fake:generateContent",
        {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
        {},
    ),
    "responses": ("/v1/responses", {"model": "gpt-fake", "input": "Hi"}, {}),
    "bad json (anthropic)": ("/v1/messages", b'{"model": ', {}),
    "unknown model": ("/v1/chat/completions", {**CHAT, "model": "no-such-model"}, {}),
    "upstream 429": ("/v1/chat/completions", {**CHAT, "model": "fail-429"}, {}),
    "count tokens": (
        "/v1/messages/count_tokens",
        {"model": "claude-fake", "messages": [{"role": "user", "content": "Hi"}]},
        {},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_door_answers_alike_from_the_scope_and_from_the_router(gateway, monkeypatch, case):
    path, body, headers = CASES[case]
    served, routed = both(gateway, monkeypatch, post(gateway, path, body, **headers))
    assert served == routed


def test_without_a_key_the_same_401(gateway, monkeypatch):
    served, routed = both(gateway, monkeypatch, post(gateway, "/v1/chat/completions", CHAT, key=""))
    assert served == routed and served[0] == 401


def test_a_replay_says_so_both_ways(gateway, monkeypatch):
    """The context's headers (here the replay marker) are stamped on the door's response as on the router's."""
    first = post(gateway, "/v1/chat/completions", CHAT, gateway.new_key(), **{"idempotency-key": uuid.uuid4().hex})
    first(f"doors-first-{uuid.uuid4().hex[:8]}")
    served, routed = both(gateway, monkeypatch, first)
    assert served == routed and served[1]["idempotent-replayed"] == "true"


def test_a_get_door_and_its_head(gateway, monkeypatch):
    def models(rid: str) -> httpx.Response:
        sent = {"authorization": f"Bearer {gateway.key}", "anthropic-version": "2023-06-01", "x-request-id": rid}
        return httpx.get(f"{gateway.v1}/models", headers=sent)

    def head(rid: str) -> httpx.Response:
        return httpx.head(
            f"{gateway.v1}/models", headers={"authorization": f"Bearer {gateway.key}", "x-request-id": rid}
        )

    served, routed = both(gateway, monkeypatch, models)
    assert served == routed and b'"data"' in served[2]
    served, routed = both(gateway, monkeypatch, head)
    assert served == routed and served[2] == b""
