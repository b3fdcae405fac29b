"""The one road every client door takes: authenticate, decode, route, call, encode.

A door is a route that names its protocol; everything protocol-specific is in that protocol's
codec (``pisces.protocols``), everything else is here and in ``pisces.pipeline``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

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
from pisces.pipeline.auth import extract_key
from pisces.pipeline.billing import Bill, cost_of
from pisces.pipeline.context import RequestContext
from pisces.pipeline.gateway import Gateway
from pisces.pipeline.idempotency import HEADER as IDEMPOTENCY_HEADER
from pisces.pipeline.idempotency import REPLAYED, Claim, Stored
from pisces.pipeline.logs import logger
from pisces.protocols import CODECS
from pisces.store.keys import KeyRecord
from pisces.store.usage import UsageRangeError, usage_report
from pisces.tokens import estimate_request, estimate_text
from pisces.upstreams.base import FORWARDED
from pisces_gateway.middleware import JSON, json_bytes, json_response

SSE_MEDIA = "text/event-stream; charset=utf-8"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _start(request: Request, protocol: str) -> tuple[Gateway, RequestContext]:
    ctx = RequestContext(request_id=request.state.request_id, protocol=protocol)
    request.state.ctx = ctx
    return request.app.state.gateway, ctx


async def _authenticate(request: Request, gw: Gateway, ctx: RequestContext) -> KeyRecord:
    ctx.key = await gw.auth.authenticate(extract_key(request.headers, request.query_params))
    return ctx.key


async def read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PiscesError("request_too_large", f"The request body is larger than {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PiscesError("request_too_large", f"The request body is larger than {limit} bytes.")
    if not body.strip():
        raise PiscesError("invalid_json", "The request body is empty; a JSON object was expected.")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PiscesError(
            "invalid_json", f"We could not parse the JSON body of your request ({e}). Send valid JSON."
        ) from None


async def handle(
    request: Request, protocol: str, *url_args: Any, stream_media: str = SSE_MEDIA, **encoder_options: Any
) -> Response:
    """A protocol door: authenticate, read and decode the body, then :func:`serve`. ``url_args`` are
    what the URL says instead of the body (Gemini's model and stream flag); ``stream_media`` and
    ``encoder_options`` say how a stream is framed (Gemini's JSON array)."""
    gw, ctx = _start(request, protocol)
    codec = CODECS[protocol]
    key = await _authenticate(request, gw, ctx)
    body = await read_json(request, gw.config.limits.max_body_bytes)
    req: ChatRequest = codec.decode_request(body, *url_args)
    kept = {name: request.headers[name] for name in getattr(codec, "FORWARDED_HEADERS", ()) if name in request.headers}
    if kept:
        req.provider_options.setdefault(codec.NAME, {})[FORWARDED] = kept
    return await serve(request, gw, ctx, codec, req, key, body, stream_media, **encoder_options)


async def serve(
    request: Request,
    gw: Gateway,
    ctx: RequestContext,
    codec: Any,
    req: ChatRequest,
    key: KeyRecord,
    body: Any,
    stream_media: str = SSE_MEDIA,
    **encoder_options: Any,
) -> Response:
    """The pipeline after decoding: route, idempotency, admission, upstream, respond, settle.

    A stream is sent as ``stream_media``; ``encoder_options`` go to the codec's StreamEncoder
    (Gemini's ``sse=False`` streams a JSON array)."""
    ctx.stream = req.stream
    candidates = gw.router.resolve(ctx, req.model, key)
    claim = await gw.idempotency.begin(request.headers.get(IDEMPOTENCY_HEADER), key.key_id, request.url.path, body)
    if isinstance(claim, Stored):
        ctx.headers[REPLAYED] = "true"
        if claim.media_type.startswith("text/event-stream"):
            return StreamingResponse(claim.replay(), claim.status, media_type=claim.media_type, headers=SSE_HEADERS)
        return Response(b"".join(claim.chunks), claim.status, media_type=claim.media_type)
    try:
        bill = await gw.billing.admit(ctx, req, key)
    except BaseException:
        if claim:
            await gw.idempotency.abort(claim)
        raise
    try:
        if req.stream:
            first, events = await gw.router.open_stream(ctx, req, candidates)
        else:
            resp = await gw.router.complete(ctx, req, candidates)
    except BaseException as exc:
        err = exc if isinstance(exc, PiscesError) else None
        ctx.error = err.code if err else "internal_error"
        gw.billing.settle_later(ctx, req, bill, err.status if err else 500)
        if claim:
            await gw.idempotency.abort(claim)
        raise
    if req.stream:
        ctx.first_byte = time.perf_counter()
        encoder = codec.StreamEncoder(ctx.pisces(), include_usage=req.stream_usage, **encoder_options)
        return StreamingResponse(
            _stream(gw, ctx, encoder, req, bill, claim, first, events, stream_media),
            media_type=stream_media,
            headers=SSE_HEADERS,
        )
    ctx.usage, ctx.finish = resp.usage, resp.finish_reason
    ctx.cost = cost_of(gw.config.price(ctx.model or req.model), resp.usage)
    payload = json_bytes(codec.encode_response(resp, ctx.pisces()))
    if claim:
        await gw.idempotency.complete(claim, Stored(200, JSON, [payload]))
    gw.billing.settle_later(ctx, req, bill, 200)
    return Response(payload, media_type=JSON)


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


async def _stream(
    gw: Gateway,
    ctx: RequestContext,
    encoder: Any,
    req: ChatRequest,
    bill: Bill,
    claim: Claim | None,
    first: StreamEvent,
    events: AsyncGenerator[StreamEvent, None],
    media_type: str,
) -> AsyncIterator[bytes]:
    beat = getattr(encoder, "heartbeat", None)
    sent: list[bytes] = []  # kept only for an Idempotency-Key's replay
    waiting: asyncio.Future[StreamEvent | None] | None = None
    try:
        ev: StreamEvent | None = first
        while ev is not None:
            _note(ctx, ev)
            chunk = encoder.encode(ev)
            if chunk:
                if claim:
                    sent.append(chunk)
                yield chunk
            if beat is None:
                ev = await anext(events, None)
                continue
            waiting = asyncio.ensure_future(anext(events, None))
            while not (await asyncio.wait({waiting}, timeout=gw.config.limits.heartbeat_seconds))[0]:
                yield beat()  # the upstream is silent: keep the connection visibly alive
            ev, waiting = waiting.result(), None
        if ctx.usage is not None and ctx.finish is not None:
            ctx.cost = encoder.pisces["cost"] = cost_of(gw.config.price(ctx.model or req.model), ctx.usage)
        tail = encoder.close()
        if claim:
            sent.append(tail)
        yield tail
    except (asyncio.CancelledError, GeneratorExit):
        ctx.error = ctx.error or "client_cut"
        raise
    except Exception as exc:  # a fault of ours mid-stream: tell the client in-protocol, then stop
        if isinstance(exc, PiscesError):
            err = ErrorEvent(code=exc.code, message=exc.message, status=exc.status)
        else:
            logger.exception("stream failed", extra={"request_id": ctx.request_id})
            err = ErrorEvent(code="internal_error", message="The gateway failed mid-stream.", status=500)
        ctx.error = err.code
        yield encoder.encode(err)
        yield encoder.close()
    finally:
        with anyio.CancelScope(shield=True):
            if waiting is not None:
                waiting.cancel()
                await asyncio.gather(waiting, return_exceptions=True)
            await events.aclose()
            # the status is 200 once started: a stream that failed or was cut says so in `error`
            if ctx.error is None and ctx.finish is None:
                ctx.error = "stream_cut"
            gw.billing.settle_later(ctx, req, bill, 200)
            if claim and ctx.error is None:
                await gw.idempotency.complete(claim, Stored(200, media_type, sent))
            elif claim:
                await gw.idempotency.abort(claim)


def models_protocol(request: Request) -> str:
    """GET /v1/models answers in the Anthropic shape when the request says ``anthropic-version``, in
    Gemini's when it comes from a Gemini client (its key header, ``?key=``, or google-genai's
    ``x-goog-api-client``), else in OpenAI's."""
    if "anthropic-version" in request.headers:
        return "anthropic"
    h = request.headers
    if "x-goog-api-key" in h or "x-goog-api-client" in h or "key" in request.query_params:
        return "gemini"
    return "openai"


GEMINI_STREAM = {"generateContent": False, "streamGenerateContent": True}


async def gemini(request: Request, model_action: str) -> Response:
    """``models/{model}:generateContent | :streamGenerateContent | :countTokens``. A stream is SSE
    with ``?alt=sse`` (what the SDKs ask for), else one JSON array streamed element by element."""
    model, _, action = model_action.rpartition(":")
    if not model or (action not in GEMINI_STREAM and action != "countTokens"):
        raise PiscesError("not_found", f"Unknown request URL: POST {request.url.path}. Use models/{{model}}:"
                          "generateContent, :streamGenerateContent or :countTokens.")  # fmt: skip
    if action == "countTokens":
        return await count_tokens(request, "gemini", model)
    sse = request.query_params.get("alt") == "sse"
    media = SSE_MEDIA if sse else JSON
    return await handle(request, "gemini", model, GEMINI_STREAM[action], stream_media=media, sse=sse)


async def list_models(request: Request, protocol: str) -> Response:
    gw, ctx = _start(request, protocol)
    codec = CODECS[protocol]
    key = await _authenticate(request, gw, ctx)
    data = [codec.encode_model(m, gw.model_owner(m)) for m in gw.config.available_models() if key.allows(m)]
    return json_response(codec.encode_model_list(data, ctx.pisces()))


async def get_model(request: Request, protocol: str, model: str) -> Response:
    gw, ctx = _start(request, protocol)
    key = await _authenticate(request, gw, ctx)
    canonical = gw.config.resolve(model)
    if canonical not in gw.config.available_models() or not key.allows(canonical, model):
        raise PiscesError("model_not_found", f"The model '{model}' does not exist or you do not have access to it.",
                          param="model")  # fmt: skip
    body = CODECS[protocol].encode_model(canonical, gw.model_owner(canonical))
    return json_response({**body, "pisces": ctx.pisces()})


async def usage(request: Request) -> Response:
    """The key's own balance and spend by day and model (``?from=&to=``, UTC days, both inclusive)."""
    gw, ctx = _start(request, "openai")
    key = await _authenticate(request, gw, ctx)
    fresh = await asyncio.to_thread(gw.keys.get_by_hash, key.key_hash)  # the balance now, not as cached
    q = request.query_params
    try:
        report = await asyncio.to_thread(usage_report, gw.usage, fresh or key, q.get("from"), q.get("to"))
    except UsageRangeError as e:
        raise PiscesError("invalid_request", str(e), param=e.param) from None
    return json_response({**report, "pisces": ctx.pisces()})


async def count_tokens(request: Request, protocol: str, model: str | None = None) -> Response:
    """An offline estimate of a request's input tokens (Anthropic's count_tokens, Gemini's countTokens,
    whose ``model`` is in the URL); nothing is charged."""
    gw, ctx = _start(request, protocol)
    codec = CODECS[protocol]
    key = await _authenticate(request, gw, ctx)
    req: ChatRequest = codec.decode_count_tokens(await read_json(request, gw.config.limits.max_body_bytes))
    if model is not None:
        req.model = model
    gw.router.resolve(ctx, req.model, key)  # an unknown or forbidden model is the same 404/403 as for a request
    return json_response(codec.encode_count(estimate_request(req), ctx.pisces()))
