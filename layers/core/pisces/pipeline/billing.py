"""Prices, admission (rate limits, balance, budget) and exactly-once settlement of every request.

Money is integer micro-dollars throughout; a request's cost is rounded up to the micro-dollar.
Admission holds the request's maximum cost in the same write that counts it against the rate
window and records the hold (:mod:`pisces.store.ledger`); settlement charges what the upstream
reported (or a counted estimate for a cut stream) and gives back the rest of the hold. Settlement is
awaited in the request, before the response's last byte: Lambda freezes the container when the
response ends, so nothing that owes money may run after it. A settlement that fails is retried, then
left to the reconciler (:mod:`pisces.store.reconcile`), which finds the hold on the key item.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pisces.canonical import ChatRequest, Part, TextPart, ThinkingPart, ToolCallPart, Usage
from pisces.canonical_embeddings import EmbedRequest
from pisces.config import Config, Price
from pisces.errors import PiscesError
from pisces.pipeline.context import RequestContext
from pisces.pipeline.logs import logger
from pisces.store.keys import KeyRecord
from pisces.store.ledger import Admitted, Ledger, RateLimits, Refused
from pisces.store.usage import UsageRecord
from pisces.tokens import estimate_embedding, estimate_request, estimate_text

PER_MILLION = 1_000_000
# A settlement write that fails (throttled, DynamoDB unreachable) is tried this often in the request,
# after botocore's own retries, with these pauses; then the hold is left to the reconciler.
SETTLE_TRIES = 3
SETTLE_PAUSE_SECONDS = (0.05, 0.2)
# Admission holds this much more input than the offline count says (it is within ~30% of BPE).
INPUT_HOLD_FACTOR = 1.5
# The most output a request may ask for of a model whose configuration names no max_output_tokens.
MAX_OUTPUT_TOKENS = 1_000_000
# No hold or charge exceeds this ($1M): far inside the 38 digits DynamoDB stores exactly.
MAX_HOLD = 10**12


def cost_of(price: Price, usage: Usage) -> int:
    """The cost in micro-dollars of ``usage`` at ``price`` (per million tokens), rounded up."""
    cached = min(usage.cached_tokens, usage.input_tokens)
    written = min(usage.cache_write_tokens, usage.input_tokens - cached)
    plain = usage.input_tokens - cached - written
    total = (
        plain * price.input
        + cached * (price.input if price.cached_input is None else price.cached_input)
        + written * (price.input if price.cache_write is None else price.cache_write)
        + usage.output_tokens * price.output
    )
    return -(-total // PER_MILLION)


def check_max_tokens(config: Config, model: str, req: ChatRequest) -> None:
    """A 400 for ``max_tokens`` above what the model can generate, as the providers answer: the
    model's configured ``max_output_tokens``, or :data:`MAX_OUTPUT_TOKENS` for a model without one.
    It bounds every hold, so money never leaves the range DynamoDB stores exactly."""
    if req.max_tokens is None:
        return
    mc = config.model(model)
    limit = mc.max_output_tokens if "max_output_tokens" in mc.model_fields_set else MAX_OUTPUT_TOKENS
    if req.max_tokens > limit:
        shown = str(req.max_tokens) if req.max_tokens < 10**30 else f"a {len(str(req.max_tokens))}-digit number"
        raise PiscesError("invalid_request", f"max_tokens: {shown} > {limit}, which is the maximum number of "
                          f"output tokens for {model}.", param="max_tokens")  # fmt: skip
    if req.max_tokens < 1:
        raise PiscesError("invalid_request", "max_tokens: must be at least 1.", param="max_tokens")


def estimate_output(parts: list[Part]) -> int:
    """A counted estimate of an answer's tokens (its text, thinking and tool calls)."""
    n = 0
    for p in parts:
        if isinstance(p, TextPart | ThinkingPart):
            n += estimate_text(p.text)
        elif isinstance(p, ToolCallPart):
            n += estimate_text(p.name) + estimate_text(p.arguments)
    return n


