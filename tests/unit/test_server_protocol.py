"""run.sh's protocol (pisces_gateway.server) sends what uvicorn writes in one turn of the event loop in one
send: a response's head and body together, a stream's chunks as they come, nothing held past its turn. And it
hands a request's body over whole when it holds all of it (``pisces.body_in_hand``), as its receive would."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from pisces.errors import PiscesError
from pisces.pipeline.body import BODY_IN_HAND, ServerBody, read_body
from pisces_gateway.server import Corked, HttpToolsProtocol


class Transport(asyncio.Transport):
    """A socket's transport as the protocol sees it: each send noted."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[bytes] = []
        self.closed = False
        self.wrote = asyncio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sends.append(bytes(data))
        self.wrote.set()

    async def until(self, n: int) -> list[bytes]:
        """The sends once there are ``n`` (a hang, if one never comes, ends the test with a timeout)."""
        async with asyncio.timeout(30):
            while len(self.sends) < n:
                self.wrote.clear()
                await self.wrote.wait()
        return self.sends

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


async def test_the_writes_of_one_turn_leave_together_a_lone_one_as_the_turn_ends_and_close_sends_what_waits():
    transport = Transport()
    corked = Corked(transport, asyncio.get_running_loop())
    corked.write(b"head ")
    assert transport.sends == []  # not yet: a body may follow in this turn
    corked.write(b"body")
    assert transport.sends == [b"head body"]  # both, at once
    corked.write(b"chunk")
    assert transport.sends == [b"head body"]
    await asyncio.sleep(0)  # a lone write leaves as the turn ends
    assert transport.sends == [b"head body", b"chunk"]
    corked.write(b"tail")
    corked.close()
    assert (transport.sends, transport.closed) == ([b"head body", b"chunk", b"tail"], True)
    await asyncio.sleep(0)
    assert transport.sends == [b"head body", b"chunk", b"tail"]  # sent once
    assert corked.get_extra_info("peername") == ("127.0.0.1", 5000)  # the rest is the transport's


async def test_what_a_turn_schedules_after_a_lone_write_runs_once_it_has_left():
    """A stream's late first bytes: the yield scheduled after their send (pisces_gateway.chat) runs after them."""
    transport, seen = Transport(), []
    loop = asyncio.get_running_loop()
    corked = Corked(transport, loop)
    corked.write(b"first words")
    loop.call_soon(lambda: seen.append(list(transport.sends)))
    await asyncio.sleep(0)
    assert seen == [[b"first words"]]


async def test_a_connection_gone_drops_what_waits():
    transport = Transport()
    corked = Corked(transport, asyncio.get_running_loop())
    corked.write(b"late")
    transport.closed = True
    await asyncio.sleep(0)
    assert transport.sends == []


