"""The gateway's outbound HTTP: aiohttp's connection pool and its C parser, under httpx's API where a
caller wants that API.

Every upstream call and every DynamoDB call of a request went through an ``httpx.AsyncClient``. Its
default transport (httpcore over anyio, h11 in pure Python) was the largest cost of the money-off
gateway: 45-58% of its CPU at 16 concurrent connections in py-spy, most of it the pool's per-request
scan of its idle connections, anyio's cancel scopes and h11 (bench/RESULTS.md, performance parts 3
and 4). :class:`AiohttpTransport` hands the wire to aiohttp's ``ClientSession``: the same request over
the same kept-alive connections for about a fifth of the CPU. The hot calls then left httpx's objects,
and aiohttp's too: DynamoDB's through :meth:`AiohttpTransport.exchange`, a channel's chat and embeddings
calls through :class:`Wire` and :meth:`AiohttpTransport.open`, both on :class:`pisces.h1.H1Pool`
(asyncio's transports and httptools' parser: a fifth of aiohttp's CPU a call, bench/RESULTS.md part 7).
The rest (images, tests) keep httpx's client over aiohttp.

What it keeps as httpx promises:
- ``stream=True`` (and :meth:`~AiohttpTransport.open`) answers chunk by chunk as they arrive; a
  response closed before its end closes its connection instead of pooling it with unread bytes
  (aiohttp's own rule).
- aiohttp's errors become httpx's, with the line httpx draws: only a failure to *connect*
  (``ConnectError``, ``ConnectTimeout``) says the request was never sent. A connection lost after
  sending is a ``RemoteProtocolError``, a read timeout a ``ReadTimeout``.
- the body as the server sent it to httpx (``auto_decompress`` off: httpx decodes ``Content-Encoding``),
  decoded by :mod:`pisces.h1` for :meth:`~AiohttpTransport.open`'s callers, who have no httpx to do it.

What it does not do: keep cookies (a shared gateway must not send one user's upstream cookie with
another's request: :class:`NoCookies` for httpx, ``DummyCookieJar`` for aiohttp), add headers it was
not given (no default ``Content-Type`` or ``User-Agent``), follow redirects, or read proxies from the
environment (neither does httpx's client over it: httpx mounts the environment's proxies only for a
client without a transport of its own).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import TYPE_CHECKING, Protocol

import httpx

from pisces.h1 import H1Pool

if TYPE_CHECKING:  # imported where httpx's API is first used (images, tests): not on a cold start's road
    import aiohttp


@functools.cache
def _errors() -> tuple[tuple[type[BaseException], type[httpx.TransportError]], ...]:
    """aiohttp's errors, most specific first, as the httpx errors the callers catch."""
    import aiohttp

    return (
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
    for theirs, ours in _errors():
        if isinstance(exc, theirs):
            return ours(f"{type(exc).__name__}: {exc}", request=request)
    return httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request)


class _Body(httpx.AsyncByteStream):
    """A response's body, as aiohttp receives it."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        import aiohttp

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
        self.h1 = H1Pool(max_connections=max_connections, keepalive_expiry=keepalive_expiry, ssl_context=ssl_context)

    def _new_session(self) -> aiohttp.ClientSession:
        import aiohttp

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
        import aiohttp

        # httpx's timeouts (a request's ``timeout`` extension) as aiohttp's: ``connect`` is the wait for
        # a pooled connection or a new one (httpx's pool), ``sock_connect`` the TCP and TLS connect,
        # ``sock_read`` each read of the answer.
        return aiohttp.ClientTimeout(total=None, connect=t.get("pool"), sock_connect=t.get("connect"),
                                     sock_read=t.get("read"))  # fmt: skip

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import aiohttp

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
        """One request and its whole answer (DynamoDB's calls), on :class:`pisces.h1.H1Pool`; failures
        raise the httpx errors :meth:`handle_async_request` raises."""
        answer = await self.h1.open(method, url, headers, body, timeouts)
        try:
            return Exchange(answer.status, answer.headers, await answer.read())
        finally:
            await answer.aclose()

    async def open(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeouts: Mapping[str, float | None]
    ) -> Answer:
        """A request whose answer is read as it arrives (an upstream's stream), decoded from
        ``Content-Encoding`` as httpx decodes it, on :class:`pisces.h1.H1Pool` (a channel's calls:
        bench/RESULTS.md part 7); failures raise the httpx errors :meth:`handle_async_request` raises."""
        return await self.h1.open(method, url, headers, body, timeouts)

    async def aclose(self) -> None:
        await self.h1.aclose()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class Answer(Protocol):
    """An answer whose head is in and whose body is read as it arrives (:meth:`AiohttpTransport.open`)."""

    status: int
    headers: Mapping[str, str]  # case-insensitive

    def chunks(self) -> AsyncIterator[bytes]:
        """The body, decoded, chunk by chunk as it arrives."""
        ...

    async def read(self) -> bytes:
        """The whole body, decoded."""
        ...

    async def aclose(self) -> None:
        """Done with it: its connection is pooled again only when the body was read to its end."""
        ...


class _HttpxAnswer:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.aiter_bytes()

    async def read(self) -> bytes:
        return await self._response.aread()

    async def aclose(self) -> None:
        await self._response.aclose()


class Wire:
    """How a channel's chat and embeddings calls go out: straight out through the gateway client's
    transport (:meth:`AiohttpTransport.open`, on :mod:`pisces.h1`), or through the httpx client where it
    has more to do (event hooks, a test's transport)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self._direct = http.direct if isinstance(http, Client) else None

    async def open(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeouts: httpx.Timeout
    ) -> Answer:
        hooks = self.http.event_hooks
        if self._direct is not None and not hooks["request"] and not hooks["response"]:
            return await self._direct.open(method, url, headers, body, timeouts.as_dict())
        request = self.http.build_request(method, url, content=body, headers=headers, timeout=timeouts)
        return _HttpxAnswer(await self.http.send(request, stream=True))


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
    """httpx's client whose ``cookies`` are always :class:`_NoCookies` (setting them does nothing), and
    which names its :class:`AiohttpTransport` (``direct``) for the calls that go straight out on it."""

    _none = _NoCookies()

    def __init__(self, *, transport: AiohttpTransport, **kw: object) -> None:
        super().__init__(transport=transport, **kw)  # type: ignore[arg-type]
        self.direct = transport

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
