"""DynamoDB on the event loop: its JSON protocol over an httpx transport (aiohttp), signed with SigV4.

The request's hot path (the key read on a cache miss, admission's ``UpdateItem``, settlement's
``TransactWriteItems``) runs here instead of through botocore on a worker thread. Measured reasons
(bench/RESULTS.md, issue 15): botocore spends about 1.5 ms of CPU a call serialising, signing and
parsing through its service model; every call paid a thread hop (``asyncio.to_thread``); and the
botocore client costs the cold start ~0.3-0.5 s to build (its service model and endpoint rules),
``botocore.auth`` alone ~0.25 s to import. DynamoDB's protocol is plain: one ``POST /`` per call,
the operation in ``X-Amz-Target``, the same JSON botocore's low-level client takes and returns.

What botocore's client does that a caller relies on is kept: the parameters and the answer are the
low-level client's (typed attribute values), a failure is a :class:`botocore.exceptions.ClientError`
with the same ``response`` (``Error.Code``, and the body's ``Item`` / ``CancellationReasons``),
transport failures and throttling are retried like botocore's standard mode (3 attempts, jittered
exponential backoff) and then raised as botocore's own connection/timeout errors, and the
``x-amz-crc32`` of every answer is checked. Signing follows the published SigV4 algorithm; a unit
test checks it against ``botocore.auth.SigV4Auth`` byte for byte.

Calls go to the transport itself, not through an ``httpx.AsyncClient``: the client's layer (merging
default headers, auth and redirect hooks, cookies) was a fifth of a call's CPU, and httpx's request and
response objects most of the rest that was not the wire (bench/RESULTS.md, performance part 5). A
signed ``POST /`` needs none of them: :meth:`pisces.httppool.AiohttpTransport.exchange` sends it and
reads the whole answer on aiohttp's session (another httpx transport, a test's, through
:class:`pisces.httppool.HttpxExchange`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import httpx

from pisces import jsonwire
from pisces.environ import env
from pisces.httppool import AiohttpTransport, HttpxExchange

ATTEMPTS = 3  # botocore's standard retry mode
BACKOFF_SECONDS = 0.05  # DynamoDB's base delay in botocore's retry table
CONNECT_SECONDS, READ_SECONDS = 2.0, 5.0  # as pisces.store.dynamo's botocore Config
TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
# DynamoDB's answers that say "not now" rather than "no": worth another attempt
RETRYABLE = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
                       "InternalServerError", "ServiceUnavailable", "TransactionInProgressException"})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


def env_credentials() -> Credentials | None:
    """What Lambda (and CI, and make dev) put in the environment; None when it holds none."""
    key, secret = env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        return None
    return Credentials(key, secret, env("AWS_SESSION_TOKEN") or None)


def chain_credentials() -> Credentials:
    """botocore's whole credential chain (profiles, SSO, container and instance roles), frozen now:
    refreshable credentials are read again on every call, so an expiring role is renewed."""
    found = _chain()
    if found is None:
        from botocore.exceptions import NoCredentialsError

        raise NoCredentialsError()
    frozen = found.get_frozen_credentials()
    return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


@cache
def _chain() -> Any:
    from botocore.session import get_session

    return get_session().get_credentials()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sign(
    creds: Credentials, region: str, host: str, target: str, body: bytes, now: datetime, service: str = "dynamodb"
) -> dict[str, str]:
    """The headers of a signed ``POST /`` (SigV4, the header form): what DynamoDB authenticates."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    payload = hashlib.sha256(body).hexdigest()
    headers = {"content-type": CONTENT_TYPE, "host": host, "x-amz-date": amz_date, "x-amz-target": target}
    if creds.token:
        headers["x-amz-security-token"] = creds.token
    names = sorted(headers)
    signed = ";".join(names)
    canonical = "\n".join(["POST", "/", "", *(f"{n}:{headers[n]}" for n in names), "", signed, payload])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + creds.secret_key).encode(), day), region), service), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    del headers["host"]  # the caller sends it
    headers["accept-encoding"] = "identity"  # the CRC32 is of the body as sent: no gzip in between
    return headers


def operation_name(method: str) -> str:
    """botocore's method name to DynamoDB's operation: ``transact_write_items`` → ``TransactWriteItems``."""
    return "".join(part.capitalize() for part in method.split("_"))


