"""What every upstream channel is: canonical request in, canonical response or stream out."""

from __future__ import annotations

import abc
import functools
from collections.abc import AsyncGenerator, Iterable
from types import ModuleType
from typing import Any, ClassVar

import httpx
from multidict import CIMultiDict

from pisces import __version__, jsonwire
from pisces.canonical import ChatRequest, ChatResponse, ErrorEvent, StreamEvent
from pisces.canonical_embeddings import EmbedRequest, EmbedResponse
from pisces.canonical_images import ImageRequest, ImageResponse
from pisces.config import ChannelConfig
from pisces.errors import PiscesError
from pisces.httppool import Answer, Wire, new_client
from pisces.protocols.sse import SSEParser
from pisces.upstreams.credentials import resolve_api_key
from pisces.upstreams.events import Events, InHand
from pisces.upstreams.redact import error_kind, passable, redact

# provider_options[<protocol>][FORWARDED]: request headers a client door keeps for an upstream of
# its own protocol (a codec lists them in FORWARDED_HEADERS).
FORWARDED = "_headers"


class UpstreamError(PiscesError):
    """A failure reaching or using an upstream; ``retryable`` ones move on to the next channel."""

    def __init__(
        self, code: str, message: str, *, retryable: bool, upstream_status: int | None = None, **kw: object
    ) -> None:
        super().__init__(code, message, **kw)  # type: ignore[arg-type]
        self.retryable = retryable
        self.upstream_status = upstream_status  # the upstream's HTTP status, when it answered one


# header names whose values in a channel's own ``headers`` are credentials (redacted like its key)
SECRET_HEADER_WORDS = ("authorization", "key", "token", "secret", "password", "cookie")


def upstream_message(
    status: int, message: str | None, kind: str | None = None, secrets: Iterable[str | None] = ()
) -> str:
    """What a client is told an upstream said: its message with every credential in it redacted
    (``secrets``, the channel's own, always), or, when that message cannot be trusted (empty, cut
    at its length cap, control characters), the gateway's own words naming its status and type."""
    if passable(message):
        return f"upstream: {redact((message or '').strip(), secrets)}"
    said = f"upstream answered HTTP {status}" + (f" ({kind})" if kind else "")
    return f"{said}; its message was withheld" if (message or "").strip() else said


def status_error(
    status: int,
    message: str,
    retry_after: str | None = None,
    *,
    kind: str | None = None,
    secrets: Iterable[str | None] = (),
) -> UpstreamError:
    """An upstream's HTTP error, passed on in meaning (never its credentials or headers: the message
    goes through :func:`upstream_message`, ``kind`` is the error type its body names).

    4xx caused by the request (400, 404, 413, 422) keep their status; the upstream refusing the
    gateway's own credential (401, 403) is the gateway's fault, so 502; 429 and 5xx may succeed on
    another channel, so they are retryable.
    """
    msg = upstream_message(status, message, kind, secrets)
    if status in (400, 422):
        return UpstreamError("invalid_request", msg, retryable=False, status=status, upstream_status=status)
    if status == 404:
        return UpstreamError("model_not_found", msg, retryable=False, upstream_status=status)
    if status == 413:
        return UpstreamError("request_too_large", msg, retryable=False, upstream_status=status)
    if status == 429:
        ra = int(retry_after) if retry_after and retry_after.isdigit() else None
        return UpstreamError("rate_limit_exceeded", msg, retryable=True, retry_after=ra, upstream_status=status)
    if status in (408, 504):
        return UpstreamError("upstream_timeout", msg, retryable=True, upstream_status=status)
    return UpstreamError("upstream_error", msg, retryable=status >= 500 or status in (401, 403), upstream_status=status)


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

    # The operations this kind serves (chat, embed, images); the router refuses the others with a 400
    # before any money moves.
    operations: ClassVar[frozenset[str]] = frozenset({"chat"})

    def __init__(self, cfg: ChannelConfig, http: httpx.AsyncClient) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.http = http  # httpx's API, for what is not on the hot path (images)
        self.wire = Wire(http)  # chat and embeddings: straight out on pisces.h1 unless httpx has more to do
        self._timeout = httpx.Timeout(cfg.read_timeout, connect=cfg.connect_timeout)  # made once: httpx checks each

    async def images(self, req: ImageRequest, model: str) -> ImageResponse:
        """Generate or edit images (kinds whose ``operations`` include "images")."""
        raise UpstreamError("unsupported_parameter", f"Channel {self.name} cannot make images.", retryable=True)

    @abc.abstractmethod
    async def complete(self, req: ChatRequest, model: str) -> ChatResponse:
        """Answer ``req`` with the upstream's ``model`` in one piece."""

    @abc.abstractmethod
    def stream(self, req: ChatRequest, model: str) -> AsyncGenerator[StreamEvent, None]:
        """Answer ``req`` as canonical stream events, yielded as the upstream sends them."""

    def timeout(self) -> httpx.Timeout:
        return self._timeout

    async def embed(self, req: EmbedRequest, model: str) -> EmbedResponse:
        """One vector per input, from the upstream's ``model`` (kinds with ``embed`` in ``operations``)."""
        raise UpstreamError("invalid_request", f"Channel {self.name} ({self.cfg.kind}) has no embeddings API.",
                            retryable=False, param="model")  # fmt: skip


