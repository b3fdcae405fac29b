"""moto's DynamoDB transactions at a cost that does not grow with the tables (local layer only).

moto backs up every table a ``TransactWriteItems`` names (``copy.deepcopy`` of the whole table) in case
the transaction is cancelled: with the usage table growing by one record per request, every settlement
got slower and the server's memory churned (90-220 ms of CPU a request at ~1,100 usage records), so
`make dev` and the tests slowed the longer they ran. DynamoDB itself holds only the items a transaction
writes. :func:`install` makes moto do the same: before the transaction, a deep copy of each item it
names (or the note that there is none); if it is cancelled, those items are put back, and the tables'
own "backups" are the tables themselves. The semantics moto's tests check are unchanged: all or nothing,
cancellation reasons in order, one operation per item. The deployed stack never runs this code.
"""

from __future__ import annotations

import copy
import functools
import threading
from typing import Any

_state = threading.local()
_MISSING = object()


def _item_key(table: Any, op_type: str, op: dict[str, Any]) -> tuple[Any, Any] | None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    attrs = op.get("Item") if op_type == "Put" else op.get("Key")
    if not isinstance(attrs, dict) or table.hash_key_attr not in attrs:
        return None
    rng = attrs.get(table.range_key_attr) if table.range_key_attr else None
    if table.range_key_attr and rng is None:
        return None
    return DynamoType(attrs[table.hash_key_attr]), DynamoType(rng) if rng is not None else None


def _get(table: Any, key: tuple[Any, Any]) -> Any:
    hk, rk = key
    got = table.items.get(hk, _MISSING)
    if rk is None or got is _MISSING:
        return got
    return got.get(rk, _MISSING)


def _put_back(table: Any, key: tuple[Any, Any], old: Any) -> None:
    hk, rk = key
    if rk is None:
        if old is _MISSING:
            table.items.pop(hk, None)
        else:
            table.items[hk] = old
        return
    inner = table.items[hk]
    if old is _MISSING:
        inner.pop(rk, None)
        if not inner:
            table.items.pop(hk, None)
    else:
        inner[rk] = old


def install() -> None:
    """Patch moto's DynamoDB backend in this process (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    if getattr(DynamoDBBackend.transact_write_items, "_pisces", False):
        return
    original = DynamoDBBackend.transact_write_items

    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved: list[tuple[Any, tuple[Any, Any], Any]] = []
        for entry in transact_items if len(transact_items) <= 100 else ():
            for op_type, op in entry.items():
                table = self.tables.get(op.get("TableName")) if isinstance(op, dict) else None
                key = _item_key(table, op_type, op) if table is not None else None
                if key is not None:
                    old = _get(table, key)
                    saved.append((table, key, old if old is _MISSING else copy.deepcopy(old)))
        _state.in_transaction = True
        try:
            original(self, transact_items)
        except Exception:
            for table, key, old in reversed(saved):
                _put_back(table, key, old)
            raise
        finally:
            _state.in_transaction = False

    transact_write_items._pisces = True  # type: ignore[attr-defined]

    def table_deepcopy(self: Any, memo: dict[int, Any]) -> Any:
        if getattr(_state, "in_transaction", False):
            return self  # moto's whole-table backup: the items it may change are saved above
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for name, value in self.__dict__.items():
            new.__dict__[name] = copy.deepcopy(value, memo)
        return new

    Table.__deepcopy__ = table_deepcopy  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
