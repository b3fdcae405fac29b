"""What a key holder may ask about their own key: its balance and its spend (``GET /v1/usage``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from pisces.errors import PiscesError
from pisces.pipeline.context import RequestContext
from pisces.store.usage import UsageRangeError, usage_report

if TYPE_CHECKING:
    from pisces.pipeline.lifecycle import Incoming, Lifecycle, Reply


async def usage(lc: Lifecycle, ctx: RequestContext, incoming: Incoming) -> Reply:
    """The key's balance and spend by day and model (``?from=&to=``, UTC days, both inclusive)."""
    gw = lc.gw
    key = await lc.authenticate(ctx, incoming)
    fresh = await asyncio.to_thread(gw.keys.get_by_hash, key.key_hash)  # the balance now, not as cached
    q = incoming.query
    try:
        report = await asyncio.to_thread(usage_report, gw.usage, fresh or key, q.get("from"), q.get("to"))
    except UsageRangeError as e:
        raise PiscesError("invalid_request", str(e), param=e.param) from None
    return lc.reply(ctx, {**report, "pisces": ctx.pisces()})
