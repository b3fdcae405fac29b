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

Endpoint = Callable[..., Awaitable[Response]]


class DoorRoute(Route):
    """A route with FastAPI's ``description`` and ``openapi_extra`` (the ``x-pisces`` metadata)."""

    def __init__(self, path: str, endpoint: Endpoint, methods: list[str], name: str | None, description: str,
                 openapi_extra: dict[str, Any] | None) -> None:  # fmt: skip
        handler = _by_name(endpoint)
        super().__init__(path, handler, methods=methods, name=name or endpoint.__name__)
        self.app = _responder(handler)  # its errors reach the middleware as they are
        self.description = description
        self.openapi_extra = openapi_extra


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


class GatewayApp(Starlette):
    def _route(self, methods: list[str], path: str, description: str = "", openapi_extra: dict[str, Any] | None = None,
               name: str | None = None, **docs_only: Any) -> Callable[[Endpoint], Endpoint]:  # fmt: skip
        # FastAPI's arguments that only shape its OpenAPI document are accepted and have no effect here
        # (the endpoints return their own Response); any other would change behaviour: refused.
        unknown = set(docs_only) - {"response_class", "include_in_schema", "summary", "tags"}
        if unknown:
            raise TypeError(f"GatewayApp routes do not take {sorted(unknown)} (no FastAPI request models here)")

        def add(fn: Endpoint) -> Endpoint:
            self.router.routes.append(DoorRoute(path, fn, methods, name, description, openapi_extra))
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
