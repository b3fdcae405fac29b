"""One structured log line per request (Powertools Logger). Never a key, a header or a body."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from pisces.pipeline.context import RequestContext

logger = Logger(service="pisces")


def log_request(ctx: RequestContext, status: int, path: str) -> None:
    fields: dict[str, Any] = {
        "request_id": ctx.request_id,
        "protocol": ctx.protocol,
        "key_id": ctx.key.key_id if ctx.key else None,
        "model": ctx.client_model,
        "resolved_model": ctx.model,
        "upstream_model": ctx.upstream_model,
        "channel": ctx.channel,
        "attempts": ctx.attempts,
        "status": status,
        "path": path,
        "stream": ctx.stream,
        "latency_ms": ctx.elapsed_ms(),
        "ttft_ms": ctx.elapsed_ms(ctx.first_byte) if ctx.first_byte else None,
        "finish": ctx.finish,
        "error": ctx.error,
        "cost_micros": ctx.cost,  # the settled charge; a cut stream's estimate lands in its usage record
        "idempotent_replay": "Idempotent-Replayed" in ctx.headers,
    }
    usage = ctx.usage
    if usage is not None:
        fields |= {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens,
        }
    logger.info("request", extra=fields)
