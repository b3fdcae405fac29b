"""One DynamoDB client per process (endpoint from AWS_ENDPOINT_URL_DYNAMODB, as botocore reads it).

botocore directly, not boto3: boto3's import pulls in s3transfer and costs the cold start about
half a second more, for nothing the gateway uses. The gateway's hot path goes through
:mod:`pisces.store.dynamo_http` instead, on the event loop; a store writes each such operation once,
as *steps* (a generator yielding :class:`Call` and :class:`Pause`), which :func:`drive` runs on
botocore's client (the CLI, the admin API, the tests) and :func:`drive_async` on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Generator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from pisces.errors import PiscesError

if TYPE_CHECKING:
    from pisces.store.dynamo_http import AsyncDynamo

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One DynamoDB operation: ``method`` as botocore's client names it, ``params`` as it takes them."""

    method: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Pause:
    seconds: float


Steps = Generator[Call | Pause, Any, T]


def drive(client: Any, steps: Steps[T]) -> T:
    """Run ``steps`` on a botocore client: each Call's answer (or its exception) goes back in."""
    answer: Any = None
    error: Exception | None = None
    while True:
        try:
            step = steps.send(answer) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value
        finally:  # an error's traceback holds this frame: holding the error on would make them a cycle
            error = None
        answer = None
        if isinstance(step, Pause):
            time.sleep(step.seconds)
            continue
        try:
            answer = getattr(client, step.method)(**step.params)
        except Exception as e:
            error = e


async def drive_async(db: AsyncDynamo, steps: Steps[T]) -> T:
    """:func:`drive` on the event loop, over :class:`pisces.store.dynamo_http.AsyncDynamo`."""
    answer: Any = None
    error: Exception | None = None
    while True:
        try:
            step = steps.send(answer) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value
        finally:  # as in drive
            error = None
        answer = None
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
            continue
        try:
            answer = await db.call(step.method, step.params)
        except Exception as e:
            error = e


async def run(client: Any, db: AsyncDynamo | None, steps: Steps[T]) -> T:
    """``steps`` on the event loop over ``db``; without one, on a worker thread through ``client``."""
    if db is None:
        return await asyncio.to_thread(drive, client, steps)
    return await drive_async(db, steps)


def code(exc: BaseException) -> str:
    """DynamoDB's error code of a botocore ClientError (either client's); "" for anything else."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


class LazyClient:
    """botocore's DynamoDB client, built on first use: a gateway whose requests all go through
    :mod:`pisces.store.dynamo_http` never pays the ~0.3-0.5 s it costs to build."""

    def __getattr__(self, name: str) -> Any:
        return getattr(client(), name)


@cache
def client() -> Any:
    from botocore.config import Config
    from botocore.session import get_session

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    cfg = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=5)
    return get_session().create_client("dynamodb", region_name=region, config=cfg)


# What DynamoDB answers when it is there but cannot serve now (after botocore's own retries).
_BUSY = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
         "InternalServerError", "ServiceUnavailable", "TransactionConflictException"}  # fmt: skip


def unavailable(exc: BaseException) -> PiscesError | None:
    """A 503 ``service_unavailable`` (Retry-After: 1) for a DynamoDB that did not answer in time, could not
    be reached, or was too busy, once botocore's retries are spent; None for any other exception."""
    from botocore.exceptions import BotoCoreError, ClientError

    busy = isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _BUSY
    if not (busy or isinstance(exc, BotoCoreError)):
        return None
    return PiscesError("service_unavailable", "The gateway's database did not answer in time; nothing was charged. "
                       "Retry the request.", retry_after=1)  # fmt: skip
