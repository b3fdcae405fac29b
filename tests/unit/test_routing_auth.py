from __future__ import annotations

import random
from collections import Counter

import httpx
import pytest

from pisces.config import parse_config
from pisces.errors import ERRORS, PiscesError
from pisces.pipeline.auth import Authenticator, display, extract_key
from pisces.pipeline.context import RequestContext, request_id_from
from pisces.pipeline.routing import Router
from pisces.store.keys import KeyCache, KeyRecord, hash_key
from pisces.upstreams import build_channel


def _router(seed: int = 0) -> Router:
    cfg = parse_config(
        {
            "channels": [
                {"name": "p0a", "kind": "mock", "models": ["m"], "priority": 0, "weight": 3},
                {"name": "p0b", "kind": "mock", "models": ["m"], "priority": 0, "weight": 1},
                {"name": "p1", "kind": "mock", "models": {"m": "m-upstream"}, "priority": 1},
                {"name": "other", "kind": "mock", "models": ["x"]},
            ],
            "models": {"m": {"aliases": ["m-alias"]}},
        }
    )
    http = httpx.AsyncClient()
    return Router(cfg, {c.name: build_channel(c, http) for c in cfg.channels}, random.Random(seed))


KEY = KeyRecord(key_id="k", key_hash="h", prefix="pisces-x")


def test_priority_then_weighted_order():
    r = _router()
    firsts = Counter()
    for _ in range(400):
        cands = r.resolve(RequestContext("r", "openai"), "m", KEY)
        assert cands[-1][0].name == "p1" and cands[-1][1] == "m-upstream"
        firsts[cands[0][0].name] += 1
    assert set(firsts) == {"p0a", "p0b"}
    assert 2.0 < firsts["p0a"] / firsts["p0b"] < 4.5  # weights 3:1


def test_alias_and_allow_list():
    r = _router()
    ctx = RequestContext("r", "openai")
    assert r.resolve(ctx, "m-alias", KEY) and ctx.model == "m" and ctx.client_model == "m-alias"
    with pytest.raises(PiscesError) as e:
        r.resolve(ctx, "nope", KEY)
    assert e.value.code == "model_not_found" and e.value.status == 404
    limited = KEY.model_copy(update={"allowed_models": ["x*"]})
    with pytest.raises(PiscesError) as e:
        r.resolve(ctx, "m", limited)
    assert e.value.code == "model_not_allowed" and e.value.status == 403
    assert r.resolve(ctx, "x", limited)


def test_extract_key_styles():
    assert extract_key({"authorization": "Bearer pisces-a"}, {}) == "pisces-a"
    assert extract_key({"authorization": "bearer  pisces-a "}, {}) == "pisces-a"
    assert extract_key({"x-api-key": "pisces-b"}, {}) == "pisces-b"
    assert extract_key({"x-goog-api-key": "pisces-c"}, {}) == "pisces-c"
    assert extract_key({}, {"key": "pisces-d"}) == "pisces-d"
    assert extract_key({"authorization": "Basic abc"}, {}) is None
    assert extract_key({}, {}) is None


def test_display_never_shows_the_key():
    k = "pisces-abcdefghijklmnopqrstuvwxyz"
    assert display(k) == "pisces-a******yz" and "ijklmnop" not in display(k)
    assert display("short") == "*****"


class _Store:
    def __init__(self, rec):
        self.rec, self.calls = rec, 0

    def get_by_hash(self, h):
        self.calls += 1
        return self.rec if self.rec and h == self.rec.key_hash else None

    async def get_by_hash_async(self, h, db):  # what the Authenticator calls (db: the gateway's AsyncDynamo)
        return self.get_by_hash(h)


async def test_authenticator_caches_hits_and_misses():
    rec = KeyRecord(key_id="k1", key_hash=hash_key("pisces-good-key-0123456789"), prefix="pisces-good")
    store = _Store(rec)
    auth = Authenticator(store, cache_seconds=60)
    for _ in range(3):
        assert (await auth.authenticate("pisces-good-key-0123456789")).key_id == "k1"
    assert store.calls == 1, "a known key costs one DynamoDB read per cache period"
    for _ in range(2):
        with pytest.raises(PiscesError) as e:
            await auth.authenticate("pisces-bad-key-0123456789")
        assert e.value.code == "invalid_api_key"
    assert store.calls == 2
    with pytest.raises(PiscesError) as e:
        await auth.authenticate(None)
    assert e.value.code == "missing_api_key" and e.value.status == 401


def test_key_cache_expiry_and_bound(monkeypatch):
    import pisces.store.keys as keys

    now = [100.0]
    monkeypatch.setattr(keys.time, "monotonic", lambda: now[0])
    c = KeyCache(ttl=5, max_entries=3)
    c.put("a", None)
    assert c.get("a") == (True, None)
    now[0] += 6
    assert c.get("a") == (False, None)
    for k in "bcde":
        c.put(k, None)
    assert len(c._entries) <= 3


def test_request_ids():
    assert request_id_from("abc-1") == "abc-1"
    assert request_id_from(None).startswith("req_")
    assert request_id_from("has space").startswith("req_")
    assert request_id_from("-leading").startswith("req_")


def test_every_error_code_has_a_status():
    assert all(400 <= k.status < 600 for k in ERRORS.values())
    assert PiscesError("rate_limit_exceeded", "x", retry_after=3).headers == {"Retry-After": "3"}
