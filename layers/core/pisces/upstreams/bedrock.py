"""Channel kind ``bedrock``: Amazon Bedrock's Converse and ConverseStream APIs, signed with the
function's own IAM role (SigV4 through botocore; no key to keep).

``region`` picks the Bedrock endpoint (default: the function's own region, ``AWS_REGION``); a
channel's ``models`` map client names to Bedrock model ids, foundation models
(``amazon.nova-pro-v1:0``) or cross-region inference profiles (``us.anthropic.claude-...``,
``global.anthropic.claude-...``; ``{geo}`` in an id is the region's geography: ``{geo}.amazon.nova-pro-v1:0``
is ``eu.amazon.nova-pro-v1:0`` in eu-west-1). ``base_url`` replaces the endpoint (a VPC endpoint, or a test's
fake). The wire format is :mod:`pisces.upstreams.bedrock_converse`.

botocore is blocking: a call runs in this module's own thread pool (never the loop's default one,
which the stores use), and a ConverseStream's events are read by one thread per stream that hands
them to the loop (``call_soon_threadsafe``), so the loop never waits on a socket. Closing the stream
(a client gone) closes the HTTP response, which ends that thread.

Errors keep their meaning: ThrottlingException (and ServiceQuotaExceeded, ModelNotReady) is a 429
that moves on to the next channel; ValidationException a 400; AccessDeniedException a 502 that
says model access must be enabled (and moves on: another region's channel may have it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
import time
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pisces.canonical import ChatRequest, ChatResponse, ErrorEvent, StreamEvent, StreamStart
from pisces.upstreams.base import Channel, UpstreamError, status_error
from pisces.upstreams.bedrock_converse import StreamDecoder, decode_response, encode_request

# botocore calls of every bedrock channel; sized for concurrent requests of one container
_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="bedrock")
_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()
_END = object()

# an error code -> the HTTP status it means (stream exceptions carry no status of their own)
CODE_STATUS = {
    "ThrottlingException": 429, "ServiceQuotaExceededException": 429, "ModelNotReadyException": 429,
    "TooManyRequestsException": 429, "ValidationException": 400, "AccessDeniedException": 403,
    "ResourceNotFoundException": 404, "ModelTimeoutException": 408, "ServiceUnavailableException": 503,
    "InternalServerException": 500, "ModelStreamErrorException": 424, "ModelErrorException": 424,
    "UnrecognizedClientException": 401, "InvalidSignatureException": 401, "ExpiredTokenException": 401,
}  # fmt: skip
REFUSED_CREDENTIALS = {"UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"}


def default_region() -> str:
    """The function's region in Lambda (AWS_REGION); locally the environment's, else the AWS profile's."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        import botocore.session

        region = botocore.session.get_session().get_config_variable("region")
    return region or "us-east-1"


def geography(region: str) -> str:
    """The inference-profile prefix of a region's geography: us-east-1 -> us, eu-west-3 -> eu,
    ap-northeast-1 -> apac, us-gov-west-1 -> us-gov (what ``{geo}`` in a model id becomes)."""
    if region.startswith("us-gov-"):
        return "us-gov"
    head = region.split("-", 1)[0]
    return {"ap": "apac"}.get(head, head)


def _client(region: str, endpoint: str | None, connect: float, read: float) -> Any:
    """One botocore ``bedrock-runtime`` client per (region, endpoint, timeouts), built on first use
    (it reads the service model) and shared: botocore clients are thread-safe."""
    key = (region, endpoint, connect, read)
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            import botocore.session
            from botocore.config import Config

            cfg = Config(
                connect_timeout=connect,
                read_timeout=read,
                retries={"total_max_attempts": 1},  # fallback is the router's; a throttled call moves on
                max_pool_connections=64,
                user_agent_extra="pisces",
            )
            session = botocore.session.get_session()
            _CLIENTS[key] = session.create_client("bedrock-runtime", region_name=region, endpoint_url=endpoint,
                                                  config=cfg)  # fmt: skip
        return _CLIENTS[key]


