"""The gateway function: a Starlette app served by uvicorn (behind the Lambda Web Adapter in AWS).

Routes carry ``openapi_extra={"x-pisces": {...}}`` (protocol, streaming); ``/api/public/spec`` is
built from the route table itself.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from pisces.config import Config
from pisces.config_source import ConfigSource
from pisces.pipeline.gateway import Gateway
from pisces.pipeline.lifecycle import Incoming, Lifecycle, Reply, models_protocol
from pisces.spec import RouteInfo, build_spec
from pisces.store.keys import KeyStore
from pisces_gateway.middleware import RequestIdMiddleware, context_of, json_response
from pisces_gateway.routes import DoorRoute, GatewayApp
from pisces_gateway.static import CONSOLE_HTML, DOCS_HTML, FAVICON


def _meta(protocol: str, streaming: bool = False, auth: bool = True) -> dict[str, Any]:
    return {"x-pisces": {"protocol": protocol, "streaming": streaming, "auth": auth}}


def route_table(app: GatewayApp) -> list[RouteInfo]:
    out = []
    for r in app.routes:
        if not isinstance(r, DoorRoute) or not r.openapi_extra or "x-pisces" not in r.openapi_extra:
            continue
        meta = r.openapi_extra["x-pisces"]
        for method in sorted(r.methods - {"HEAD", "OPTIONS"}):
            out.append(
                RouteInfo(meta["protocol"], method, r.path, meta["streaming"], r.description or "", meta["auth"])
            )
    return out


def _gemini_routes(app: GatewayApp, version: str) -> None:
    """Gemini's doors under one API version (google-genai uses v1 by default, the Gemini CLI v1beta)."""

    @app.door(
        "POST",
        f"/{version}/models/{{model:path}}",  # {model} is "name:action"; API Gateway allows one name per level
        description="Gemini models/{model}:generateContent, :streamGenerateContent (?alt=sse: SSE, else a "
        "streamed JSON array), :countTokens, :embedContent and :batchEmbedContents",
        openapi_extra=_meta("gemini", streaming=True),
        name=f"gemini_{version}",
    )
    async def generate(lc: Lifecycle, inc: Incoming, model: str) -> Reply:
        return await lc.gemini(inc, model)

    if version == "v1":
        return  # GET /v1/models and /v1/models/{model} are shared: the Gemini shape for Gemini clients

    @app.door("GET", f"/{version}/models", description="The models this key may use, in Gemini's shape",
              openapi_extra=_meta("gemini"), name=f"gemini_models_{version}")  # fmt: skip
    async def list_models(lc: Lifecycle, inc: Incoming) -> Reply:
        return await lc.list_models(inc, "gemini")

    @app.door("GET", f"/{version}/models/{{model:path}}", description="One model, if this key may use it "
              "(Gemini's shape)", openapi_extra=_meta("gemini"), name=f"gemini_model_{version}")  # fmt: skip
    async def get_model(lc: Lifecycle, inc: Incoming, model: str) -> Reply:
        return await lc.get_model(inc, "gemini", model)


