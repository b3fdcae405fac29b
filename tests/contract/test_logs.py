"""Secrets never reach a log line: not the client's key, not the upstream's, not an Authorization header."""

from __future__ import annotations

import contextlib
import json
import logging

import httpx
import openai

from pisces.pipeline.logs import logger
from support.fake_openai import UPSTREAM_SECRET


def test_no_secret_in_logs(gateway, caplog, clients):
    caplog.set_level(logging.INFO)
    key = gateway.new_key()
    c = clients.openai(gateway.v1, key)
    c.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": "hi"}])
    list(c.chat.completions.create(model="mock-echo", messages=[{"role": "user", "content": "hi"}], stream=True))
    httpx.get(f"{gateway.v1}/models", params={"key": key})
    httpx.get(f"{gateway.v1}/models", headers={"x-goog-api-key": "pisces-wrong-key-abcdefghijklmnop"})
    with contextlib.suppress(openai.InternalServerError):
        c.chat.completions.create(model="fail-500", messages=[{"role": "user", "content": "x"}])
    claude = {"model": "claude-fake", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]}
    httpx.post(f"{gateway.url}/v1/messages", headers={"x-api-key": key}, json=claude)
    # every record the gateway logged, as Powertools writes it (JSON) to CloudWatch. A request's line is
    # written before its response's last byte (Lambda freezes then): the last one is there already.
    formatter = logger.registered_formatter
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name.startswith("pisces")]
    logs = "\n".join(json.dumps(line) for line in lines)
    requests = [x for x in lines if x.get("message") == "request"]
    assert len(requests) >= 4, "one structured log line per request"
    assert {r.get("model") for r in requests} >= {"gpt-fake", "mock-echo"}
    assert any(r.get("stream") and r.get("output_tokens") for r in requests)
    assert any(r.get("model") == "gpt-fake" and r.get("cost_micros") == 75 for r in requests)
    assert any(r.get("protocol") == "anthropic" and r.get("channel") == "fake-anthropic" for r in requests)
    for secret in (key, UPSTREAM_SECRET, "pisces-wrong-key-abcdefghijklmnop", "Bearer"):
        assert secret not in logs


def test_pages_and_unknown_paths_log_as_pisces_not_a_client_protocol(gateway, caplog):
    caplog.set_level(logging.INFO)
    for path in ("/", "/console", "/favicon.ico", "/no-such-page"):
        httpx.get(f"{gateway.url}{path}", headers={"X-Request-Id": f"page-line-{path.strip('/') or 'root'}"})
    httpx.get(f"{gateway.v1}/no-such-route", headers={"X-Request-Id": "page-line-v1"})
    formatter = logger.registered_formatter
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name.startswith("pisces")]
    by_id = {x["request_id"]: x for x in lines if x.get("message") == "request"}
    for rid, status in (("root", 200), ("console", 200), ("favicon.ico", 200), ("no-such-page", 404)):
        line = by_id[f"page-line-{rid}"]
        assert line["protocol"] == "pisces" and line["status"] == status, line
    assert by_id["page-line-v1"]["protocol"] == "openai"  # under /v1: the OpenAI door's 404