def bedrock_error(exc: BaseException, channel: str, model: str, region: str) -> UpstreamError:
    """A botocore failure as the gateway's error: its meaning kept, no credential in it."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        err = exc.response.get("Error") or {}
        code = str(err.get("Code") or "")
        code = code[:1].upper() + code[1:]  # a stream's exception events say throttlingException
        status = CODE_STATUS.get(code) or int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 500)
        if code == "AccessDeniedException":
            return UpstreamError(
                "upstream_error",
                f"upstream: Bedrock denied access to model {model} in {region} (channel {channel}): enable access "
                "to this model in the Bedrock console (Model access) for this account and region, and allow the "
                "function's role bedrock:InvokeModel and bedrock:InvokeModelWithResponseStream on it",
                retryable=True,
                upstream_status=403,
            )
        if code in REFUSED_CREDENTIALS:
            return UpstreamError(
                "upstream_error", f"upstream: Bedrock refused the gateway's AWS credentials ({code})",
                retryable=True, upstream_status=status,
            )  # fmt: skip
        if code == "ServiceQuotaExceededException" or code == "ModelNotReadyException":
            status = 429
        if status == 424:  # the model itself failed: not the client's request, not retryable elsewhere
            msg = f"upstream: Bedrock's model failed ({code})"
            return UpstreamError("upstream_error", msg, retryable=False, upstream_status=status)
        return status_error(status, str(err.get("Message") or ""), kind=code or None)
    if isinstance(exc, ConnectTimeoutError | EndpointConnectionError):
        return UpstreamError("upstream_error", f"upstream: cannot connect to channel {channel}", retryable=True)
    if isinstance(exc, ReadTimeoutError):
        return UpstreamError("upstream_timeout", f"upstream: channel {channel} did not answer in time", retryable=False)
    if isinstance(exc, NoCredentialsError):
        msg = f"upstream: no AWS credentials to sign Bedrock calls (channel {channel})"
        return UpstreamError("upstream_error", msg, retryable=True)
    msg = f"upstream: channel {channel} failed ({type(exc).__name__})"
    return UpstreamError("upstream_error", msg, retryable=False)


def _connect_failure(exc: BaseException) -> bool:
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError

    return isinstance(exc, ConnectTimeoutError | EndpointConnectionError)


class BedrockChannel(Channel):
    @functools.cached_property
    def region(self) -> str:
        return self.cfg.region or default_region()

    def model_id(self, model: str) -> str:
        return model.replace("{geo}", geography(self.region))

    def client(self) -> Any:
        return _client(self.region, self.cfg.base_url or None, self.cfg.connect_timeout, self.cfg.read_timeout)

    async def _call(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        attempts = 1 + self.cfg.retries
        for attempt in range(attempts):
            try:
                return await loop.run_in_executor(_POOL, lambda: getattr(self.client(), operation)(**kwargs))
            except Exception as exc:  # every botocore failure is mapped
                if _connect_failure(exc) and attempt + 1 < attempts:
                    continue
                raise bedrock_error(exc, self.name, kwargs["modelId"], self.region) from None
        raise AssertionError("unreachable")

    async def complete(self, req: ChatRequest, model: str) -> ChatResponse:
        model = self.model_id(model)
        kwargs = encode_request(req.model_copy(update={"stream": False}), model)
        resp = await self._call("converse", kwargs)
        return decode_response(resp, model, _request_id(resp), int(time.time()))

    async def stream(self, req: ChatRequest, model: str) -> AsyncGenerator[StreamEvent, None]:
        model = self.model_id(model)
        kwargs = encode_request(req.model_copy(update={"stream": True}), model)
        resp = await self._call("converse_stream", kwargs)
        events = resp["stream"]
        queue: asyncio.Queue[Any] = asyncio.Queue()
        pump = threading.Thread(target=_pump, args=(events, queue, asyncio.get_running_loop()), daemon=True,
                                name=f"bedrock-stream-{self.name}")  # fmt: skip
        pump.start()
        decoder = StreamDecoder()
        try:
            first = await queue.get()
            if isinstance(first, BaseException):  # refused before a word: another channel may answer
                raise bedrock_error(first, self.name, model, self.region) from None
            yield StreamStart(id=_request_id(resp), model=model, created=int(time.time()))
            item = first
            while item is not _END:
                if isinstance(item, BaseException):
                    err = bedrock_error(item, self.name, model, self.region)
                    yield ErrorEvent(code=err.code, message=err.message, status=err.status)
                    return
                for ev in decoder.feed(item):
                    yield ev
                item = await queue.get()
            for ev in decoder.close():
                yield ev
        finally:
            with contextlib.suppress(Exception):
                events.close()  # a reader still blocked on the socket wakes up and ends


def _pump(events: Any, queue: asyncio.Queue[Any], loop: asyncio.AbstractEventLoop) -> None:
    """Reads a ConverseStream in its own thread; every event (or the failure) goes to the loop."""

    def put(item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, item)

    try:
        for event in events:
            put(event)
    except Exception as exc:  # handed to the loop, which maps it
        put(exc)
    finally:
        put(_END)


def _request_id(resp: dict[str, Any]) -> str:
    rid = (resp.get("ResponseMetadata") or {}).get("RequestId") or ""
    return f"bedrock-{rid}" if rid else f"bedrock-{time.time_ns()}"