def create_app(config: Config | None = None, key_store: KeyStore | None = None) -> GatewayApp:
    """The gateway app. Without arguments: ``PISCES_CONFIG`` (or ./pisces.yaml) and the DynamoDB keys table."""

    @asynccontextmanager
    async def lifespan(app: GatewayApp) -> AsyncIterator[None]:
        freeze_heap()
        yield
        await app.state.gateway.aclose()

    app = GatewayApp(lifespan=lifespan)
    source = None if config is not None else ConfigSource()
    app.state.gateway = Gateway(config or source.load(), key_store)  # type: ignore[union-attr]
    if source is not None and source.parameter:
        app.state.gateway.source = source  # pisces.yaml from SSM: looked at again as its cache expires
    # the one error boundary (every exception in the client's protocol), which serves the doors itself
    app.add_middleware(RequestIdMiddleware, doors=app.doors)

    @app.door(
        "POST",
        "/v1/chat/completions",
        description="OpenAI Chat Completions: messages, tools, streaming (SSE with stream: true)",
        openapi_extra=_meta("openai", streaming=True),
    )
    async def chat_completions(lc: Lifecycle, inc: Incoming) -> Reply:
        return await lc.chat(inc, "openai")

    @app.door(
        "POST",
        "/v1/embeddings",
        description="OpenAI embeddings: input a string, strings or token arrays; dimensions; encoding_format "
        "float or base64; charged per input token",
        openapi_extra=_meta("openai"),
    )
    async def embeddings(lc: Lifecycle, inc: Incoming) -> Reply:
        return await lc.embed(inc, "openai")

    @app.door(
        "POST",
        "/v1/responses",
        description="OpenAI Responses: input items, function tools, text.format, reasoning, store and "
        "previous_response_id, streaming (SSE with stream: true)",
        openapi_extra=_meta("openai-responses", streaming=True),
    )
    async def responses(lc: Lifecycle, inc: Incoming) -> Reply:
        return await lc.chat(inc, "openai-responses")

    @app.door("GET", "/v1/responses/{response_id}", description="A stored response of this key (OpenAI "
              "Responses)", openapi_extra=_meta("openai-responses"))  # fmt: skip
    async def get_response(lc: Lifecycle, inc: Incoming, response_id: str) -> Reply:
        return await lc.stored_response(inc, "retrieve", response_id)

    @app.door("DELETE", "/v1/responses/{response_id}", description="Delete a stored response of this key",
              openapi_extra=_meta("openai-responses"))  # fmt: skip
    async def delete_response(lc: Lifecycle, inc: Incoming, response_id: str) -> Reply:
        return await lc.stored_response(inc, "delete", response_id)

    @app.door("POST", "/v1/responses/{response_id}/cancel", description="Cancel a background response (Pisces "
              "runs none: a stored response answers 400)", openapi_extra=_meta("openai-responses"))  # fmt: skip
    async def cancel_response(lc: Lifecycle, inc: Incoming, response_id: str) -> Reply:
        return await lc.stored_response(inc, "cancel", response_id)

    @app.door(
        "POST",
        "/v1/messages",
        description="Anthropic Messages: content blocks, tools, thinking, streaming (SSE with stream: true)",
        openapi_extra=_meta("anthropic", streaming=True),
    )
    async def messages(lc: Lifecycle, inc: Incoming) -> Reply:
        return await lc.chat(inc, "anthropic")

    @app.door(
        "POST",
        "/v1/messages/count_tokens",
        description="Anthropic token counting: an offline estimate of the request's input tokens",
        openapi_extra=_meta("anthropic"),
    )
    async def count_tokens(lc: Lifecycle, inc: Incoming) -> Reply:
        return await lc.count_tokens(inc, "anthropic")

    @app.door(
        "GET",
        "/v1/models",
        description="The models this key may use (Anthropic's shape with anthropic-version, Gemini's for Gemini "
        "clients, else OpenAI's)",
        openapi_extra=_meta("openai"),
    )
    async def list_models(lc: Lifecycle, inc: Incoming) -> Reply:
        return await lc.list_models(inc, models_protocol(inc))

    @app.door(
        "GET",
        "/v1/models/{model:path}",
        description="One model, if this key may use it (Anthropic's, Gemini's or OpenAI's shape, as for the list)",
        openapi_extra=_meta("openai"),
    )
    async def get_model(lc: Lifecycle, inc: Incoming, model: str) -> Reply:
        return await lc.get_model(inc, models_protocol(inc), model)

    for version in ("v1beta", "v1"):
        _gemini_routes(app, version)

    @app.door(
        "POST",
        "/v1/images/generations",
        description="OpenAI image generation: prompt, model, n, size, quality...; response_format url (a presigned "
        "S3 URL) or b64_json",
        openapi_extra=_meta("openai"),
    )
    async def image_generations(lc: Lifecycle, inc: Incoming) -> Reply:
        return await lc.images(inc, "generate")

    @app.door(
        "POST",
        "/v1/images/edits",
        description="OpenAI image edits (multipart/form-data): one or several image files, an optional mask, prompt, "
        "n, size...; url or b64_json",
        openapi_extra=_meta("openai"),
    )
    async def image_edits(lc: Lifecycle, inc: Incoming) -> Reply:
        return await lc.images(inc, "edit")

    @app.door(
        "GET",
        "/v1/usage",
        description="This key's balance and its spend by day and model (?from=YYYY-MM-DD&to=YYYY-MM-DD, UTC)",
        openapi_extra=_meta("openai"),
    )
    async def usage(lc: Lifecycle, inc: Incoming) -> Reply:
        return await lc.usage(inc)

    @app.door(
        "GET",
        "/v1/usage/requests",
        description="This key's own recent requests, newest first (?limit=1..100&after=<next_cursor>), or one "
        "looked up by ?request_id= (the X-Request-Id of a response or an error)",
        openapi_extra=_meta("openai"),
    )
    async def usage_requests(lc: Lifecycle, inc: Incoming) -> Reply:
        return await lc.usage(inc, "requests")

    @app.get(
        "/console",
        description="The key holder's console: balance, budget, spend by day and model, rate limits, recent requests",
        openapi_extra=_meta("pisces", auth=False),
    )
    async def console() -> HTMLResponse:
        return HTMLResponse(CONSOLE_HTML)

    @app.get("/favicon.ico", description="The icon", openapi_extra=_meta("pisces", auth=False))
    async def favicon() -> Response:
        return Response(FAVICON, media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"})

    @app.get(
        "/api/public/spec",
        description="This description: routes, error table, auth styles, models",
        openapi_extra=_meta("pisces", auth=False),
    )
    async def spec(request: Request) -> Response:
        gw: Gateway = request.app.state.gateway
        body = build_spec(route_table(request.app), gw.config.available_models(), gw.config)
        return json_response({**body, "pisces": context_of(request, "pisces").pisces()})

    @app.get("/", description="The docs page (renders /api/public/spec)", openapi_extra=_meta("pisces", auth=False))
    async def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_HTML)

    @app.get(
        "/healthz",
        description="Liveness (the Lambda Web Adapter's readiness check)",
        openapi_extra=_meta("pisces", auth=False),
    )
    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok", "pisces": context_of(request, "pisces").pisces()})

    @app.get(
        "/api/hello",
        description="Connectivity check (Claude Code probes it with HEAD; `claude doctor` wants a 200)",
        openapi_extra=_meta("pisces", auth=False),
    )
    async def hello(request: Request) -> Response:
        return json_response({"status": "ok", "pisces": context_of(request, "pisces").pisces()})

    _head_like_get(app)
    return app


