"""Request ids, error rendering in the client's protocol, and the last line of defence against a 500 page."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pisces.errors import PiscesError
from pisces.pipeline.context import RequestContext, request_id_from
from pisces.pipeline.lifecycle import JSON, json_bytes
from pisces.pipeline.logs import logger, note_lambda_context, record_request
from pisces.protocols import CODECS

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


def path_of(scope: Scope) -> str:
    """The request's path as ``request.url.path`` says it, without building the URL (its host, its query)."""
    return scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")


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

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = header_map(scope)
        rid = request_id_from(headers.get("x-request-id"))
        state = scope.setdefault("state", {})
        state["request_id"], state["headers"] = rid, headers
        status = 500

        request = Request(scope)
        started = False
        head = scope.get("method") == "HEAD"

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if head and message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}  # HEAD: the GET's headers (Content-Length too), no body
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-Id"] = rid
                ctx = scope["state"].get("ctx")
                for name, value in ctx.headers.items() if ctx is not None else ():
                    headers.setdefault(name, value)
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                record_request(context_of(request), status)  # before the last byte
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:  # the client hung up while its body was read: no one to answer, no fault
            ctx = context_of(request)
            ctx.error = ctx.error or "client_closed"
            record_request(ctx, status if started else 499)
        except Exception as exc:
            err = said(request, exc)
            if err is None or started:
                logger.exception("unhandled error", extra={"request_id": rid, "path": scope.get("path")})
            if started:  # the response had started: nothing more can be said to the client
                record_request(context_of(request), status)
                raise
            err = err or PiscesError("internal_error", "The gateway failed to process the request. Quote the "
                                     "request id.")  # fmt: skip
            await error_response(request, err)(scope, receive, send_with_id)


def said(request: Request, exc: Exception) -> PiscesError | None:
    """The error an exception means to the client: its own, or the router's 404 and 405; None for a fault."""
    if isinstance(exc, PiscesError):
        return exc
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        return PiscesError("method_not_allowed", f"{request.method} is not allowed on {path_of(request.scope)}.")
    if isinstance(exc, HTTPException) and exc.status_code == 404:
        return PiscesError("not_found", f"Unknown request URL: {request.method} {path_of(request.scope)}.")
    return None
