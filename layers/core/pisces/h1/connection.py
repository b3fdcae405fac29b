"""One kept-alive connection (an asyncio protocol fed to httptools' parser) and the answer read on it."""

from __future__ import annotations

import asyncio
import copy
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, NoReturn, cast

import httptools
import httpx
from multidict import CIMultiDict

from pisces.h1.framing import decoder

if TYPE_CHECKING:
    from pisces.h1.pool import H1Pool

HIGH_WATER = 1 << 16  # body bytes waiting unread before the socket is read no more


class Connection(asyncio.Protocol):
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
        self.error: httpx.TransportError | None = None  # the exchange's failure (a reader raises failure())
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

    def failure(self, request: httpx.Request | None = None) -> httpx.TransportError:
        """A copy of :attr:`error` (once there is one) to raise, with ``request`` when given. Raised itself,
        its traceback would hold the reader's frames, and through them this connection, which holds it: a
        reference cycle, left to the garbage collector (bench/RESULTS.md, performance part 12)."""
        error = cast(httpx.TransportError, copy.copy(self.error))
        if request is not None:
            error.request = request
        return error

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
            self.pool.idle_again(self)
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
        self.pool.gone(self)
        if self.busy and not self.complete and self.error is None:
            if self.status and self.until_close:  # a body whose end is the connection's
                self._complete()
            else:
                self.fail(httpx.RemoteProtocolError("The server closed the connection before its answer ended."))
        self._done()
        del self.parser  # it holds this protocol's callbacks: the two would be a reference cycle once closed

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
                self.decode = decoder(value)
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

    def __init__(self, conn: Connection, method: str, url: str) -> None:
        self._conn, self._method, self._url = conn, method, url
        self.status = conn.status
        self.headers: Mapping[str, str] = CIMultiDict(conn.raw)
        self._closed = False

    def _raise(self) -> NoReturn:
        raise self._conn.failure(httpx.Request(self._method, self._url))  # no local holds it: see failure

    async def chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.chunks:
                yield conn.take()
            elif conn.error is not None:
                self._raise()
            elif conn.complete:
                return
            else:
                await conn.wait()

    async def read(self) -> bytes:
        """The whole body, read as :meth:`chunks` reads it, without an async generator: it took 2 of 3 µs
        (warm) to read a completion's answer (bench/RESULTS.md, performance part 12)."""
        conn, parts = self._conn, []
        while True:
            if conn.chunks:
                parts.append(conn.take())
            elif conn.error is not None:
                self._raise()
            elif conn.complete:
                return b"".join(parts)
            else:
                await conn.wait()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._conn.release()
