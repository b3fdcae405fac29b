"""An ASGI request as the pipeline's ``Incoming``: what the doors look up in its headers."""

from __future__ import annotations

from starlette.datastructures import Headers

from pisces_gateway.chat import incoming
from pisces_gateway.middleware import header_map


def _scope(raw: list[tuple[bytes, bytes]], query: bytes = b"") -> dict:
    return {"type": "http", "method": "POST", "path": "/v1/messages", "query_string": query, "headers": raw,
            "state": {"request_id": "req_1"}}  # fmt: skip


async def _no_body() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


def test_a_header_is_what_starlettes_headers_say_it_is():
    raw = [(b"authorization", b"Bearer one"), (b"x-api-key", b"two"), (b"anthropic-beta", b"a,b"),
           (b"anthropic-beta", b"c"), (b"x-odd", "\u00e9".encode("latin-1")), (b"content-length", b"12")]  # fmt: skip
    mine, theirs = header_map(_scope(raw)), Headers(raw=raw)
    for name in ("authorization", "x-api-key", "anthropic-beta", "x-odd", "content-length", "idempotency-key"):
        assert mine.get(name) == theirs.get(name)
        assert (name in mine) == (name in theirs)
    assert mine["anthropic-beta"] == "a,b"  # the first of a repeated name


def test_the_incoming_request_echoes_the_clients_id_only_when_it_is_the_request_id():
    ours = incoming(_scope([(b"x-request-id", b"req_1")]), _no_body)
    assert (ours.client_request_id, ours.method, ours.path, dict(ours.query)) == ("req_1", "POST", "/v1/messages", {})
    other = incoming(_scope([(b"x-request-id", b"not this one")], b"key=k"), _no_body)
    assert other.client_request_id is None and other.query["key"] == "k"


def test_the_headers_the_middleware_read_are_the_ones_the_door_reads():
    scope = _scope([(b"x-request-id", b"req_1"), (b"authorization", b"Bearer k")])
    scope["state"]["headers"] = header_map(scope)
    assert incoming(scope, _no_body).headers is scope["state"]["headers"]  # made once a request
