"""The official `openai` SDK over real HTTP against the gateway under uvicorn (moto DynamoDB, fake upstream)."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from pisces.store.keys import hash_key

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}


@pytest.fixture
def client(gateway, clients):
    return clients.openai(gateway.v1, gateway.key)


def _pisces(obj) -> dict:
    extra = obj.model_extra or {}
    assert "pisces" in extra, f"no pisces object in {obj}"
    return extra["pisces"]


# --- mock channel ---------------------------------------------------------------------------------


def test_mock_echo_non_stream(client):
    raw = client.chat.completions.with_raw_response.create(
        model="mock-echo",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello there, gateway"}],
    )
    resp = raw.parse()
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.content == "Hello there, gateway"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    p = _pisces(resp)
    assert p["gateway"] == "Pisces" and p["protocol"] == "openai" and p["channel"] == "mock"
    assert p["request_id"] == raw.headers["x-request-id"]
    assert p["timestamp"].endswith("Z")


def test_alias_resolves(client):
    resp = client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "alias"}])
    assert resp.choices[0].message.content == "alias"


def test_mock_echo_stream(client):
    text = "one two three four five six seven eight nine ten"
    stream = client.chat.completions.create(
        model="mock-echo",
        messages=[{"role": "user", "content": text}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 3, "the mock streams in several chunks"
    assert "".join(deltas) == text
    assert _pisces(chunks[0])["channel"] == "mock"
    assert all("pisces" not in (c.model_extra or {}) for c in chunks[1:-1])
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    # the usage chunk carries the pisces object again, with the cost (micro-dollars; mock-echo: $1/$2 per M)
    u = chunks[-1].usage
    assert _pisces(chunks[-1])["cost"] == u.prompt_tokens * 1 + u.completion_tokens * 2


def test_mock_max_tokens_and_stop(client):
    resp = client.chat.completions.create(
        model="mock-echo", messages=[{"role": "user", "content": "one two six ten"}], max_tokens=2
    )
    assert resp.choices[0].message.content == "one two"
    assert resp.choices[0].finish_reason == "length"
    resp = client.chat.completions.create(
        model="mock-echo", messages=[{"role": "user", "content": "alpha beta STOP gamma"}], stop=["STOP"]
    )
    assert resp.choices[0].message.content == "alpha beta "


def test_mock_tool_call_required_fills_schema(client):
    resp = client.chat.completions.create(
        model="mock-echo",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER_TOOL],
        tool_choice="required",
    )
    call = resp.choices[0].message.tool_calls[0]
    assert resp.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock", "unit": "celsius", "days": 1}


def test_mock_tool_round_trip_streamed(client):
    messages = [{"role": "user", "content": "weather in Paris?"}]
    with client.chat.completions.stream(
        model="mock-echo",
        messages=messages,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    ) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments)["city"] == "mock"
    messages += [
        final.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
    ]
    resp = client.chat.completions.create(model="mock-echo", messages=messages, tools=[WEATHER_TOOL])
    assert resp.choices[0].message.content == "Sunny, 21 C"


# --- OpenAI-compatible upstream -------------------------------------------------------------------


def test_upstream_non_stream(client, gateway):
    resp = client.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content == "Hello from upstream: hi"
    assert resp.usage.prompt_tokens == 11 and resp.usage.completion_tokens == 7
    assert resp.usage.prompt_tokens_details.cached_tokens == 2
    assert _pisces(resp)["channel"] == "fake"
    sent = gateway.upstream.last()
    assert sent["body"]["model"] == "gpt-fake" and sent["body"].get("stream") in (None, False)
    # the upstream gets the channel's own secret, never the client's pisces key
    assert sent["authorization"] == "Bearer sk-fake-upstream-secret-0123456789"


def test_upstream_stream_always_asks_for_usage(client, gateway):
    stream = client.chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": "count to three"}], stream=True
    )
    chunks = list(stream)
    assert gateway.upstream.last()["body"]["stream_options"] == {"include_usage": True}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from upstream: count to three"
    assert all(c.choices for c in chunks), "the client did not ask for usage: no usage chunk"


def test_upstream_stream_with_usage(client):
    chunks = list(
        client.chat.completions.create(
            model="gpt-fake",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage.prompt_tokens == 11 and chunks[-1].usage.completion_tokens == 7


def test_recorded_tool_call_stream_reassembled_by_sdk(client):
    """The real OpenAI recording, replayed by the fake upstream, reassembled by the SDK's stream helper."""
    with client.chat.completions.stream(
        model="recorded",
        messages=[{"role": "user", "content": "weather in SF?"}],
        tools=[WEATHER_TOOL],
        stream_options={"include_usage": True},
    ) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.delta" in events
    call = final.choices[0].message.tool_calls[0]
    args = json.loads(call.function.arguments)
    assert call.function.name and isinstance(args, dict) and args
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.completion_tokens > 0


