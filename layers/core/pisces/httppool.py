"""The gateway's outbound HTTP: httpx's API over aiohttp's connection pool and its C parser.

Every upstream call and every DynamoDB call of a request goes through an ``httpx.AsyncClient``. Its
default transport (httpcore over anyio, h11 in pure Python) was the largest cost of the money-off
gateway: 45-58% of its CPU at 16 concurrent connections in py-spy, most of it the pool's per-request
scan of its idle connections, anyio's cancel scopes and h11 (bench/RESULTS.md, performance parts 3
and 4). :class:`AiohttpTransport` keeps httpx's client (its requests, responses, timeouts, decoding
and errors, so the callers are unchanged) and hands the wire to aiohttp's ``ClientSession``: the
same request over the same kept-alive connections for about a fifth of the CPU.

What it keeps as httpx promises:
- ``stream=True`` answers chunk by chunk as they arrive; a response closed before its end closes its
  connection instead of pooling it with unread bytes (aiohttp's own rule).
- aiohttp's errors become httpx's, with the line httpx draws: only a failure to *connect*
  (``ConnectError``, ``ConnectTimeout``) says the request was never sent. A connection lost after
  sending is a ``RemoteProtocolError``, a read timeout a ``ReadTimeout``.
- the body as the server sent it (``auto_decompress`` off): httpx decodes ``Content-Encoding``.

What it does not do: keep cookies (a shared gateway must not send one user's upstream cookie with
another's request: :class:`NoCookies` for httpx, ``DummyCookieJar`` for aiohttp), add headers httpx did not (no default
``Content-Type``), follow redirects, or read proxies from the environment (httpx still does, with
its own transport mounted for them).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar

import aiohttp
import httpx

# aiohttp's errors, most specific first, as the httpx errors the callers catch.
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # no connection, or no pool slot, in time
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),  # the socket read timed out (SocketTimeoutError)
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS: never sent
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),  # the body ended before its length
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),  # sent, then the server hung up
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # not an HTTP answer
    (aiohttp.ClientError, httpx.ReadError),
    (asyncio.TimeoutError, httpx.ReadTimeout),
)


def httpx_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """The httpx error a caller of httpx would have seen for aiohttp's ``exc``."""
    for theirs, ours in _ERRORS:
        if isinstance(exc, theirs):
            return ours(f"{type(exc).__name__}: {exc}", request=request)
    return httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request)


class _Body(httpx.AsyncByteStream):
    """A response's body, as aiohttp receives it."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise httpx_error(exc, self._request) from exc

    async def aclose(self) -> None:
        self._response.release()  # pooled again only when read to its end; closed otherwise


@dataclass(frozen=True, slots=True)
class Exchange:
    """A whole answer, read: what a caller that needs no streaming (DynamoDB's) takes."""

    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport on one ``aiohttp.ClientSession``, made on the first request (aiohttp binds
    a session to the running loop) and closed with the client."""

    def __init__(
        self, *, max_connections: int = 100, keepalive_expiry: float = 30.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        # aiohttp's own verified context (the system's CAs, made once when aiohttp is imported) unless
        # given one: httpx's certifi context would load a second CA store per client (70+ ms at start)
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, keepalive_timeout=self._keepalive_expiry, ssl=self._ssl
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("Content-Type", "User-Agent", "Accept", "Accept-Encoding"),
            trust_env=False,
        )

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = self._new_session()
        return self._session

    @staticmethod
    def _timeout(t: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
        # httpx's timeouts (a request's ``timeout`` extension) as aiohttp's: ``connect`` is the wait for
        # a pooled connection or a new one (httpx's pool), ``sock_connect`` the TCP and TLS connect,
        # ``sock_read`` each read of the answer.
        return aiohttp.ClientTimeout(total=None, connect=t.get("pool"), sock_connect=t.get("connect"),
                                     sock_read=t.get("read"))  # fmt: skip

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        try:
            response = await self._open().request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout(request.extensions.get("timeout", {})),
                server_hostname=request.extensions.get("sni_hostname"),
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise httpx_error(exc, request) from exc
        extensions = {"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()}
        return httpx.Response(
            response.status, headers=response.raw_headers, stream=_Body(response, request), extensions=extensions
        )

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeouts: Mapping[str, float | None]
    ) -> Exchange:
        """One request and its whole answer on the same session, without httpx's request and response
        objects (DynamoDB's calls: 0.1-0.2 ms of CPU a call here, bench/RESULTS.md part 5); failures
        raise the httpx errors :meth:`handle_async_request` raises."""
        try:
            async with self._open().request(
                method, url, headers=headers, data=body or None, allow_redirects=False, timeout=self._timeout(timeouts)
            ) as response:
                return Exchange(response.status, response.headers, await response.read())
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise httpx_error(exc, httpx.Request(method, url)) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class HttpxExchange:
    """:meth:`AiohttpTransport.exchange` over any httpx transport (``httpx.MockTransport`` in tests)."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeouts: Mapping[str, float | None]
    ) -> Exchange:
        request = httpx.Request(method, url, content=body, headers=headers, extensions={"timeout": dict(timeouts)})
        response = await self.transport.handle_async_request(request)
        try:
            raw = await response.aread()
        finally:
            await response.aclose()
        return Exchange(response.status_code, response.headers, raw)

    async def aclose(self) -> None:
        await self.transport.aclose()


class NoCookies(CookieJar):
    """A jar that keeps nothing: httpx's client would otherwise send an upstream's cookie (a load
    balancer's, say) with every later request, whoever makes it."""

    def extract_cookies(self, response: object, request: object) -> None:
        return None

    def set_cookie(self, cookie: object) -> None:
        return None


class _NoCookies(httpx.Cookies):
    """httpx's cookies over :class:`NoCookies`, that do not even look at a response: httpx wraps each
    response and its request for the jar before the jar can ignore them (3% of a request)."""

    def __init__(self) -> None:
        super().__init__(NoCookies())

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class Client(httpx.AsyncClient):
    """httpx's client whose ``cookies`` are always :class:`_NoCookies` (setting them does nothing)."""

    _none = _NoCookies()

    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        return self._none

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        return None


def new_client(
    *, timeout: httpx.Timeout, max_connections: int = 100, keepalive_expiry: float = 30.0
) -> httpx.AsyncClient:
    """An httpx client on an :class:`AiohttpTransport` (redirects are not followed, cookies not kept)."""
    transport = AiohttpTransport(max_connections=max_connections, keepalive_expiry=keepalive_expiry)
    return Client(transport=transport, timeout=timeout, follow_redirects=False)
