"""Generated images in S3: stored under the request's own id, handed out as presigned GET URLs.

The bucket (``PISCES_IMAGES_BUCKET``; template.yaml's ``ImagesBucket``) is private and encrypted and
expires objects after a day; the gateway may only put and get objects under ``images/``. An image's
URL works for ``limits.image_url_seconds``. Locally (`make dev`, the tests) the bucket lives in the
same moto server as DynamoDB (``AWS_ENDPOINT_URL_S3``), whose presigned URLs work on loopback.
"""

from __future__ import annotations

import asyncio
import os
from functools import lru_cache
from typing import Any

from pisces.canonical_images import GeneratedImage, extension

BUCKET_ENV = "PISCES_IMAGES_BUCKET"
DEFAULT_BUCKET = "pisces-images"  # the local bucket (make dev, tests)
PREFIX = "images/"


def bucket_name() -> str:
    return os.environ.get(BUCKET_ENV) or DEFAULT_BUCKET


@lru_cache(maxsize=1)
def s3_client() -> Any:
    """One client per process. Path-style addressing when an endpoint is set (moto on loopback has
    no virtual hosts); SigV4, which presigned URLs on every region need. boto3 is imported here, by
    the first image request: half a second of a cold start that most containers never use."""
    import boto3
    from botocore.config import Config as BotoConfig

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3")
    style = "path" if endpoint else "auto"
    config = BotoConfig(signature_version="s3v4", s3={"addressing_style": style}, retries={"mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint or None, config=config)


class ImageStore:
    def __init__(self, bucket: str | None = None, client: Any = None) -> None:
        self.bucket = bucket or bucket_name()
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or s3_client()

    def key_for(self, usage_id: str, index: int, media_type: str) -> str:
        return f"{PREFIX}{usage_id}/{index}.{extension(media_type)}"

    def _put(self, key: str, image: GeneratedImage) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=image.data, ContentType=image.media_type,
                               ServerSideEncryption="AES256", CacheControl="private, max-age=86400")  # fmt: skip

    def presign(self, key: str, seconds: int) -> str:
        return str(self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                                      ExpiresIn=seconds))  # fmt: skip

    async def store(self, usage_id: str, images: list[GeneratedImage], seconds: int) -> list[str]:
        """Put every image (concurrently) and return their presigned URLs, in order."""

        def one(i: int, image: GeneratedImage) -> str:
            key = self.key_for(usage_id, i, image.media_type)
            self._put(key, image)
            return self.presign(key, seconds)

        return list(await asyncio.gather(*(asyncio.to_thread(one, i, im) for i, im in enumerate(images))))