async def test_a_response_goes_out_in_one_send_and_a_streams_chunks_as_they_come():
    release = asyncio.Event()

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/whole":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await release.wait()
        await send({"type": "http.response.body", "body": b"second", "more_body": False})

    config = uvicorn.Config(app, lifespan="off", log_level="warning", proxy_headers=False)
    protocol = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(b"GET /whole HTTP/1.1\r\nHost: x\r\n\r\n")
    (whole,) = await transport.until(1)
    assert whole.startswith(b"HTTP/1.1 200 OK\r\n") and whole.endswith(b"\r\n\r\nok")  # head and body, one send

    protocol.data_received(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    await transport.until(2)
    for _ in range(5):  # the first chunk is out; nothing waits for the rest
        await asyncio.sleep(0)
    assert transport.sends[1].endswith(b"\r\n\r\n5\r\nfirst\r\n") and len(transport.sends) == 2
    release.set()
    await transport.until(3)
    assert transport.sends[2] == b"6\r\nsecond\r\n0\r\n\r\n"
    protocol.connection_lost(None)


async def _served(app: Any) -> tuple[HttpToolsProtocol, Transport]:
    config = uvicorn.Config(app, lifespan="off", log_level="warning", proxy_headers=False)
    protocol = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def test_a_body_that_came_with_its_head_is_handed_over_whole_and_once():
    seen: list[Any] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        in_hand = scope["extensions"][BODY_IN_HAND]
        seen.append(in_hand())
        seen.append(in_hand())  # taken: nothing is handed over twice
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    protocol, transport = await _served(app)
    protocol.data_received(b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{"a": "b"}')
    await transport.until(1)
    assert seen == [b'{"a": "b"}', b""]
    protocol.connection_lost(None)


async def test_a_finished_request_is_freed_at_once_not_left_to_the_cycle_collector():
    """The scope holds its cycle weakly (the cycle holds the scope): when a request is done, its cycle, its
    scope and all they hold go by reference counting. A reference cycle there left 19 objects a request to
    the collector: a 4-7 ms pause every ~500 requests (bench/RESULTS.md, performance part 12)."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        assert scope["extensions"][BODY_IN_HAND]() == b"{}"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    protocol, transport = await _served(app)
    gc.disable()  # nothing is freed but by reference counting
    try:
        protocol.data_received(request)
        await transport.until(1)
        first = weakref.ref(protocol.cycle)
        protocol.data_received(request)  # the next request on the connection: uvicorn lets go of the first
        await transport.until(2)
        await asyncio.sleep(0)  # the first request's task is done: its done callbacks have run
        assert first() is None
    finally:
        gc.enable()
    protocol.connection_lost(None)


async def test_a_body_past_uvicorns_high_water_mark_is_taken_and_the_reads_resume_as_receive_would_have_them():
    seen: list[Any] = []
    big = b"x" * (300 * 1024)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.append((transport.paused, scope["extensions"][BODY_IN_HAND](), transport.paused))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    protocol, transport = await _served(app)
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
    await transport.until(1)
    assert seen == [(True, big, False)]  # paused by uvicorn for its size, resumed as the body is taken
    protocol.connection_lost(None)


async def test_a_body_still_arriving_or_awaiting_100_continue_is_received_as_it_comes():
    seen: list[Any] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.append(scope["extensions"][BODY_IN_HAND]())
        body = await read_body({}, ServerBody(_chunks(receive), scope["extensions"][BODY_IN_HAND]), 100)
        seen.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    protocol, transport = await _served(app)
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
    for _ in range(5):
        await asyncio.sleep(0)
    assert seen == [None]  # half of it: the app waits for the rest
    protocol.data_received(b"world")
    await transport.until(1)
    assert seen == [None, b"helloworld"]

    seen.clear()
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    sends = await transport.until(2)
    assert sends[1] == b"HTTP/1.1 100 Continue\r\n\r\n" and seen == [None]  # the client is asked for it
    protocol.data_received(b"ok")
    await transport.until(3)
    assert seen == [None, b"ok"]
    protocol.connection_lost(None)


async def _chunks(receive: Any) -> Any:
    while True:
        message = await receive()
        yield message.get("body", b"")
        if not message.get("more_body"):
            return


async def test_a_whole_body_is_held_to_the_limit_and_a_server_without_it_is_read_as_it_comes():
    async def never() -> Any:
        raise AssertionError("a whole body is not iterated")
        yield b""

    assert await read_body({}, ServerBody(never(), lambda: b"x" * 100), 100) == b"x" * 100
    with pytest.raises(PiscesError) as err:
        await read_body({}, ServerBody(never(), lambda: b"x" * 101), 100)
    assert err.value.code == "request_too_large"

    async def two() -> Any:
        yield b"ab"
        yield b"c"

    assert await read_body({}, ServerBody(two(), None), 100) == b"abc"  # no extension: the chunks
    assert await read_body({}, ServerBody(two(), lambda: None), 100) == b"abc"  # not all in hand: the chunks
