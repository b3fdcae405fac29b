"""An upstream's events in hand (pisces.upstreams.events): split and decoded only as taken, the
decoder's last events after the stream's end, and an error event never handed over by ``ready``."""

from __future__ import annotations

from pisces.canonical import ErrorEvent, Finish, StreamEvent, TextDelta
from pisces.protocols.sse import SSEEvent
from pisces.upstreams.events import InHand


class Decoder:
    """Each SSE event's data is the text of a delta; "error" is an error event after the text before it."""

    def __init__(self) -> None:
        self.fed: list[str] = []

    def feed(self, sse: SSEEvent) -> list[StreamEvent]:
        self.fed.append(sse.data)
        if sse.data == "error":
            return [TextDelta(index=0, text="before"), ErrorEvent(code="upstream_error", message="m", status=500)]
        return [TextDelta(index=0, text=sse.data)]

    def close(self) -> list[StreamEvent]:
        return [Finish(reason="stop")]


def test_events_are_decoded_only_as_they_are_taken():
    decoder = Decoder()
    hand = InHand(decoder)
    hand.refill(SSEEvent(data=d) for d in ["a", "b", "c"])
    assert hand.next() == TextDelta(index=0, text="a") and decoder.fed == ["a"]
    assert hand.ready() == TextDelta(index=0, text="b") and decoder.fed == ["a", "b"]
    assert [hand.next(), hand.next()] == [TextDelta(index=0, text="c"), None]
    assert hand.ready() is None and not hand.ended


def test_the_decoders_last_events_follow_the_last_read():
    hand = InHand(Decoder())
    hand.refill([SSEEvent(data="x")], last=True)
    assert [hand.next(), hand.ready(), hand.next()] == [TextDelta(index=0, text="x"), Finish(reason="stop"), None]
    assert hand.ended


def test_ready_leaves_an_error_event_for_the_reader():
    hand = InHand(Decoder())
    hand.refill([SSEEvent(data="error"), SSEEvent(data="after")])
    assert hand.ready() == TextDelta(index=0, text="before")
    assert hand.ready() is None and hand.ready() is None, "the error waits for the reader (its redaction)"
    assert isinstance(hand.next(), ErrorEvent)
    assert hand.next() == TextDelta(index=0, text="after")