def test_upstream_tool_call_stream_fragments(client):
    with client.chat.completions.stream(
        model="gpt-fake", messages=[{"role": "user", "content": "weather"}], tools=[WEATHER_TOOL]
    ) as stream:
        arg_deltas = [e for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    assert len(arg_deltas) > 3, "argument fragments arrive as they are, not buffered"
    assert json.loads(final.choices[0].message.tool_calls[0].function.arguments) == {"city": "Paris", "days": 3}


def test_fallback_to_next_channel(client):
    resp = client.chat.completions.create(model="fallback-model", messages=[{"role": "user", "content": "hi"}])
    assert _pisces(resp)["channel"] == "fake-backup"
    stream = client.chat.completions.create(
        model="fallback-model", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert _pisces(next(iter(stream)))["channel"] == "fake-backup"


# --- models, request ids --------------------------------------------------------------------------


def test_models_list_and_retrieve(client, gateway, clients):
    ids = [m.id for m in client.models.list()]
    assert "mock-echo" in ids and "gpt-fake" in ids and "fallback-model" in ids
    assert "never-listed" not in ids, "a channel without its credential is disabled"
    limited = clients.openai(gateway.v1, gateway.new_key(["mock-*"]))
    assert [m.id for m in limited.models.list()] == ["mock-echo", "mock-image", "mock-embed"]
    model = client.models.retrieve("gpt-fake-latest")  # an alias answers as its model
    assert model.id == "gpt-fake" and model.owned_by == "openai" and _pisces(model)["protocol"] == "openai"
    assert limited.models.retrieve("mock-echo").id == "mock-echo"
    assert client.models.retrieve("org/mock-slash").id == "org/mock-slash"  # ids may hold a slash
    for c, name in ((limited, "gpt-fake"), (client, "no-such-model"), (client, "never-listed")):
        with pytest.raises(openai.NotFoundError) as e:
            c.models.retrieve(name)
        _check_error_body(e.value, 404, "model_not_found")


def test_request_id_echoed_or_minted(gateway):
    h = {"Authorization": f"Bearer {gateway.key}"}
    r = httpx.get(f"{gateway.v1}/models", headers={**h, "X-Request-Id": "client-id_1.2:3"})
    assert r.headers["x-request-id"] == "client-id_1.2:3" and r.json()["pisces"]["request_id"] == "client-id_1.2:3"
    r = httpx.get(f"{gateway.v1}/models", headers={**h, "X-Request-Id": "bad id <script>"})
    assert r.headers["x-request-id"].startswith("req_")
    r = httpx.get(f"{gateway.v1}/models", headers={**h, "X-Request-Id": "x" * 200})
    assert r.headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize("style", ["bearer", "x-api-key", "x-goog-api-key", "query"])
def test_every_auth_style_on_every_route(gateway, style):
    headers, params = {}, {}
    if style == "bearer":
        headers["Authorization"] = f"Bearer {gateway.key}"
    elif style == "query":
        params["key"] = gateway.key
    else:
        headers[style] = gateway.key
    r = httpx.get(f"{gateway.v1}/models", headers=headers, params=params)
    assert r.status_code == 200
    r = httpx.post(
        f"{gateway.v1}/chat/completions",
        headers=headers,
        params=params,
        json={"model": "mock-echo", "messages": [{"role": "user", "content": "hey"}]},
    )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "hey"


# --- errors as the SDK's own exception classes ---------------------------------------------------


def _check_error_body(exc: openai.APIStatusError, status: int, code: str) -> dict:
    assert exc.status_code == status
    body = exc.response.json()
    assert body["error"]["code"] == code, body
    assert body["pisces"]["request_id"] == exc.response.headers["x-request-id"]
    assert body["pisces"]["protocol"] == "openai"
    return body


def test_missing_key(gateway):
    r = httpx.post(f"{gateway.v1}/chat/completions", json={"model": "mock-echo", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"


def test_unknown_key(gateway, clients):
    c = clients.openai(gateway.v1, "pisces-not-a-real-key-0000000000")
    with pytest.raises(openai.AuthenticationError) as e:
        c.chat.completions.create(model="mock-echo", messages=[{"role": "user", "content": "x"}])
    body = _check_error_body(e.value, 401, "invalid_api_key")
    assert "pisces-not-a-real-key-0000000000" not in json.dumps(body)


def test_revoked_key(gateway, clients):
    key = gateway.new_key()
    gateway.store.revoke(gateway.store.get_by_hash(hash_key(key)).key_id)
    c = clients.openai(gateway.v1, key)
    with pytest.raises(openai.PermissionDeniedError) as e:
        c.models.list()
    _check_error_body(e.value, 403, "key_revoked")


def test_revoke_takes_effect_within_cache_ttl(gateway, clients):
    key = gateway.new_key()
    c = clients.openai(gateway.v1, key)
    c.models.list()  # cached now
    gateway.store.revoke(gateway.store.get_by_hash(hash_key(key)).key_id)
    time.sleep(0.6)  # the test gateway's key_cache_seconds is 0.5
    with pytest.raises(openai.PermissionDeniedError):
        c.models.list()


def test_revoke_stops_model_requests_at_once(gateway, clients):
    key = gateway.new_key()
    c = clients.openai(gateway.v1, key)
    active = gateway.store.get_by_hash(hash_key(key))
    gateway.store.revoke(active.key_id)
    gateway.app.state.gateway.auth.cache.put(hash_key(key), active)  # the container still caches it as active
    with pytest.raises(openai.PermissionDeniedError) as e:  # admission reads the key's item: revoked
        c.chat.completions.create(model="mock-echo", messages=[{"role": "user", "content": "x"}])
    _check_error_body(e.value, 403, "key_revoked")


def test_unknown_model(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    body = _check_error_body(e.value, 404, "model_not_found")
    assert body["error"]["param"] == "model"


def test_model_not_allowed(gateway, clients):
    c = clients.openai(gateway.v1, gateway.new_key(["mock-*"]))
    assert c.chat.completions.create(model="mock-echo", messages=[{"role": "user", "content": "ok"}])
    with pytest.raises(openai.PermissionDeniedError) as e:
        c.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": "x"}])
    _check_error_body(e.value, 403, "model_not_allowed")


def test_invalid_json(gateway):
    r = httpx.post(
        f"{gateway.v1}/chat/completions",
        content=b'{"model": "mock-echo", "messages": [',
        headers={"Authorization": f"Bearer {gateway.key}", "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_json" and r.json()["pisces"]["request_id"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": 42, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "mock-echo"}, "messages"),
        ({"model": "mock-echo", "messages": "hello"}, "messages"),
    ],
)
def test_invalid_request_names_param(client, body, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.post("/chat/completions", body=body, cast_to=httpx.Response)
    err = _check_error_body(e.value, 400, "invalid_request")["error"]
    assert err["param"] == param


def test_n_greater_than_one_unsupported(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="mock-echo", n=2, messages=[{"role": "user", "content": "x"}])
    _check_error_body(e.value, 400, "unsupported_parameter")


def test_body_too_large(gateway):
    big = {"model": "mock-echo", "messages": [{"role": "user", "content": "x" * 70000}]}
    r = httpx.post(f"{gateway.v1}/chat/completions", json=big, headers={"Authorization": f"Bearer {gateway.key}"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_upstream_400_passed_on(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="fail-400", messages=[{"role": "user", "content": "x"}])
    body = _check_error_body(e.value, 400, "invalid_request")
    assert "upstream says 400" in body["error"]["message"]


def test_upstream_500_is_502(client):
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="fail-500", messages=[{"role": "user", "content": "x"}])
    _check_error_body(e.value, 502, "upstream_error")


def test_upstream_rejecting_gateway_credential_is_502_without_secret(client):
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="fail-401", messages=[{"role": "user", "content": "x"}])
    body = _check_error_body(e.value, 502, "upstream_error")
    assert "sk-fake-upstream" not in json.dumps(body)


def test_upstream_429_is_rate_limit_with_retry_after(client):
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="fail-429", messages=[{"role": "user", "content": "x"}])
    _check_error_body(e.value, 429, "rate_limit_exceeded")
    assert e.value.response.headers["retry-after"] == "7"


def test_upstream_timeout_is_504(client):
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "x"}])
    _check_error_body(e.value, 504, "upstream_timeout")


def test_upstream_error_before_stream_is_http_error(client):
    with pytest.raises(openai.InternalServerError) as e:
        list(client.chat.completions.create(model="fail-500", messages=[{"role": "user", "content": "x"}], stream=True))
    _check_error_body(e.value, 502, "upstream_error")


def test_upstream_cut_mid_stream_is_error_event(client):
    stream = client.chat.completions.create(
        model="cut", messages=[{"role": "user", "content": "a b c d e"}], stream=True
    )
    got = []
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            got.append(chunk)
    assert got, "the first chunks arrived before the cut"
    assert "upstream" in str(e.value.message)


def test_unknown_route_and_method(gateway):
    r = httpx.get(f"{gateway.v1}/no/such/route", headers={"Authorization": f"Bearer {gateway.key}"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found" and r.headers["x-request-id"]
    r = httpx.get(f"{gateway.v1}/chat/completions")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_unknown_fields_never_crash(client):
    resp = client.chat.completions.create(
        model="mock-echo",
        messages=[{"role": "user", "content": "fine", "weird": 1}],
        extra_body={"totally_unknown": {"x": [1, 2]}, "frequency_penalty": 0.5},
    )
    assert resp.choices[0].message.content == "fine"


# --- spec and docs -------------------------------------------------------------------------------


def test_public_spec_from_route_table(gateway):
    from pisces.errors import ERRORS

    r = httpx.get(f"{gateway.url}/api/public/spec")
    spec = r.json()
    routes = {(x["method"], x["path"]): x for x in spec["routes"]}
    assert routes[("POST", "/v1/chat/completions")]["streaming"] is True
    assert routes[("POST", "/v1/chat/completions")]["protocol"] == "openai"
    assert ("GET", "/v1/models") in routes and ("GET", "/api/public/spec") in routes
    assert {e["code"] for e in spec["errors"]} == set(ERRORS)
    assert {a["style"] for a in spec["auth"]} == {"bearer", "anthropic", "gemini", "gemini-query"}
    assert spec["pisces"]["request_id"] == r.headers["x-request-id"] and spec["pisces"]["protocol"] == "pisces"
    health = httpx.get(f"{gateway.url}/healthz")
    assert health.json()["pisces"]["request_id"] == health.headers["x-request-id"]


def test_docs_page_served(gateway):
    r = httpx.get(f"{gateway.url}/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "api/public/spec" in r.text


# --- streaming is a pass-through: causal checks, no timing -----------------------------------------


def test_stream_chunks_pass_through_unbuffered(client, gateway, clients):
    """The upstream holds its second chunk until the client has seen the first: a buffering gateway
    would deliver nothing and the read would time out."""
    gated = clients.openai(gateway.v1, gateway.key, timeout=8)
    stream = gated.chat.completions.create(model="gated", messages=[{"role": "user", "content": "x"}], stream=True)
    it = iter(stream)
    first = next(it)
    while not (first.choices and first.choices[0].delta.content):
        first = next(it)
    assert first.choices[0].delta.content == "first"
    httpx.post(f"{gateway.upstream.url}/release")
    rest = "".join(c.choices[0].delta.content or "" for c in it if c.choices)
    assert rest == " second"


def test_client_hangup_reaches_the_upstream(gateway):
    """A client that goes away mid-stream makes the gateway close its upstream stream too."""
    before = gateway.upstream.hangups
    body = {"model": "gated", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream("POST", f"{gateway.v1}/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {gateway.key}"}) as r:  # fmt: skip
        for line in r.iter_lines():
            if '"first"' in line:
                break  # leave with the stream open: the context manager closes the connection
    deadline = time.monotonic() + 8
    while gateway.upstream.hangups == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gateway.upstream.hangups == before + 1


def test_keep_alive_while_the_upstream_is_silent_is_skipped_by_the_sdk(gateway, clients):
    """API Gateway cuts a stream idle for 5 minutes: the door sends an SSE comment while the upstream
    is silent. The fake holds its stream after one chunk and is released only once a keep-alive has
    reached the client (causal); the openai SDK reads the stream, comment and all."""
    from support.servers import Watching

    release = lambda: httpx.post(f"{gateway.upstream.url}/release")  # noqa: E731
    watch = Watching(lambda chunk: b": keep-alive" in chunk, release)
    c = clients.openai(gateway.v1, gateway.key, timeout=60, http_client=httpx.Client(transport=watch))
    chunks = list(c.chat.completions.create(model="gated", messages=[{"role": "user", "content": "x"}], stream=True))
    assert watch.fired, "a keep-alive came while the upstream was silent"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "first second"
    assert chunks[-1].choices[0].finish_reason == "stop"
