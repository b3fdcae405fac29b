"""Kept-alive connections per scheme, host and port, and the calls on them."""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Mapping

import httpx

from pisces.h1.connection import Connection, H1Answer
from pisces.h1.framing import Target, request_head, target

HAPPY_EYEBALLS_DELAY = 0.25  # seconds before the next address is tried alongside (aiohttp's default)


class H1Pool:
    """Kept-alive connections per scheme, host and port, and the calls on them."""

    def __init__(
        self, *, max_connections: int = 100, keepalive_expiry: float = 30.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._open: set[Connection] = set()  # connecting, busy or idle
        self._connecting = 0
        self._slots: list[asyncio.Future[None]] = []  # callers waiting for a slot
        self._loop: asyncio.AbstractEventLoop | None = None

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:  # the system's CAs, loaded at the first https call (not at import)
            self._ssl = tls_context()
        return self._ssl

    async def open(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeouts: Mapping[str, float | None]
    ) -> H1Answer:
        """``method url`` sent with ``headers`` and ``body``; the answer once its head is in."""
        conn: Connection | None = None
        try:
            to = target(url)
            head = request_head(method, to, headers, len(body) if body or method not in ("GET", "DELETE") else None)
            conn = await self._acquire(to, timeouts)
            conn.send(head + body if body else head, timeouts.get("read"))
            while not conn.status:
                if conn.error is not None:
                    raise conn.failure()
                await conn.wait()
        except BaseException as e:
            if conn is not None:
                conn.close()
            if isinstance(e, httpx.RequestError):
                e.request = httpx.Request(method, url)
            raise
        return H1Answer(conn, method, url)

    async def aclose(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._idle.clear()

    # ------------------------------------------------------------------ the pool

    async def _acquire(self, to: Target, timeouts: Mapping[str, float | None]) -> Connection:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections live on the loop that made them (a test's loop ends)
            self._loop, self._idle, self._open, self._connecting, self._slots = loop, {}, set(), 0, []
        deadline: float | None = None  # for a slot: the pool timeout counts from the first wait, not each
        while True:
            idle = self._idle.get(to.key)
            now = loop.time()
            while idle:
                conn = idle.pop()
                if conn.closed or conn.transport is None or conn.transport.is_closing():
                    continue
                if now - conn.idle_since > self._expiry:
                    conn.close()
                    continue
                return conn
            if len(self._open) + self._connecting < self._max:
                return await self._connect(to, timeouts.get("connect"))
            pool = timeouts.get("pool")
            if deadline is None and pool is not None:
                deadline = now + pool
            await self._slot(to, None if deadline is None else max(0.0, deadline - now))

    async def _slot(self, to: Target, seconds: float | None) -> None:
        """Room for one more connection: an idle one of another host closed, or one that closes in time."""
        for key, conns in self._idle.items():
            if key != to.key and conns:
                conns.pop(0).close()
                return
        slot = asyncio.get_running_loop().create_future()
        self._slots.append(slot)
        try:
            async with asyncio.timeout(seconds):
                await slot
        except TimeoutError:
            raise httpx.ConnectTimeout("No connection to the server was free in time.") from None
        finally:
            if slot in self._slots:
                self._slots.remove(slot)

    def _free(self) -> None:
        while self._slots:
            slot = self._slots.pop(0)
            if not slot.done():
                slot.set_result(None)
                return

    async def _connect(self, to: Target, seconds: float | None) -> Connection:
        loop = asyncio.get_running_loop()
        _, host, port = to.key
        self._connecting += 1
        try:
            async with asyncio.timeout(seconds):
                # Happy Eyeballs (RFC 8305) as aiohttp connects: an address family that does not answer
                # (an IPv6 route that goes nowhere) does not hold the call to the connect timeout
                tls = {"ssl": self._context(), "server_hostname": host} if to.tls else {}
                _, conn = await loop.create_connection(lambda: Connection(self, to.key), host, port,
                                                       happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, **tls)  # fmt: skip
        except BaseException as e:
            self._connecting -= 1
            self._free()  # its slot
            if isinstance(e, TimeoutError):
                raise httpx.ConnectTimeout(f"No connection to {host}:{port} in time.") from None
            if isinstance(e, OSError | ssl.SSLError | ssl.CertificateError):
                raise httpx.ConnectError(f"Cannot connect to {host}:{port}: {e}") from None
            raise
        self._connecting -= 1
        self._open.add(conn)
        return conn

    def idle_again(self, conn: Connection) -> None:
        conn.idle_since = conn.loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        self._free()  # a caller waiting for a slot may take it

    def gone(self, conn: Connection) -> None:
        self._open.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
        self._free()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's verified TLS context: the system's CAs (40+ ms to load). :class:`~pisces.pipeline.
    gateway.Gateway` loads it while the process starts when an endpoint it will call is https (as aiohttp
    did on import), so that the first request does not wait for it."""
    return ssl.create_default_context()
