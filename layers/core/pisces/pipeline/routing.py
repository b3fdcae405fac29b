"""Routing: a model name to the channels that serve it, tried in order with fallback.

Channels are ordered by priority (lower first); channels of equal priority are shuffled by weight
for every request. A retryable failure (cannot connect, 429, 5xx) moves on to the next channel;
for a stream that is possible only until its first event, which is awaited here before the
client's response starts.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

from pisces.canonical import ChatRequest, ChatResponse, StreamEvent
from pisces.canonical_embeddings import EmbedRequest, EmbedResponse
from pisces.canonical_images import ImageRequest, ImageResponse
from pisces.config import ChannelConfig, Config
from pisces.errors import PiscesError
from pisces.pipeline.context import RequestContext
from pisces.store.keys import KeyRecord
from pisces.upstreams.base import Channel, UpstreamError

T = TypeVar("T")
Candidates = list[tuple[Channel, str]]  # (channel, the upstream's model name), in the order to try


def _weighted_order(channels: list[ChannelConfig], rng: random.Random) -> list[ChannelConfig]:
    if len(channels) == 1:  # nothing to draw (most models, most requests)
        return list(channels)
    pool, out = list(channels), []
    while pool:
        pick = rng.choices(pool, weights=[c.weight for c in pool])[0]
        pool.remove(pick)
        out.append(pick)
    return out


def _check_operation(config: Config, model: str, canonical: str, operation: str) -> None:
    """The 400 for an embedding model asked to chat, or a chat model asked for embeddings."""
    kind = config.model(canonical).kind
    if operation == "embed" and kind != "embedding":
        raise PiscesError("invalid_request", f"The model '{model}' does not support embeddings.", param="model")
    if operation == "chat" and kind == "embedding":
        raise PiscesError("invalid_request", f"The model '{model}' is an embedding model: it does not support "
                          "chat. Use POST /v1/embeddings (or Gemini's :embedContent).", param="model")  # fmt: skip


def disabled_reason(c: ChannelConfig) -> str:
    """How to turn a disabled channel on (names of settings only, never a value)."""
    if c.kind == "mock":
        return "PISCES_MOCK is off"
    if c.kind == "bedrock":
        return "set PISCES_BEDROCK=on (with AWS credentials) or deploy the stack"
    if c.api_key_env:
        return f"set {c.api_key_env}"
    return "it has no credential"


class Router:
    def __init__(self, config: Config, channels: dict[str, Channel], rng: random.Random | None = None) -> None:
        self.config = config
        self.channels = channels
        self.rng = rng or random.Random()

    def resolve(self, ctx: RequestContext, model: str, key: KeyRecord, operation: str = "chat") -> Candidates:
        """The ordered (channel, upstream model) candidates, or the client's 404/403; a 400 for an
        ``operation`` (chat, embed) the model does not do or none of its channels' kinds serves."""
        canonical = self.config.resolve(model)
        ctx.client_model, ctx.model = model, canonical
        serving = self.config.serving(canonical)
        if not serving:
            off = [c for c in self.config.channels if canonical in c.models]
            if off:  # configured, but every channel serving it is off: say which and how to turn one on
                why = "; ".join(f"the channel `{c.name}` serving it is disabled: {disabled_reason(c)}" for c in off)
                raise PiscesError("model_not_found", f"The model '{model}' is not available: {why}.", param="model")
            raise PiscesError(
                "model_not_found",
                f"The model '{model}' does not exist or you do not have access to it.",
                param="model",
            )
        if not key.allows(canonical, model):
            raise PiscesError("model_not_allowed", f"This API key may not use the model '{model}'.", param="model")
        _check_operation(self.config, model, canonical, operation)
        serving = [c for c in serving if operation in self.channels[c.name].operations]
        if not serving:
            raise PiscesError("invalid_request", f"The model '{model}' is served by no upstream with an embeddings "
                              "API here.", param="model")  # fmt: skip
        ordered: list[ChannelConfig] = []
        for prio in sorted({c.priority for c in serving}):
            ordered += _weighted_order([c for c in serving if c.priority == prio], self.rng)
        return [(self.channels[c.name], c.models[canonical]) for c in ordered]

    @staticmethod
    async def _first_that_answers(
        ctx: RequestContext, candidates: Candidates, call: Callable[[Channel, str], Awaitable[T]]
    ) -> T:
        """``call`` on each candidate in order until one answers; a retryable failure moves on."""
        last: UpstreamError | None = None
        for channel, upstream_model in candidates:
            ctx.channel, ctx.upstream_model = channel.name, upstream_model
            ctx.attempts.append(channel.name)
            try:
                answer = await call(channel, upstream_model)
            except UpstreamError as e:
                ctx.upstream_status = e.upstream_status
                if not e.retryable:
                    raise
                last = e
            else:
                ctx.upstream_status = 200
                return answer
        try:
            raise Router._exhausted(last)
        finally:  # the error's traceback holds this frame: holding the error too would make them a cycle
            last = None

    async def complete(self, ctx: RequestContext, req: ChatRequest, candidates: Candidates) -> ChatResponse:
        return await self._first_that_answers(ctx, candidates, lambda channel, model: channel.complete(req, model))

    async def images(self, ctx: RequestContext, req: ImageRequest, candidates: Candidates) -> ImageResponse:
        return await self._first_that_answers(ctx, candidates, lambda channel, model: channel.images(req, model))

    async def embed(self, ctx: RequestContext, req: EmbedRequest, candidates: Candidates) -> EmbedResponse:
        return await self._first_that_answers(ctx, candidates, lambda channel, model: channel.embed(req, model))

    async def open_stream(
        self, ctx: RequestContext, req: ChatRequest, candidates: Candidates
    ) -> tuple[StreamEvent, AsyncGenerator[StreamEvent, None]]:
        """The first event and the rest of a stream from the first channel that starts one."""

        async def start(channel: Channel, model: str) -> tuple[StreamEvent, AsyncGenerator[StreamEvent, None]]:
            events = channel.stream(req, model)
            try:
                return await anext(events), events
            except StopAsyncIteration:
                raise UpstreamError("upstream_error", "upstream sent an empty stream", retryable=True) from None

        return await self._first_that_answers(ctx, candidates, start)

    @staticmethod
    def _exhausted(last: UpstreamError | None) -> PiscesError:
        """Every candidate failed: the last failure speaks (a 5xx is a 502, a 429 stays a 429)."""
        if last is None:
            return PiscesError("no_available_channel", "No channel can serve this model now.")
        return last