def _error(status: int, body: dict[str, Any], operation: str, request_id: str) -> Exception:
    from botocore.exceptions import ClientError

    code = str(body.get("__type", "")).rsplit("#", 1)[-1] or f"HTTP{status}"
    response: dict[str, Any] = {k: v for k, v in body.items() if k not in ("__type", "message", "Message")}
    response["Error"] = {"Code": code, "Message": body.get("message") or body.get("Message") or ""}
    response["ResponseMetadata"] = {"HTTPStatusCode": status, "RequestId": request_id}
    return ClientError(response, operation)


class AsyncDynamo:
    """One per process (per Lambda container), sharing its kept-alive connections across requests."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        credentials: Credentials | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/") + "/"
        self.host = httpx.URL(self.endpoint).netloc.decode("ascii")  # the Host sent, which the signature covers
        self.region = region
        self._credentials = credentials
        self._timeout = httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS).as_dict()
        self.transport = transport or AiohttpTransport()
        self._wire = self.transport if isinstance(self.transport, AiohttpTransport) else HttpxExchange(self.transport)

    @classmethod
    def from_env(cls) -> AsyncDynamo:
        """The endpoint and region botocore would use: ``AWS_ENDPOINT_URL_DYNAMODB`` (or
        ``AWS_ENDPOINT_URL``) when set, else DynamoDB's regional endpoint."""
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        endpoint = (
            os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
            or os.environ.get("AWS_ENDPOINT_URL")
            or f"https://dynamodb.{region}.amazonaws.com"
        )
        return cls(endpoint, region)

    @classmethod
    def like(cls, client: Any) -> AsyncDynamo:
        """The endpoint and region of a botocore DynamoDB client (a key store handed in: the tests')."""
        return cls(client.meta.endpoint_url, client.meta.region_name)

    def credentials(self) -> Credentials:
        return self._credentials or env_credentials() or chain_credentials()

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """``method`` as botocore's client names it, ``params`` as it takes them; its answer, or its
        ClientError. Retries what botocore's standard mode retries."""
        operation = operation_name(method)
        body = jsonwire.dumps(params)
        for attempt in range(ATTEMPTS):
            last = attempt + 1 == ATTEMPTS
            try:
                answer = await self._send(operation, body)
            except (httpx.TransportError, _Garbled) as e:
                if last:
                    raise _transport_error(e, self.endpoint) from e
            else:
                status, data, rid = answer
                if status < 300:
                    return data
                error = _error(status, data, operation, rid)
                code = error.response["Error"]["Code"]  # type: ignore[attr-defined]
                if last or not (code in RETRYABLE or status >= 500):
                    try:
                        raise error
                    finally:  # its traceback holds this frame: holding it too would make them a cycle
                        error = None
            await asyncio.sleep(random.random() * BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable")

    async def _send(self, operation: str, body: bytes) -> tuple[int, dict[str, Any], str]:
        headers = sign(self.credentials(), self.region, self.host, TARGET_PREFIX + operation, body, datetime.now(UTC))
        headers["host"] = self.host  # as signed (aiohttp would write its own)
        res = await self._wire.exchange("POST", self.endpoint, headers, body, self._timeout)
        raw = res.body
        crc = res.headers.get("x-amz-crc32")
        if crc is not None and crc.isdigit() and int(crc) != zlib.crc32(raw):
            raise _Garbled(f"the answer's CRC32 is {zlib.crc32(raw)}, its header says {crc}")
        try:
            data = jsonwire.loads(raw) if raw else {}
        except ValueError as e:
            raise _Garbled(f"the answer is not JSON (HTTP {res.status})") from e
        return res.status, data if isinstance(data, dict) else {}, res.headers.get("x-amzn-requestid", "")

    async def aclose(self) -> None:
        await self.transport.aclose()


class _Garbled(Exception):
    """An answer that arrived damaged (botocore retries a CRC32 mismatch too)."""


def _transport_error(exc: Exception, endpoint: str) -> Exception:
    """botocore's own error for what happened, so one mapping (pisces.store.dynamo.unavailable) serves both."""
    from botocore import exceptions as be

    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return be.ReadTimeoutError(endpoint_url=endpoint)
    if isinstance(exc, httpx.TransportError):
        return be.EndpointConnectionError(endpoint_url=endpoint)
    return be.ChecksumError(checksum_type="crc32", expected_checksum="", actual_checksum=str(exc))
