"""``Idempotency-Key`` with Stripe's semantics, on Powertools' idempotency persistence layer.

The first request with a key claims it (an ``INPROGRESS`` record, one conditional put); its response
is stored (``COMPLETED``, kept ``limits.idempotency_hours``) and every repeat with the same key and
the same body gets that response again, marked ``Idempotent-Replayed: true``, and is charged
nothing. A repeat while the first still runs is a 409; the same key with another body (or on
another route) a 422. Keys are scoped per API key. A request that fails, or a stream that does not
finish, releases its claim so that a retry runs again.

Powertools' ``@idempotent`` decorators wrap one function call that returns one value; a stream is
sent while it is produced, so this drives the same persistence layer (``save_inprogress``,
``save_success``, ``delete_record``) by hand around the request.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pisces.errors import PiscesError
from pisces.pipeline.logs import logger

HEADER = "idempotency-key"
REPLAYED = "Idempotent-Replayed"
_VALID = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII without spaces, as Stripe's 255 chars
# A claim whose request died with its Lambda frees itself after the longest a request can run: the
# gateway function's timeout (900 s) and a minute, the same age after which the reconciler releases
# a dead request's hold. A retry before then is a 409; after, it runs once.
IN_PROGRESS_MILLIS = 960 * 1000


@dataclass(slots=True)
class Stored:
    """A response as sent: status, media type, and its body cut where it was sent (stream chunks)."""

    status: int
    media_type: str
    chunks: list[bytes] = field(default_factory=list)

    def dump(self) -> dict[str, Any]:
        body = b"".join(self.chunks)
        return {
            "status": self.status,
            "media_type": self.media_type,
            "cuts": [len(c) for c in self.chunks],
            "body": base64.b64encode(zlib.compress(body, 6)).decode(),
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> Stored:
        body = zlib.decompress(base64.b64decode(data["body"]))
        chunks, at = [], 0
        for n in data["cuts"]:
            chunks.append(body[at : at + n])
            at += n
        return cls(int(data["status"]), str(data["media_type"]), chunks)

    async def replay(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


@dataclass(slots=True)
class Claim:
    data: dict[str, Any]


class Idempotency:
    def __init__(self, table: str, client: Any, hours: int) -> None:
        self.table = table
        self.client = client
        self.hours = hours
        self._layer: Any = None

    def _persistence(self) -> Any:
        # imported on first use: only requests that carry the header pay for it
        if self._layer is None:
            from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

            layer = DynamoDBPersistenceLayer(table_name=self.table, boto3_client=self.client)
            layer.configure(
                IdempotencyConfig(
                    event_key_jmespath="[scope, key]",
                    payload_validation_jmespath="request",
                    raise_on_no_idempotency_key=True,
                    expires_after_seconds=self.hours * 3600,
                    hash_function="sha256",
                ),
                key_prefix="pisces",
            )
            self._layer = layer
        return self._layer

    async def begin(self, idem_key: str | None, key_id: str, path: str, body: Any) -> Claim | Stored | None:
        """None without a key; a :class:`Claim` to run the request under; or the stored response."""
        if idem_key is None:
            return None
        if not _VALID.match(idem_key):
            raise PiscesError(
                "invalid_request",
                "The Idempotency-Key header must be 1 to 255 printable ASCII characters without spaces.",
                param="Idempotency-Key",
            )
        data = {"scope": key_id, "key": idem_key, "request": {"path": path, "body": body}}
        return await asyncio.to_thread(self._begin, data)

    def _begin(self, data: dict[str, Any]) -> Claim | Stored:
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyItemAlreadyExistsError,
            IdempotencyValidationError,
        )

        layer = self._persistence()
        try:
            layer.save_inprogress(data, remaining_time_in_millis=IN_PROGRESS_MILLIS)
            return Claim(data)
        except IdempotencyValidationError:
            raise _reused() from None
        except IdempotencyItemAlreadyExistsError as e:
            old = e.old_data_record
        if old is None:  # the table did not return the old item: read it
            try:
                old = layer.get_record(data)
            except IdempotencyValidationError:
                raise _reused() from None
        if old.status == "COMPLETED" and old.response_data:
            return Stored.load(json.loads(old.response_data))
        raise PiscesError(
            "idempotency_in_progress",
            "A request with this Idempotency-Key is still being processed. Retry after it has finished.",
        )

    async def complete(self, claim: Claim, stored: Stored) -> None:
        try:
            await asyncio.to_thread(self._persistence().save_success, claim.data, stored.dump())
        except Exception:
            # the response went out; a repeat will run again rather than replay (and is charged again)
            logger.exception("could not store the idempotent response")
            await self.abort(claim)

    async def abort(self, claim: Claim) -> None:
        try:
            await asyncio.to_thread(self._persistence().delete_record, claim.data, RuntimeError("aborted"))
        except Exception:
            logger.exception("could not release an Idempotency-Key claim")


def _reused() -> PiscesError:
    return PiscesError(
        "idempotency_key_reused",
        "This Idempotency-Key was used before with a different request body. Use a new key for a new request.",
        param="Idempotency-Key",
    )
