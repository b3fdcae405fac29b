"""One DynamoDB client per process (endpoint from AWS_ENDPOINT_URL_DYNAMODB, as botocore reads it).

botocore directly, not boto3: boto3's import pulls in s3transfer and costs the cold start about
half a second more, for nothing the gateway uses.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from pisces.errors import PiscesError


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
