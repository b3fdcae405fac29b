"""What every upstream channel is: canonical request in, canonical response or stream out."""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator

import httpx

from pisces.canonical import ChatRequest, ChatResponse, StreamEvent
from pisces.config import ChannelConfig
from pisces.errors import PiscesError


class UpstreamError(PiscesError):
    """A failure reaching or using an upstream; ``retryable`` ones move on to the next channel."""

    def __init__(self, code: str, message: str, *, retryable: bool, **kw: object) -> None:
        super().__init__(code, message, **kw)  # type: ignore[arg-type]
        self.retryable = retryable


def status_error(status: int, message: str, retry_after: str | None = None) -> UpstreamError:
    """An upstream's HTTP error, passed on in meaning (never its credentials or headers).

    4xx caused by the request (400, 404, 413, 422) keep their status; the upstream refusing the
    gateway's own credential (401, 403) is the gateway's fault, so 502; 429 and 5xx may succeed on
    another channel, so they are retryable.
    """
    msg = f"upstream: {message}" if message else f"upstream answered HTTP {status}"
    if status in (400, 422):
        return UpstreamError("invalid_request", msg, retryable=False, status=status)
    if status == 404:
        return UpstreamError("model_not_found", msg, retryable=False)
    if status == 413:
        return UpstreamError("request_too_large", msg, retryable=False)
    if status == 429:
        ra = int(retry_after) if retry_after and retry_after.isdigit() else None
        return UpstreamError("rate_limit_exceeded", msg, retryable=True, retry_after=ra)
    if status in (408, 504):
        return UpstreamError("upstream_timeout", msg, retryable=True)
    return UpstreamError("upstream_error", msg, retryable=status >= 500 or status in (401, 403))


def transport_error(exc: httpx.HTTPError, channel: str) -> UpstreamError:
    """A connection-level failure. Only a failure to connect is safe to retry elsewhere: once the
    request was sent, the upstream may be generating (and billing) it."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        return UpstreamError("upstream_error", f"upstream: cannot connect to channel {channel}", retryable=True)
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamError("upstream_timeout", f"upstream: channel {channel} did not answer in time", retryable=False)
    return UpstreamError(
        "upstream_error", f"upstream: channel {channel} failed ({type(exc).__name__})", retryable=False
    )


class Channel(abc.ABC):
    """One configured upstream. Channels are built once per process and share one HTTP client."""

    def __init__(self, cfg: ChannelConfig, http: httpx.AsyncClient) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.http = http

    @abc.abstractmethod
    async def complete(self, req: ChatRequest, model: str) -> ChatResponse:
        """Answer ``req`` with the upstream's ``model`` in one piece."""

    @abc.abstractmethod
    def stream(self, req: ChatRequest, model: str) -> AsyncGenerator[StreamEvent, None]:
        """Answer ``req`` as canonical stream events, yielded as the upstream sends them."""

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.cfg.read_timeout, connect=self.cfg.connect_timeout)


def new_http_client() -> httpx.AsyncClient:
    """The process's pooled client (timeouts are set per channel on each request)."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=30),
        timeout=httpx.Timeout(300.0, connect=10.0),
        follow_redirects=False,
    )
