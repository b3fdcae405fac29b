"""The reconciler: releases the holds that a dead gateway container left, exactly once.

Admission records every hold on the key item (``holds``, see :mod:`pisces.store.ledger`) in the
write that takes it, and settlement removes it in the transaction that charges. A container that
dies in between (timeout, OOM, SIGKILL, reclaimed while frozen) leaves the element behind. Once it is
older than the longest a request can run (the gateway function's timeout), nothing will settle it,
so the reconciler does, in one transaction of its own:

- put a usage record for the request id with ``outcome: abandoned``, cost 0 (nothing is known of
  what was generated), only if no record has that id yet;
- give the hold back to the balance and the month's spend, and remove the element, only if the
  element is still there.

Two reconcilers, or a reconciler and a late settlement, race on those two conditions: one wins, the
other changes nothing. A record that exists while its hold is still there (a settlement whose
request id another request had used first) gets the hold back alone, under the same condition.

It runs on an EventBridge schedule (``functions/reconciler``) and as ``pisces reconcile``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pisces.store.ledger import SETTLE_ATTEMPTS, Hold
from pisces.store.usage import UsageRecord

# The gateway function's timeout (900 s, template.yaml) and a minute: no live request is older.
DEFAULT_MAX_AGE_SECONDS = 960

Outcome = Literal["abandoned", "released", "gone"]


@dataclass(slots=True)
class Report:
    """What one run did: holds released with an abandoned record, released alone (a record was
    there), found already gone (settled or released by someone else meanwhile), and left (too young)."""

    abandoned: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    young: int = 0
    returned_micros: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "abandoned": len(self.abandoned),
            "released_without_record": len(self.released),
            "already_gone": len(self.gone),
            "too_young": self.young,
            "returned_micros": self.returned_micros,
            "request_ids": self.abandoned + self.released,
        }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Reconciler:
    def __init__(self, client: Any, keys_table: str, usage_table: str, retention_days: int = 400) -> None:
        self.client = client
        self.keys_table = keys_table
        self.usage_table = usage_table
        self.retention_days = retention_days

    def outstanding(self) -> Iterator[tuple[str, str, Hold]]:
        """Every hold on every key: (key hash, key id, hold). Only key items that have one are read back."""
        kwargs: dict[str, Any] = {
            "TableName": self.keys_table,
            "FilterExpression": "attribute_exists(holds)",
            "ProjectionExpression": "key_hash, key_id, holds",
        }
        while True:
            page = self.client.scan(**kwargs)
            for item in page.get("Items", []):
                for tag in item.get("holds", {}).get("SS", []):
                    hold = Hold.parse(tag)
                    if hold is not None:
                        yield item["key_hash"]["S"], item.get("key_id", {}).get("S", ""), hold
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def run(self, older_than: float = DEFAULT_MAX_AGE_SECONDS, now: float | None = None) -> Report:
        """Release every hold older than ``older_than`` seconds."""
        now = time.time() if now is None else now
        report = Report()
        for key_hash, key_id, hold in list(self.outstanding()):
            if now - hold.at < older_than:
                report.young += 1
                continue
            outcome = self.release(key_hash, key_id, hold, now)
            getattr(report, outcome).append(hold.request_id)
            if outcome != "gone":
                report.returned_micros += hold.amount
        return report

    def release(self, key_hash: str, key_id: str, hold: Hold, now: float) -> Outcome:
        record = UsageRecord(
            request_id=hold.request_id or f"hold_{hold.tag.split('|')[3]}",
            key_id=key_id,
            protocol="unknown",
            client_model="unknown",
            model="unknown",
            cost=0,
            hold=hold.amount,
            status=0,
            outcome="abandoned",
            usage_source="none",
            created_at=_iso(hold.at),
            settled_at=_iso(now),
            expires_at=int(now) + self.retention_days * 86400,
        )
        update = self._give_back(key_hash, hold)
        for attempt in range(SETTLE_ATTEMPTS):
            try:
                self.client.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": self.usage_table,
                                "Item": record.item(),
                                "ConditionExpression": "attribute_not_exists(request_id)",
                            }
                        },
                        {"Update": update},
                    ]
                )
                return "abandoned"
            except self.client.exceptions.TransactionCanceledException as e:
                codes = [r.get("Code") for r in e.response.get("CancellationReasons") or []]
                if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                    return "gone"  # settled or released meanwhile
                if codes and codes[0] == "ConditionalCheckFailed":
                    return self._release_alone(update)
                if "TransactionConflict" not in codes or attempt + 1 == SETTLE_ATTEMPTS:
                    raise
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    def _give_back(self, key_hash: str, hold: Hold) -> dict[str, Any]:
        return {
            "TableName": self.keys_table,
            "Key": {"key_hash": {"S": key_hash}},
            "UpdateExpression": "ADD balance :back, #spent :neg DELETE holds :tags",
            "ConditionExpression": "contains(holds, :tag)",
            "ExpressionAttributeNames": {"#spent": f"spent_{hold.month}"},
            "ExpressionAttributeValues": {
                ":back": {"N": str(hold.amount)},
                ":neg": {"N": str(-hold.amount)},
                ":tags": {"SS": [hold.tag]},
                ":tag": {"S": hold.tag},
            },
        }

    def _release_alone(self, update: dict[str, Any]) -> Outcome:
        try:
            self.client.update_item(**update)
        except self.client.exceptions.ConditionalCheckFailedException:
            return "gone"
        return "released"
