"""The gateway's hot outbound calls over HTTP/1.1: asyncio's transports, httptools' parser, zlib.

A channel's chat and embeddings calls and DynamoDB's calls are the gateway's only outbound calls on a
request's road. aiohttp's ``ClientSession.request`` spent 145-185 µs of CPU on each (its request and
response objects, a writer task, two timers, URL objects), where the same exchange over an asyncio
protocol and the parser uvicorn serves the gateway with (httptools: llhttp, in C) spends 20-40 µs
(bench/RESULTS.md, performance part 7): a fifth of a money-off request's CPU. What is left here is
the part no library offers without that weight: a keep-alive pool and the framing of a request.
:class:`pisces.httppool.AiohttpTransport` sends these calls through :class:`H1Pool` and keeps aiohttp
for httpx's API (images, tests).

What it does, as :mod:`pisces.httppool` promised for aiohttp:
- keeps connections alive per scheme, host and port (at most ``max_connections`` open in all; a call
  past that waits for one, up to the ``pool`` timeout), never reuses one the server closed, one whose
  answer was not read to its end, or one idle longer than ``keepalive_expiry``;
- sends the headers it is given and no others but ``Host`` and ``Content-Length``; refuses a header
  that would split the request (a CR, an LF or a NUL in it);
- answers chunk by chunk as they arrive (reading pauses while 64 KiB wait unread), decoded from
  ``Content-Encoding`` gzip or deflate as httpx decodes them; informational (1xx) answers are skipped;
- fails with the httpx errors the channels sort: only a failure to connect (``ConnectError``,
  ``ConnectTimeout``, also for no pool slot in time) says the request was never sent; a connection
  lost or an answer that is not HTTP after sending is a ``RemoteProtocolError``; no byte for ``read``
  seconds while the caller waits for one is a ``ReadTimeout``.

What it does not do: proxies, redirects, cookies, HTTP/2, ``Expect: 100-continue``, HEAD requests, a
streamed request body. Images, whose bodies are multipart and whose calls are rare, keep httpx's client.

The pieces: :mod:`~pisces.h1.framing` (the URL, the request head, Content-Encoding),
:mod:`~pisces.h1.connection` (a connection and its answer), :mod:`~pisces.h1.pool` (the pool).
"""

from pisces.h1.connection import HIGH_WATER, H1Answer
from pisces.h1.pool import H1Pool, tls_context

__all__ = ["HIGH_WATER", "H1Answer", "H1Pool", "tls_context"]
