"""API keys: ``pisces-<random>``, stored only as a SHA-256 hash with a short display prefix."""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from pisces.money import parse_usd, usd
from pisces.store.dynamo import Call, Steps, drive, run

if TYPE_CHECKING:
    from pisces.store.dynamo_http import AsyncDynamo

KEY_PREFIX = "pisces-"
DISPLAY_CHARS = 12  # "pisces-Ab3dE": enough to tell keys apart, far too little to guess one

# What ``set_limits`` accepts, and the bounds the admin API and the CLI check at the edge.
LIMITS = ("monthly_budget", "rpm", "tpm")
MAX_AMOUNT = 10**15  # micro-dollars ($1,000,000,000): far inside DynamoDB's 38 digits
MAX_RATE = 10**12


def parse_amount(value: Any, *, allow_zero: bool = True) -> int:
    """A dollar amount from a client (number or decimal string) as micro-dollars, at most $1e9.

    ValueError with a message fit to show the caller; see :func:`pisces.money.parse_usd`.
    """
    micros = parse_usd(value, allow_zero=allow_zero)
    if micros > MAX_AMOUNT:
        raise ValueError(f"an amount must be at most {usd(MAX_AMOUNT)} dollars")
    return micros


def parse_rate(value: Any) -> int:
    """A per-minute rate limit (rpm, tpm): an integer >= 0, 0 meaning unlimited; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RATE:
        raise ValueError(f"a rate limit is a whole number from 0 (unlimited) to {MAX_RATE}")
    return value


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyRecord(BaseModel):
    key_id: str
    key_hash: str
    prefix: str
    name: str = ""
    status: Literal["active", "revoked"] = "active"
    allowed_models: list[str] = Field(default_factory=list)  # glob patterns; empty = every model
    created_at: str = ""
    # Money, in integer micro-dollars. ``balance`` as last read: admission reads the live value.
    balance: int = 0
    monthly_budget: int | None = None  # None: no budget, the balance alone limits spending
    # Rate limits per minute; None: the configuration's default, 0: unlimited.
    rpm: int | None = None
    tpm: int | None = None

    def allows(self, *names: str) -> bool:
        """Whether the key may use a model known by any of ``names`` (its canonical name, an alias)."""
        return not self.allowed_models or any(
            fnmatch.fnmatchcase(name, p) for name in names for p in self.allowed_models
        )

    def public(self) -> dict[str, Any]:
        """What the admin API and CLI show: never the hash; money also as USD decimal strings."""
        out = self.model_dump(exclude={"key_hash"})
        out["balance_usd"] = usd(self.balance)
        out["monthly_budget_usd"] = None if self.monthly_budget is None else usd(self.monthly_budget)
        return out


def _item(rec: KeyRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "key_hash": {"S": rec.key_hash},
        "key_id": {"S": rec.key_id},
        "prefix": {"S": rec.prefix},
        "name": {"S": rec.name},
        "status": {"S": rec.status},
        "created_at": {"S": rec.created_at},
        "allowed_models": {"L": [{"S": m} for m in rec.allowed_models]},
        "balance": {"N": str(rec.balance)},
    }
    for attr in ("monthly_budget", "rpm", "tpm"):
        value = getattr(rec, attr)
        if value is not None:
            item[attr] = {"N": str(value)}
    return item


def _num(item: dict[str, Any], attr: str) -> int | None:
    return int(item[attr]["N"]) if attr in item else None


def _record(item: dict[str, Any]) -> KeyRecord:
    return KeyRecord(
        key_id=item["key_id"]["S"],
        key_hash=item["key_hash"]["S"],
        prefix=item.get("prefix", {}).get("S", ""),
        name=item.get("name", {}).get("S", ""),
        status=item.get("status", {}).get("S", "active"),
        allowed_models=[m["S"] for m in item.get("allowed_models", {}).get("L", [])],
        created_at=item.get("created_at", {}).get("S", ""),
        balance=_num(item, "balance") or 0,
        monthly_budget=_num(item, "monthly_budget"),
        rpm=_num(item, "rpm"),
        tpm=_num(item, "tpm"),
    )


class KeyStore:
    """The Keys table: hash -> record, with a ``by_id`` index for the admin side."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def create(
        self,
        name: str = "",
        models: list[str] | None = None,
        plaintext: str | None = None,
        *,
        balance: int = 0,
        monthly_budget: int | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> tuple[str, KeyRecord]:
        """A new key (money in micro-dollars); the plaintext is returned once and never stored."""
        plaintext = plaintext or new_key()
        if not plaintext.startswith(KEY_PREFIX) or len(plaintext) < len(KEY_PREFIX) + 16:
            raise ValueError(f"a key must look like {KEY_PREFIX}<at least 16 characters>")
        rec = KeyRecord(
            key_id="key_" + secrets.token_hex(8),
            key_hash=hash_key(plaintext),
            prefix=plaintext[:DISPLAY_CHARS],
            name=name,
            allowed_models=list(models or []),
            balance=balance,
            monthly_budget=monthly_budget,
            rpm=rpm,
            tpm=tpm,
            created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        )
        try:
            self.client.put_item(
                TableName=self.table, Item=_item(rec), ConditionExpression="attribute_not_exists(key_hash)"
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            # botocore retries a put whose answer was lost: the item there may be this very key
            there = self.get_by_hash(rec.key_hash)
            if there is None or there.key_id != rec.key_id:
                raise
        return plaintext, rec

    def get_by_hash(self, key_hash: str) -> KeyRecord | None:
        return drive(self.client, self._get_steps(key_hash))

    async def get_by_hash_async(self, key_hash: str, db: AsyncDynamo | None) -> KeyRecord | None:
        """:meth:`get_by_hash` on the event loop over ``db`` (the gateway's), else on a worker thread."""
        return await run(self.client, db, self._get_steps(key_hash))

    def _get_steps(self, key_hash: str) -> Steps[KeyRecord | None]:
        res = yield Call("get_item", {"TableName": self.table, "Key": {"key_hash": {"S": key_hash}}})
        item = res.get("Item")
        return _record(item) if item else None

    def get_by_id(self, key_id: str) -> KeyRecord | None:
        res = self.client.query(
            TableName=self.table,
            IndexName="by_id",
            KeyConditionExpression="key_id = :k",
            ExpressionAttributeValues={":k": {"S": key_id}},
        )
        items = res.get("Items", [])
        return _record(items[0]) if items else None

    def list(self) -> list[KeyRecord]:
        out: list[KeyRecord] = []
        kwargs: dict[str, Any] = {"TableName": self.table}
        while True:
            res = self.client.scan(**kwargs)
            # an item without a key_id is no key (one made by hand, or by a settlement of a key deleted in
            # between before the ledger's update was made conditional on the key); it would fail the list
            out.extend(_record(i) for i in res.get("Items", []) if "key_id" in i)
            if "LastEvaluatedKey" not in res:
                break
            kwargs["ExclusiveStartKey"] = res["LastEvaluatedKey"]
        return sorted(out, key=lambda r: r.created_at)

    def revoke(self, key_id: str) -> KeyRecord | None:
        rec = self.get_by_id(key_id)
        if rec is None:
            return None
        self.client.update_item(
            TableName=self.table,
            Key={"key_hash": {"S": rec.key_hash}},
            UpdateExpression="SET #s = :r",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":r": {"S": "revoked"}},
        )
        return rec.model_copy(update={"status": "revoked"})

    def top_up(self, key_id: str, micros: int) -> KeyRecord | None:
        """Add ``micros`` (> 0) to the key's balance in one atomic update; None for an unknown key."""
        if micros <= 0:
            raise ValueError("a top-up must be a positive amount")
        rec = self.get_by_id(key_id)
        if rec is None:
            return None
        try:
            res = self.client.update_item(
                TableName=self.table,
                Key={"key_hash": {"S": rec.key_hash}},
                UpdateExpression="ADD balance :a",
                ConditionExpression="attribute_exists(key_hash)",
                ExpressionAttributeValues={":a": {"N": str(micros)}},
                ReturnValues="ALL_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return _record(res["Attributes"])

    def set_limits(self, key_id: str, **limits: int | None) -> KeyRecord | None:
        """Set (a number) or clear (None) ``monthly_budget``, ``rpm``, ``tpm``; None for an unknown key.

        ValueError for any other name, or a value that is not an integer >= 0 (nor None).
        """
        unknown = sorted(set(limits) - set(LIMITS))
        if unknown:
            raise ValueError(f"unknown limit(s) {', '.join(unknown)}: only {', '.join(LIMITS)}")
        for name, value in limits.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be an integer >= 0 or None, not {value!r}")
        rec = self.get_by_id(key_id)
        if rec is None:
            return None
        sets = {k: v for k, v in limits.items() if v is not None}
        removes = [k for k, v in limits.items() if v is None]
        expr = ""
        if sets:
            expr += "SET " + ", ".join(f"{k} = :{k}" for k in sets)
        if removes:
            expr += " REMOVE " + ", ".join(removes)
        if not expr:
            return rec
        kwargs: dict[str, Any] = {"ExpressionAttributeValues": {f":{k}": {"N": str(v)} for k, v in sets.items()}}
        res = self.client.update_item(
            TableName=self.table,
            Key={"key_hash": {"S": rec.key_hash}},
            UpdateExpression=expr.strip(),
            ConditionExpression="attribute_exists(key_hash)",
            ReturnValues="ALL_NEW",
            **(kwargs if sets else {}),
        )
        return _record(res["Attributes"])


class KeyCache:
    """Per-container cache of key lookups (hits and misses) so a known key costs no DynamoDB call.

    Entries live ``ttl`` seconds: a revoke takes effect on every container within that time.
    """

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, KeyRecord | None]] = {}

    def get(self, key_hash: str) -> tuple[bool, KeyRecord | None]:
        hit = self._entries.get(key_hash)
        if hit is None or hit[0] < time.monotonic():
            return False, None
        return True, hit[1]

    def put(self, key_hash: str, rec: KeyRecord | None) -> None:
        if len(self._entries) >= self.max_entries:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[key_hash] = (time.monotonic() + self.ttl, rec)
