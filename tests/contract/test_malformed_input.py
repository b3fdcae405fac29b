"""Malformed input over real HTTP, at every door: a 400 in the door's own shape and a log line, never a 500.

Deep nesting, huge and non-finite numbers and lone surrogates (docs/operations.md, "Input limits"); a
client that hangs up before its body has arrived (logged as 499 ``client_closed``, no trace); one that
sends its body too slowly (408).
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from typing import Any

import httpx
import pytest

from pisces.pipeline.context import RequestContext
from pisces.pipeline.logs import log_request, logger
from pisces.store.keys import hash_key

DOORS = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/mock-echo:generateContent",
}


def body_with(door: str, value: bytes) -> bytes:
    """A valid request for the mock whose one value (the text, or the model) is ``value``, as JSON text."""
    if door == "gemini":
        return b'{"contents": [{"role": "user", "parts": [{"text": "hi", "n": ' + value + b"}]}]}"
    head = b'{"model": "mock-echo", "max_tokens": 5, ' if door == "anthropic" else b'{"model": "mock-echo", '
    return head + b'"messages": [{"role": "user", "content": "hi"}], "n_": ' + value + b"}"


def model_is(door: str, model: bytes) -> bytes:
    if door == "gemini":
        return b'{"contents": [{"role": "user", "parts": [{"text": "' + model + b'"}]}]}'
    extra = b'"max_tokens": 5, ' if door == "anthropic" else b""
    return b'{"model": "' + model + b'", ' + extra + b'"messages": [{"role": "user", "content": "hi"}]}'


CASES: dict[str, Any] = {
    "nested_2000_deep": lambda door: b"[" * 2000 + body_with(door, b"1") + b"]" * 2000,
    "nested_value_2000_deep": lambda door: body_with(door, b'{"a":' * 2000 + b"1" + b"}" * 2000),
    "nested_65_deep": lambda door: body_with(door, b"[" * 65 + b"]" * 65),
    "int_4301_digits": lambda door: body_with(door, b"9" * 4301),
    "int_101_digits": lambda door: body_with(door, b"-" + b"9" * 101),
    "float_1e400": lambda door: body_with(door, b"1e400"),
    "nan_literal": lambda door: body_with(door, b"NaN"),
    "infinity_literal": lambda door: body_with(door, b"-Infinity"),
    "lone_surrogate_model": lambda door: model_is(door, b"\\ud800"),
    "lone_low_surrogate": lambda door: model_is(door, b"x\\udc00y"),
    "raw_surrogate_bytes": lambda door: model_is(door, b"\xed\xa0\x80"),
}


def headers_for(door: str, key: str, rid: str) -> dict[str, str]:
    auth = {"openai": {"Authorization": f"Bearer {key}"}, "anthropic": {"x-api-key": key,
            "anthropic-version": "2023-06-01"}, "gemini": {"x-goog-api-key": key}}[door]  # fmt: skip
    return {**auth, "Content-Type": "application/json", "X-Request-Id": rid}


def assert_door_shape(door: str, status: int, body: dict[str, Any], rid: str) -> None:
    assert body["pisces"]["request_id"] == rid and body["pisces"]["protocol"] == door, body
    err = body["error"]
    if door == "openai":
        assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error", body
    elif door == "anthropic":
        assert body["type"] == "error" and err["type"] == "invalid_request_error" and err["message"], body
    else:
        assert err["code"] == status and err["status"] == "INVALID_ARGUMENT" and err["message"], body


def request_line(caplog: pytest.LogCaptureFixture, rid: str, seconds: float = 30) -> dict[str, Any]:
    """The request's log line as Powertools writes it (it must encode as UTF-8), waited for."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for r in list(caplog.records):
            if r.name.startswith("pisces") and r.getMessage() == "request" and getattr(r, "request_id", None) == rid:
                text = logger.registered_formatter.format(r)
                text.encode("utf-8")  # what would be lost as "--- Logging error ---"
                return json.loads(text)
        time.sleep(0.02)
    raise AssertionError(f"no log line for {rid} within {seconds} s")


def unhandled(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("pisces") and r.getMessage() == "unhandled error"]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("door", sorted(DOORS))
def test_malformed_body_is_a_400_in_the_doors_shape(gateway, caplog, door, case):
    caplog.set_level(logging.INFO)
    rid = f"malformed-{uuid.uuid4().hex}"
    r = httpx.post(gateway.url + DOORS[door], content=CASES[case](door), headers=headers_for(door, gateway.key, rid),
                   timeout=30)  # fmt: skip
    assert r.status_code == 400, r.text
    assert r.headers["x-request-id"] == rid
    body = r.json()
    assert_door_shape(door, 400, body, rid)
    if door == "openai":
        assert body["error"]["code"] == "invalid_json"
    line = request_line(caplog, rid)
    assert line["status"] == 400 and line["error"] == "invalid_json" and line["protocol"] == door
    assert not unhandled(caplog)


