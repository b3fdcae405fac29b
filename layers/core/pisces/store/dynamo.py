"""One DynamoDB client per process (endpoint from AWS_ENDPOINT_URL_DYNAMODB, as botocore reads it).

botocore directly, not boto3: boto3's import pulls in s3transfer and costs the cold start about
half a second more, for nothing the gateway uses.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any


@cache
def client() -> Any:
    from botocore.config import Config
    from botocore.session import get_session

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    cfg = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=5)
    return get_session().create_client("dynamodb", region_name=region, config=cfg)