# What every chat and embeddings call says of itself; the gzip and deflate httpx decodes (and offered).
BASE_HEADERS = {"Content-Type": "application/json", "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate", "User-Agent": f"Pisces/{__version__}"}  # fmt: skip


class HttpCodecChannel(Channel):
    """A provider reached over HTTP whose wire format is one of the protocol codecs.

    A subclass names its ``codec`` (a module of :mod:`pisces.protocols`), the ``path`` under the
    channel's base URL (or overrides :meth:`url_for` when the model or the stream flag is in the
    URL, as for Gemini), its ``default_headers`` (the channel's own ``headers`` override them) and how
    its key is sent (``auth_headers``). Sending, retrying a failed connection, passing on an upstream
    error, and decoding a stream event by event as it arrives, never buffered, happen here.
    """

    codec: ClassVar[ModuleType]
    path: ClassVar[str]
    embed_codec: ClassVar[ModuleType | None] = None  # its embeddings wire format, when it has one
    default_headers: ClassVar[dict[str, str]] = {}

    @abc.abstractmethod
    def auth_headers(self, key: str) -> dict[str, str]:
        """The headers that carry the upstream API key."""

    def url_for(self, model: str, stream: bool) -> str:
        return (self.cfg.base_url or "").rstrip("/") + self.path

    @functools.cached_property
    def _own_headers(self) -> CIMultiDict[str]:
        """The headers every call of the channel sends, made once: the base ones, the kind's defaults, and
        the channel's own (case-insensitive: a channel's header replaces a default)."""
        headers = CIMultiDict(BASE_HEADERS)
        headers.update(self.default_headers)
        headers.update(self.cfg.headers)
        return headers

    async def _headers(self, req: ChatRequest | EmbedRequest) -> CIMultiDict[str]:
        headers = self._own_headers.copy()
        # headers the client sent for its own protocol (anthropic-beta): joined to the channel's own
        forwarded = req.provider_options.get(self.codec.NAME, {}).get(FORWARDED, {})
        for name, value in forwarded.items():
            mine = [v.strip() for v in headers.get(name, "").split(",") if v.strip()]
            headers[name] = ",".join(dict.fromkeys([*mine, *(v.strip() for v in value.split(",") if v.strip())]))
        key = await resolve_api_key(self.cfg)
        if key:
            headers.update(self.auth_headers(key))
        return headers

    async def secrets(self) -> list[str]:
        """What must never reach a client from this channel: its key, and its own headers' credentials."""
        key = await resolve_api_key(self.cfg)
        own = [v for k, v in self.cfg.headers.items() if any(w in k.lower() for w in SECRET_HEADER_WORDS)]
        return [s for s in (key, *own) if s]

    def redacted(self, ev: ErrorEvent, secrets: Iterable[str | None]) -> ErrorEvent:
        """A stream's error event (a provider's error event, mid-stream) with its message made safe."""
        if passable(ev.message):
            message = redact(ev.message, secrets)
        else:
            message = f"upstream: the stream failed ({ev.code}, HTTP {ev.status}); its message was withheld"
        return ev if message == ev.message else ev.model_copy(update={"message": message})

    def status_of(self, status: int, body: bytes) -> int:
        """The HTTP status an upstream's error means (a provider may say 400 for its own bad key)."""
        return status

    def embed_url(self, model: str) -> str:
        return (self.cfg.base_url or "").rstrip("/") + "/embeddings"

    async def embed(self, req: EmbedRequest, model: str) -> EmbedResponse:
        if self.embed_codec is None:
            return await super().embed(req, model)
        body = self.embed_codec.encode_embed_request(req, model)
        payload = await self._json(await self._send(req, model, body, url=self.embed_url(model)))
        try:
            out: EmbedResponse = self.embed_codec.decode_embed_response(payload, len(req.inputs))
        except ValueError as e:
            raise UpstreamError("upstream_error", f"upstream: malformed embeddings ({e})", retryable=False) from None
        return out if out.model else out.model_copy(update={"model": model})

    async def _send(
        self, req: ChatRequest | EmbedRequest, model: str, body: dict[str, Any], stream: bool = False,
        url: str | None = None,
    ) -> Answer:  # fmt: skip
        """The request sent, and its answer once its head is in (an HTTP error raised as the client's)."""
        attempts = 1 + self.cfg.retries
        target = url or self.url_for(model, stream)
        content = jsonwire.dumps(body)
        for attempt in range(attempts):
            try:
                resp = await self.wire.open("POST", target, await self._headers(req), content, self.timeout())
            except httpx.HTTPError as exc:
                err = transport_error(exc, self.name)
                if err.retryable and attempt + 1 < attempts:
                    continue
                raise err from None
            if resp.status >= 400:
                raw = await self._read(resp)
                raise status_error(
                    self.status_of(resp.status, raw),
                    self.codec.upstream_error_message(raw),
                    resp.headers.get("retry-after"),
                    kind=error_kind(raw),
                    secrets=await self.secrets(),
                )
            return resp
        raise AssertionError("unreachable")

    async def _read(self, resp: Answer) -> bytes:
        """A whole answer's body, and the answer closed (a failure to read it as the client's error)."""
        try:
            return await resp.read()
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.name) from None
        finally:
            await resp.aclose()

    async def _json(self, resp: Answer) -> Any:
        """A whole answer's JSON body."""
        raw = await self._read(resp)
        try:
            return jsonwire.loads(raw)
        except ValueError:
            raise UpstreamError("upstream_error", "upstream: the response is not JSON", retryable=False) from None

    async def complete(self, req: ChatRequest, model: str) -> ChatResponse:
        body = self.codec.encode_request(req if not req.stream else req.model_copy(update={"stream": False}), model)
        return self.codec.decode_response(await self._json(await self._send(req, model, body)))

    async def _redacted(self, ev: ErrorEvent) -> ErrorEvent:
        """A stream's error event (the provider's words, from a codec's StreamDecoder) on its way out."""
        return self.redacted(ev, await self.secrets())

    def stream(self, req: ChatRequest, model: str) -> Events:
        """The upstream's events, each as soon as it is read; ``ready`` on the result gives the next one
        when the bytes read so far hold it already."""
        hand = InHand(self.codec.StreamDecoder())
        return Events(self._stream(req, model, hand), hand.ready)

    async def _stream(self, req: ChatRequest, model: str, hand: InHand) -> AsyncGenerator[StreamEvent, None]:
        body = self.codec.encode_request(req if req.stream else req.model_copy(update={"stream": True}), model)
        resp = await self._send(req, model, body, stream=True)
        parser, chunks = SSEParser(), aiter(resp.chunks())  # decoded if the upstream compresses, still chunk by chunk
        try:
            while True:
                while (ev := hand.next()) is not None:  # each event on as soon as it is read
                    yield await self._redacted(ev) if isinstance(ev, ErrorEvent) else ev
                if hand.ended:
                    break
                chunk = await anext(chunks, None)
                hand.refill(parser.events(chunk) if chunk is not None else parser.close(), last=chunk is None)
        except httpx.HTTPError as exc:
            err = transport_error(exc, self.name)
            yield ErrorEvent(code=err.code, message=err.message, status=err.status)
        finally:
            await resp.aclose()


def new_http_client() -> httpx.AsyncClient:
    """The process's pooled client (timeouts are set per channel on each request), over aiohttp."""
    return new_client(timeout=httpx.Timeout(300.0, connect=10.0), max_connections=200, keepalive_expiry=30)
