"""The image operation over HTTP, for every channel kind that has one: sending a request (JSON or
multipart) with the channel's headers and key, an upstream's error passed on redacted as for chat,
and reading an image an upstream answered with a link to.

Only a URL from the configured upstream's own response is ever fetched (never one a client sent),
over http(s), without redirects, at most :data:`MAX_FETCH_BYTES`, within the channel's timeouts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from pisces.canonical_images import sniff
from pisces.upstreams.base import UpstreamError, status_error, transport_error
from pisces.upstreams.credentials import resolve_api_key
from pisces.upstreams.redact import error_kind

if TYPE_CHECKING:
    from pisces.upstreams.base import HttpCodecChannel

MAX_FETCH_BYTES = 50 * 1024 * 1024  # an image an upstream links to: gpt-image-1's own input limit


async def headers_for(channel: HttpCodecChannel, json_body: bool) -> httpx.Headers:
    headers = httpx.Headers({"Accept": "application/json"})
    if json_body:
        headers["Content-Type"] = "application/json"
    headers.update(channel.default_headers)
    headers.update(channel.cfg.headers)
    key = await resolve_api_key(channel.cfg)
    if key:
        headers.update(channel.auth_headers(key))
    return headers


async def post(
    channel: HttpCodecChannel,
    url: str,
    *,
    json: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
) -> Any:
    """POST to the upstream and return its JSON; an HTTP error as the client's (redacted) error."""
    attempts = 1 + channel.cfg.retries
    for attempt in range(attempts):
        try:
            resp = await channel.http.post(url, json=json, data=data, files=files, timeout=channel.timeout(),
                                           headers=await headers_for(channel, json is not None))  # fmt: skip
        except httpx.HTTPError as exc:
            err = transport_error(exc, channel.name)
            if err.retryable and attempt + 1 < attempts:
                continue
            raise err from None
        if resp.status_code >= 400:
            raise status_error(channel.status_of(resp.status_code, resp.content),
                               channel.codec.upstream_error_message(resp.content), resp.headers.get("retry-after"),
                               kind=error_kind(resp.content), secrets=await channel.secrets())  # fmt: skip
        try:
            return resp.json()
        except ValueError:
            raise UpstreamError("upstream_error", "upstream: the response is not JSON", retryable=False) from None
    raise AssertionError("unreachable")


async def fetch_image(channel: HttpCodecChannel, url: str) -> tuple[bytes, str]:
    """The bytes and media type of an image the upstream's response linked to."""
    if not url.startswith(("https://", "http://")):
        raise UpstreamError("upstream_error", "upstream: an image URL in its response is not http(s)", retryable=False)
    try:
        async with channel.http.stream("GET", url, timeout=channel.timeout(), follow_redirects=False) as resp:
            if resp.status_code != 200:
                raise UpstreamError("upstream_error", f"upstream: its image URL answered HTTP {resp.status_code}",
                                    retryable=False, upstream_status=resp.status_code)  # fmt: skip
            data = bytearray()
            async for chunk in resp.aiter_bytes():
                data += chunk
                if len(data) > MAX_FETCH_BYTES:
                    raise UpstreamError("upstream_error", "upstream: an image it linked to is too large",
                                        retryable=False)  # fmt: skip
    except httpx.HTTPError as exc:
        err = transport_error(exc, channel.name)
        err.retryable = False  # the images are made (and paid for upstream): never made again elsewhere
        raise err from None
    media = sniff(bytes(data))
    if media is None:
        raise UpstreamError("upstream_error", "upstream: an image it linked to is not an image", retryable=False)
    return bytes(data), media
