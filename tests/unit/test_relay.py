"""The relay's reader (``Ahead``) and its writes: events that came together go to the client in one
write, an event that comes alone goes at once, a heartbeat only after a silent interval, the
upstream's error in its place, and what was read but never sent still counted for the bill.

Causal throughout: a paced upstream moves only when the test has seen the chunk before; the one wait
on a timer (the heartbeat) is against an upstream that can never answer."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator
from types import SimpleNamespace
from typing import Any

import pytest

from pisces.canonical import ChatRequest, Finish, StreamEvent, StreamStart, TextDelta
from pisces.pipeline.context import RequestContext
from pisces.pipeline.relay import SILENT, Ahead, relay
from pisces.protocols import openai_chat_stream
from pisces.upstreams.events import Events


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _together(n: int, tail: list[StreamEvent] | None = None) -> AsyncGenerator[StreamEvent, None]:
    """``n`` text deltas that arrive at once (no wait between them), as from one network read."""
    for i in range(n):
        yield TextDelta(index=0, text=f"w{i} ")
    for ev in tail or []:
        yield ev


class Paced:
    """An upstream that sends its next event only when told to."""

    def __init__(self, n: int) -> None:
        self.n, self.go, self.closed = n, asyncio.Event(), False

    async def events(self) -> AsyncGenerator[StreamEvent, None]:
        try:
            for ev in [*(TextDelta(index=0, text=f"p{i} ") for i in range(self.n)), Finish(reason="stop")]:
                await self.go.wait()
                self.go.clear()
                yield ev
        finally:
            self.closed = True


def test_events_that_came_together_are_taken_without_waiting():
    async def go() -> None:
        ahead = Ahead(_together(5))
        assert ahead.take() is SILENT  # its reader has not run yet
        first = await ahead.next(10)
        rest = [ahead.take() for _ in range(4)]
        assert [e.text for e in [first, *rest]] == ["w0 ", "w1 ", "w2 ", "w3 ", "w4 "]
        assert await ahead.next(10) is None  # the end
        assert await ahead.close() == []

    _run(go())


def test_in_a_hurry_each_event_reaches_the_relay_before_the_next_is_read():
    """While the client has no byte of the body yet, the reader hands each event over and lets the relay
    take it before it reads on; out of its hurry, what came together is taken together again."""

    async def go() -> None:
        ahead = Ahead(_together(5), hurry=True)
        first = await ahead.next(10)
        assert first.text == "w0 " and ahead.take() is SILENT, "the rest is not read before the first goes"
        ahead.hurry = False
        second = await ahead.next(10)
        for _ in range(3):
            await asyncio.sleep(0)  # the reader, no longer in a hurry, reads on
        rest = [ahead.take() for _ in range(3)]
        assert [e.text for e in [second, *rest]] == ["w1 ", "w2 ", "w3 ", "w4 "]
        await ahead.close()

    _run(go())


def test_a_stream_whose_first_event_says_nothing_sends_its_first_words_before_the_rest_is_read():
    """Gemini's start says nothing: the client has the head alone. When the upstream's words then come in
    one burst, the first goes out before the rest is decoded; after it, a burst goes in one chunk."""
    from pisces.protocols import CODECS

    async def go() -> None:
        settled: list[RequestContext] = []
        ctx = RequestContext(request_id="req_hurry", protocol="gemini")
        encoder = CODECS["gemini"].StreamEncoder({"gateway": "Pisces"}, True)
        words = _together(6, [Finish(reason="stop")])
        body = relay(_gateway(settled), ctx, encoder, ChatRequest(model="m", messages=[]), None, None,
                     StreamStart(id="r1", model="m"), words, "text/event-stream")  # fmt: skip
        assert await anext(body) == b""
        first = await anext(body)
        assert b"w0 " in first and b"w1 " not in first
        rest = await anext(body)
        assert all(f"w{i} ".encode() in rest for i in range(1, 6)), "the words after the first, in one chunk"
        async for _ in body:
            pass
        assert settled == [ctx]

    _run(go())


def test_it_reads_at_most_its_limit_ahead_and_close_hands_back_the_unread():
    async def go() -> None:
        gen = _together(100)
        ahead = Ahead(gen, limit=8)
        await ahead.next(10)
        for _ in range(3):
            await asyncio.sleep(0)  # the reader runs as far as it may
        unread = await ahead.close()
        assert 7 <= len(unread) <= 8, "bounded by the limit, not the upstream's length"
        assert not gen.ag_running
        await gen.aclose()  # the relay closes it next: no read of it is still going on

    _run(go())


def test_silent_after_the_interval_and_the_read_is_never_cancelled():
    async def go() -> None:
        up = Paced(1)
        ahead = Ahead(up.events())
        assert await ahead.next(0.01) is SILENT  # the upstream cannot answer until told
        up.go.set()
        ev = await ahead.next(10)
        assert ev.text == "p0 " and not up.closed, "the same read went on after the silence"
        up.go.set()
        assert isinstance(await ahead.next(10), Finish)
        await ahead.close()
        assert up.closed

    _run(go())


def test_every_silent_interval_is_noticed_after_events_and_after_a_heartbeat():
    """One timer serves the stream: it moves on while events come, and each silent wait still ends."""

    async def go() -> None:
        up = Paced(3)
        ahead = Ahead(up.events())
        for i in range(3):
            up.go.set()
            assert (await ahead.next(10)).text == f"p{i} "  # the timer, set for 10 s, moves on
        assert await ahead.next(0.01) is SILENT  # a shorter interval now: its own deadline
        assert await ahead.next(0.01) is SILENT  # and again, after the heartbeat
        up.go.set()
        assert isinstance(await ahead.next(10), Finish)
        await ahead.close()

    _run(go())


def test_the_upstreams_error_is_raised_after_what_came_before_it():
    async def failing() -> AsyncGenerator[StreamEvent, None]:
        yield TextDelta(index=0, text="a")
        raise RuntimeError("upstream broke")

    async def go() -> None:
        ahead = Ahead(failing())
        assert (await ahead.next(10)).text == "a"
        with pytest.raises(RuntimeError, match="upstream broke"):
            await ahead.next(10)

    _run(go())


def test_a_first_event_that_says_nothing_takes_the_words_read_with_it_and_sends_them_first():
    """An upstream stream that says what it read already (``Events.ready``): when Gemini's start says
    nothing, the words read with it make the relay's first chunk (which goes out with the head), the
    first alone; what came with them goes next, in one chunk. Without ``ready`` the first chunk is empty."""
    from pisces.protocols import CODECS

    async def go(with_ready: bool) -> list[bytes]:
        held = deque(TextDelta(index=0, text=f"w{i} ") for i in range(4))

        async def read() -> AsyncGenerator[StreamEvent, None]:
            while held:
                yield held.popleft()
            yield Finish(reason="stop")

        events = Events(read(), lambda: held.popleft() if held else None) if with_ready else read()
        settled: list[RequestContext] = []
        ctx = RequestContext(request_id="req_ready", protocol="gemini")
        encoder = CODECS["gemini"].StreamEncoder({"gateway": "Pisces"}, True)
        body = relay(_gateway(settled), ctx, encoder, ChatRequest(model="m", messages=[]), None, None,
                     StreamStart(id="r1", model="m"), events, "text/event-stream")  # fmt: skip
        chunks = [c async for c in body]
        assert settled == [ctx] and ctx.finish == "stop"
        assert all(f"w{i} ".encode() in b"".join(chunks) for i in range(4))
        return chunks

    first, *rest = _run(go(True))
    assert b"w0 " in first and b"w1 " not in first, "the first words alone, and at once"
    assert all(f"w{i} ".encode() in rest[0] for i in range(1, 4)), "the words after the first, in one chunk"
    assert _run(go(False))[0] == b"", "no ready: the head goes alone, the words after it"


# --- the relay's writes ---------------------------------------------------------------------------


def _gateway(settled: list[RequestContext]) -> Any:
    async def settle(ctx: RequestContext, req: Any, bill: Any, status: int) -> None:
        settled.append(ctx)

    limits = SimpleNamespace(heartbeat_seconds=10)
    return SimpleNamespace(config=SimpleNamespace(limits=limits), billing=SimpleNamespace(settle=settle))


def _relay(events: AsyncGenerator[StreamEvent, None], settled: list[RequestContext]) -> tuple[Any, RequestContext]:
    ctx = RequestContext(request_id="req_relay", protocol="openai")
    req = ChatRequest(model="m", messages=[])
    encoder = openai_chat_stream.StreamEncoder({"gateway": "Pisces"})
    first = StreamStart(id="r1", model="m")
    body = relay(_gateway(settled), ctx, encoder, req, None, None, first, events, "text/event-stream")
    return body, ctx


def _expected(events: list[StreamEvent]) -> bytes:
    enc = openai_chat_stream.StreamEncoder({"gateway": "Pisces"})
    return b"".join(enc.encode(e) for e in events) + enc.close()


def test_what_came_together_goes_in_one_write_and_the_first_event_at_once():
    async def go() -> None:
        settled: list[RequestContext] = []
        body, ctx = _relay(_together(50, [Finish(reason="stop")]), settled)
        chunks = [c async for c in body]
        deltas = [TextDelta(index=0, text=f"w{i} ") for i in range(50)]
        assert b"".join(chunks) == _expected([StreamStart(id="r1", model="m"), *deltas, Finish(reason="stop")])
        assert len(chunks) == 3, "the first event's chunk, the 50 deltas and the finish, the terminal chunk"
        assert chunks[0].count(b"data: ") == 1 and chunks[1].count(b"data: ") == 51
        assert settled == [ctx] and ctx.finish == "stop"

    _run(go())


def test_a_cut_stream_leaves_no_reader_behind_and_closes_the_upstream_before_settling():
    """The reader task is the one piece of a stream's work on the side: it is stopped and awaited before
    the settling, so nothing of the request runs after its last byte (Lambda freezes there)."""

    async def go() -> None:
        up = Paced(5)
        order: list[str] = []
        gw = _gateway([])

        async def settle(ctx: RequestContext, req: Any, bill: Any, status: int) -> None:
            order.append("settle: upstream closed" if up.closed else "settle: upstream open")

        gw.billing.settle = settle
        ctx = RequestContext(request_id="req_cut", protocol="openai")
        encoder = openai_chat_stream.StreamEncoder({"gateway": "Pisces"})
        body = relay(gw, ctx, encoder, ChatRequest(model="m", messages=[]), None, None,
                     StreamStart(id="r1", model="m"), up.events(), "text/event-stream")  # fmt: skip
        await anext(body)
        up.go.set()
        await anext(body)  # the reader now waits on an upstream that says nothing more
        await body.aclose()
        assert order == ["settle: upstream closed"] and ctx.error == "client_cut"
        assert asyncio.all_tasks() == {asyncio.current_task()}, "no reader left behind"

    _run(go())


def test_an_event_that_comes_alone_is_sent_alone():
    async def go() -> None:
        up, settled = Paced(3), []
        body, _ = _relay(up.events(), settled)
        chunks = []
        async for chunk in body:
            chunks.append(chunk)
            up.go.set()  # the next event only once this chunk is out
        assert [c.count(b"data: ") for c in chunks[:5]] == [1, 1, 1, 1, 1]
        assert b"p0 " in chunks[1] and b"p2 " in chunks[3] and b'"finish_reason":"stop"' in chunks[4]

    _run(go())


def test_a_client_that_hangs_up_is_billed_for_what_was_read_but_not_sent():
    async def go() -> None:
        settled: list[RequestContext] = []
        body, ctx = _relay(_together(40), settled)
        await anext(body)  # the first chunk; the reader then takes the deltas in
        for _ in range(3):
            await asyncio.sleep(0)
        await body.aclose()  # the client is gone before they were sent
        assert settled == [ctx] and ctx.error == "client_cut"
        assert ctx.generated_tokens >= 40, "the deltas the upstream generated are counted"

    _run(go())


# --- the gateway's streamed response -------------------------------------------------------------


def test_the_head_and_first_chunk_go_out_before_the_disconnect_listener_starts(monkeypatch):
    """PipelineStream sends them from the request's own task, then gives up the CPU once (whoever reads
    the first bytes runs before the rest is worked); then a client that hangs up is noticed (Starlette's
    listener) and the body is closed in that same task, before the response returns."""
    from pisces_gateway import chat
    from pisces_gateway.chat import PipelineStream

    log: list[str] = []
    monkeypatch.setattr(chat, "_sched_yield", lambda: log.append("yield"))

    async def go() -> None:
        closed = asyncio.Event()
        hang_up = asyncio.Event()

        async def body() -> AsyncGenerator[bytes, None]:
            try:
                yield b"data: 1\n\n"
                yield b"data: 2\n\n"
                await asyncio.Event().wait()  # an upstream that says nothing more
            finally:
                closed.set()

        async def receive() -> dict[str, Any]:
            log.append("receive")
            await hang_up.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            log.append(message["type"].rsplit(".", 1)[1] + ":" + message.get("body", b"").decode().strip())
            if message.get("body") == b"data: 2\n\n":
                hang_up.set()

        scope = {"type": "http", "asgi": {"spec_version": "2.3"}, "method": "POST"}
        await PipelineStream(body(), media_type="text/event-stream")(scope, receive, send)
        assert log[:3] == ["start:", "body:data: 1", "yield"] and log.index("body:data: 1") < log.index("receive")
        assert log.count("yield") == 1 and closed.is_set(), "the body was closed before the response returned"

    _run(go())


def test_a_first_event_that_says_nothing_still_starts_the_response_at_once():
    """Gemini's stream says nothing for its start: the relay yields an empty chunk, so the response
    starts (and with it the watch for a client that hangs up) while the upstream is still thinking."""
    from pisces.protocols import CODECS

    async def go() -> None:
        up, settled = Paced(1), []
        ctx = RequestContext(request_id="req_gemini", protocol="gemini")
        encoder = CODECS["gemini"].StreamEncoder({"gateway": "Pisces"}, True)
        first = StreamStart(id="r1", model="m")
        body = relay(_gateway(settled), ctx, encoder, ChatRequest(model="m", messages=[]), None, None, first,
                     up.events(), "text/event-stream")  # fmt: skip
        assert await anext(body) == b"" and not up.go.is_set()  # out before the upstream said a word
        chunks = []
        up.go.set()
        async for chunk in body:
            chunks.append(chunk)
            up.go.set()
        assert b"p0 " in b"".join(chunks) and settled == [ctx]

    _run(go())


def test_an_empty_first_chunk_sends_the_head_alone_and_the_listener_starts_at_once(monkeypatch):
    from pisces_gateway import chat
    from pisces_gateway.chat import PipelineStream

    log: list[str] = []
    monkeypatch.setattr(chat, "_sched_yield", lambda: log.append("yield"))  # no body bytes out: no yield

    async def go() -> None:
        closed = asyncio.Event()

        async def body() -> AsyncGenerator[bytes, None]:
            try:
                yield b""
                await asyncio.Event().wait()  # an upstream still thinking
                yield b"never"
            finally:
                closed.set()

        async def receive() -> dict[str, Any]:
            log.append("receive")
            return {"type": "http.disconnect"}  # the client is gone already

        async def send(message: dict[str, Any]) -> None:
            log.append(message["type"].rsplit(".", 1)[1] + ":" + message.get("body", b"").decode())

        scope = {"type": "http", "asgi": {"spec_version": "2.3"}, "method": "POST"}
        await PipelineStream(body(), media_type="text/event-stream")(scope, receive, send)
        assert log[:2] == ["start:", "receive"] and "body:never" not in log and "yield" not in log
        assert closed.is_set()

    _run(go())


def test_the_reader_runs_after_the_first_body_bytes_when_they_come_after_an_empty_first_chunk(monkeypatch):
    """Sent alone in a turn of the loop, they leave at the start of the next (pisces_gateway.server.Corked):
    the CPU is given up then, after them."""
    from pisces_gateway import chat
    from pisces_gateway.chat import PipelineStream

    log: list[str] = []
    monkeypatch.setattr(chat, "_sched_yield", lambda: log.append("yield"))

    async def go() -> None:
        async def body() -> AsyncGenerator[bytes, None]:
            yield b""  # the head alone
            yield b"data: 1\n\n"
            await asyncio.sleep(0)  # the next event comes in a later turn of the loop
            yield b"data: 2\n\n"

        async def receive() -> dict[str, Any]:
            await asyncio.Event().wait()  # the client stays
            return {}

        async def send(message: dict[str, Any]) -> None:
            log.append(message["type"].rsplit(".", 1)[1] + ":" + message.get("body", b"").decode().strip())

        scope = {"type": "http", "asgi": {"spec_version": "2.3"}, "method": "POST"}
        await PipelineStream(body(), media_type="text/event-stream")(scope, receive, send)
        # once, in the loop's turn after the first bytes were sent (when run.sh's protocol writes what was held)
        assert log == ["start:", "body:data: 1", "yield", "body:data: 2", "body:"]

    _run(go())
