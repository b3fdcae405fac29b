"""Money and rate counters on the key's own item: admission in one write, settlement in one transaction.

Everything a request's admission must know lives on the key's item in the Keys table, so one
conditional ``UpdateItem`` (the only DynamoDB round trip before the upstream is called) checks the
key is active, its balance positive, its monthly budget unspent and its rate window not full, and
at once counts the request and holds its maximum cost:

- ``balance``: micro-dollars; admission subtracts a *hold* (the request's maximum cost), settlement
  gives back ``hold - cost``. Concurrent requests therefore cannot overspend by more than one
  request's maximum cost.
- ``spent_YYYYMM``: micro-dollars spent (held) in a calendar month (UTC), against ``monthly_budget``.
- ``win``, ``win_requests``, ``win_tokens``: the current one-minute window (its number since the
  epoch) and what it has counted. A new window resets them in a second conditional write, at most
  once per key per minute; old windows leave nothing behind (so no TTL is needed on the key item).

- ``holds``: a string set, one element per request admitted and not yet settled
  (:class:`Hold`: when, how much, which month, which request). Admission adds it in the same write;
  settlement deletes it in its transaction. A container that dies in between (timeout, OOM, reclaimed)
  leaves it behind, findable, for :mod:`pisces.store.reconcile` to release exactly once.

Settlement is one ``TransactWriteItems``: the usage record, put only if no record has the request
id yet, and the balance/budget/token-counter update that also removes the hold. A retried
settlement finds the record and changes nothing: a request is charged exactly once.

Neither write is unsafe to retry (botocore retries a call whose answer timed out, and the first
attempt may have been applied): admission's condition includes ``NOT contains(holds, <its hold>)``,
so a retry of an applied admission fails and finds its own hold in the old item (applied once);
settlement's transaction carries a ``ClientRequestToken`` derived from the request id, which
DynamoDB answers as already done for 10 minutes, and after that the record's condition holds.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pisces.store.dynamo import Call, Pause, Steps, code, drive, run

if TYPE_CHECKING:
    from pisces.store.dynamo_http import AsyncDynamo

T = TypeVar("T")

WINDOW_SECONDS = 60
SETTLE_ATTEMPTS = 5  # tries of a write that lost a race with a transaction on the key item


@dataclass(frozen=True, slots=True)
class RateLimits:
    requests: int  # per window; 0 = unlimited
    tokens: int


@dataclass(frozen=True, slots=True)
class Hold:
    """One outstanding hold, as the element of the key item's ``holds`` set says it:
    ``"<epoch seconds>|<micro-dollars>|<YYYYMM>|<nonce>|<request id>"``. The nonce keeps two holds
    apart even when they share a second, an amount and a (client-chosen) request id."""

    at: int
    amount: int
    month: str
    request_id: str
    tag: str

    @classmethod
    def new(cls, now: float, amount: int, month: str, request_id: str) -> Hold:
        tag = f"{int(now)}|{amount}|{month}|{secrets.token_hex(4)}|{request_id}"
        return cls(int(now), amount, month, request_id, tag)

    @classmethod
    def parse(cls, tag: str) -> Hold | None:
        parts = tag.split("|", 4)
        if len(parts) != 5 or not parts[0].isdigit() or not parts[1].lstrip("-").isdigit():
            return None
        return cls(int(parts[0]), int(parts[1]), parts[2], parts[4], tag)


@dataclass(frozen=True, slots=True)
class Admitted:
    window: int  # the window number the request was counted in
    month: str  # YYYYMM of the spend attribute the hold went to
    balance: int  # after the hold
    requests: int  # counted in the window, this request included
    tokens: int  # tokens settled in the window so far
    limits: RateLimits
    hold: Hold | None = None  # the element admission added to the key's ``holds``

    def reset_seconds(self, now: float | None = None) -> int:
        return max(1, (self.window + 1) * WINDOW_SECONDS - int(now if now is not None else time.time()))


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Literal["unknown_key", "revoked", "balance", "budget", "requests", "tokens"]
    balance: int = 0
    window: int = 0
    requests: int = 0
    tokens: int = 0


def window_of(now: float) -> int:
    return int(now // WINDOW_SECONDS)


def month_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m")


def request_token(request_id: str, purpose: str = "settle") -> str:
    """A TransactWriteItems ClientRequestToken (at most 36 characters) for one request's write."""
    return hashlib.sha256(f"{purpose}:{request_id}".encode()).hexdigest()[:32]


def _n(v: int) -> dict[str, str]:
    return {"N": str(v)}


def _num(item: dict[str, Any], attr: str) -> int:
    return int(item[attr]["N"]) if attr in item else 0


