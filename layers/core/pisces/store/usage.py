"""Usage records: one per settled request, keyed by request id, queryable per key and time range."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

from pydantic import BaseModel

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
)
_FLOAT_FIELDS = ("latency_ms", "ttft_ms")


class UsageRecord(BaseModel):
    request_id: str
    key_id: str
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
