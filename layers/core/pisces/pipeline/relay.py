"""A stream relayed from the upstream to the client, which pays its debts before its terminal event.

The upstream's canonical events are encoded for the client as they come; while the upstream is
silent the encoder's ``heartbeat`` (if it has one) keeps the connection visibly alive (API Gateway
cuts a stream idle for 5 minutes). When the upstream is done, or fails, or the client hangs up, the
request is settled, its Idempotency-Key record completed (or released) and its log line and metrics
written, all in the request's own task, and only then is the terminal chunk yielded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from pisces.canonical import (
    ChatRequest,
    ErrorEvent,
    Finish,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolArgsDelta,
    UsageEvent,
    merge_usage,
)
from pisces.errors import PiscesError
from pisces.pipeline.billing import Bill, cost_of
from pisces.pipeline.context import RequestContext
from pisces.pipeline.idempotency import Claim, Stored
from pisces.pipeline.logs import logger, record_request
from pisces.tokens import estimate_text

if TYPE_CHECKING:
    from pisces.pipeline.gateway import Gateway


def _note(ctx: RequestContext, ev: StreamEvent) -> None:
    """What the log and billing need of a stream, without keeping its content."""
    if isinstance(ev, TextDelta | ThinkingDelta):
        ctx.generated_tokens += estimate_text(ev.text)
    elif isinstance(ev, ToolArgsDelta):
        ctx.generated_tokens += estimate_text(ev.delta)
    elif isinstance(ev, UsageEvent | StreamStart):
        if ev.usage is not None:
            ctx.usage = merge_usage(ctx.usage, ev.usage)
    elif isinstance(ev, Finish):
        ctx.finish = ev.reason
    elif isinstance(ev, ErrorEvent):
        ctx.error = ev.code


class _Failed:
    """The upstream's exception, handed over in its place in the stream."""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


_END = object()  # the upstream's stream ended
SILENT = object()  # nothing came for a heartbeat interval


