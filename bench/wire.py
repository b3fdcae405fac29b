"""The benches' two ends on raw asyncio sockets, so neither weighs on what is measured between them.

``serve_fast_upstream``: an OpenAI-compatible upstream that answers every POST at once with the
same chat completion (or, for ``"stream": true``, the same five-chunk SSE stream with usage),
HTTP/1.1 keep-alive, no framework. ``Conn``: a keep-alive HTTP/1.1 client connection that sends
prebuilt request bytes and reads one response (Content-Length, chunked or close-delimited).

``serve_tcp_relay``: a byte relay in front of the upstream (each client connection gets its own upstream
connection; bytes are forwarded as they come, nothing parsed): the floor of putting one more process in
a request's path on this host (two more wakeups of an idle process, two more loopback hops), which no
gateway's code goes below.

``serve_replaying_dynamo``: a DynamoDB front for measuring the gateway's own CPU on the full pipeline
with DynamoDB's service time taken out (issue 15's target says "excluding DynamoDB's own service
time"; moto spends ~9 ms of CPU a request and leaves the gateway idle between its answers, which on
this VM inflates the gateway's own CPU per request). The first ``learn`` calls of each operation
(``X-Amz-Target``) go to moto and are answered by it; after that each call gets the last successful
answer moto gave to that operation, byte for byte (its ``x-amz-crc32`` still matches). The gateway
does the same work for a replayed answer as for a fresh one (signing, sending, parsing, the ledger's
decisions); only moto's state stops changing, so this measures CPU, never money semantics.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-fake",
    "system_fingerprint": "fp_fake",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there, friend, how are you?", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
}


def _sse(words: list[str] | None = None) -> bytes:
    out = []
    words = words or ["Hello", " there,", " friend,", " how are", " you?"]
    for i, w in enumerate(words):
        delta: dict[str, Any] = {"content": w} if i else {"role": "assistant", "content": w}
        chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
                 "model": "gpt-fake", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}  # fmt: skip
        out.append(f"data: {json.dumps(chunk)}\n\n")
    last = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-fake",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}  # fmt: skip
    usage = {**last, "choices": [], "usage": COMPLETION["usage"]}
    out += [f"data: {json.dumps(last)}\n\n", f"data: {json.dumps(usage)}\n\n", "data: [DONE]\n\n"]
    return "".join(out).encode()


def _response(body: bytes, media: str) -> bytes:
    head = f"HTTP/1.1 200 OK\r\ncontent-type: {media}\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


NON_STREAM = _response(json.dumps(COMPLETION).encode(), "application/json")
STREAM = _response(_sse(), "text/event-stream")
LONG_DELTAS = 1_000
# model "gpt-fake-long": a stream of LONG_DELTAS text deltas in one piece (what the relay costs an event)
LONG_STREAM = _response(_sse([f" word{i}" for i in range(LONG_DELTAS)]), "text/event-stream")
MODELS = _response(json.dumps({"object": "list", "data": [{"id": "gpt-fake", "object": "model"}]}).encode(),
                   "application/json")  # fmt: skip


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            if head.startswith(b"GET"):
                writer.write(MODELS)
            else:
                flat = body.replace(b" ", b"")
                if b'"stream":true' not in flat:
                    writer.write(NON_STREAM)
                else:
                    writer.write(LONG_STREAM if b'"model":"gpt-fake-long"' in flat else STREAM)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def serve_fast_upstream(port: int) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_serve, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class _Pipe(asyncio.Protocol):
    """One side of a relayed connection: what it receives is written to its peer's transport."""

    def __init__(self, peer: _Pipe | None = None) -> None:
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []  # what the client sent before the upstream connection was made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


def serve_tcp_relay(port: int, upstream_port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        connecting: set[asyncio.Task[None]] = set()

        def client_side() -> _Pipe:
            side = _Pipe()

            async def connect() -> None:
                _, up = await loop.create_connection(lambda: _Pipe(side), "127.0.0.1", upstream_port)
                side.peer = up
                for data in side.pending:
                    up.transport.write(data)  # type: ignore[union-attr]
                side.pending.clear()

            task = loop.create_task(connect())
            connecting.add(task)
            task.add_done_callback(connecting.discard)
            return side

        server = await loop.create_server(client_side, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


async def _message(reader: asyncio.StreamReader) -> tuple[bytes, bytes, bytes]:
    """One HTTP/1.1 message with a Content-Length body: (head, body, its X-Amz-Target)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length, target = 0, b""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"x-amz-target":
            target = value.strip()
        elif name == b"transfer-encoding":
            raise RuntimeError("the replaying DynamoDB front reads Content-Length bodies only")
    return head, await reader.readexactly(length) if length else b"", target


def serve_replaying_dynamo(port: int, moto_port: int, learn: int = 20) -> None:
    asked: dict[bytes, int] = {}
    answers: dict[bytes, bytes] = {}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        moto: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                head, body, target = await _message(reader)
                if asked.get(target, 0) < learn or target not in answers:
                    asked[target] = asked.get(target, 0) + 1
                    if moto is None:
                        moto = await asyncio.open_connection("127.0.0.1", moto_port)
                    moto[1].write(head + body)
                    rhead, rbody, _ = await _message(moto[0])
                    answer = rhead + rbody
                    if rhead.startswith(b"HTTP/1.1 200"):
                        answers[target] = answer
                else:
                    answer = answers[target]
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            if moto is not None:
                moto[1].close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def request_bytes(port: int, path: str, headers: dict[str, str], body: Any, method: str = "POST") -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{port}", "accept: */*"]
    if body is not None:
        lines += ["content-type: application/json", f"content-length: {len(data)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


class Conn:
    """One keep-alive connection; ``call`` returns (status, body, seconds to the first body byte)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def call(self, req: bytes) -> tuple[int, bytes, float]:
        for fresh in (self.writer is None, True):
            if fresh:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None and self.writer is not None
            t0 = time.perf_counter()
            self.writer.write(req)
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
                break
            except (asyncio.IncompleteReadError, ConnectionError) as e:
                # a server closes a connection idle past its keep-alive (uvicorn: 5 s), as a client's
                # pool finds out: sent again once on a new one, as those clients do
                if fresh or (isinstance(e, asyncio.IncompleteReadError) and e.partial):
                    raise
                self.writer.close()
        status = int(head[9:12])
        length, chunked, close = None, False, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
            elif name == b"connection" and value == b"close":
                close = True
        first = 0.0
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                first = first or time.perf_counter() - t0
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(data[:-2])
            body = b"".join(parts)
        elif length is not None:
            body = await self.reader.readexactly(length)
        else:
            body, close = await self.reader.read(), True
        first = first or time.perf_counter() - t0
        if close:
            self.writer.close()
            self.writer = None
        return status, body, first

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
