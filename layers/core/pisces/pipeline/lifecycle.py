"""One request, end to end, framework-neutral: the road every door and every operation takes.

    authenticate → read and decode → route → idempotency → admit → call upstream → encode
      → settle → complete idempotency → log line and metrics → the last byte

An adapter (the gateway function's Starlette routes) turns its framework's request into an
:class:`Incoming` and sends the :class:`Reply` it gets back as it is: status, headers, media type and
body, bytes or an async iterator of bytes. Everything a request owes (the charge and its usage
record, the Idempotency-Key record, the log line, the metrics) is written **before** the reply's
last byte: a non-streamed reply is complete when it is returned, a stream does it all before it
yields its terminal event (``[DONE]``, ``message_stop``, Gemini's last chunk or the array's ``]``).
Lambda freezes the container the moment a response ends; nothing here runs after that.

Errors, of the client's making or ours, become replies in the client's protocol here, so they too
are logged before they are sent. Nothing in this module knows an HTTP framework.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from pisces.canonical import ChatRequest
from pisces.errors import PiscesError
from pisces.pipeline.auth import extract_key
from pisces.pipeline.billing import check_max_tokens, estimate_output
from pisces.pipeline.body import read_json
from pisces.pipeline.context import RequestContext
from pisces.pipeline.idempotency import HEADER as IDEMPOTENCY_HEADER
from pisces.pipeline.idempotency import REPLAYED, Stored
from pisces.pipeline.logs import logger, note_lambda_context, record_request
from pisces.pipeline.relay import relay
from pisces.protocols import CODECS
from pisces.store.keys import KeyRecord
from pisces.upstreams.base import FORWARDED

if TYPE_CHECKING:
    from pisces.pipeline.gateway import Gateway

JSON = "application/json"
SSE_MEDIA = "text/event-stream; charset=utf-8"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(slots=True)
class Incoming:
    """A request as any HTTP framework hands it over. ``headers`` looks names up case-insensitively
    (lower-case names are asked for); ``body`` is read at most once, as it arrives."""

    method: str
    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: AsyncIterable[bytes]
    request_id: str
    client_request_id: str | None = None  # the client's X-Request-Id, when ``request_id`` echoes it


@dataclass(slots=True)
class Reply:
    """What to send: a complete body (``bytes``), or a stream whose last chunk comes only after the
    request's debts are paid."""

    status: int
    media_type: str
    body: bytes | AsyncIterator[bytes]
    ctx: RequestContext
    headers: dict[str, str] = field(default_factory=dict)


