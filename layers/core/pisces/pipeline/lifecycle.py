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

import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from pisces import jsonwire
from pisces.canonical import ChatRequest, ChatResponse
from pisces.errors import PiscesError
from pisces.pipeline.auth import extract_key
from pisces.pipeline.billing import Bill, check_max_tokens, estimate_output
from pisces.pipeline.body import read_json
from pisces.pipeline.context import RequestContext
from pisces.pipeline.idempotency import HEADER as IDEMPOTENCY_HEADER
from pisces.pipeline.idempotency import REPLAYED, Claim, Stored
from pisces.pipeline.logs import logger, note_lambda_context, record_request
from pisces.pipeline.relay import relay
from pisces.protocols import CODECS, EMBEDDING_CODECS
from pisces.store.dynamo import unavailable
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


json_bytes = jsonwire.dumps  # a lone surrogate (from a client's \\ud800) is written as its escape


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
GEMINI_EMBED = {"embedContent": False, "batchEmbedContents": True}  # the action: is it the batch

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
        except Exception as exc:
            if (busy := unavailable(exc)) is None:
                logger.exception("unhandled error", extra={"request_id": ctx.request_id, "path": ctx.path})
            reply = self.error(ctx, busy or PiscesError("internal_error", "The gateway failed to process the "
                                                        "request. Quote the request id."))  # fmt: skip
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
        door = codec.new_door(gw, ctx, body) if hasattr(codec, "new_door") else None  # a door's own steps
        kept = {n: incoming.headers[n] for n in getattr(codec, "FORWARDED_HEADERS", ()) if n in incoming.headers}
        if kept:
            req.provider_options.setdefault(codec.NAME, {})[FORWARDED] = kept
        ctx.stream = req.stream
        candidates = gw.router.resolve(ctx, req.model, key)
        if door is not None:
            req = await door.prepare(req, candidates)
        check_max_tokens(gw.config, ctx.model or req.model, req)

        async def call() -> Any:
            if req.stream:
                return await gw.router.open_stream(ctx, req, candidates)
            return await gw.router.complete(ctx, req, candidates)

        async def settle(bill: Bill, status: int) -> None:
            await gw.billing.settle(ctx, req, bill, status)

        road = await self._metered(ctx, incoming, key, body, lambda: gw.billing.admit(ctx, req, key), call, settle)
        if isinstance(road, Reply):
            return road
        claim, bill, answer = road
        if req.stream:
            first, events = answer
            ctx.first_byte = time.perf_counter()
            make_encoder = door.stream_encoder if door is not None else codec.StreamEncoder
            encoder = make_encoder(ctx.pisces(), include_usage=req.stream_usage, **encoder_options)
            body_iter = relay(gw, ctx, encoder, req, bill, claim, first, events, stream_media,
                              door.stream_done if door is not None else None)  # fmt: skip
            return Reply(200, stream_media, body_iter, ctx, {**SSE_HEADERS, **ctx.headers})
        resp: ChatResponse = answer
        ctx.usage, ctx.finish, ctx.answered = resp.usage, resp.finish_reason, True
        if resp.usage is None or not resp.usage.output_tokens:  # what is charged if the upstream says no usage
            ctx.generated_tokens = estimate_output(resp.content)  # (counted only then: it is not free)
        encode = door.encode_response if door is not None else codec.encode_response
        out: dict[str, Any] = {}

        async def settle_and_keep() -> None:
            await settle(bill, 200)  # sets ctx.cost, which the answer carries
            out["answer"] = encode(resp, ctx.pisces())
            if door is not None:
                await door.keep(out["answer"])  # stored before its id can reach the client

        return await self._settled(ctx, claim, settle_and_keep, lambda: json_bytes(out["answer"]))

    # ------------------------------------------------------------------ the road every metered operation shares

    async def _metered(
        self,
        ctx: RequestContext,
        incoming: Incoming,
        key: KeyRecord,
        fingerprint: Any,
        admit: Callable[[], Awaitable[Bill]],
        call: Callable[[], Awaitable[Any]],
        settle: Callable[[Bill, int], Awaitable[None]],
    ) -> tuple[Claim | None, Bill, Any] | Reply:
        """idempotency → admit → upstream, for any operation: a stored response replayed (charged
        nothing), or the claim, the bill and the upstream's answer. A failure before the answer is
        settled (for what it cost: usually nothing) and releases the claim before it is raised."""
        gw = self.gw
        claim = await gw.idempotency.begin(incoming.headers.get(IDEMPOTENCY_HEADER), key.key_id, incoming.path,
                                           fingerprint)  # fmt: skip
        if isinstance(claim, Stored):
            ctx.headers[REPLAYED] = "true"
            return self._replay(ctx, claim)
        try:
            bill = await admit()
        except BaseException:
            if claim:
                with anyio.CancelScope(shield=True):
                    await gw.idempotency.abort(claim)
            raise
        try:
            answer = await call()
        except BaseException as exc:  # kept under no other name: a local would hold it in a cycle with its traceback
            ctx.error = exc.code if isinstance(exc, PiscesError) else "internal_error"
            with anyio.CancelScope(shield=True):  # a client that hung up is settled all the same
                await settle(bill, exc.status if isinstance(exc, PiscesError) else 500)
                if claim:
                    await gw.idempotency.abort(claim)
            raise
        return claim, bill, answer

    async def _settled(
        self, ctx: RequestContext, claim: Claim | None, settle: Callable[[], Awaitable[None]],
        encode: Callable[[], bytes],
    ) -> Reply:  # fmt: skip
        """A complete answer: settled (which sets the cost the answer carries), encoded, stored for
        its Idempotency-Key, then returned. A client that hangs up meanwhile cancels nothing (uvicorn
        drops what is sent to it; a complete reply's ``Response`` starts no listener): this runs to its
        end in the request. No anyio shield: it stops only an anyio scope's cancellation, and none encloses
        this road (a stream's relay, under Starlette's listener, shields its own settling); woken from
        idle, entering one cost 37 µs a request (bench/RESULTS.md, performance part 9)."""
        await settle()
        payload = encode()
        if claim:
            await self.gw.idempotency.complete(claim, Stored(200, JSON, [payload]))
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

    async def embed(self, incoming: Incoming, protocol: str, *url_args: Any) -> Reply:
        """``POST /v1/embeddings``, or Gemini's ``:embedContent`` / ``:batchEmbedContents`` (``url_args``:
        the model and whether it is the batch): :mod:`pisces.pipeline.embeddings`."""
        from pisces.pipeline import embeddings

        async def work(ctx: RequestContext) -> Reply:
            return await embeddings.embed(self, ctx, incoming, protocol, url_args)

        return await self.run(incoming, protocol, work)

    async def images(self, incoming: Incoming, operation: str) -> Reply:
        """``POST /v1/images/generations`` (``generate``) and ``/v1/images/edits`` (``edit``), in
        OpenAI's shape: :mod:`pisces.pipeline.images`."""
        from pisces.pipeline import images

        async def work(ctx: RequestContext) -> Reply:
            return await images.images(self, ctx, incoming, operation)

        return await self.run(incoming, "openai", work)

    async def gemini(self, incoming: Incoming, model_action: str) -> Reply:
        """``models/{model}:generateContent | :streamGenerateContent | :countTokens | :embedContent |
        :batchEmbedContents``. A stream is SSE
        with ``?alt=sse`` (what the SDKs ask for), else one JSON array streamed element by element."""
        model, _, action = model_action.rpartition(":")
        if not model or (action not in GEMINI_STREAM and action not in GEMINI_EMBED and action != "countTokens"):

            async def unknown(ctx: RequestContext) -> Reply:
                raise PiscesError("not_found", f"Unknown request URL: POST {incoming.path}. Use models/{{model}}:"
                                  "generateContent, :streamGenerateContent, :countTokens, :embedContent or "
                                  ":batchEmbedContents.")  # fmt: skip

            return await self.run(incoming, "gemini", unknown)
        if action in GEMINI_EMBED:
            return await self.embed(incoming, "gemini", model, GEMINI_EMBED[action])
        if action == "countTokens":
            return await self.count_tokens(incoming, "gemini", model)
        sse = incoming.query.get("alt") == "sse"
        media = SSE_MEDIA if sse else JSON
        return await self.chat(incoming, "gemini", model, GEMINI_STREAM[action], stream_media=media, sse=sse)

    async def list_models(self, incoming: Incoming, protocol: str) -> Reply:
        async def work(ctx: RequestContext) -> Reply:
            gw, codec = self.gw, CODECS[protocol]
            key = await self.authenticate(ctx, incoming)
            data = [self._encode_model(protocol, m) for m in gw.config.available_models()
                    if key.allows(m) and self._listed(protocol, m)]  # fmt: skip
            return self.reply(ctx, codec.encode_model_list(data, ctx.pisces()))

        return await self.run(incoming, protocol, work)

    async def get_model(self, incoming: Incoming, protocol: str, model: str) -> Reply:
        async def work(ctx: RequestContext) -> Reply:
            gw = self.gw
            key = await self.authenticate(ctx, incoming)
            canonical = gw.config.resolve(model)
            listed = canonical in gw.config.available_models() and self._listed(protocol, canonical)
            if not listed or not key.allows(canonical, model):
                raise PiscesError("model_not_found", f"The model '{model}' does not exist or you do not have "
                                  "access to it.", param="model")  # fmt: skip
            body = self._encode_model(protocol, canonical)
            return self.reply(ctx, {**body, "pisces": ctx.pisces()})

        return await self.run(incoming, protocol, work)

    def _listed(self, protocol: str, model: str) -> bool:
        """An embedding model is shown only by a protocol that has an embeddings door (not Anthropic's)."""
        return self.gw.config.model(model).kind == "chat" or protocol in EMBEDDING_CODECS

    def _encode_model(self, protocol: str, model: str) -> dict[str, Any]:
        """One model in the protocol's shape; only a non-chat model's ``kind`` is passed (an embedding model
        is encoded only by the codecs with an embeddings door, which take it)."""
        codec, owner, kind = CODECS[protocol], self.gw.model_owner(model), self.gw.config.model(model).kind
        extra = {} if kind == "chat" else {"kind": kind}
        out: dict[str, Any] = codec.encode_model(model, owner, **extra)
        return out

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

    async def stored_response(self, incoming: Incoming, action: str, rid: str) -> Reply:
        """``GET`` (``retrieve``), ``DELETE`` (``delete``) or ``POST .../cancel`` (``cancel``) on a stored
        response of this key (:mod:`pisces.pipeline.responses`); nothing is charged."""
        from pisces.pipeline import responses

        async def work(ctx: RequestContext) -> Reply:
            await self.authenticate(ctx, incoming)
            return self.reply(ctx, await getattr(responses, action)(self.gw, ctx, rid))

        return await self.run(incoming, "openai-responses", work)

    async def usage(self, incoming: Incoming, what: str = "usage") -> Reply:
        """The key's balance and spend (``usage``) or its recent requests (``requests``): :mod:`.account`."""
        from pisces.pipeline import account

        async def work(ctx: RequestContext) -> Reply:
            return await getattr(account, what)(self, ctx, incoming)

        return await self.run(incoming, "openai", work)
