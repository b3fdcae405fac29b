"""Starlette's side of the request lifecycle: a request in, the pipeline's reply out, as it is.

The road itself (authenticate, decode, route, idempotency, admit, upstream, encode, settle, log) is
:mod:`pisces.pipeline.lifecycle` in the layer; this module only turns a Starlette request into its
``Incoming`` and its ``Reply`` into a Starlette response.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from pisces.pipeline.body import BODY_IN_HAND, ServerBody
from pisces.pipeline.gateway import Gateway
from pisces.pipeline.lifecycle import Incoming, Lifecycle, Reply, models_protocol
from pisces_gateway.middleware import header_map, path_of

NO_QUERY: Mapping[str, str] = MappingProxyType({})
NO_EXTENSIONS: Mapping[str, Any] = MappingProxyType({})


class PipelineStream(StreamingResponse):
    """A streamed reply whose body iterator is always closed in the request's own task: a client
    that hangs up mid-stream is settled before the request returns, not when the generator is
    garbage-collected (on Lambda, maybe never).

    Its head and first chunk are sent from the request's own task before Starlette starts the
    listener that notices a client hanging up (a task group and a task: ~50 µs of the time to the
    first byte, bench/RESULTS.md part 5); the rest is streamed under that listener. The first chunk is
    ready at once (the pipeline has the upstream's first event before it replies; the relay yields an
    empty chunk when that event says nothing), and a client gone by then is noticed by the listener as
    soon as it starts."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            first = await anext(self.body_iterator, None)  # type: ignore[call-overload]
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if first:  # the relay's first chunk may be empty (an event that says nothing): the head alone
                await send({"type": "http.response.body", "body": first, "more_body": True})
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
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]


def incoming(request: Request) -> Incoming:
    scope = request.scope
    state = scope["state"]  # the middleware's (the dict Starlette's request.state wraps)
    rid, headers = state["request_id"], state.get("headers") or header_map(scope)
    return Incoming(
        method=scope["method"],
        path=path_of(scope),
        headers=headers,
        query=request.query_params if scope["query_string"] else NO_QUERY,
        body=ServerBody(request.stream(), (scope.get("extensions") or NO_EXTENSIONS).get(BODY_IN_HAND)),
        request_id=rid,
        client_request_id=rid if headers.get("x-request-id") == rid else None,
    )


def respond(request: Request, reply: Reply) -> Response:
    request.scope["state"]["ctx"] = reply.ctx  # the middleware's: logged already, headers
    if isinstance(reply.body, bytes):
        return Response(reply.body, reply.status, headers=reply.headers, media_type=reply.media_type)
    return PipelineStream(reply.body, reply.status, headers=reply.headers, media_type=reply.media_type)


def lifecycle(request: Request) -> Lifecycle:
    gw: Gateway = request.app.state.gateway
    return gw.lifecycle


async def handle(request: Request, protocol: str) -> Response:
    return respond(request, await lifecycle(request).chat(incoming(request), protocol))


async def gemini(request: Request, model_action: str) -> Response:
    return respond(request, await lifecycle(request).gemini(incoming(request), model_action))


async def list_models(request: Request, protocol: str | None = None) -> Response:
    inc = incoming(request)
    return respond(request, await lifecycle(request).list_models(inc, protocol or models_protocol(inc)))


async def get_model(request: Request, model: str, protocol: str | None = None) -> Response:
    inc = incoming(request)
    return respond(request, await lifecycle(request).get_model(inc, protocol or models_protocol(inc), model))


async def count_tokens(request: Request, protocol: str, *args: Any) -> Response:
    return respond(request, await lifecycle(request).count_tokens(incoming(request), protocol, *args))


async def usage(request: Request, what: str = "usage") -> Response:
    return respond(request, await lifecycle(request).usage(incoming(request), what))


async def images(request: Request, operation: str) -> Response:
    return respond(request, await lifecycle(request).images(incoming(request), operation))


async def embeddings(request: Request) -> Response:
    return respond(request, await lifecycle(request).embed(incoming(request), "openai"))


async def stored_response(request: Request, action: str, response_id: str) -> Response:
    return respond(request, await lifecycle(request).stored_response(incoming(request), action, response_id))
