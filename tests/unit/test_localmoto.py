"""The local DynamoDB's transactions (pisces.localmoto on moto's server): all or nothing without copying
tables. Over real HTTP to the session's LocalDynamo; counts, never timings."""

from __future__ import annotations

import copy
import uuid

import pytest

from pisces.store import dynamo
from pisces.store.schema import table_name


@pytest.fixture
def client(local_dynamo):
    return dynamo.client()


def _get(client, table: str, key: dict) -> dict | None:
    return client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")


def test_a_cancelled_transaction_changes_nothing_it_named(client):
    keys, usage = table_name("keys"), table_name("usage")
    kh, rid, fresh = (f"bench-{uuid.uuid4().hex}" for _ in range(3))
    client.put_item(TableName=keys, Item={"key_hash": {"S": kh}, "balance": {"N": "100"}})
    client.put_item(TableName=usage, Item={"request_id": {"S": rid}, "cost": {"N": "1"}})
    items = [
        # applied first, then undone: the charge
        {"Update": {"TableName": keys, "Key": {"key_hash": {"S": kh}}, "UpdateExpression": "ADD balance :d",
                    "ExpressionAttributeValues": {":d": {"N": "-7"}}}},
        # a new item, put and then taken away again
        {"Put": {"TableName": usage, "Item": {"request_id": {"S": fresh}, "cost": {"N": "2"}}}},
        # the record exists: the whole transaction is cancelled
        {"Put": {"TableName": usage, "Item": {"request_id": {"S": rid}, "cost": {"N": "9"}},
                 "ConditionExpression": "attribute_not_exists(request_id)"}},
    ]  # fmt: skip
    with pytest.raises(client.exceptions.TransactionCanceledException) as e:
        client.transact_write_items(TransactItems=items)
    codes = [r["Code"] for r in e.value.response["CancellationReasons"]]
    assert codes == ["None", "None", "ConditionalCheckFailed"]
    assert _get(client, keys, {"key_hash": {"S": kh}})["balance"] == {"N": "100"}
    assert _get(client, usage, {"request_id": {"S": fresh}}) is None
    assert _get(client, usage, {"request_id": {"S": rid}})["cost"] == {"N": "1"}
    # and the same transaction without the failing part applies whole
    client.transact_write_items(TransactItems=items[:2])
    assert _get(client, keys, {"key_hash": {"S": kh}})["balance"] == {"N": "93"}
    assert _get(client, usage, {"request_id": {"S": fresh}})["cost"] == {"N": "2"}


def test_tables_are_not_copied_by_a_transaction(client, monkeypatch):
    from moto.dynamodb.models.table import Table

    copies = []
    real = Table.__deepcopy__

    def counting(self, memo):
        out = real(self, memo)
        copies.append(out is not self)
        return out

    monkeypatch.setattr(Table, "__deepcopy__", counting)
    keys = table_name("keys")
    kh = f"bench-{uuid.uuid4().hex}"
    client.transact_write_items(TransactItems=[{"Put": {"TableName": keys, "Item": {"key_hash": {"S": kh}}}}])
    assert copies and not any(copies), "moto copied a whole table for a transaction"
    # outside a transaction a table still deep-copies whole (moto's own backups)
    from moto.dynamodb.models import dynamodb_backends

    table = dynamodb_backends["123456789012"]["us-east-1"].get_table(keys)
    twin = copy.deepcopy(table)
    assert twin is not table and twin.items is not table.items and len(twin.items) == len(table.items)
