"""The admin function's Mangum handler, invoked with the API Gateway REST events in events/."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from pisces.store.keys import hash_key

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
def handler(local_dynamo, monkeypatch):
    monkeypatch.setenv("PISCES_ADMIN_AUTH", "iam")
    from pisces_admin.app import handler

    return handler


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


def test_local_token_mode(local_dynamo, monkeypatch):
    from pisces_admin.app import handler

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