def json_bytes(body: Any) -> bytes:
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate (from a client's \\ud800) cannot be UTF-8: escape it
        return json.dumps(body, separators=(",", ":")).encode()


def models_protocol(incoming: Incoming) -> str:
    """GET /v1/models answers in the Anthropic shape when the request says ``anthropic-version``, in
    Gemini's when it comes from a Gemini client (its key header, ``?key=``, or google-genai's
    ``x-goog-api-client``), else in OpenAI's."""
    h = incoming.headers
    if "anthropic-version" in h:
        return "anthropic"
    if "x-goog-api-key" in h or "x-goog-api-client" in h or "key" in incoming.query:
        return "gemini"
    return "openai"


GEMINI_STREAM = {"generateContent": False, "streamGenerateContent": True}

Work = Callable[[RequestContext], Awaitable[Reply]]


class Lifecycle:
    """The request pipeline over the gateway's long-lived state (:class:`Gateway`)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    # ------------------------------------------------------------------ the frame every request runs in

    def context(self, incoming: Incoming, protocol: str) -> RequestContext:
        ctx = RequestContext(request_id=incoming.request_id, protocol=protocol, path=incoming.path,
                             client_request_id=incoming.client_request_id)  # fmt: skip
        note_lambda_context(ctx, incoming.headers)
        return ctx

    async def run(self, incoming: Incoming, protocol: str, work: Work) -> Reply:
        """``work`` in the request's frame: its errors become protocol replies, and a complete reply
        is logged before it is returned (a stream logs itself before its terminal event)."""
        ctx = self.context(incoming, protocol)
        try:
            await self.gw.refresh_config()  # free while the configuration's cache is fresh
            reply = await work(ctx)
        except PiscesError as e:
            reply = self.error(ctx, e)
        except Exception:
            logger.exception("unhandled error", extra={"request_id": ctx.request_id, "path": ctx.path})
            reply = self.error(ctx, PiscesError("internal_error", "The gateway failed to process the request. "
                                                "Quote the request id."))  # fmt: skip
        if isinstance(reply.body, bytes):
            record_request(ctx, reply.status)
        return reply

    def error(self, ctx: RequestContext, err: PiscesError) -> Reply:
        ctx.error = err.code
        codec = CODECS.get(ctx.protocol) or CODECS["openai"]
        body = json_bytes(codec.render_error(err, ctx.pisces()))
        return Reply(err.status, JSON, body, ctx, {**ctx.headers, **err.headers})

    def reply(self, ctx: RequestContext, body: Any, status: int = 200) -> Reply:
        return Reply(status, JSON, json_bytes(body), ctx, dict(ctx.headers))

    async def authenticate(self, ctx: RequestContext, incoming: Incoming) -> KeyRecord:
        ctx.key = await self.gw.auth.authenticate(extract_key(incoming.headers, incoming.query))
        return ctx.key

    # ------------------------------------------------------------------ chat: every protocol's door

    async def chat(
        self, incoming: Incoming, protocol: str, *url_args: Any, stream_media: str = SSE_MEDIA, **encoder_options: Any
    ) -> Reply:
        """A protocol door. ``url_args`` are what the URL says instead of the body (Gemini's model and
        stream flag); ``stream_media`` and ``encoder_options`` how a stream is framed (Gemini's array)."""

        async def work(ctx: RequestContext) -> Reply:
            return await self._chat(ctx, incoming, protocol, url_args, stream_media, encoder_options)

        return await self.run(incoming, protocol, work)

    async def _chat(
        self,
        ctx: RequestContext,
        incoming: Incoming,
        protocol: str,
        url_args: tuple[Any, ...],
        stream_media: str,
        encoder_options: dict[str, Any],
    ) -> Reply:
        gw = self.gw
        codec = CODECS[protocol]
        key = await self.authenticate(ctx, incoming)
        body = await read_json(incoming.headers, incoming.body, gw.config.limits.max_body_bytes)
        req: ChatRequest = codec.decode_request(body, *url_args)
        kept = {n: incoming.headers[n] for n in getattr(codec, "FORWARDED_HEADERS", ()) if n in incoming.headers}
        if kept:
            req.provider_options.setdefault(codec.NAME, {})[FORWARDED] = kept
        ctx.stream = req.stream
        candidates = gw.router.resolve(ctx, req.model, key)
        check_max_tokens(gw.config, ctx.model or req.model, req)
        claim = await gw.idempotency.begin(incoming.headers.get(IDEMPOTENCY_HEADER), key.key_id, incoming.path, body)
        if isinstance(claim, Stored):
            ctx.headers[REPLAYED] = "true"
            return self._replay(ctx, claim)
        try:
            bill = await gw.billing.admit(ctx, req, key)
        except BaseException:
            if claim:
                with anyio.CancelScope(shield=True):
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
            with anyio.CancelScope(shield=True):  # a client that hung up is settled all the same
                await gw.billing.settle(ctx, req, bill, err.status if err else 500)
                if claim:
                    await gw.idempotency.abort(claim)
            raise
        if req.stream:
            ctx.first_byte = time.perf_counter()
            encoder = codec.StreamEncoder(ctx.pisces(), include_usage=req.stream_usage, **encoder_options)
            body_iter = relay(gw, ctx, encoder, req, bill, claim, first, events, stream_media)
            return Reply(200, stream_media, body_iter, ctx, {**SSE_HEADERS, **ctx.headers})
        ctx.usage, ctx.finish, ctx.answered = resp.usage, resp.finish_reason, True
        ctx.generated_tokens = estimate_output(resp.content)  # what is charged if the upstream says no usage
        with anyio.CancelScope(shield=True):
            await gw.billing.settle(ctx, req, bill, 200)  # sets ctx.cost, which the answer carries
            payload = json_bytes(codec.encode_response(resp, ctx.pisces()))
            if claim:
                await gw.idempotency.complete(claim, Stored(200, JSON, [payload]))
        return Reply(200, JSON, payload, ctx, dict(ctx.headers))

    def _replay(self, ctx: RequestContext, stored: Stored) -> Reply:
        """A stored response again, charged nothing; a stream's log line goes before its last chunk."""
        if len(stored.chunks) <= 1 and not stored.media_type.startswith("text/event-stream"):
            return Reply(stored.status, stored.media_type, b"".join(stored.chunks), ctx, dict(ctx.headers))

        async def chunks() -> AsyncIterator[bytes]:
            for chunk in stored.chunks[:-1]:
                yield chunk
            record_request(ctx, stored.status)
            if stored.chunks:
                yield stored.chunks[-1]

        return Reply(stored.status, stored.media_type, chunks(), ctx, {**SSE_HEADERS, **ctx.headers})

    # ------------------------------------------------------------------ the other operations

    async def gemini(self, incoming: Incoming, model_action: str) -> Reply:
        """``models/{model}:generateContent | :streamGenerateContent | :countTokens``. A stream is SSE
        with ``?alt=sse`` (what the SDKs ask for), else one JSON array streamed element by element."""
        model, _, action = model_action.rpartition(":")
        if not model or (action not in GEMINI_STREAM and action != "countTokens"):

            async def unknown(ctx: RequestContext) -> Reply:
                raise PiscesError("not_found", f"Unknown request URL: POST {incoming.path}. Use models/{{model}}:"
                                  "generateContent, :streamGenerateContent or :countTokens.")  # fmt: skip

            return await self.run(incoming, "gemini", unknown)
        if action == "countTokens":
            return await self.count_tokens(incoming, "gemini", model)
        sse = incoming.query.get("alt") == "sse"
        media = SSE_MEDIA if sse else JSON
        return await self.chat(incoming, "gemini", model, GEMINI_STREAM[action], stream_media=media, sse=sse)

    async def list_models(self, incoming: Incoming, protocol: str) -> Reply:
        async def work(ctx: RequestContext) -> Reply:
            gw, codec = self.gw, CODECS[protocol]
            key = await self.authenticate(ctx, incoming)
            data = [codec.encode_model(m, gw.model_owner(m)) for m in gw.config.available_models() if key.allows(m)]
            return self.reply(ctx, codec.encode_model_list(data, ctx.pisces()))

        return await self.run(incoming, protocol, work)

    async def get_model(self, incoming: Incoming, protocol: str, model: str) -> Reply:
        async def work(ctx: RequestContext) -> Reply:
            gw = self.gw
            key = await self.authenticate(ctx, incoming)
            canonical = gw.config.resolve(model)
            if canonical not in gw.config.available_models() or not key.allows(canonical, model):
                raise PiscesError("model_not_found", f"The model '{model}' does not exist or you do not have "
                                  "access to it.", param="model")  # fmt: skip
            body = CODECS[protocol].encode_model(canonical, gw.model_owner(canonical))
            return self.reply(ctx, {**body, "pisces": ctx.pisces()})

        return await self.run(incoming, protocol, work)

    async def count_tokens(self, incoming: Incoming, protocol: str, model: str | None = None) -> Reply:
        """An offline estimate of a request's input tokens (Anthropic's count_tokens, Gemini's
        countTokens, whose ``model`` is in the URL); nothing is charged."""
        from pisces.tokens import estimate_request

        async def work(ctx: RequestContext) -> Reply:
            gw, codec = self.gw, CODECS[protocol]
            key = await self.authenticate(ctx, incoming)
            body = await read_json(incoming.headers, incoming.body, gw.config.limits.max_body_bytes)
            req: ChatRequest = codec.decode_count_tokens(body)
            if model is not None:
                req.model = model
            gw.router.resolve(ctx, req.model, key)  # an unknown or forbidden model: the same 404/403
            return self.reply(ctx, codec.encode_count(estimate_request(req), ctx.pisces()))

        return await self.run(incoming, protocol, work)

    async def usage(self, incoming: Incoming) -> Reply:
        """The key's own balance and spend by day and model (``?from=&to=``, UTC days, both inclusive)."""
        import asyncio

        from pisces.store.usage import UsageRangeError, usage_report

        async def work(ctx: RequestContext) -> Reply:
            gw = self.gw
            key = await self.authenticate(ctx, incoming)
            fresh = await asyncio.to_thread(gw.keys.get_by_hash, key.key_hash)  # the balance now, not as cached
            q = incoming.query
            try:
                report = await asyncio.to_thread(usage_report, gw.usage, fresh or key, q.get("from"), q.get("to"))
            except UsageRangeError as e:
                raise PiscesError("invalid_request", str(e), param=e.param) from None
            return self.reply(ctx, {**report, "pisces": ctx.pisces()})

        return await self.run(incoming, "openai", work)