class Ahead:
    """The upstream's events, read by one task for the whole stream, at most ``limit`` ahead of the
    client. The relay takes them with :meth:`next`, which says :data:`SILENT` after ``silence``
    seconds without one (a heartbeat is due) and never cancels a read: an async generator cancelled
    mid-read is finished. Events that came together (one network read holds several) are taken
    without waiting; the wait, when there is one, is a future and a timer, not a task per event
    (``asyncio.wait`` on a new task for each event was 25-50 µs an event, bench/RESULTS.md part 5)."""

    def __init__(self, events: AsyncGenerator[StreamEvent, None], limit: int = 64, hurry: bool = False) -> None:
        self._events = events
        self._limit = limit
        # while the client has no byte of the body yet (a first event that said nothing), each event read goes
        # to the relay before the next is read: in a burst, the first words go out before the rest is decoded
        self.hurry = hurry
        self._items: deque[Any] = deque()
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None  # the relay's, while the buffer is empty
        self._room: asyncio.Future[None] | None = None  # the reader's, while the buffer is full
        # it only reads the upstream: nothing owed is in it, and _conclude cancels and awaits it before
        # the settling and the terminal chunk (a task still reading when Lambda freezes owes nothing)
        self._task = self._loop.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for ev in self._events:
                self._put(ev)
                if self.hurry:
                    await asyncio.sleep(0)  # the relay takes it (and sends it) first
                if len(self._items) >= self._limit:
                    self._room = self._loop.create_future()
                    await self._room
        except Exception as exc:  # raised to the relay where it happened, after what came before it
            self._put(_Failed(exc))
        else:
            self._put(_END)

    def _put(self, item: Any) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def take(self) -> Any:
        """The next event if it is here already, None at the stream's end, else :data:`SILENT`; the
        upstream's error raised in its place."""
        if not self._items:
            return SILENT
        item = self._items.popleft()
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        if item is _END:
            return None
        if isinstance(item, _Failed):
            raise item.exc
        return item

    async def next(self, silence: float) -> Any:
        """:meth:`take`, waiting up to ``silence`` seconds for the next event (:data:`SILENT` if none came)."""
        if not self._items:
            waiter = self._waiter = self._loop.create_future()
            timer = self._loop.call_later(silence, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self.take()

    async def close(self) -> list[StreamEvent]:
        """Stop reading (the upstream's generator finishes where it stood); the events read but not
        taken, for the bill: the upstream generated them."""
        # not kept once stopped: a cancelled task keeps its error, whose traceback holds _read's frame, which holds
        # this object; kept here too, the three were a cycle with the whole stream in it, left to the garbage
        # collector at every hang-up (bench/RESULTS.md, performance part 13). Called once, by the relay's end.
        task = self._task
        del self._task
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return [e for e in self._items if e is not _END and not isinstance(e, _Failed)]


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def relay(
    gw: Gateway,
    ctx: RequestContext,
    encoder: Any,
    req: ChatRequest,
    bill: Bill,
    claim: Claim | None,
    first: StreamEvent,
    events: AsyncGenerator[StreamEvent, None],
    media_type: str,
    settled: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    beat = getattr(encoder, "heartbeat", None)
    sent: list[bytes] = []  # kept only for an Idempotency-Key's replay
    pending: list[bytes] = []  # encoded, not yet yielded: the events that came together go in one write
    ahead: Ahead | None = None
    ready = getattr(events, "ready", None)  # an upstream's stream that can say what it read already (Events)
    try:
        ev: StreamEvent | None = first
        while ev is not None:
            _note(ctx, ev)
            if isinstance(ev, ErrorEvent):
                break  # an upstream failure ends the stream: its event is the terminal one, sent last
            chunk = encoder.encode(ev)
            if chunk:
                if claim:
                    sent.append(chunk)
                pending.append(chunk)
            if beat is None:
                out, pending = b"".join(pending), []
                if out:
                    yield out
                ev = await anext(events, None)
                continue
            if ahead is None:
                if not pending and ready is not None and (held := ready()) is not None:
                    ev = held  # read already with the first: its words, if it has any, go out with the head
                    continue
                ahead = Ahead(events, hurry=not pending)  # after the first event: its chunk goes out at once, below
                if not pending:  # it says nothing (Gemini's start): the response starts all the same,
                    yield b""  # and with it the watch for a client that hangs up while the upstream thinks
            elif (ev := ahead.take()) is not SILENT:
                continue  # here already: it goes out with the chunks before it
            if pending:
                out, pending = b"".join(pending), []
                ahead.hurry = False  # the client has its first bytes: what comes together goes together
                yield out
            # the next event, as soon as it comes; a heartbeat for every silent interval
            while (ev := await ahead.next(gw.config.limits.heartbeat_seconds)) is SILENT:
                yield beat()
        if pending:  # what came with the end: sent before the settling, the terminal event after it
            out, pending = b"".join(pending), []
            yield out
        if isinstance(ev, ErrorEvent):
            tail = encoder.encode(ev) + encoder.close()
        else:
            if ctx.usage is not None and ctx.finish is not None:
                ctx.cost = encoder.pisces["cost"] = cost_of(gw.config.price(ctx.model or req.model), ctx.usage)
            tail = encoder.close()
    except (asyncio.CancelledError, GeneratorExit):
        ctx.error = ctx.error or "client_cut"  # the client hung up: settle what was generated, then stop
        with anyio.CancelScope(shield=True):
            await _conclude(gw, ctx, req, bill, claim, events, ahead, None, media_type, settled)
        raise
    except Exception as exc:  # a fault mid-stream: tell the client in its protocol, then end
        if isinstance(exc, PiscesError):
            err = ErrorEvent(code=exc.code, message=exc.message, status=exc.status)
        else:
            logger.exception("stream failed", extra={"request_id": ctx.request_id})
            err = ErrorEvent(code="internal_error", message="The gateway failed mid-stream.", status=500)
        ctx.error = err.code
        tail = encoder.encode(err) + encoder.close()
    with anyio.CancelScope(shield=True):
        await _conclude(gw, ctx, req, bill, claim, events, ahead, [*sent, tail], media_type, settled)
    yield b"".join(pending) + tail  # pending: what came before a fault mid-stream


async def _conclude(
    gw: Gateway,
    ctx: RequestContext,
    req: ChatRequest,
    bill: Bill,
    claim: Claim | None,
    events: AsyncGenerator[StreamEvent, None],
    ahead: Ahead | None,
    sent: list[bytes] | None,
    media_type: str,
    settled: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Close the upstream, settle, run the door's ``settled`` hook (the Responses door stores its
    response), complete or release the Idempotency-Key, write the log line."""
    if ahead is not None:
        for ev in await ahead.close():  # read from the upstream, never sent: generated all the same
            if isinstance(ev, TextDelta | ThinkingDelta | ToolArgsDelta | UsageEvent):
                _note(ctx, ev)
    with contextlib.suppress(Exception):
        await events.aclose()
    # the status is 200 once started: a stream that failed or was cut says so in `error`
    if ctx.error is None and ctx.finish is None:
        ctx.error = "stream_cut"
    await gw.billing.settle(ctx, req, bill, 200)
    if settled is not None and ctx.error is None:
        await settled()
    if claim and ctx.error is None and sent is not None:
        await gw.idempotency.complete(claim, Stored(200, media_type, sent))
    elif claim:
        await gw.idempotency.abort(claim)
    record_request(ctx, 200)
