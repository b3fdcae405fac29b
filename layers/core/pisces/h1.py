"""The gateway's hot outbound calls over HTTP/1.1: asyncio's transports, httptools' parser, zlib.

A channel's chat and embeddings calls and DynamoDB's calls are the gateway's only outbound calls on a
request's road. aiohttp's ``ClientSession.request`` spent 145-185 µs of CPU on each (its request and
response objects, a writer task, two timers, URL objects), where the same exchange over an asyncio
protocol and the parser uvicorn serves the gateway with (httptools: llhttp, in C) spends 20-40 µs
(bench/RESULTS.md, performance part 7): a fifth of a money-off request's CPU. What is left here is
the part no library offers without that weight: a keep-alive pool and the framing of a request.
:class:`pisces.httppool.AiohttpTransport` sends these calls through :class:`H1Pool` and keeps aiohttp
for httpx's API (images, tests).

What it does, as :mod:`pisces.httppool` promised for aiohttp:
- keeps connections alive per scheme, host and port (at most ``max_connections`` open in all; a call
  past that waits for one, up to the ``pool`` timeout), never reuses one the server closed, one whose
  answer was not read to its end, or one idle longer than ``keepalive_expiry``;
- sends the headers it is given and no others but ``Host`` and ``Content-Length``; refuses a header
  that would split the request (a CR, an LF or a NUL in it);
- answers chunk by chunk as they arrive (reading pauses while 64 KiB wait unread), decoded from
  ``Content-Encoding`` gzip or deflate as httpx decodes them; informational (1xx) answers are skipped;
- fails with the httpx errors the channels sort: only a failure to connect (``ConnectError``,
  ``ConnectTimeout``, also for no pool slot in time) says the request was never sent; a connection
  lost or an answer that is not HTTP after sending is a ``RemoteProtocolError``; no byte for ``read``
  seconds while the caller waits for one is a ``ReadTimeout``.

What it does not do: proxies, redirects, cookies, HTTP/2, ``Expect: 100-continue``, HEAD requests, a
streamed request body. Images, whose bodies are multipart and whose calls are rare, keep httpx's client.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import NamedTuple
from urllib.parse import quote, urlsplit

import httptools
import httpx
from multidict import CIMultiDict

HIGH_WATER = 1 << 16  # body bytes waiting unread before the socket is read no more
HAPPY_EYEBALLS_DELAY = 0.25  # seconds before the next address is tried alongside (aiohttp's default)
_UNSAFE = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]|%(?![0-9A-Fa-f]{2})")  # what a request target may not hold
_SAFE = "-._~!$&'()*+,;=:@/?%"


class Target(NamedTuple):
    key: tuple[str, str, int]  # what a pooled connection is for: scheme, host, port
    host: str  # the Host header
    path: str  # the request target: path and query, percent-encoded
    tls: bool


@functools.lru_cache(maxsize=512)
def target(url: str) -> Target:
    """What a URL says to connect to and to ask for (a handful of URLs a process: cached)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise httpx.UnsupportedProtocol(f"Invalid URL {url!r}: {e}") from None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("http", "https") or not host:
        raise httpx.UnsupportedProtocol(f"Unsupported URL {url!r}: http and https only, with a host.")
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    tls = scheme == "https"
    port = port or (443 if tls else 80)
    name = f"[{host}]" if ":" in host else host
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if _UNSAFE.search(path):  # a model's name in the path, say: percent-encoded as yarl and httpx would
        path = quote(re.sub(r"%(?![0-9A-Fa-f]{2})", "%25", path), safe=_SAFE)
    return Target((scheme, host, port), name if port == (443 if tls else 80) else f"{name}:{port}", path, tls)