def estimate_input(req: ChatRequest | EmbedRequest) -> int:
    """A request's counted input tokens, whatever its operation."""
    return estimate_embedding(req) if isinstance(req, EmbedRequest) else estimate_request(req)


def max_cost(config: Config, model: str, req: ChatRequest | EmbedRequest) -> int:
    """What a request may cost at most: its counted input (with a margin) and its output cap (an
    embedding request generates nothing: its input alone)."""
    mc = config.model(model)
    if isinstance(req, EmbedRequest):
        held = Usage(input_tokens=math.ceil(estimate_embedding(req) * INPUT_HOLD_FACTOR))
        return min(cost_of(mc.price, held), MAX_HOLD)
    output = min(req.max_tokens or mc.max_output_tokens, MAX_OUTPUT_TOKENS)
    cost = cost_of(mc.price, Usage(input_tokens=math.ceil(estimate_request(req) * INPUT_HOLD_FACTOR),
                                   output_tokens=output))  # fmt: skip
    return min(cost, MAX_HOLD)


def rate_headers(adm: Admitted) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers, for the limits the key has (an unlimited one says nothing)."""
    out: dict[str, str] = {}
    reset = f"{adm.reset_seconds()}s"
    counted = (("requests", adm.limits.requests, adm.requests), ("tokens", adm.limits.tokens, adm.tokens))
    for kind, limit, used in counted:
        if limit:
            out[f"x-ratelimit-limit-{kind}"] = str(limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(max(0, limit - used))
            out[f"x-ratelimit-reset-{kind}"] = reset
    return out


def _refusal(r: Refused, limits: RateLimits, key: KeyRecord) -> PiscesError:
    if r.reason == "unknown_key":
        return PiscesError("invalid_api_key", "Incorrect API key provided.")
    if r.reason == "revoked":
        return PiscesError("key_revoked", f"The API key {key.prefix}... has been revoked.")
    if r.reason == "balance":
        return PiscesError(
            "insufficient_balance",
            "This API key's balance is used up. Ask the gateway's operator for a top-up.",
        )
    if r.reason == "budget":
        return PiscesError("insufficient_balance", "This API key's monthly budget is spent.")
    retry = max(1, (r.window + 1) * 60 - int(time.time()))
    limit = limits.requests if r.reason == "requests" else limits.tokens
    unit = "requests" if r.reason == "requests" else "tokens"
    headers = {
        f"x-ratelimit-limit-{unit}": str(limit),
        f"x-ratelimit-remaining-{unit}": "0",
        f"x-ratelimit-reset-{unit}": f"{retry}s",
    }
    return PiscesError(
        "rate_limit_exceeded",
        f"Rate limit reached: {limit} {unit} per minute for this key. Try again in {retry} s.",
        retry_after=retry,
        headers=headers,
    )


@dataclass(slots=True)
class Bill:
    """What admission decided for one request, carried to its settlement."""

    key: KeyRecord
    hold: int
    admitted: Admitted


class Billing:
    def __init__(self, config: Config, ledger: Ledger) -> None:
        self.config = config
        self.ledger = ledger

    def limits_for(self, key: KeyRecord) -> RateLimits:
        d = self.config.limits
        return RateLimits(
            requests=d.requests_per_minute if key.rpm is None else key.rpm,
            tokens=d.tokens_per_minute if key.tpm is None else key.tpm,
        )

    async def admit(self, ctx: RequestContext, req: ChatRequest | EmbedRequest, key: KeyRecord) -> Bill:
        """Count the request and hold its maximum cost (one DynamoDB write), or refuse it."""
        return await self.hold(ctx, key, max_cost(self.config, ctx.model or req.model, req))

    async def hold(self, ctx: RequestContext, key: KeyRecord, hold: int) -> Bill:
        """Admission of any operation: count the request and hold ``hold`` micro-dollars, or refuse it."""
        limits = self.limits_for(key)
        outcome = await self.ledger.admit_async(key.key_hash, hold, limits, None, ctx.usage_id)
        if isinstance(outcome, Refused):
            raise _refusal(outcome, limits, key)
        ctx.headers.update(rate_headers(outcome))
        return Bill(key, hold, outcome)

    def record(self, ctx: RequestContext, req: ChatRequest | EmbedRequest, bill: Bill, status: int) -> UsageRecord:
        usage, source = ctx.usage, "upstream"
        reported = usage is not None and (usage.input_tokens > 0 or usage.output_tokens > 0)
        if not reported or (ctx.stream and ctx.finish is None):
            if not reported and ctx.first_byte is None and not ctx.answered:
                usage, source = Usage(), "none"  # failed before the upstream produced anything
            else:
                # a cut stream, or an upstream that reports no usage: count what was generated
                base = usage or Usage()
                usage = base.model_copy(update={
                    "input_tokens": base.input_tokens or estimate_input(req),
                    "output_tokens": max(base.output_tokens, ctx.generated_tokens),
                })  # fmt: skip
                source = "estimate"
        model = ctx.model or req.model
        return usage_record(self.config, ctx, bill, req.model, usage, cost_of(self.config.price(model), usage),
                            status, source, cached_tokens=usage.cached_tokens,
                            cache_write_tokens=usage.cache_write_tokens, reasoning_tokens=usage.reasoning_tokens,
                            stream=ctx.stream)  # fmt: skip

    async def settle(
        self, ctx: RequestContext, req: ChatRequest | EmbedRequest, bill: Bill, status: int
    ) -> UsageRecord | None:
        """Charge the request once; a second call for the same request id changes nothing. A write
        that fails is tried again, then left to the reconciler (the hold stays recorded on the key)."""
        return await self.write(ctx, bill, self.record(ctx, req, bill, status))

    async def write(self, ctx: RequestContext, bill: Bill, rec: UsageRecord) -> UsageRecord | None:
        """Settlement of any operation: charge ``rec.cost`` and write ``rec``, exactly once."""
        ctx.cost = rec.cost
        tag = bill.admitted.hold.tag if bill.admitted.hold else None
        for attempt in range(SETTLE_TRIES):
            try:
                key_hash, month = bill.key.key_hash, bill.admitted.month
                done = await self.ledger.settle_async(key_hash, bill.hold, month, rec.item(), tag)
            except Exception:
                if attempt + 1 < SETTLE_TRIES:
                    await asyncio.sleep(SETTLE_PAUSE_SECONDS[attempt])
                    continue
                # never an under-charge by accident: the hold stays taken until the reconciler releases it
                ctx.settle_failed = True
                logger.exception("settlement failed; the hold is left to the reconciler",
                                 extra={"request_id": ctx.request_id, "cost": rec.cost, "hold": bill.hold})  # fmt: skip
                return None
            return rec if done else None
        raise AssertionError("unreachable")


def usage_record(
    config: Config, ctx: RequestContext, bill: Bill, client_model: str, usage: Usage, cost: int, status: int,
    source: str, **extra: object,
) -> UsageRecord:  # fmt: skip
    """The usage record of a settled request, of any operation: what it was, what it cost (capped at
    :data:`MAX_HOLD`), where the figures came from, when; ``extra`` the operation's own fields."""
    now = datetime.now(UTC)
    started = now - timedelta(milliseconds=ctx.elapsed_ms())
    return UsageRecord(
        request_id=ctx.usage_id,
        key_id=bill.key.key_id,
        client_request_id=ctx.client_request_id,
        protocol=ctx.protocol,
        client_model=ctx.client_model or client_model,
        model=ctx.model or client_model,
        upstream_model=ctx.upstream_model,
        channel=ctx.channel,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost=min(cost, MAX_HOLD),
        hold=bill.hold,
        status=status,
        outcome=ctx.error or "ok",
        usage_source=source,  # type: ignore[arg-type]
        latency_ms=ctx.elapsed_ms(),
        ttft_ms=ctx.elapsed_ms(ctx.first_byte) if ctx.first_byte else None,
        created_at=_iso(started),
        settled_at=_iso(now),
        expires_at=int(now.timestamp()) + config.limits.usage_retention_days * 86400,
        **extra,  # type: ignore[arg-type]
    )


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")
