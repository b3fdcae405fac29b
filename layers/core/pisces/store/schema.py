"""The DynamoDB tables, as boto3 ``create_table`` arguments (without TableName).

The same layout is declared in ``template.yaml``; a template test keeps the two in step. The dev
server and the tests create these tables in moto.
"""

from __future__ import annotations

import os
from typing import Any

TABLES: dict[str, dict[str, Any]] = {
    "keys": {
        "KeySchema": [{"AttributeName": "key_hash", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": "key_hash", "AttributeType": "S"},
            {"AttributeName": "key_id", "AttributeType": "S"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "by_id",
                "KeySchema": [{"AttributeName": "key_id", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
        "ttl_attribute": None,
    },
    "usage": {
        "KeySchema": [{"AttributeName": "request_id", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": "request_id", "AttributeType": "S"},
            {"AttributeName": "key_id", "AttributeType": "S"},
            {"AttributeName": "created_at", "AttributeType": "S"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "by_key",
                "KeySchema": [
                    {"AttributeName": "key_id", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
        "ttl_attribute": "expires_at",
    },
    "idempotency": {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
        "ttl_attribute": "expiration",
    },
    # stored Responses (POST /v1/responses with store): previous_response_id, GET/DELETE /v1/responses/{id}
    "responses": {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
        "ttl_attribute": "expires_at",
    },
}

# Environment variable holding each table's name, and the name used locally when it is unset.
TABLE_ENV = {
    "keys": ("PISCES_KEYS_TABLE", "pisces-keys"),
    "usage": ("PISCES_USAGE_TABLE", "pisces-usage"),
    "idempotency": ("PISCES_IDEMPOTENCY_TABLE", "pisces-idempotency"),
    "responses": ("PISCES_RESPONSES_TABLE", "pisces-responses"),
}


def table_name(logical: str) -> str:
    env, default = TABLE_ENV[logical]
    return os.environ.get(env) or default


def create_tables(client: Any, names: dict[str, str] | None = None) -> dict[str, str]:
    """Create every table (idempotently) with ``client`` (a boto3 DynamoDB client); returns the names.
    Given ``names``, only the tables it names."""
    names = names or {logical: table_name(logical) for logical in TABLES}
    existing = set(client.list_tables().get("TableNames", []))
    for logical, spec in TABLES.items():
        if logical not in names:
            continue
        name = names[logical]
        if name in existing:
            continue
        kwargs = {k: v for k, v in spec.items() if k != "ttl_attribute"}
        client.create_table(TableName=name, **kwargs)
        if spec["ttl_attribute"]:
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": spec["ttl_attribute"]},
            )
    return names
