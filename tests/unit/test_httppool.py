"""The gateway's outbound HTTP (pisces.httppool, pisces.h1): httpx's API over aiohttp, and the hot calls
straight out on pisces.h1. Against a raw asyncio
server: what goes on the wire, pooling, streaming chunk by chunk, an early close, and each failure
as the httpx error the callers already sort into "never sent" (retry elsewhere) and "sent"."""

from __future__ import annotations

import asyncio
import gc
import gzip
import ipaddress
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from pisces.httppool import AiohttpTransport, Wire, new_client
from pisces.localaws import free_port
from pisces.store.dynamo_http import AsyncDynamo
from pisces.upstreams.base import new_http_client, transport_error

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.heads: list[bytes] = []
        self.stopped = asyncio.Event()  # what a handler that never answers waits for
        self.tasks: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def head(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                await reader.readexactly(int(line.split(b":")[1]))
        return head


@asynccontextmanager
async def serving(handler: Callable[[Server, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
                  tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[Server, str]]:  # fmt: skip
    server = Server(lambda r, w: handler(server, r, w))
    srv = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=tls)
    async with srv:
        try:
            yield server, f"{'https' if tls else 'http'}://127.0.0.1:{srv.sockets[0].getsockname()[1]}/"
        finally:
            server.stopped.set()
            await asyncio.gather(*server.tasks)


async def keep_alive(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await server.head(reader)
        writer.write(OK)
        await writer.drain()


async def test_the_gateways_clients_go_over_one_transport_with_both_pools():
    http = new_http_client()
    db = AsyncDynamo("http://127.0.0.1:1", "us-east-1")
    try:
        assert isinstance(http._transport, AiohttpTransport)  # type: ignore[attr-defined]
        assert isinstance(db.transport, AiohttpTransport)
        assert http.direct is http._transport  # type: ignore[attr-defined]  # the channels' Wire goes there
    finally:
        await http.aclose()
        await db.aclose()


async def test_the_request_on_the_wire_is_the_one_httpx_built():
    async with serving(keep_alive) as (server, url), new_client(timeout=TIMEOUT) as client:
        r = await client.post(url + "v1/x?a=1", content=b'{"q":1}', headers={"Content-Type": "application/json",
                                                                              "X-Custom": "yes"})  # fmt: skip
        assert (r.status_code, r.text, r.http_version, r.reason_phrase) == (200, "ok", "HTTP/1.1", "OK")
        r = await client.get(url)
        assert r.text == "ok"
    assert server.connections == 1  # kept alive
    post, get = (h.decode().lower().split("\r\n") for h in server.heads)
    assert post[0] == "post /v1/x?a=1 http/1.1"
    names = [line.split(":")[0] for line in post[1:] if line]
    assert sorted(names) == sorted(set(names))  # nothing twice
    assert {"content-type: application/json", "content-length: 7", "x-custom: yes"} <= set(post)
    assert get[0] == "get / http/1.1" and not any(line.startswith("content-type") for line in get)


async def test_an_idle_connection_the_server_closed_is_not_reused():
    closed = asyncio.Event()

    async def once(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        writer.write(OK)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    async with serving(once) as (server, url), new_client(timeout=TIMEOUT) as client:
        assert (await client.get(url)).text == "ok"
        await closed.wait()
        await asyncio.sleep(0)  # the FIN is read on the client's loop
        assert (await client.get(url)).text == "ok"
    assert server.connections == 2


async def ok_if_not_first(server: Server, writer: asyncio.StreamWriter) -> bool:
    """On a connection after the first: ``OK`` sent, and True (the first connection's answer is the test's)."""
    if server.connections == 1:
        return False
    writer.write(OK)
    await writer.drain()
    return True


def two_chunks(first_read: asyncio.Event, one: bytes, two: bytes, head: bytes = b"") -> Callable[..., Awaitable[None]]:
    """A stream's first chunk, its second once ``first_read`` is set, then no end; ``OK`` on later connections."""

    async def chunks(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        if await ok_if_not_first(server, writer):
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n%bTransfer-Encoding: chunked\r\n\r\n"
                     b"%x\r\n%b\r\n" % (head, len(one), one))  # fmt: skip
        await writer.drain()
        await first_read.wait()  # the second chunk only once the client has the first
        writer.write(b"%x\r\n%b\r\n" % (len(two), two))
        await writer.drain()
        await server.stopped.wait()  # never ends

    return chunks


async def test_a_stream_arrives_chunk_by_chunk_and_an_early_close_drops_its_connection():
    first_read = asyncio.Event()
    chunks = two_chunks(first_read, b"one\n\n", b"two\n\n")

    async with serving(chunks) as (server, url), new_client(timeout=TIMEOUT) as client:
        async with client.stream("POST", url, content=b"{}") as r:
            got = r.aiter_bytes()
            assert await anext(got) == b"one\n\n"
            first_read.set()
            assert await anext(got) == b"two\n\n"
        assert (await client.get(url)).text == "ok"  # not on the half-read connection
    assert server.connections == 2


async def test_a_compressed_answer_is_decoded_by_httpx_and_cookies_are_never_kept():
    body = gzip.compress(b"hello")

    async def gz(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nSet-Cookie: s=secret; Path=/\r\n"
                         b"Content-Length: %d\r\n\r\n%b" % (len(body), body))  # fmt: skip
            await writer.drain()

    async with serving(gz) as (server, url), new_client(timeout=TIMEOUT) as client:
        assert (await client.get(url)).text == "hello"
        assert (await client.get(url)).text == "hello"
        assert not client.cookies
    assert not any(b"secret" in h for h in server.heads)  # one user's upstream cookie is not the next one's


async def test_a_refused_connection_is_a_connect_error_that_may_go_elsewhere():
    async with new_client(timeout=TIMEOUT) as client:
        with pytest.raises(httpx.ConnectError) as e:
            await client.get(f"http://127.0.0.1:{free_port()}/")  # nothing listens there
    assert transport_error(e.value, "c").retryable


async def hang_up(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await server.head(reader)  # read, then gone without a word


async def garbage(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await server.head(reader)
    writer.write(b"SMTP ready\r\n\r\n")
    await writer.drain()


async def short_body(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await server.head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    await writer.drain()


@pytest.mark.parametrize("handler", [hang_up, garbage, short_body])
async def test_a_request_the_server_received_fails_as_sent_never_as_a_connect_error(handler):
    async with serving(handler) as (server, url), new_client(timeout=TIMEOUT) as client:
        with pytest.raises(httpx.RemoteProtocolError) as e:
            await client.post(url, content=b"{}")
    assert server.heads  # it was sent
    assert not transport_error(e.value, "c").retryable  # the upstream may be generating (and billing) it


async def test_no_answer_in_time_is_a_read_timeout():
    async def silent(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        await server.stopped.wait()

    async with serving(silent) as (server, url), new_client(timeout=httpx.Timeout(0.2, connect=10)) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url, content=b"{}")
    assert server.heads


# --- exchange: a whole answer without httpx's objects (DynamoDB's calls) ------------------------------

EXCHANGE_TIMEOUTS = {"connect": 10.0, "read": 30.0, "write": 30.0, "pool": 30.0}


async def test_an_exchange_sends_what_it_is_given_and_reads_the_whole_answer_on_a_kept_alive_connection():
    async def dynamo(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            fields = dict(line.lower().partition(b":")[::2] for line in head.split(b"\r\n")[1:] if line)
            server.heads.append(head + await reader.readexactly(int(fields[b"content-length"])))
            writer.write(b'HTTP/1.1 200 OK\r\nX-Amz-Crc32: 7\r\nContent-Length: 9\r\n\r\n{"a": 1}\n')
            await writer.drain()

    transport = AiohttpTransport()
    async with serving(dynamo) as (server, url):
        try:
            headers = {"host": "db.example:8000", "content-type": "application/x-amz-json-1.0", "x-amz-target": "T.Op"}
            first = await transport.exchange("POST", url, headers, b'{"q":1}', EXCHANGE_TIMEOUTS)
            second = await transport.exchange("POST", url, headers, b'{"q":2}', EXCHANGE_TIMEOUTS)
        finally:
            await transport.aclose()  # the server's connection ends with it
    assert (first.status, first.body, first.headers["x-amz-crc32"]) == (200, b'{"a": 1}\n', "7")
    assert second.body == first.body and server.connections == 1  # pooled
    sent = server.heads[0].lower()
    assert sent.startswith(b"post / http/1.1\r\n") and sent.endswith(b'\r\n\r\n{"q":1}')
    for line in (b"host: db.example:8000", b"x-amz-target: t.op", b"content-type: application/x-amz-json-1.0"):
        assert line in sent.split(b"\r\n")
    assert b"user-agent" not in sent and server.heads[1].endswith(b'{"q":2}')


@pytest.mark.parametrize(("handler", "error"), [(None, httpx.ConnectError), (hang_up, httpx.RemoteProtocolError),
                                                  (short_body, httpx.RemoteProtocolError),
                                                  (garbage, httpx.RemoteProtocolError)])  # fmt: skip
async def test_an_exchange_fails_with_the_httpx_error_handle_async_request_raises(handler, error):
    transport = AiohttpTransport()
    try:
        if handler is None:
            with pytest.raises(error):
                await transport.exchange("POST", f"http://127.0.0.1:{free_port()}/", {}, b"{}", EXCHANGE_TIMEOUTS)
        else:
            async with serving(handler) as (server, url):
                with pytest.raises(error):
                    await transport.exchange("POST", url, {}, b"{}", EXCHANGE_TIMEOUTS)
            assert server.heads
    finally:
        await transport.aclose()


async def test_an_exchange_without_an_answer_in_time_is_a_read_timeout():
    async def silent(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        await server.stopped.wait()

    transport = AiohttpTransport()
    try:
        async with serving(silent) as (_server, url):
            with pytest.raises(httpx.ReadTimeout):
                await transport.exchange("POST", url, {}, b"{}", {**EXCHANGE_TIMEOUTS, "read": 0.2})
    finally:
        await transport.aclose()


# --- open and Wire: a channel's calls without httpx's objects, where httpx has nothing more to do -----


async def test_open_reads_a_compressed_stream_chunk_by_chunk_decoded_and_an_early_close_drops_its_connection():
    first_read = asyncio.Event()
    packer = zlib.compressobj(wbits=31)  # gzip, flushed chunk by chunk as a server that streams sends it
    one, two = packer.compress(b"one\n\n") + packer.flush(zlib.Z_SYNC_FLUSH), packer.compress(b"two\n\n")
    two += packer.flush(zlib.Z_SYNC_FLUSH)
    chunks = two_chunks(first_read, one, two, b"Content-Encoding: gzip\r\n")

    transport = AiohttpTransport()
    try:
        async with serving(chunks) as (server, url):
            answer = await transport.open("POST", url, {"Accept-Encoding": "gzip"}, b"{}", EXCHANGE_TIMEOUTS)
            got = answer.chunks()
            assert (answer.status, answer.headers["content-type"]) == (200, "text/event-stream")
            assert await anext(got) == b"one\n\n"
            first_read.set()
            assert await anext(got) == b"two\n\n"
            await answer.aclose()
            again = await transport.open("GET", url, {}, b"", EXCHANGE_TIMEOUTS)
            assert await again.read() == b"ok"  # not on the half-read connection
            await again.aclose()
    finally:
        await transport.aclose()
    assert server.connections == 2


@pytest.mark.parametrize(("handler", "error"), [(None, httpx.ConnectError), (hang_up, httpx.RemoteProtocolError),
                                                  (short_body, httpx.RemoteProtocolError)])  # fmt: skip
async def test_open_fails_with_the_httpx_errors_a_channel_sorts_into_never_sent_and_sent(handler, error):
    transport = AiohttpTransport()
    try:
        if handler is None:
            with pytest.raises(error) as e:
                await transport.open("POST", f"http://127.0.0.1:{free_port()}/", {}, b"{}", EXCHANGE_TIMEOUTS)
            assert transport_error(e.value, "c").retryable
        else:
            async with serving(handler) as (server, url):
                with pytest.raises(error) as e:  # the head (a hang-up) or the body (cut short)
                    await (await transport.open("POST", url, {}, b"{}", EXCHANGE_TIMEOUTS)).read()
            assert server.heads and not transport_error(e.value, "c").retryable
    finally:
        await transport.aclose()


async def test_a_wire_goes_straight_out_and_through_httpx_where_the_client_has_hooks():
    async with serving(keep_alive) as (server, url), new_client(timeout=TIMEOUT) as client:
        wire, opened, hooked = Wire(client), [], []
        to_direct = client.direct.open

        async def spy(*args: object) -> object:
            opened.append(args[1])
            return await to_direct(*args)  # type: ignore[arg-type]

        client.direct.open = spy  # type: ignore[method-assign]
        answer = await wire.open("POST", url + "direct", {"X-Custom": "yes"}, b'{"q":1}', TIMEOUT)
        assert (answer.status, await answer.read()) == (200, b"ok")
        await answer.aclose()

        async def hook(request: httpx.Request) -> None:
            hooked.append(str(request.url))

        client.event_hooks["request"].append(hook)
        answer = await wire.open("POST", url + "hooked", {}, b"{}", TIMEOUT)
        assert await answer.read() == b"ok"
        await answer.aclose()
    assert opened == [url + "direct"] and hooked == [url + "hooked"]
    direct = server.heads[0].decode().lower().split("\r\n")
    assert direct[0] == "post /direct http/1.1" and "x-custom: yes" in direct and "content-length: 7" in direct
    assert not any(line.startswith("user-agent") for line in direct)  # only what it was given


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no CA signed, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pisces-test")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))  # fmt: skip
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_file, key_file


async def test_https_is_verified_against_the_systems_cas_and_a_given_context_is_used(tmp_path):
    cert, key = _self_signed(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    async with serving(keep_alive, tls=server_side) as (_, url):
        async with new_client(timeout=TIMEOUT) as client:
            with pytest.raises(httpx.ConnectError) as e:  # nobody vouches for this certificate
                await client.get(url)
        assert "certificate" in str(e.value).lower()
        trusting = ssl.create_default_context(cafile=str(cert))
        transport = AiohttpTransport(ssl_context=trusting)
        async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
            assert (await client.get(url)).text == "ok"


# --- pisces.h1: the pool under open and exchange ------------------------------------------------------


def _wire_head(server: Server, i: int = 0) -> list[str]:
    return server.heads[i].decode().split("\r\n")


async def test_h1_skips_an_informational_answer_and_reads_a_chunked_one_chunk_by_chunk():
    first_read = asyncio.Event()

    async def early_hints(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
                     b"HTTP/1.1 201 Created\r\nX-Id: 7\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")  # fmt: skip
        await writer.drain()
        await first_read.wait()
        writer.write(b"3\r\ntwo\r\n0\r\n\r\n")
        await writer.drain()
        await server.head(reader)  # the connection is kept for the next request
        writer.write(OK)
        await writer.drain()

    transport = AiohttpTransport()
    try:
        async with serving(early_hints) as (server, url):
            answer = await transport.open("POST", url, {}, b"{}", EXCHANGE_TIMEOUTS)
            assert (answer.status, answer.headers["x-id"], "link" in answer.headers) == (201, "7", False)
            got = answer.chunks()
            assert await anext(got) == b"one"
            first_read.set()
            assert [c async for c in got] == [b"two"]
            await answer.aclose()
            again = await transport.exchange("POST", url, {}, b"{}", EXCHANGE_TIMEOUTS)
            assert again.body == b"ok"
    finally:
        await transport.aclose()
    assert server.connections == 1


async def test_h1_reads_a_body_that_ends_with_its_connection_and_does_not_reuse_that_connection():
    async def until_close(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        if await ok_if_not_first(server, writer):
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    transport = AiohttpTransport()
    try:
        async with serving(until_close) as (server, url):
            assert (await transport.exchange("GET", url, {}, b"", EXCHANGE_TIMEOUTS)).body == b"all of it"
            assert (await transport.exchange("GET", url, {}, b"", EXCHANGE_TIMEOUTS)).body == b"ok"
    finally:
        await transport.aclose()
    assert server.connections == 2


async def test_h1_frames_the_request_host_and_length_and_percent_encodes_the_target():
    async with serving(keep_alive) as (server, url):
        transport = AiohttpTransport()
        try:
            port = url.rsplit(":", 1)[1].strip("/")
            weird = url.replace("127.0.0.1", "localhost") + "v1beta/models/my model é:generateContent?alt=sse&x=%zz"
            answer = await transport.open("POST", weird, {"X-A": "1", "x-a": "2"}, b"{}", EXCHANGE_TIMEOUTS)
            await answer.read()
            await answer.aclose()
            await transport.exchange("GET", url, {"Host": "db.example"}, b"", EXCHANGE_TIMEOUTS)
        finally:
            await transport.aclose()  # the server's connections end with it
    post, get = _wire_head(server), _wire_head(server, 1)
    assert post[0] == "POST /v1beta/models/my%20model%20%C3%A9:generateContent?alt=sse&x=%25zz HTTP/1.1"
    assert {"X-A: 1", "x-a: 2", f"Host: localhost:{port}", "Content-Length: 2"} <= set(post)
    assert get[0] == "GET / HTTP/1.1" and "Host: db.example" in get and not any("Length" in h for h in get)
    assert [h.split(":")[0].lower() for h in get].count("host") == 1


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b"])
async def test_h1_refuses_a_header_that_would_split_the_request_and_sends_nothing(value):
    transport = AiohttpTransport()
    try:
        async with serving(keep_alive) as (server, url):
            with pytest.raises(httpx.LocalProtocolError) as e:
                await transport.open("POST", url, {"anthropic-beta": value}, b"{}", EXCHANGE_TIMEOUTS)
    finally:
        await transport.aclose()
    assert not server.heads and server.connections == 0
    assert e.value.request.url == url and not transport_error(e.value, "c").retryable


async def test_h1_waits_for_a_free_connection_and_without_one_in_time_fails_as_never_sent():
    from pisces.h1 import H1Pool

    pool = H1Pool(max_connections=1)
    async with serving(keep_alive) as (server, url):
        try:
            held = await pool.open("GET", url, {}, b"", EXCHANGE_TIMEOUTS)
            with pytest.raises(httpx.ConnectTimeout) as e:  # the one connection is held: never freed
                await pool.open("GET", url, {}, b"", {**EXCHANGE_TIMEOUTS, "pool": 0.1})
            assert transport_error(e.value, "c").retryable
            waiting = asyncio.ensure_future(pool.open("GET", url, {}, b"", EXCHANGE_TIMEOUTS))
            await asyncio.sleep(0)
            assert not waiting.done()
            assert await held.read() == b"ok"
            await held.aclose()  # pooled: the waiting call takes it
            answer = await waiting
            assert await answer.read() == b"ok"
            await answer.aclose()
        finally:
            await pool.aclose()
    assert server.connections == 1


async def test_h1_a_failed_exchange_leaves_no_reference_cycle():
    """A connection that fails, before its answer's head or in its body, is freed by reference counting, with all
    its error's traceback holds: the reader raises a copy of the connection's error (raised itself, its traceback
    held the connection, which holds it), and a closed connection lets go of its parser (which holds its callbacks).
    A cycle is freed only at the collector's next pass (bench/RESULTS.md, performance part 12)."""
    from pisces.h1 import H1Pool
    from pisces.h1.connection import Connection

    async def hang_up(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)  # and the connection closes: no answer

    async def cut(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")  # and closes, 7 bytes short
        await writer.drain()

    async def exchange(pool: H1Pool, url: str) -> bytes:
        answer = await pool.open("GET", url, {}, b"", EXCHANGE_TIMEOUTS)
        try:
            return await answer.read()
        finally:
            await answer.aclose()

    pool = H1Pool()
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds unreachable is kept in gc.garbage
    try:
        for handler in (hang_up, cut):
            async with serving(handler) as (_, url):
                with pytest.raises(httpx.RemoteProtocolError):
                    await exchange(pool, url)
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, Connection)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        await pool.aclose()
    assert left == []


async def test_h1_pauses_reading_while_a_large_answer_waits_unread_and_delivers_all_of_it():
    from pisces.h1 import HIGH_WATER, H1Pool

    body = bytes(range(256)) * (4 * HIGH_WATER // 256)

    async def big(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
        await writer.drain()
        await server.stopped.wait()

    pool = H1Pool()
    try:
        async with serving(big) as (_, url):
            answer = await pool.open("GET", url, {}, b"", EXCHANGE_TIMEOUTS)
            conn = answer._conn
            while conn.buffered <= HIGH_WATER and not conn.complete:
                await conn.wait()
            assert conn.complete or not conn.transport.is_reading()  # unread: the socket is not read
            assert await answer.read() == body
            await answer.aclose()
    finally:
        await pool.aclose()


async def test_h1_does_not_reuse_a_connection_that_said_more_than_its_answer():
    async def chatty(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        writer.write(OK + (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale" if server.connections == 1 else b""))
        await writer.drain()
        if server.connections == 1:
            await server.stopped.wait()
        else:
            await server.head(reader)

    async with serving(chatty) as (server, url):
        transport = AiohttpTransport()
        try:
            assert (await transport.exchange("GET", url, {}, b"", EXCHANGE_TIMEOUTS)).body == b"ok"
            assert (await transport.exchange("GET", url, {}, b"", EXCHANGE_TIMEOUTS)).body == b"ok"  # not "stale"
        finally:
            await transport.aclose()
    assert server.connections == 2


async def test_h1_over_https_is_verified_against_the_systems_cas_and_a_given_context_is_used(tmp_path):
    from pisces.h1 import H1Pool

    cert, key = _self_signed(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    async with serving(keep_alive, tls=server_side) as (_, url):
        pool = H1Pool()
        try:
            with pytest.raises(httpx.ConnectError) as e:
                await pool.open("GET", url, {}, b"", EXCHANGE_TIMEOUTS)
            assert "certificate" in str(e.value).lower() and transport_error(e.value, "c").retryable
        finally:
            await pool.aclose()
        pool = H1Pool(ssl_context=ssl.create_default_context(cafile=str(cert)))
        try:
            answer = await pool.open("GET", url, {}, b"", EXCHANGE_TIMEOUTS)
            assert await answer.read() == b"ok"
            await answer.aclose()
        finally:
            await pool.aclose()


def test_h1_pool_serves_one_event_loop_after_another():
    from pisces.h1 import H1Pool

    pool = H1Pool()

    async def once() -> bytes:
        async with serving(keep_alive) as (_, url):
            answer = await pool.open("GET", url, {}, b"", EXCHANGE_TIMEOUTS)
            try:
                return await answer.read()
            finally:
                await answer.aclose()
                await pool.aclose()

    assert asyncio.run(once()) == b"ok"
    assert asyncio.run(once()) == b"ok"  # the first loop's connections are not the second's


async def test_h1_pools_a_complete_answer_left_unread_with_its_connection_reading_again():
    from pisces.h1 import HIGH_WATER, H1Pool

    most, rest = b"x" * (HIGH_WATER - 10), b"y" * 1000  # the rest passes the mark and ends the answer: paused
    seen = asyncio.Event()

    async def big_then_ok(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(most) + len(rest), most))
        await writer.drain()
        await seen.wait()
        writer.write(rest)
        await writer.drain()
        await server.head(reader)
        writer.write(OK)
        await writer.drain()

    pool = H1Pool()
    async with serving(big_then_ok) as (server, url):
        try:
            answer = await pool.open("GET", url, {}, b"", EXCHANGE_TIMEOUTS)
            conn = answer._conn
            while conn.buffered < len(most):
                await conn.wait()
            seen.set()
            while not conn.complete:
                await conn.wait()
            assert not conn.transport.is_reading()
            await answer.aclose()  # not read: pooled all the same, the answer being whole
            again = await pool.open("GET", url, {}, b"", {**EXCHANGE_TIMEOUTS, "read": 5.0})
            assert await again.read() == b"ok"  # a paused connection would never answer: a ReadTimeout
            await again.aclose()
        finally:
            await pool.aclose()
    assert server.connections == 1