def request_head(method: str, to: Target, headers: Mapping[str, str], length: int | None) -> bytes:
    """The request line and headers: the given ones as given, ``Host`` unless given, ``Content-Length``."""
    lines = [f"{method} {to.path} HTTP/1.1"]
    has_host = False
    for name, value in headers.items():
        low = name.lower()
        if low == "content-length" or low == "transfer-encoding":
            continue  # the body's length is this client's to say
        has_host = has_host or low == "host"
        lines.append(f"{name}: {value}")
    if not has_host:
        lines.append(f"Host: {to.host}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    head = "\r\n".join(lines)
    if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1 or "\x00" in head:
        raise httpx.LocalProtocolError("A header name or value holds a CR, an LF or a NUL.")
    return (head + "\r\n\r\n").encode("utf-8")


def _decoder(encoding: str | None) -> Callable[[bytes], bytes] | None:
    """A Content-Encoding's decoder, as httpx has them (a deflate body may come with or without zlib's
    wrapper); an encoding it does not know is passed through as it came."""
    enc = (encoding or "").strip().lower()
    if enc in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16).decompress
    if enc == "deflate":
        state: dict[str, zlib._Decompress | None] = {"d": None}

        def inflate(data: bytes) -> bytes:
            if state["d"] is None:
                try:
                    state["d"] = zlib.decompressobj()
                    return state["d"].decompress(data)
                except zlib.error:
                    state["d"] = zlib.decompressobj(-zlib.MAX_WBITS)
            return state["d"].decompress(data)

        return inflate
    return None


