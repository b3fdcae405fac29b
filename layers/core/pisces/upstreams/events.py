"""An upstream's stream of canonical events, which can say what it holds already.

A network read often holds more than one event (a provider's first read may hold its whole start, or
its whole answer). :class:`InHand` keeps what one read completed, split and decoded only as it is
taken; :class:`Events` is the stream a channel hands the pipeline: an async generator (each event as
soon as it is read) with a ``ready`` that gives the next event when it is decoded from bytes already
read, without waiting. The relay uses it for a client whose protocol says nothing at a stream's start
(Gemini's): its first words go out with the response's head instead of after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from typing import Any, Protocol

from pisces.canonical import ErrorEvent, StreamEvent
from pisces.protocols.sse import SSEEvent


class Decoder(Protocol):
    def feed(self, sse: SSEEvent) -> list[StreamEvent]: ...

    def close(self) -> list[StreamEvent]: ...


class InHand:
    """The events decoded, or still to be decoded, from the SSE events of the bytes read so far."""

    __slots__ = ("_decoder", "_events", "_last", "_sse", "ended")

    def __init__(self, decoder: Decoder) -> None:
        self._decoder = decoder
        self._sse: Iterator[SSEEvent] = iter(())
        self._events: deque[StreamEvent] = deque()
        self._last = False  # the SSE events in hand are the stream's last: the decoder's close follows them
        self.ended = False  # the decoder is closed: what is in hand is all there is

    def refill(self, sse: Iterable[SSEEvent], last: bool = False) -> None:
        """What the next read completed (an iterable split lazily, as :meth:`SSEParser.events` is), or,
        ``last``, what the end of the stream completed: given once the events before it are all taken."""
        self._sse, self._last = iter(sse), last

    def next(self) -> StreamEvent | None:
        """The next event from what was read; None when more must be read first (or, ``ended``, never)."""
        while not self._events:
            sse = next(self._sse, None)
            if sse is not None:
                self._events.extend(self._decoder.feed(sse))
            elif self._last:
                self._last, self.ended = False, True
                self._events.extend(self._decoder.close())
            else:
                return None
        return self._events.popleft()

    def ready(self) -> StreamEvent | None:
        """:meth:`next`, but never an error event: its message is redacted on its way out, which may
        wait (for the channel's key), so it is left for the stream's own reader."""
        ev = self.next()
        if isinstance(ev, ErrorEvent):
            self._events.appendleft(ev)
            return None
        return ev


class Events(AsyncGenerator[StreamEvent, None]):
    """An async generator of an upstream's events, and ``ready``: the next one when it is decoded
    already (None when the next must be waited for). Taken with ``ready`` or read, each event comes once,
    in order; ``ready`` is for the stream's single consumer, between its reads."""

    __slots__ = ("_gen", "ready")

    def __init__(self, gen: AsyncGenerator[StreamEvent, None], ready: Callable[[], StreamEvent | None]) -> None:
        self._gen = gen
        self.ready = ready

    def __anext__(self) -> Any:
        return self._gen.__anext__()

    def asend(self, value: None) -> Any:
        return self._gen.asend(value)

    def athrow(self, *args: Any) -> Any:
        return self._gen.athrow(*args)

    def aclose(self) -> Any:
        return self._gen.aclose()
