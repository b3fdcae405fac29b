"""Starlette with FastAPI's spelling of routes: the gateway's app without FastAPI's import.

The gateway uses none of FastAPI's request models, dependency injection or OpenAPI (every door reads
its own body through the pipeline), and FastAPI's import is most of a cold start (pydantic's v1
compatibility models, its routing and params). Starlette, FastAPI's own foundation, serves the same
routes: ``GatewayApp.get/post/delete`` take FastAPI's ``description``, ``openapi_extra`` and
``name`` and keep them on the route (``route_table`` reads them), and call the endpoint with the
request and its path parameters by name, as FastAPI would.

The app's one error boundary is its :class:`~pisces_gateway.middleware.RequestIdMiddleware`, which
renders every exception in the client's protocol: Starlette's own ``ServerErrorMiddleware`` and
``ExceptionMiddleware``, and the exception wrapper around each route, would only pass a request's
messages through three more layers to reach it (bench/RESULTS.md part 6).

The protocol doors (``GatewayApp.door``) are the pipeline's: ``(lifecycle, incoming, **path params) ->
Reply``. Each is a route like any other (the spec's route table, the template's routes, HEAD on a GET),
and is also kept in :class:`Doors`, by its method and path, where the middleware finds it and serves it
from the request's scope, without the router, Starlette's request objects and the layers of awaits between
them; a complete reply's ``Response`` is sent as it sends itself, without a wrapped send (bench/RESULTS.md,
performance part 10). A test holds the two ways to one answer.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pisces.pipeline.lifecycle import Reply
from pisces_gateway.chat import door_endpoint

Endpoint = Callable[..., Awaitable[Response]]
Door = Callable[..., Awaitable[Reply]]  # (lifecycle, incoming, **path parameters) -> the pipeline's reply


class DoorRoute(Route):
    """A route with FastAPI's ``description`` and ``openapi_extra`` (the ``x-pisces`` metadata), and the
    protocol door it calls, when it is one."""

    def __init__(self, path: str, endpoint: Endpoint, methods: list[str], name: str | None, description: str,
                 openapi_extra: dict[str, Any] | None, door: Door | None = None) -> None:  # fmt: skip
        handler = _by_name(endpoint)
        super().__init__(path, handler, methods=methods, name=name or endpoint.__name__)
        self.app = _responder(handler)  # its errors reach the middleware as they are
        self.description = description
        self.openapi_extra = openapi_extra
        self.door = door


def _responder(endpoint: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    """Starlette's ``request_response`` without its exception wrapper (the middleware is the boundary)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await endpoint(Request(scope, receive, send))
        await response(scope, receive, send)

    return app


def _by_name(fn: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """``fn(request=..., <path param>=...)`` as a Starlette endpoint (its parameters looked at once)."""
    names = tuple(inspect.signature(fn).parameters)
    if names == ("request",):
        return fn
    if not names:

        async def bare(request: Request) -> Response:
            return await fn()

        return bare

    async def endpoint(request: Request) -> Response:
        params = request.path_params
        return await fn(**{n: request if n == "request" else params[n] for n in names})

    return endpoint


class Doors:
    """The doors by method and path, as the router would find them: an exact path, or a path ending in
    one ``{name:path}`` parameter (its prefix, then anything: Gemini's ``models/{model}:action``)."""

    def __init__(self) -> None:
        self.exact: dict[tuple[str, str], Door] = {}
        self.prefixed: list[tuple[str, str, str, Door]] = []  # (method, prefix, parameter, door)

    def add(self, method: str, path: str, door: Door) -> None:
        head, brace, tail = path.partition("{")
        if not brace:
            self.exact[(method, path)] = door
        elif tail.endswith(":path}") and "{" not in tail and "/" not in tail:
            self.prefixed.append((method, head, tail[: -len(":path}")], door))
        # any other shape of path (a parameter inside it) is found by the router alone

    def find(self, method: str, path: str) -> tuple[Door, dict[str, str]] | None:
        door = self.exact.get((method, path))
        if door is not None:
            return door, {}
        for m, prefix, name, door in self.prefixed:
            if m == method and path.startswith(prefix):
                return door, {name: path[len(prefix) :]}
        return None


class GatewayApp(Starlette):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.doors = Doors()

    def door(self, method: str, path: str, **kw: Any) -> Callable[[Door], Door]:
        """A protocol door: a route, and an entry of :attr:`doors` (see the module's docstring)."""

        name = kw.pop("name", None)

        def add(fn: Door) -> Door:
            self._route([method], path, name=name or fn.__name__, door=fn, **kw)(door_endpoint(fn))
            self.doors.add(method, path, fn)
            return fn

        return add

    def _route(self, methods: list[str], path: str, description: str = "", openapi_extra: dict[str, Any] | None = None,
               name: str | None = None, door: Door | None = None,
               **docs_only: Any) -> Callable[[Endpoint], Endpoint]:  # fmt: skip
        # FastAPI's arguments that only shape its OpenAPI document are accepted and have no effect here
        # (the endpoints return their own Response); any other would change behaviour: refused.
        unknown = set(docs_only) - {"response_class", "include_in_schema", "summary", "tags"}
        if unknown:
            raise TypeError(f"GatewayApp routes do not take {sorted(unknown)} (no FastAPI request models here)")

        def add(fn: Endpoint) -> Endpoint:
            self.router.routes.append(DoorRoute(path, fn, methods, name, description, openapi_extra, door))
            return fn

        return add

    def get(self, path: str, **kw: Any) -> Callable[[Endpoint], Endpoint]:
        return self._route(["GET"], path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Endpoint], Endpoint]:
        return self._route(["POST"], path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Endpoint], Endpoint]:
        return self._route(["DELETE"], path, **kw)

    def build_middleware_stack(self) -> ASGIApp:
        """The app's own middleware straight over its router (see the module's docstring)."""
        app: ASGIApp = self.router
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app
