"""One boto3 DynamoDB client per process (endpoint from AWS_ENDPOINT_URL_DYNAMODB, as boto3 reads it)."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config


@cache
def client() -> Any:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    cfg = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=5)
    return boto3.client("dynamodb", region_name=region, config=cfg)
