"""Request ids, error rendering in the client's protocol, and the last line of defence against a 500 page."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pisces.errors import PiscesError
from pisces.pipeline.context import RequestContext, request_id_from
from pisces.pipeline.lifecycle import JSON, json_bytes
from pisces.pipeline.logs import logger, note_lambda_context, record_request
from pisces.protocols import CODECS
from pisces_gateway.chat import answer, header_map, path_of
from pisces_gateway.routes import Doors

__all__ = ["JSON", "RequestIdMiddleware", "context_of", "error_response", "header_map", "json_bytes", "json_response"]


def protocol_for_path(path: str) -> str:
    """The protocol whose error shape a request gets before its door has said (unrouted paths too)."""
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/v1beta/") or path == "/v1beta" or (path.startswith("/v1/models/") and ":" in path):
        return "gemini"
    if not (path.startswith("/v1/") or path.startswith("/v1beta/") or path in ("/v1", "/v1beta")):
        return "pisces"  # the pages, /healthz, /api/*, /favicon.ico, unknown paths: no client protocol's door
    return "openai"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json_bytes(body), status_code=status, media_type=JSON, headers=headers)


def context_of(request: Request, protocol: str | None = None) -> RequestContext:
    """The request's context, made on first use (routes that are no protocol door say ``protocol``)."""
    state = request.scope["state"]  # the dict Starlette's ``request.state`` wraps (the middleware made it)
    ctx = state.get("ctx")
    if ctx is None:
        ctx = RequestContext(
            request_id=state["request_id"],
            protocol=protocol or protocol_for_path(path_of(request.scope)),
            path=path_of(request.scope),
        )
        note_lambda_context(ctx, state.get("headers") or request.headers)
        state["ctx"] = ctx
    return ctx


def error_response(request: Request, err: PiscesError) -> Response:
    ctx = context_of(request)
    ctx.error = err.code
    body = CODECS[ctx.protocol if ctx.protocol in CODECS else "openai"].render_error(err, ctx.pisces())
    return json_response(body, err.status, err.headers)


class RequestIdMiddleware:
    """Gives every request an id (echoing a valid X-Request-Id) and every response the header.

    It serves the protocol doors itself: a request whose method and path are a door's in ``doors``
    (:class:`pisces_gateway.routes.Doors`) goes to the door from its scope, and the door's reply out as
    Starlette's response would send it; every other request goes down to the router.

    The protocol doors log themselves (:mod:`pisces.pipeline.lifecycle`); for every other response
    (docs, spec, a 404) the log line is written here just before the response's final body message,
    never after it: Lambda freezes the container when the response ends.

    A HEAD request's response goes without its body (the headers are the GET's).

    It is the app's one error boundary (:mod:`pisces_gateway.routes`): a :class:`PiscesError` becomes
    its own error, the router's 404 and 405 the protocol's ``not_found`` and ``method_not_allowed``, and
    any other exception the protocol's 500 ``internal_error`` (logged with its trace, never sent to the
    client), when the response has not started yet. A client that hung up
    before its body was read (Starlette's ``ClientDisconnect``) is no fault: one quiet log line, status
    499, ``error: client_closed`` (the doors say the same from :func:`pisces.pipeline.body.read_json`).
    """

    def __init__(self, app: ASGIApp, doors: Doors | None = None) -> None:
        self.app = app
        self.doors = doors or Doors()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = header_map(scope)
        rid = request_id_from(headers.get("x-request-id"))
        state = scope.setdefault("state", {})
        state["request_id"], state["headers"] = rid, headers
        status = 500
        started = False
        head = scope.get("method") == "HEAD"

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if head and message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}  # HEAD: the GET's headers (Content-Length too), no body
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = stamp(message.get("headers", ()), rid, scope["state"].get("ctx"))
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                record_request(context_of(Request(scope)), status)  # before the last byte
            await send(message)

        found = None if head or scope.get("root_path") else self.doors.find(scope["method"], scope["path"])
        try:
            if found is None:
                await self.app(scope, receive, send_with_id)
            else:  # a protocol door, served from the scope (pisces_gateway.routes)
                door, params = found
                response = await answer(door, scope, receive, params)
                if type(response) is Response:  # complete: sent as it sends itself, stamped, without a wrapper
                    started, status = True, response.status_code  # (a pipeline's reply has the context's headers)
                    message = {"type": "http.response.start", "status": status,
                               "headers": stamp(response.raw_headers, rid, None)}  # fmt: skip
                    record_request(state["ctx"], status)  # before the last byte (the door has: then nothing)
                    await send(message)
                    await send({"type": "http.response.body", "body": response.body, "more_body": False})
                else:
                    await response(scope, receive, send_with_id)
        except ClientDisconnect:  # the client hung up while its body was read: no one to answer, no fault
            ctx = context_of(Request(scope))
            ctx.error = ctx.error or "client_closed"
            record_request(ctx, status if started else 499)
        except Exception as exc:
            request = Request(scope)
            err = said(request, exc)
            if err is None or started:
                logger.exception("unhandled error", extra={"request_id": rid, "path": scope.get("path")})
            if started:  # the response had started: nothing more can be said to the client
                record_request(context_of(request), status)
                raise
            err = err or PiscesError("internal_error", "The gateway failed to process the request. Quote the "
                                     "request id.")  # fmt: skip
            await error_response(request, err)(scope, receive, send_with_id)


def stamp(raw: list[tuple[bytes, bytes]], rid: str, ctx: RequestContext | None) -> list[tuple[bytes, bytes]]:
    """A response's raw headers with its request id (in place of any) and each of the context's headers
    (rate limits, the replay marker) that it does not already carry: ``MutableHeaders``' ``[]=`` and
    ``setdefault``, without making one (the same headers, the request id's place aside)."""
    out = [h for h in raw if h[0] != b"x-request-id"]
    out.append((b"x-request-id", rid.encode("latin-1")))
    more = ctx.headers if ctx is not None else None
    if more:
        names = {name for name, _ in out}
        for name, value in more.items():
            key = name.lower().encode("latin-1")
            if key not in names:
                names.add(key)
                out.append((key, value.encode("latin-1")))
    return out


def said(request: Request, exc: Exception) -> PiscesError | None:
    """The error an exception means to the client: its own, or the router's 404 and 405; None for a fault."""
    if isinstance(exc, PiscesError):
        return exc
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        return PiscesError("method_not_allowed", f"{request.method} is not allowed on {path_of(request.scope)}.")
    if isinstance(exc, HTTPException) and exc.status_code == 404:
        return PiscesError("not_found", f"Unknown request URL: {request.method} {path_of(request.scope)}.")
    return None