class _Conn(asyncio.Protocol):
    """One kept-alive connection and the exchange on it (one at a time)."""

    def __init__(self, pool: H1Pool, key: tuple[str, str, int]) -> None:
        self.pool, self.key = pool, key
        self.timer: asyncio.TimerHandle | None = None  # the read timeout's check: one a connection, re-armed
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.busy = False
        self._begin(None)

    # ------------------------------------------------------------------ an exchange

    def _begin(self, read_timeout: float | None) -> None:
        self.status = 0
        self.raw: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.complete = False
        self.informational = False
        self.until_close = False
        self.error: httpx.TransportError | None = None
        self.decode: Callable[[bytes], bytes] | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.read_timeout = read_timeout
        self.last = self.loop.time()
        if read_timeout and (self.timer is None or self.timer.when() > self.last + read_timeout):
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(self.last + read_timeout, self._on_timer)

    def send(self, data: bytes, read_timeout: float | None) -> None:
        self.busy = True
        self._begin(read_timeout)
        assert self.transport is not None
        self.transport.write(data)

    async def wait(self) -> None:
        """Until something happens: bytes, the end, an error."""
        self.waiter = self.loop.create_future()
        self.last = max(self.last, self.loop.time())  # the read timeout counts from now
        try:
            await self.waiter
        finally:
            self.waiter = None

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def take(self) -> bytes:
        """What has arrived and was not taken yet (reading resumes once it is taken)."""
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self.transport is not None and not self.closed and not self.transport.is_reading():
            self.transport.resume_reading()
        return data

    def fail(self, error: httpx.TransportError) -> None:
        if self.error is None and not self.complete:
            self.error = error
        self._done()
        self.close()
        self._wake()

    def _done(self) -> None:
        """The exchange is over. Its timer stays armed for the next exchange on the connection, which
        moves the deadline on (a timer a call would be a timer made and cancelled per request); when it
        fires with no exchange under way it ends."""
        if self.closed and self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_timer(self) -> None:
        self.timer = None
        if self.complete or self.error is not None or self.read_timeout is None or not self.busy:
            return
        now = self.loop.time()
        waiting = self.waiter is not None or self.status == 0  # the caller waits for bytes, or for the head
        deadline = self.last + self.read_timeout
        if waiting and now >= deadline:
            self.fail(httpx.ReadTimeout("No byte from the server in time."))
        else:
            self.timer = self.loop.call_at(deadline if waiting else now + self.read_timeout, self._on_timer)

    def release(self) -> None:
        """The caller is done with the answer: the connection goes back to the pool if the answer is
        complete, and is closed if it is not (its unread bytes would arrive on the next exchange)."""
        if self.error is not None or self.closed:
            self.close()
        elif self.complete:  # what was not read of it is dropped, and reading goes on for the next
            self.busy = False
            self.chunks.clear()
            self.buffered = 0
            if self.transport is not None and not self.transport.is_reading():
                self.transport.resume_reading()
            self.pool._idle_again(self)
        else:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    # ------------------------------------------------------------------ asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.busy or self.complete:  # bytes nobody asked for: the connection is not to be trusted
            self.close()
            return
        self.last = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(httpx.RemoteProtocolError("The server switched protocols unasked."))
        except httptools.HttpParserError as e:
            self.fail(httpx.RemoteProtocolError(f"The server's answer is not HTTP/1.1: {e}"))

    def eof_received(self) -> bool:
        return False  # closed: connection_lost says what it meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._gone(self)
        if self.busy and not self.complete and self.error is None:
            if self.status and self.until_close:  # a body whose end is the connection's
                self._complete()
            else:
                self.fail(httpx.RemoteProtocolError("The server closed the connection before its answer ended."))
        self._done()

    # ------------------------------------------------------------------ httptools' callbacks

    # After the answer's end, what follows in the same read belongs to no request: it closes the
    # connection (on_message_begin) and is dropped.

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        self.raw.append((name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # informational: the answer is still to come
            self.informational = True
            self.raw = []
            return
        self.status = status
        length = chunked = False
        for name, value in self.raw:
            low = name.lower()
            if low == "content-encoding":
                self.decode = _decoder(value)
            elif low == "content-length":
                length = True
            elif low == "transfer-encoding":
                chunked = chunked or "chunked" in value.lower()
        self.until_close = not (length or chunked or status in (204, 304))
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        if self.decode is not None:
            try:
                body = self.decode(body)
            except zlib.error as e:
                raise httpx.DecodingError(f"The answer's Content-Encoding is broken: {e}") from None
        if body:
            self.chunks.append(body)
            self.buffered += len(body)
            if self.buffered > HIGH_WATER and self.transport is not None and self.transport.is_reading():
                self.transport.pause_reading()
            self._wake()

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if self.informational:
            self.informational = False
            return
        keep = self.parser.should_keep_alive()
        self._complete()
        if not keep:
            self.close()

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer to one request: the connection is not to be trusted
            self.close()

    def _complete(self) -> None:
        self.complete = True
        self._done()
        self._wake()


class H1Answer:
    """An answer whose head is in; its body read as it arrives (:class:`pisces.httppool.Answer`)."""

    __slots__ = ("_closed", "_conn", "_method", "_url", "headers", "status")

    def __init__(self, conn: _Conn, method: str, url: str) -> None:
        self._conn, self._method, self._url = conn, method, url
        self.status = conn.status
        self.headers: Mapping[str, str] = CIMultiDict(conn.raw)
        self._closed = False

    def _raise(self, error: Exception) -> None:
        if isinstance(error, httpx.RequestError):
            error.request = httpx.Request(self._method, self._url)
        raise error

    async def chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.chunks:
                yield conn.take()
            elif conn.error is not None:
                self._raise(conn.error)
            elif conn.complete:
                return
            else:
                await conn.wait()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._conn.release()


class H1Pool:
    """Kept-alive connections per scheme, host and port, and the calls on them."""

    def __init__(
        self, *, max_connections: int = 100, keepalive_expiry: float = 30.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._open: set[_Conn] = set()  # connecting, busy or idle
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
        conn: _Conn | None = None
        try:
            to = target(url)
            head = request_head(method, to, headers, len(body) if body or method not in ("GET", "DELETE") else None)
            conn = await self._acquire(to, timeouts)
            conn.send(head + body if body else head, timeouts.get("read"))
            while not conn.status:
                if conn.error is not None:
                    raise conn.error
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

    async def _acquire(self, to: Target, timeouts: Mapping[str, float | None]) -> _Conn:
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

    async def _connect(self, to: Target, seconds: float | None) -> _Conn:
        loop = asyncio.get_running_loop()
        _, host, port = to.key
        self._connecting += 1
        try:
            async with asyncio.timeout(seconds):
                # Happy Eyeballs (RFC 8305) as aiohttp connects: an address family that does not answer
                # (an IPv6 route that goes nowhere) does not hold the call to the connect timeout
                tls = {"ssl": self._context(), "server_hostname": host} if to.tls else {}
                _, conn = await loop.create_connection(lambda: _Conn(self, to.key), host, port,
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

    def _idle_again(self, conn: _Conn) -> None:
        conn.idle_since = conn.loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        self._free()  # a caller waiting for a slot may take it

    def _gone(self, conn: _Conn) -> None:
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
