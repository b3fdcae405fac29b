"""Upstream credentials: from an environment variable, or from Secrets Manager (cached by Powertools)."""

from __future__ import annotations

import asyncio

from pisces.config import ChannelConfig

SECRET_MAX_AGE = 300  # seconds a secret is cached per container


async def resolve_api_key(cfg: ChannelConfig) -> str | None:
    # the channel's own ARN first; then the environment's key; then the ARN beside it (<env>_SECRET_ARN)
    key = cfg.credential()
    arn = cfg.api_key_secret_arn or (None if key else cfg.secret_arn())
    if arn:
        from aws_lambda_powertools.utilities.parameters import get_secret

        value = await asyncio.to_thread(get_secret, arn, max_age=SECRET_MAX_AGE)
        return value if isinstance(value, str) else value.decode()
    return key