@pytest.mark.parametrize("door", sorted(DOORS))
def test_a_surrogate_pair_is_fine(gateway, caplog, door):
    """An escaped pair is one valid character (what json.dumps sends for an emoji): answered by the mock."""
    caplog.set_level(logging.INFO)
    rid = f"pair-{uuid.uuid4().hex}"
    if door == "gemini":
        body = model_is(door, b"smile \\ud83d\\ude00")
    else:
        body = model_is(door, b"mock-echo").replace(b'"content": "hi"', b'"content": "smile \\ud83d\\ude00"')
    r = httpx.post(gateway.url + DOORS[door], content=body, headers=headers_for(door, gateway.key, rid), timeout=30)
    assert r.status_code == 200, r.text
    assert "smile \U0001f600" in json.dumps(r.json(), ensure_ascii=False)
    assert request_line(caplog, rid)["status"] == 200


def raw_request(gateway, door: str, rid: str, declared: int, sent: bytes) -> socket.socket:
    host, port = gateway.url.removeprefix("http://").split(":")
    auth = "\r\n".join(f"{k}: {v}" for k, v in headers_for(door, gateway.key, rid).items())
    head = f"POST {DOORS[door]} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Length: {declared}\r\n\r\n"
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(head.encode() + sent)
    return sock


@pytest.mark.parametrize("door", sorted(DOORS))
def test_client_gone_before_its_body_is_a_quiet_499(gateway, caplog, door):
    caplog.set_level(logging.INFO)
    rid = f"gone-{uuid.uuid4().hex}"
    sock = raw_request(gateway, door, rid, 10_000, b'{"model": "mock-echo", "mess')
    sock.close()
    line = request_line(caplog, rid)  # written once the gateway has seen the hang-up
    assert line["status"] == 499 and line["error"] == "client_closed" and line["protocol"] == door
    assert not unhandled(caplog), "a hang-up is no gateway fault: no trace"
    assert not [r for r in caplog.records if r.name.startswith("pisces") and r.levelno >= logging.ERROR]


def test_a_client_gone_before_its_complete_answer_is_settled_and_logged_in_its_request(gateway, caplog):
    """Nothing cancels a request whose client hangs up while the upstream thinks (uvicorn drops what is
    sent to a closed connection; the pipeline shields nothing for it, bench/RESULTS.md part 9): the
    answer is read, charged and logged as if the client were there. The hang-up is sent before the
    upstream is released, so the gateway reads it first."""
    caplog.set_level(logging.INFO)
    rid = f"gone-mid-{uuid.uuid4().hex}"
    held = gateway.upstream.held
    balance = gateway.store.get_by_hash(hash_key(gateway.key)).balance
    body = json.dumps({"model": "gated", "messages": [{"role": "user", "content": "think"}]}).encode()
    sock = raw_request(gateway, "openai", rid, len(body), body)
    deadline = time.monotonic() + 30
    while gateway.upstream.held == held:  # the gateway's call is at the upstream, waiting
        assert time.monotonic() < deadline, "the request never reached the upstream"
        time.sleep(0.01)
    sock.close()
    httpx.post(f"{gateway.upstream.url}/release")
    line = request_line(caplog, rid)
    assert line["status"] == 200 and line["upstream_status"] == 200 and line["cost_micros"] > 0
    assert "settle_failed" not in line
    after = gateway.store.get_by_hash(hash_key(gateway.key)).balance
    assert after == balance - line["cost_micros"]


@pytest.mark.parametrize("door", sorted(DOORS))
def test_a_body_too_slow_is_a_408(gateway, caplog, monkeypatch, door):
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("PISCES_BODY_READ_SECONDS", "0.5")  # read per request (the server is in this process)
    rid = f"slow-{uuid.uuid4().hex}"
    sock = raw_request(gateway, door, rid, 10_000, b'{"model": "mock-echo", "mess')
    try:
        reply = b""
        while chunk := sock.recv(65536):  # the gateway answers and closes (Connection: close)
            reply += chunk
    finally:
        sock.close()
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert b"connection: close" in head.lower()
    assert_door_shape(door, 408, json.loads(payload), rid)
    line = request_line(caplog, rid)
    assert line["status"] == 408 and line["error"] == "invalid_request"


def test_a_log_line_survives_any_client_string(caplog):
    """A client's model name is logged as it came; a lone surrogate in it must not lose the line."""
    caplog.set_level(logging.INFO)
    ctx = RequestContext(request_id="req_surrogate_log", protocol="openai", path="/v1/chat/completions")
    ctx.client_model, ctx.error = "mock-\ud800-\udfff-é", "model_not_found"
    log_request(ctx, 404, ctx.path)
    line = request_line(caplog, "req_surrogate_log", seconds=1)
    assert line["model"] == "mock-\\ud800-\\udfff-é" and line["status"] == 404
