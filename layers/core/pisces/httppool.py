"""httpx's connection pool, without its most expensive habit.

On every request, and again when a response is closed, httpcore's pool asks each idle connection
whether it has expired, and that includes whether the server has closed it ("is_readable"). Over
anyio, that question rebuilds the stream's whole attribute table (a dict of closures) just to find
the socket, and then polls it. A profile of the gateway at 16 concurrent connections put 22% of its
CPU there, most of it in building that table (bench/RESULTS.md, performance part 3).

:func:`lean` keeps the pool, its limits, its retries and its proxies, and wraps its network backend
(httpcore's public ``AsyncNetworkBackend`` and ``AsyncNetworkStream``). Each stream finds its socket
once, when it connects or starts TLS, and polls that. What the pool decides is unchanged: an idle
connection the server closed is still dropped before it is used.
"""

# ruff: noqa: ASYNC109  (the timeout parameters are httpcore's interface, passed through)
from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
from httpcore._utils import is_socket_readable


class LeanStream(httpcore.AsyncNetworkStream):
    """The backend's own stream, its socket found once. Reads and writes go straight to it."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._sock: socket.socket | None = inner.get_extra_info("socket")
        self.read = inner.read  # type: ignore[method-assign]  # the inner stream's own: no extra frame
        self.write = inner.write  # type: ignore[method-assign]

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return LeanStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return is_socket_readable(self._sock)  # httpcore's own check, on the socket found once
        return self._inner.get_extra_info(info)


class LeanBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return LeanStream(await self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return LeanStream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def lean(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """``client`` with a lean backend under each of its connection pools (its own and its proxies'
    mounts). The pools are httpx's private attributes: a version of httpx or httpcore that moves them
    leaves the client as it was (tests/unit/test_httppool.py says so)."""
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.AsyncNetworkBackend) and not isinstance(backend, LeanBackend):
            pool._network_backend = LeanBackend(backend)  # type: ignore[union-attr]
    return client
