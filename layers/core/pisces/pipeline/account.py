"""What a key holder may ask about their own key: its balance and spend (``GET /v1/usage``) and its
recent requests (``GET /v1/usage/requests``)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from typing import TYPE_CHECKING, Any

from pisces.errors import PiscesError
from pisces.money import usd
from pisces.pipeline.context import RequestContext
from pisces.store.keys import KeyRecord
from pisces.store.usage import UsageRangeError, UsageRecord, usage_report

if TYPE_CHECKING:
    from pisces.pipeline.lifecycle import Incoming, Lifecycle, Reply

DEFAULT_PAGE = 20
MAX_PAGE = 100
_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z?")


async def usage(lc: Lifecycle, ctx: RequestContext, incoming: Incoming) -> Reply:
    """The key's balance and spend by day and model (``?from=&to=``, UTC days, both inclusive), this
    month's spend against its budget and the current minute's rate-limit counts."""
    gw = lc.gw
    key = await lc.authenticate(ctx, incoming)
    fresh = await gw.keys.get_by_hash_async(key.key_hash, gw.db)  # the balance now, not as cached
    q = incoming.query
    try:
        report = await asyncio.to_thread(usage_report, gw.usage, fresh or key, q.get("from"), q.get("to"))
    except UsageRangeError as e:
        raise PiscesError("invalid_request", str(e), param=e.param) from None
    counters = await asyncio.to_thread(gw.billing.ledger.counters, key.key_hash)
    report |= _live(lc, fresh or key, counters or {})
    return lc.reply(ctx, {**report, "pisces": ctx.pisces()})


def _live(lc: Lifecycle, key: KeyRecord, c: dict[str, Any]) -> dict[str, Any]:
    limits = lc.gw.billing.limits_for(key)
    spent = c.get("spent", 0)
    return {
        "this_month": {
            "month": c.get("month"),
            "spent": spent,  # held and charged this calendar month (UTC): what the budget counts
            "spent_usd": usd(spent),
            "monthly_budget": key.monthly_budget,
            "remaining": None if key.monthly_budget is None else max(0, key.monthly_budget - spent),
        },
        "rate_limits": {  # 0 is unlimited
            "requests_per_minute": limits.requests,
            "tokens_per_minute": limits.tokens,
            "requests_this_minute": c.get("window_requests", 0),
            "tokens_this_minute": c.get("window_tokens", 0),
            "resets_in_seconds": c.get("window_resets_in"),
        },
    }


def record_view(r: UsageRecord) -> dict[str, Any]:
    """One usage record as ``/v1/usage/requests`` shows it (never the key item, never a body)."""
    out = r.model_dump(exclude={"key_id", "expires_at"})
    out["object"] = "usage.request"
    out["cost_usd"] = usd(r.cost)
    return out


def encode_cursor(r: UsageRecord) -> str:
    raw = json.dumps({"r": r.request_id, "t": r.created_at}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, str]:
    bad = PiscesError("invalid_request", "after must be a next_cursor this endpoint returned.", param="after")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        raise bad from None
    if not (isinstance(data, dict) and isinstance(data.get("r"), str) and isinstance(data.get("t"), str)):
        raise bad
    if not (0 < len(data["r"]) <= 200 and _ISO.fullmatch(data["t"])):
        raise bad
    return {"request_id": data["r"], "created_at": data["t"]}


def _limit(value: str | None) -> int:
    if value in (None, ""):
        return DEFAULT_PAGE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise PiscesError("invalid_request", f"limit must be a whole number from 1 to {MAX_PAGE}, not {value!r}.",
                          param="limit")  # fmt: skip
    return int(value)


async def requests(lc: Lifecycle, ctx: RequestContext, incoming: Incoming) -> Reply:
    """The key's own settled requests, newest first, a page at a time (``?limit=&after=<next_cursor>``);
    ``?request_id=`` looks one up (the gateway's id or the client's X-Request-Id)."""
    key = await lc.authenticate(ctx, incoming)
    q = incoming.query
    store = lc.gw.usage
    rid = q.get("request_id")
    if rid is not None:
        if not 0 < len(rid) <= 200:
            raise PiscesError("invalid_request", "request_id must be 1 to 200 characters.", param="request_id")
        found = await asyncio.to_thread(store.find, key.key_id, rid)
        body = _page(found, False)
    else:
        limit = _limit(q.get("limit"))
        after = decode_cursor(q["after"]) if q.get("after") else None
        records, more = await asyncio.to_thread(store.recent, key.key_id, limit, after)
        body = _page(records, more)
    return lc.reply(ctx, {**body, "pisces": ctx.pisces()})


def _page(records: list[UsageRecord], more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [record_view(r) for r in records],
        "first_id": records[0].request_id if records else None,
        "last_id": records[-1].request_id if records else None,
        "has_more": more,
        "next_cursor": encode_cursor(records[-1]) if more and records else None,
    }
