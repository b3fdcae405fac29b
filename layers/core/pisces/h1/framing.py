"""A request's framing and an answer's decoding: what to connect to, the head to send, Content-Encoding."""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Callable, Mapping
from typing import NamedTuple
from urllib.parse import quote, urlsplit

import httpx

_UNSAFE = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]|%(?![0-9A-Fa-f]{2})")  # what a request target may not hold
_SAFE = "-._~!$&'()*+,;=:@/?%"


class Target(NamedTuple):
    key: tuple[str, str, int]  # what a pooled connection is for: scheme, host, port
    host: str  # the Host header
    path: str  # the request target: path and query, percent-encoded
    tls: bool


@functools.lru_cache(maxsize=512)
def target(url: str) -> Target:
    """What a URL says to connect to and to ask for (a handful of URLs a process: cached)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise httpx.UnsupportedProtocol(f"Invalid URL {url!r}: {e}") from None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("http", "https") or not host:
        raise httpx.UnsupportedProtocol(f"Unsupported URL {url!r}: http and https only, with a host.")
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    tls = scheme == "https"
    port = port or (443 if tls else 80)
    name = f"[{host}]" if ":" in host else host
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if _UNSAFE.search(path):  # a model's name in the path, say: percent-encoded as yarl and httpx would
        path = quote(re.sub(r"%(?![0-9A-Fa-f]{2})", "%25", path), safe=_SAFE)
    return Target((scheme, host, port), name if port == (443 if tls else 80) else f"{name}:{port}", path, tls)


def request_head(method: str, to: Target, headers: Mapping[str, str], length: int | None) -> bytes:
    """The request line and headers: the given ones as given, ``Host`` unless given, ``Content-Length``."""
    lines = [f"{method} {to.path} HTTP/1.1"]
    has_host = False
    for name, value in headers.items():
        low = name.lower()
        if low == "content-length" or low == "transfer-encoding":
            continue  # the body's length is this client's to say
        has_host = has_host or low == "host"
        lines.append(f"{name}: {value}")
    if not has_host:
        lines.append(f"Host: {to.host}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    head = "\r\n".join(lines)
    if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1 or "\x00" in head:
        raise httpx.LocalProtocolError("A header name or value holds a CR, an LF or a NUL.")
    return (head + "\r\n\r\n").encode("utf-8")


def decoder(encoding: str | None) -> Callable[[bytes], bytes] | None:
    """A Content-Encoding's decoder, as httpx has them (a deflate body may come with or without zlib's
    wrapper); an encoding it does not know is passed through as it came."""
    enc = (encoding or "").strip().lower()
    if enc in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16).decompress
    if enc == "deflate":
        state: dict[str, zlib._Decompress | None] = {"d": None}

        def inflate(data: bytes) -> bytes:
            if state["d"] is None:
                try:
                    state["d"] = zlib.decompressobj()
                    return state["d"].decompress(data)
                except zlib.error:
                    state["d"] = zlib.decompressobj(-zlib.MAX_WBITS)
            return state["d"].decompress(data)

        return inflate
    return None
