"""Usage records: one per settled request, keyed by request id, queryable per key and time range."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from pisces.money import usd
from pisces.store.keys import KeyRecord

# Where a record's token counts come from: the upstream's own report, or a counted estimate
# (a stream cut before the upstream reported usage, or an upstream that never reports it).
UsageSource = Literal["upstream", "estimate", "none"]

_INT_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost",
    "hold",
    "status",
    "expires_at",
    "images",
)
_FLOAT_FIELDS = ("latency_ms", "ttft_ms")


class UsageRecord(BaseModel):
    request_id: str  # the gateway's own unique id of the request (never a client's)
    key_id: str
    client_request_id: str | None = None  # the client's X-Request-Id, for correlation only
    protocol: str
    client_model: str
    model: str  # canonical, after aliases: what the price is for
    upstream_model: str | None = None
    channel: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    images: int | None = None  # images made (the image operation only)
    cost: int = 0  # micro-dollars charged
    hold: int = 0  # micro-dollars held at admission (the rest was given back)
    status: int = 200
    outcome: str = "ok"  # ok, or why not: an error code, client_cut, stream_cut
    usage_source: UsageSource = "upstream"
    stream: bool = False
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    created_at: str  # ISO-8601 UTC, when the request arrived
    settled_at: str
    expires_at: int  # epoch seconds (the table's TTL attribute)

    def item(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, bool):
                out[name] = {"BOOL": value}
            elif isinstance(value, int | float):
                out[name] = {"N": str(value)}
            else:
                out[name] = {"S": str(value)}
        return out

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> UsageRecord:
        data: dict[str, Any] = {}
        for name, value in item.items():
            if name not in cls.model_fields:
                continue
            if "BOOL" in value:
                data[name] = value["BOOL"]
            elif "N" in value:
                data[name] = int(value["N"]) if name in _INT_FIELDS else float(value["N"])
            else:
                data[name] = value.get("S")
        return cls.model_validate(data)


class UsageStore:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def get(self, request_id: str) -> UsageRecord | None:
        item = self.client.get_item(
            TableName=self.table, Key={"request_id": {"S": request_id}}, ConsistentRead=True
        ).get("Item")
        return UsageRecord.from_item(item) if item else None

    def query(self, key_id: str, start: str, end: str) -> list[UsageRecord]:
        """The key's records with ``start <= created_at < end`` (ISO-8601 strings), oldest first."""
        out: list[UsageRecord] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "by_key",
            "KeyConditionExpression": "key_id = :k AND created_at BETWEEN :a AND :b",
            "FilterExpression": "created_at < :b",
            "ExpressionAttributeValues": {":k": {"S": key_id}, ":a": {"S": start}, ":b": {"S": end}},
        }
        while True:
            res = self.client.query(**kwargs)
            out.extend(UsageRecord.from_item(i) for i in res.get("Items", []))
            if "LastEvaluatedKey" not in res:
                return out
            kwargs["ExclusiveStartKey"] = res["LastEvaluatedKey"]

    def recent(self, key_id: str, limit: int, after: dict[str, Any] | None = None) -> tuple[list[UsageRecord], bool]:
        """Up to ``limit`` of the key's records, newest first, after the ``after`` record (its
        ``request_id`` and ``created_at``); and whether there are more."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "by_key",
            "KeyConditionExpression": "key_id = :k",
            "ExpressionAttributeValues": {":k": {"S": key_id}},
            "ScanIndexForward": False,
            "Limit": limit + 1,
        }
        if after is not None:
            kwargs["ExclusiveStartKey"] = {
                "key_id": {"S": key_id},
                "request_id": {"S": after["request_id"]},
                "created_at": {"S": after["created_at"]},
            }
        out: list[UsageRecord] = []
        while len(out) <= limit:
            res = self.client.query(**kwargs)
            out.extend(UsageRecord.from_item(i) for i in res.get("Items", []))
            if "LastEvaluatedKey" not in res:
                break
            kwargs["ExclusiveStartKey"] = res["LastEvaluatedKey"]
        return out[:limit], len(out) > limit

    def find(self, key_id: str, request_id: str) -> list[UsageRecord]:
        """The key's record of a request: by the gateway's own id, else by the client's X-Request-Id
        (several requests may have sent the same one: all of them, newest first). Others' never."""
        own = self.get(request_id)
        if own is not None and own.key_id == key_id:
            return [own]
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "by_key",
            "KeyConditionExpression": "key_id = :k",
            "FilterExpression": "client_request_id = :c",
            "ExpressionAttributeValues": {":k": {"S": key_id}, ":c": {"S": request_id}},
            "ScanIndexForward": False,
        }
        out: list[UsageRecord] = []
        while True:
            res = self.client.query(**kwargs)
            out.extend(UsageRecord.from_item(i) for i in res.get("Items", []))
            if "LastEvaluatedKey" not in res:
                return out
            kwargs["ExclusiveStartKey"] = res["LastEvaluatedKey"]