class Ledger:
    """Admission and settlement, each written once as steps (:mod:`pisces.store.dynamo`): ``admit`` and
    ``settle`` run them on botocore's ``client``; ``admit_async`` and ``settle_async`` on the event loop
    over ``db`` (the gateway's hot path), or on a worker thread through ``client`` when there is none."""

    def __init__(self, client: Any, keys_table: str, usage_table: str, db: AsyncDynamo | None = None) -> None:
        self.client = client
        self.keys_table = keys_table
        self.usage_table = usage_table
        self.db = db

    async def _run(self, steps: Steps[T]) -> T:
        return await run(self.client, self.db, steps)

    def counters(self, key_hash: str, now: float | None = None) -> dict[str, Any] | None:
        """What the key item counts now (one consistent read): this month's spend and the current
        window's requests and tokens (0 when the window has moved on). None for an unknown key."""
        now = time.time() if now is None else now
        item = self.client.get_item(
            TableName=self.keys_table, Key={"key_hash": {"S": key_hash}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        window, month = window_of(now), month_of(now)
        current = _num(item, "win") == window
        return {
            "balance": _num(item, "balance"),
            "month": f"{month[:4]}-{month[4:]}",
            "spent": _num(item, f"spent_{month}"),
            "window_requests": _num(item, "win_requests") if current else 0,
            "window_tokens": _num(item, "win_tokens") if current else 0,
            "window_resets_in": (window + 1) * WINDOW_SECONDS - int(now),
        }

    # ------------------------------------------------------------------------------------------
    # admission

    def admit(
        self, key_hash: str, hold: int, limits: RateLimits, now: float | None = None, request_id: str = ""
    ) -> Admitted | Refused:
        """Count one request and hold ``hold`` micro-dollars, if the key may spend and has room; the
        hold is recorded on the key item (``holds``) in the same write, for the reconciler."""
        return drive(self.client, self.admit_steps(key_hash, hold, limits, now, request_id))

    async def admit_async(
        self, key_hash: str, hold: int, limits: RateLimits, now: float | None = None, request_id: str = ""
    ) -> Admitted | Refused:
        return await self._run(self.admit_steps(key_hash, hold, limits, now, request_id))

    def admit_steps(
        self, key_hash: str, hold: int, limits: RateLimits, now: float | None = None, request_id: str = ""
    ) -> Steps[Admitted | Refused]:
        now = time.time() if now is None else now
        window, month = window_of(now), month_of(now)
        tag = Hold.new(now, hold, month, request_id)
        for _ in range(3):
            for same_window in (True, False):
                old = yield from self._update(key_hash, tag, limits, window, month, same_window=same_window)
                if not isinstance(old, dict):
                    return old
                if not old:
                    return Refused("unknown_key")
                refused = self._why(old, limits, window, month)
                if refused is not None:
                    return refused
                # Only the window differed. Another instance's clock may be ahead: count in its window.
                if _num(old, "win") > window:
                    window = _num(old, "win")
                    break
            # else: another request opened the new window first; count in it
        return Refused("requests")  # the window kept moving under us: busy

    def _update(
        self, key_hash: str, hold: Hold, limits: RateLimits, window: int, month: str, *, same_window: bool
    ) -> Steps[Admitted | Refused | dict[str, Any]]:
        """One conditional write; the old item (``{}`` if none) when its condition fails."""
        names = {"#st": "status", "#spent": f"spent_{month}"}
        values: dict[str, Any] = {
            ":active": {"S": "active"},
            ":zero": _n(0),
            ":hold": _n(hold.amount),
            ":w": _n(window),
            ":tag": {"SS": [hold.tag]},
            ":tag1": {"S": hold.tag},
        }
        cond = [
            # a retry of a write that was applied (its answer lost) finds its own hold and stops
            "NOT contains(holds, :tag1)",
            "attribute_exists(key_hash)",
            "#st = :active",
            "balance > :zero",
            "(attribute_not_exists(monthly_budget) OR attribute_not_exists(#spent) OR #spent < monthly_budget)",
        ]
        if same_window:
            update = "SET win_requests = win_requests + :one, balance = balance - :hold ADD #spent :hold, holds :tag"
            values[":one"] = _n(1)
            cond.append("win = :w")
            if limits.requests:
                cond.append("win_requests < :rpm")
                values[":rpm"] = _n(limits.requests)
            if limits.tokens:
                cond.append("win_tokens < :tpm")
                values[":tpm"] = _n(limits.tokens)
        else:
            update = (
                "SET win = :w, win_requests = :one, win_tokens = :zero, balance = balance - :hold"
                " ADD #spent :hold, holds :tag"
            )
            values[":one"] = _n(1)
            cond.append("(attribute_not_exists(win) OR win < :w)")
        for attempt in range(SETTLE_ATTEMPTS):
            try:
                res = yield Call("update_item", {
                    "TableName": self.keys_table,
                    "Key": {"key_hash": {"S": key_hash}},
                    "UpdateExpression": update,
                    "ConditionExpression": " AND ".join(cond),
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                    "ReturnValues": "ALL_NEW",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                })  # fmt: skip
                break
            except Exception as e:
                if code(e) == "ConditionalCheckFailedException":
                    old = dict(e.response.get("Item") or {})  # type: ignore[attr-defined]
                    if hold.tag in old.get("holds", {}).get("SS", []):
                        res = {"Attributes": old}  # applied by an earlier attempt whose answer was lost
                        break
                    return old
                # a settlement's transaction holds the key item for a moment: try again
                if code(e) != "TransactionConflictException" or attempt + 1 == SETTLE_ATTEMPTS:
                    raise
                yield Pause(0.005 * 2**attempt)
        item = res["Attributes"]
        return Admitted(
            window=window,
            month=month,
            balance=_num(item, "balance"),
            requests=_num(item, "win_requests"),
            tokens=_num(item, "win_tokens"),
            limits=limits,
            hold=hold,
        )

    @staticmethod
    def _why(item: dict[str, Any], limits: RateLimits, window: int, month: str) -> Refused | None:
        """Why ``item`` failed admission's condition; None when only its window differs."""
        balance, win = _num(item, "balance"), _num(item, "win")
        requests, tokens = _num(item, "win_requests"), _num(item, "win_tokens")

        def refused(reason: Any) -> Refused:
            return Refused(reason, balance=balance, window=win, requests=requests, tokens=tokens)

        if item.get("status", {}).get("S") != "active":
            return refused("revoked")
        if balance <= 0:
            return refused("balance")
        if "monthly_budget" in item and _num(item, f"spent_{month}") >= _num(item, "monthly_budget"):
            return refused("budget")
        if win != window:
            return None
        if limits.requests and requests >= limits.requests:
            return refused("requests")
        if limits.tokens and tokens >= limits.tokens:
            return refused("tokens")
        return None

    # ------------------------------------------------------------------------------------------
    # settlement

    def settle(self, key_hash: str, hold: int, month: str, record: dict[str, Any], tag: str | None = None) -> bool:
        """Write the usage record and charge ``record['cost']`` (giving back the rest of the hold and
        removing its ``tag`` from the key's ``holds``), both or neither; False when this request id
        was settled before (nothing changes)."""
        return drive(self.client, self.settle_steps(key_hash, hold, month, record, tag))

    async def settle_async(
        self, key_hash: str, hold: int, month: str, record: dict[str, Any], tag: str | None = None
    ) -> bool:
        return await self._run(self.settle_steps(key_hash, hold, month, record, tag))

    def settle_steps(
        self, key_hash: str, hold: int, month: str, record: dict[str, Any], tag: str | None = None
    ) -> Steps[bool]:
        cost = int(record["cost"]["N"])
        tokens = int(record["input_tokens"]["N"]) + int(record["output_tokens"]["N"])
        for attempt in range(SETTLE_ATTEMPTS):
            try:
                return (yield from self._settle_once(key_hash, hold, cost, tokens, month, record, tag))
            except Exception as e:
                reasons = [r.get("Code") for r in getattr(e, "response", {}).get("CancellationReasons") or []]
                # Another write to the key item (an admission) raced this transaction: DynamoDB
                # cancels it; the record's condition makes a retry safe.
                if code(e) != "TransactionCanceledException" or "TransactionConflict" not in reasons:
                    raise
                if attempt + 1 == SETTLE_ATTEMPTS:
                    raise
                yield Pause(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    def _settle_once(
        self, key_hash: str, hold: int, cost: int, tokens: int, month: str, record: dict[str, Any], tag: str | None
    ) -> Steps[bool]:
        values = {":back": _n(hold - cost), ":delta": _n(cost - hold), ":tokens": _n(tokens)}
        update = "ADD balance :back, #spent :delta, win_tokens :tokens"
        if tag is not None:
            update += " DELETE holds :tag"
            values[":tag"] = {"SS": [tag]}
        try:
            yield Call("transact_write_items", dict(
                # the same token makes a retried transaction (botocore's, after a lost answer) a no-op
                ClientRequestToken=request_token(record["request_id"]["S"]),
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.usage_table,
                            "Item": record,
                            "ConditionExpression": "attribute_not_exists(request_id)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.keys_table,
                            "Key": {"key_hash": {"S": key_hash}},
                            "UpdateExpression": update,
                            "ExpressionAttributeNames": {"#spent": f"spent_{month}"},
                            "ExpressionAttributeValues": values,
                            # a key deleted since its admission is not made again by its charge
                            "ConditionExpression": "attribute_exists(key_hash)",
                        }
                    },
                ],
            ))  # fmt: skip
        except Exception as e:
            reasons = [r.get("Code") for r in getattr(e, "response", {}).get("CancellationReasons") or []]
            if code(e) != "TransactionCanceledException" or not reasons:
                raise
            if reasons[0] == "ConditionalCheckFailed":
                return False  # this request was settled before
            if reasons[1:2] == ["ConditionalCheckFailed"]:  # its key is gone: the usage record alone
                return (yield from self._record_only(record))
            raise
        return True

    def _record_only(self, record: dict[str, Any]) -> Steps[bool]:
        """The usage record of a request whose key item was deleted after its admission: what it used is
        recorded (once), and no key item is written (an update would make one that holds only the charge)."""
        try:
            yield Call("put_item", dict(TableName=self.usage_table, Item=record,
                                        ConditionExpression="attribute_not_exists(request_id)"))  # fmt: skip
        except Exception as e:
            if code(e) == "ConditionalCheckFailedException":
                return False
            raise
        return True
