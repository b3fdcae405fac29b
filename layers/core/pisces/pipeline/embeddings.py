"""The embeddings operation (OpenAI's ``POST /v1/embeddings``, Gemini's ``:embedContent`` and
``:batchEmbedContents``) on the one request road:

    authenticate → read and decode → route (an embedding model) → idempotency → admit (the counted
      input at its price) → upstream → settle → complete idempotency → log

It is :meth:`Lifecycle._metered` and :meth:`Lifecycle._settled`, the road chat takes. An upstream
that reports no usage (Gemini) is charged the gateway's own count, and the answer says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pisces.canonical import Usage
from pisces.canonical_embeddings import EmbedRequest, EmbedResponse
from pisces.pipeline.billing import Bill, estimate_input
from pisces.pipeline.body import read_json
from pisces.pipeline.context import RequestContext
from pisces.pipeline.lifecycle import json_bytes
from pisces.protocols import EMBEDDING_CODECS

if TYPE_CHECKING:
    from pisces.pipeline.lifecycle import Incoming, Lifecycle, Reply


async def embed(lc: Lifecycle, ctx: RequestContext, incoming: Incoming, protocol: str,
                url_args: tuple[Any, ...]) -> Reply:  # fmt: skip
    gw, codec = lc.gw, EMBEDDING_CODECS[protocol]
    key = await lc.authenticate(ctx, incoming)
    body = await read_json(incoming.headers, incoming.body, gw.config.limits.max_body_bytes)
    req: EmbedRequest = codec.decode_embed_request(body, *url_args)
    candidates = gw.router.resolve(ctx, req.model, key, operation="embed")

    async def settle(bill: Bill, status: int) -> None:
        await gw.billing.settle(ctx, req, bill, status)

    road = await lc._metered(ctx, incoming, key, body, lambda: gw.billing.admit(ctx, req, key),
                             lambda: gw.router.embed(ctx, req, candidates), settle)  # fmt: skip
    if not isinstance(road, tuple):
        return road
    claim, bill, answer = road
    resp: EmbedResponse = answer
    ctx.usage, ctx.answered = resp.usage, True
    if not resp.usage.input_tokens:  # the upstream counts nothing (Gemini): the answer says what is charged
        resp = resp.model_copy(update={"usage": Usage(input_tokens=estimate_input(req))})
    reply = await lc._settled(ctx, claim, lambda: settle(bill, 200),
                              lambda: json_bytes(codec.encode_embed_response(resp, ctx.pisces(), req)))  # fmt: skip
    ctx.usage = resp.usage  # settled (its record says "estimate"): the log line and metrics say the charge
    return reply
