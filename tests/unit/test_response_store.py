"""The stored-Responses repository on moto: scoped to the key, expired by its own clock (moto never runs TTL)."""

from __future__ import annotations

import time

from pisces.store import dynamo
from pisces.store.responses import MAX_ITEM_BYTES, ResponseStore
from pisces.store.schema import TABLES, table_name


def test_the_table_expires_items_by_ttl():
    assert TABLES["responses"]["ttl_attribute"] == "expires_at"


def test_put_get_delete_scoped_to_the_key(local_dynamo):
    store = ResponseStore(dynamo.client(), table_name("responses"), retention_days=30)
    conv = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert store.put("resp_store_1", "key_a", {"id": "resp_store_1", "output": []}, conv)
    got = store.get("resp_store_1", "key_a")
    assert got is not None and got.response == {"id": "resp_store_1", "output": []} and got.conversation == conv
    assert 29 * 86400 < got.expires_at - time.time() <= 30 * 86400
    assert store.get("resp_store_1", "key_b") is None, "another key's response does not exist for it"
    assert store.delete("resp_store_1", "key_b") is False
    assert store.get("resp_store_1", "key_a") is not None
    assert store.delete("resp_store_1", "key_a") is True
    assert store.get("resp_store_1", "key_a") is None and store.delete("resp_store_1", "key_a") is False


def test_an_expired_response_is_gone_before_dynamodb_deletes_it(local_dynamo):
    store = ResponseStore(dynamo.client(), table_name("responses"), retention_days=1)
    store.put("resp_store_2", "key_a", {"id": "resp_store_2"}, [])
    assert store.get("resp_store_2", "key_a", now=time.time() + 86400 - 60) is not None
    assert store.get("resp_store_2", "key_a", now=time.time() + 86400 + 1) is None


def test_a_conversation_too_large_for_an_item_is_not_stored(local_dynamo):
    import os

    store = ResponseStore(dynamo.client(), table_name("responses"))
    noise = os.urandom(MAX_ITEM_BYTES).hex()  # incompressible
    assert store.put("resp_store_3", "key_a", {"id": "resp_store_3"}, [{"text": noise}]) is False
    assert store.get("resp_store_3", "key_a") is None