# The collector's thresholds while serving: the youngest generation collected every 10,000 net
# allocations (Python's default is 700: a request allocates a few thousand objects, so it ran several
# times a request); the middle one every 20 of those, the oldest every 10 of the middle one's. 3-8% less
# CPU a request, memory flat over 60,000 requests (bench/RESULTS.md, performance part 6). A request now
# leaves no reference cycle (part 12; tests/contract/test_no_cyclic_garbage.py): its objects are freed as
# it ends, and serving leaves the collector next to nothing to do.
GC_THRESHOLDS = (10_000, 20, 10)


@functools.cache
def freeze_heap() -> None:
    """Once per process, as it starts serving: what is alive now (modules, the app, its config and
    clients: ~50,000 objects) lives as long as the process, so it leaves the cyclic collector's
    generations (``gc.freeze``). Without this each full collection walked all of it, every few
    hundred requests: 10% of a money-off request's CPU (bench/RESULTS.md, performance part 5). No
    ``gc.collect()`` first: it would cost the cold start tens of ms to free a few startup cycles.
    Then the collector runs at :data:`GC_THRESHOLDS`."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _head_like_get(app: GatewayApp) -> None:
    """HEAD on every GET route answers as GET does, without the body (the middleware drops it): Claude
    Code and load balancers probe with ``HEAD /``. Starlette's routes add it themselves (FastAPI's did not)."""
    for r in app.routes:
        if isinstance(r, DoorRoute) and r.methods and "GET" in r.methods:
            r.methods.add("HEAD")


def __getattr__(name: str) -> Any:
    # `uvicorn pisces_gateway.app:app` builds the app on first access, from the environment.
    if name == "app":
        globals()["app"] = value = create_app()
        return value
    raise AttributeError(name)
