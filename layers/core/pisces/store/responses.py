"""Stored Responses (``store: true``), for ``previous_response_id`` and ``GET /v1/responses/{id}``.

Their own table, ``responses``, keyed by the response id: an item holds the owning key's id (a
response is visible to that key only; any other key is told 404), the response object as sent, the
conversation so far in canonical form (what a ``previous_response_id`` continues), and
``expires_at`` (DynamoDB's TTL deletes it after ``limits.responses_retention_days``; reads check the
time themselves, as DynamoDB may keep an expired item for a while). The JSON is compressed: an item
may hold 400 KB, and a conversation that will not fit is not stored (its id then reads as 404).
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from typing import Any

MAX_ITEM_BYTES = 380_000  # DynamoDB's item limit is 400 KB, names and the other attributes included


@dataclass(slots=True)
class StoredResponse:
    id: str
    key_id: str
    response: dict[str, Any]
    conversation: Any  # JSON: what the door keeps of the conversation (pisces.pipeline.responses)
    expires_at: int


def _pack(value: Any) -> bytes:
    return zlib.compress(json.dumps(value, separators=(",", ":")).encode(), 6)


def _unpack(blob: bytes) -> Any:
    return json.loads(zlib.decompress(blob))


class ResponseStore:
    def __init__(self, client: Any, table: str, retention_days: int = 30) -> None:
        self.client = client
        self.table = table
        self.retention_seconds = retention_days * 86400

    def put(self, rid: str, key_id: str, response: dict[str, Any], conversation: Any) -> bool:
        """Store one response; False when it is too large to be stored."""
        body, conv = _pack(response), _pack(conversation)
        if len(body) + len(conv) > MAX_ITEM_BYTES:
            return False
        self.client.put_item(
            TableName=self.table,
            Item={
                "id": {"S": rid},
                "key_id": {"S": key_id},
                "response": {"B": body},
                "conversation": {"B": conv},
                "created_at": {"N": str(int(time.time()))},
                "expires_at": {"N": str(int(time.time()) + self.retention_seconds)},
            },
        )
        return True

    def get(self, rid: str, key_id: str, now: float | None = None) -> StoredResponse | None:
        """The response ``rid`` if it belongs to ``key_id`` and has not expired, else None."""
        item = self.client.get_item(TableName=self.table, Key={"id": {"S": rid}}, ConsistentRead=True).get("Item")
        if not item or item["key_id"]["S"] != key_id:
            return None
        expires = int(item["expires_at"]["N"])
        if expires <= (now if now is not None else time.time()):
            return None
        return StoredResponse(rid, key_id, _unpack(item["response"]["B"]), _unpack(item["conversation"]["B"]),
                              expires)  # fmt: skip

    def delete(self, rid: str, key_id: str) -> bool:
        """Delete ``rid`` if it is ``key_id``'s; False when there is no such response of this key."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key={"id": {"S": rid}},
                ConditionExpression="key_id = :k AND expires_at > :now",
                ExpressionAttributeValues={":k": {"S": key_id}, ":now": {"N": str(int(time.time()))}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True