def summarize(records: list[UsageRecord]) -> dict[str, Any]:
    """Spend by day and model, and the total: what ``/v1/usage`` and ``pisces usage`` show."""
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cached_tokens": 0, "cost": 0}
    )
    total = {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cached_tokens": 0, "cost": 0}
    for r in records:
        row = rows[(r.created_at[:10], r.model)]
        for acc in (row, total):
            acc["requests"] += 1
            acc["input_tokens"] += r.input_tokens
            acc["output_tokens"] += r.output_tokens
            acc["cached_tokens"] += r.cached_tokens
            acc["cost"] += r.cost
    data = [{"date": day, "model": model, **row} for (day, model), row in sorted(rows.items())]
    return {"data": data, "total": total}


DEFAULT_RANGE_DAYS = 30
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class UsageRangeError(ValueError):
    """A bad ``from``/``to``; ``param`` names the one at fault (None: the pair)."""

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.param = param


def _day(value: str, param: str) -> date:
    if _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise UsageRangeError(f"{param} must be a date as YYYY-MM-DD (UTC), not {value!r}", param)


def parse_range(from_str: str | None, to_str: str | None, *, today: date | None = None) -> tuple[date, date]:
    """The UTC days ``from``..``to``, both inclusive, from ``YYYY-MM-DD`` strings (None or "": default).

    Default ``to``: today (UTC); default ``from``: 29 days before ``to`` (30 days in all).
    UsageRangeError (a ValueError) for a malformed date or ``from`` after ``to``.
    """
    today = today or datetime.now(UTC).date()
    end = _day(to_str, "to") if to_str else today
    start = _day(from_str, "from") if from_str else end - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if start > end:
        raise UsageRangeError(f"from ({start}) is after to ({end})", "from")
    return start, end


def usage_report(
    store: UsageStore,
    key: KeyRecord,
    from_str: str | None,
    to_str: str | None,
    *,
    today: date | None = None,
) -> dict[str, Any]:
    """The usage response of ``GET /v1/usage``, ``GET /admin/keys/{key_id}/usage`` and ``pisces usage``.

    Records with ``from <= created_at < to + 1 day`` (UTC days, ``to`` inclusive), summed by day and
    model (:func:`summarize`); money in micro-dollars, and as USD decimal strings in ``*_usd``.
    UsageRangeError (a ValueError, with ``param``) for bad dates: check before any DynamoDB call.
    """
    start, end = parse_range(from_str, to_str, today=today)
    # Bare dates bound every ISO timestamp of those days, whatever its precision or suffix.
    records = store.query(key.key_id, start.isoformat(), (end + timedelta(days=1)).isoformat())
    summary = summarize(records)
    for row in [*summary["data"], summary["total"]]:
        row["cost_usd"] = usd(row["cost"])
    return {
        "object": "usage",
        "key_id": key.key_id,
        "balance": key.balance,
        "balance_usd": usd(key.balance),
        "monthly_budget": key.monthly_budget,
        "monthly_budget_usd": None if key.monthly_budget is None else usd(key.monthly_budget),
        "from": start.isoformat(),
        "to": end.isoformat(),
        "data": summary["data"],
        "total": summary["total"],
    }
