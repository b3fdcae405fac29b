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
    waiting: asyncio.Future[StreamEvent | None] | None = None
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
                yield chunk
            if beat is None:
                ev = await anext(events, None)
                continue
            # the next event, awaited in this task's frame; a heartbeat for every silent interval
            waiting = asyncio.ensure_future(anext(events, None))
            while not (await asyncio.wait({waiting}, timeout=gw.config.limits.heartbeat_seconds))[0]:
                yield beat()
            ev, waiting = waiting.result(), None
        if isinstance(ev, ErrorEvent):
            tail = encoder.encode(ev) + encoder.close()
        else:
            if ctx.usage is not None and ctx.finish is not None:
                ctx.cost = encoder.pisces["cost"] = cost_of(gw.config.price(ctx.model or req.model), ctx.usage)
            tail = encoder.close()
    except (asyncio.CancelledError, GeneratorExit):
        ctx.error = ctx.error or "client_cut"  # the client hung up: settle what was generated, then stop
        with anyio.CancelScope(shield=True):
            await _conclude(gw, ctx, req, bill, claim, events, waiting, None, media_type, settled)
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
        await _conclude(gw, ctx, req, bill, claim, events, waiting, [*sent, tail], media_type, settled)
    yield tail


async def _conclude(
    gw: Gateway,
    ctx: RequestContext,
    req: ChatRequest,
    bill: Bill,
    claim: Claim | None,
    events: AsyncGenerator[StreamEvent, None],
    waiting: asyncio.Future[StreamEvent | None] | None,
    sent: list[bytes] | None,
    media_type: str,
    settled: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Close the upstream, settle, run the door's ``settled`` hook (the Responses door stores its
    response), complete or release the Idempotency-Key, write the log line."""
    if waiting is not None:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
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
