"""The lean pool (pisces.httppool): the gateway's clients have it, and it still drops an idle
connection that the server closed instead of sending the next request on it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import pisces.httppool
from pisces.httppool import LeanBackend, LeanStream, lean
from pisces.store.dynamo_http import AsyncDynamo
from pisces.upstreams.base import new_http_client

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


async def test_the_gateways_clients_are_lean():
    """Fails when an httpx or httpcore release moves the pool: then lean() changes nothing."""
    http = new_http_client()
    db = AsyncDynamo("http://127.0.0.1:1", "us-east-1")
    try:
        assert all(isinstance(c._transport._pool._network_backend, LeanBackend) for c in (http, db.http))  # type: ignore[attr-defined]
        lean(http)  # twice is once
        assert not isinstance(http._transport._pool._network_backend._inner, LeanBackend)  # type: ignore[attr-defined]
    finally:
        await http.aclose()
        await db.aclose()


class Blind(LeanStream):
    """A stream that never sees its server's close: what a pool that did not look would do."""

    def get_extra_info(self, info: str) -> Any:
        return False if info == "is_readable" else super().get_extra_info(info)


async def _twice(make_lean: Any) -> int:
    """Two GETs to a server that closes each connection after its answer without saying so; the
    number of connections it saw."""
    connections = 0
    closed = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ANSWER)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    async with server, make_lean(httpx.AsyncClient()) as client:
        assert (await client.get(url)).text == "ok"
        await closed.wait()  # the server's FIN is on its way (loopback: already there)
        assert (await client.get(url)).text == "ok"
    return connections


async def test_an_idle_connection_the_server_closed_is_not_reused(monkeypatch):
    assert await _twice(lean) == 2
    monkeypatch.setattr(pisces.httppool, "LeanStream", Blind)  # the control: the same, blind
    with pytest.raises(httpx.RemoteProtocolError):
        await _twice(lean)
