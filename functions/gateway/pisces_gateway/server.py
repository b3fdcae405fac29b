"""uvicorn's httptools protocol (llhttp, in C) with the bound on a request head that h11 gave.

run.sh serves the gateway with ``--http pisces_gateway.server:HttpToolsProtocol``. uvicorn's h11
protocol buffered at most ``--h11-max-incomplete-event-size`` bytes of a head; its httptools protocol
has no such setting and would buffer any amount. This one answers ``431 Request Header Fields Too
Large`` and closes the connection, before any application code runs, when a request's line and
headers pass :data:`HEAD_LIMIT` (counted as the parser reports them, once it has the whole head, so a
pipelined request is held to it too), or once that much has arrived without a head's end. What is held
of a head is so bounded by the limit and the reads around it (asyncio reads at most 256 KiB at once).
Counted at the head's end, not header by header: a call of Python a header (twenty of them behind
Lambda's adapter) was the largest part of reading a woken request's head (bench/RESULTS.md, part 10).

Its connections write through :class:`Corked`: what uvicorn writes in one turn of the event loop (a
response's head and body) leaves in one send.

A request's scope carries the ASGI extension ``pisces.body_in_hand`` (:data:`BODY_IN_HAND`): a
function that takes the request's whole body from uvicorn, as its ``receive`` would, when uvicorn
already holds all of it, and otherwise says None (the app then receives the body as it arrives).
"""

from __future__ import annotations

import asyncio
import os
import weakref
from functools import partial
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Uvicorn
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from pisces.pipeline.body import BODY_IN_HAND

HEAD_LIMIT = int(os.environ.get("PISCES_HEAD_LIMIT_BYTES") or 16 * 1024)
_MESSAGE = b"Request header fields too large."
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%b" % (len(_MESSAGE), _MESSAGE)
)


class HeadTooLarge(Exception):
    """Raised in a parser callback: the parser stops, and uvicorn's error path answers (here a 431)."""


class Corked:
    """A connection's transport whose writes in one turn of the event loop leave in one send.

    uvicorn writes a response's head and its body apart (a stream's head and first chunk too): two
    send calls, each a system call, where one will do (bench/RESULTS.md, performance part 6). A write
    waits, and leaves with the next one if that comes in the same turn (the body after its head: both
    at once, then), else at the start of the loop's next turn; ``close`` sends what waits first. Nothing
    is held past the turn that wrote it: a stream's chunks leave as they come, and a response is out as
    soon as its writer's turn ends (Lambda freezes only once the adapter has the last byte, and what
    the request owes is written before its last byte is)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._waiting: bytes | None = None
        self._flush: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        if self._waiting is None:
            self._waiting = data
            self._flush = self._loop.call_soon(self.flush)
        else:  # the second write of a turn: both leave now (the scheduled flush is not needed)
            data, self._waiting = self._waiting + data, None
            if self._flush is not None:
                self._flush.cancel()
                self._flush = None
            self._send(data)

    def flush(self) -> None:
        self._flush = None
        if self._waiting is not None:
            data, self._waiting = self._waiting, None
            self._send(data)

    def _send(self, data: bytes) -> None:
        if not self._transport.is_closing():  # a connection already gone drops what it had
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self._transport, name)


def body_in_hand(ref: weakref.ReferenceType[RequestResponseCycle]) -> bytes | None:
    """The request's whole body, taken as uvicorn's ``receive`` gives it (bytes, the cycle's buffer then
    empty), when uvicorn has it all and ``receive`` would not wait or send anything first; else None.
    A chat request's head and body come in one read: the app then reads the body without a deadline,
    an async generator and an event's wait (bench/RESULTS.md, performance part 9).

    The scope holds the cycle by a weak reference: the cycle holds the scope, and a strong one made the
    two a reference cycle, left to the garbage collector with all they held (19 objects a request: a
    4-7 ms collection every ~500 requests, bench/RESULTS.md, performance part 12)."""
    cycle = ref()
    if cycle is None:  # the request is over, and uvicorn has let go of it
        return None
    if cycle.more_body or cycle.disconnected or cycle.response_complete or cycle.waiting_for_100_continue:
        return None
    cycle.flow.resume_reading()  # as receive does: a body past uvicorn's high-water mark paused the reads
    body = bytes(cycle.body)
    cycle.body = bytearray()
    cycle.message_event.clear()
    return body


class HttpToolsProtocol(_Uvicorn):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between a message's end (or the connection's start) and its next head's end
        self._head_bytes = 0  # bytes received meanwhile: what the parser may be holding of a head
        self._too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(Corked(transport, self.loop))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > HEAD_LIMIT and not self.transport.is_closing():
            self._refuse()  # a head still not ended: refused now, not buffered on

    def on_headers_complete(self) -> None:
        size = len(self.url)  # the request line and headers as parsed, counted once they are (one read at most)
        for name, value in self.headers:
            size += len(name) + len(value) + 4
        if size > HEAD_LIMIT:
            self._too_large = True
            raise HeadTooLarge  # the parser stops; uvicorn's error path calls send_400_response
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()
        cycle = self.cycle  # None, or another request's, for an upgrade (which uvicorn refuses)
        if cycle is not None and cycle.scope is self.scope:  # its task has not run yet: it sees this
            self.scope.setdefault("extensions", {})[BODY_IN_HAND] = partial(body_in_hand, weakref.ref(cycle))

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self.logger.warning("A request head over %d bytes: refused with a 431.", HEAD_LIMIT)
        self.transport.write(_TOO_LARGE)
        self.transport.close()
