"""Starlette's side of the request lifecycle: a request in, the pipeline's reply out, as it is.

The road itself (authenticate, decode, route, idempotency, admit, upstream, encode, settle, log) is
:mod:`pisces.pipeline.lifecycle` in the layer; this module only turns a Starlette request into its
``Incoming`` and its ``Reply`` into a Starlette response.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from pisces.pipeline.body import BODY_IN_HAND, ServerBody
from pisces.pipeline.gateway import Gateway
from pisces.pipeline.lifecycle import Incoming, Lifecycle, Reply

NO_QUERY: Mapping[str, str] = MappingProxyType({})
NO_EXTENSIONS: Mapping[str, Any] = MappingProxyType({})


def path_of(scope: Scope) -> str:
    """The request's path as ``request.url.path`` says it, without building the URL (its host, its query)."""
    return scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")


def query_map(query: bytes) -> Mapping[str, str]:
    """The query string's parameters as Starlette's ``request.query_params`` looks them up (``parse_qsl``,
    blank values kept, the last of a repeated name): split by hand when nothing in it is escaped (Gemini's
    ``alt=sse``: a fifth of ``QueryParams``' cost), else by ``parse_qsl`` itself."""
    if not query:
        return NO_QUERY
    text = query.decode("latin-1")
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    out: dict[str, str] = {}
    for pair in text.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            out[name] = value
    return out


def header_map(scope: Scope) -> dict[str, str]:
    """The request's headers by their (lower-case, as ASGI servers give them) names: the first of a
    repeated name, as Starlette's ``Headers`` would look it up. Made once (by the middleware, kept in the
    request's state), each look-up is a dict's (``Headers`` scans the list and lowercases the name asked for
    on every one: a door asks ten times)."""
    out: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1")
        if key not in out:
            out[key] = value.decode("latin-1")
    return out


def let_the_reader_run() -> None:
    """Give up the CPU to another runnable process, if there is one (``sched_yield``; nothing where the
    platform has none). Lambda's Web Adapter, which forwards a stream's bytes, shares the function's CPU
    (one vCPU or less below 1,769 MB): woken by the first chunk, it waited for the gateway to block, which
    it does only once it has worked all it has of the stream (an upstream's burst: all of it). Called once a
    stream, once its first bytes have left (with the head, at once; later, in the loop's next turn, after
    run.sh's protocol has written them): 0.25-0.47 ms off the time to the first byte where the reader shares
    the CPU (bench/RESULTS.md, performance part 10); after a complete response's last bytes it only cost."""
    _sched_yield()


_sched_yield: Callable[[], None] = getattr(os, "sched_yield", lambda: None)


class PipelineStream(StreamingResponse):
    """A streamed reply whose body iterator is always closed in the request's own task: a client
    that hangs up mid-stream is settled before the request returns, not when the generator is
    garbage-collected (on Lambda, maybe never).

    Its head and first chunk are sent from the request's own task before Starlette starts the
    listener that notices a client hanging up (a task group and a task: ~50 µs of the time to the
    first byte, bench/RESULTS.md part 5); the rest is streamed under that listener. The first chunk is
    ready at once (the pipeline has the upstream's first event before it replies; the relay yields an
    empty chunk when that event says nothing), and a client gone by then is noticed by the listener as
    soon as it starts.

    Once the first bytes of the body are written (with the head, or later when the first chunk was empty),
    the process gives up the CPU for a moment (:func:`let_the_reader_run`), so that whoever reads them runs
    before the rest of the stream is worked."""

    reader_ran = False  # the reader of the first body bytes was let run (once a stream)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            first = await anext(self.body_iterator, None)  # type: ignore[call-overload]
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if first:  # the relay's first chunk may be empty (an event that says nothing): the head alone
                await send({"type": "http.response.body", "body": first, "more_body": True})
                self.reader_ran = True
                let_the_reader_run()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
            raise
        await super().__call__(scope, receive, send)

    async def stream_response(self, send: Send) -> None:
        """The rest of the body (its head went in ``__call__``), under Starlette's disconnect listener."""
        try:
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if chunk and not self.reader_ran:  # the first bytes of a body whose first chunk was empty
                    self.reader_ran = True
                    # written alone in this turn of the loop, they leave at the start of the next (Corked,
                    # pisces_gateway.server), which runs what is scheduled in order: the yield after them
                    asyncio.get_running_loop().call_soon(let_the_reader_run)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # The listener saw the client hang up (or the request's own task is being cancelled, which the task
            # group then says itself): this task ends quietly, its body closed below. Ended by the error instead,
            # anyio's task group holds it in a reference cycle with every frame of the stream (its task_done keeps
            # the error in a local whose traceback holds that very frame): ~250 objects a hang-up, left to the
            # garbage collector (bench/RESULTS.md, performance part 13).
            return
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]


def incoming(scope: Scope, receive: Receive) -> Incoming:
    """The request in ``scope`` as the pipeline's ``Incoming`` (its body read from ``receive``)."""
    state = scope["state"]  # the middleware's (the dict Starlette's request.state wraps)
    rid, headers = state["request_id"], state.get("headers") or header_map(scope)
    return Incoming(
        method=scope["method"],
        path=path_of(scope),
        headers=headers,
        query=query_map(scope["query_string"]),
        body=ServerBody(Request(scope, receive).stream(), (scope.get("extensions") or NO_EXTENSIONS).get(BODY_IN_HAND)),
        request_id=rid,
        client_request_id=rid if headers.get("x-request-id") == rid else None,
    )


def respond(scope: Scope, reply: Reply) -> Response:
    scope["state"]["ctx"] = reply.ctx  # the middleware's: logged already, headers
    if isinstance(reply.body, bytes):
        return Response(reply.body, reply.status, headers=reply.headers, media_type=reply.media_type)
    return PipelineStream(reply.body, reply.status, headers=reply.headers, media_type=reply.media_type)


def lifecycle(scope: Scope) -> Lifecycle:
    gw: Gateway = scope["app"].state.gateway
    return gw.lifecycle


async def answer(
    door: Callable[..., Awaitable[Reply]], scope: Scope, receive: Receive, params: dict[str, Any]
) -> Response:
    """The door's reply to the request in ``scope``, as a Starlette response (the request's context kept)."""
    return respond(scope, await door(lifecycle(scope), incoming(scope, receive), **params))


def door_endpoint(door: Callable[..., Awaitable[Reply]]) -> Callable[[Request], Awaitable[Response]]:
    """A door as a Starlette endpoint: what the router calls (the middleware calls the door itself)."""

    async def endpoint(request: Request) -> Response:
        return await answer(door, request.scope, request.receive, request.path_params)

    return endpoint
