from __future__ import annotations

import random
import re

from pisces.protocols.sse import SSEParser, format_event
from support.servers import recorded


def _parse_in_slices(data: bytes, seed: int) -> list:
    rng, parser, out, i = random.Random(seed), SSEParser(), [], 0
    while i < len(data):
        n = rng.randint(1, 40)
        out += parser.feed(data[i : i + n])
        i += n
    return out + parser.close()


def test_events_survive_any_slicing():
    for name in (
        "openai_chat_tool_call_stream.sse",
        "anthropic_messages_tool_use_stream.sse",
        "gemini_stream_function_call.sse",
    ):
        data = recorded(name)
        whole = [(e.event, e.data) for e in _events(data)]
        assert whole
        for seed in range(5):
            assert [(e.event, e.data) for e in _parse_in_slices(data, seed)] == whole


def _events(data: bytes) -> list:
    p = SSEParser()
    return p.feed(data) + p.close()


def test_crlf_cr_comments_multiline_and_missing_final_blank_line():
    p = SSEParser()
    evs = p.feed(b": keep-alive\r\nevent: ping\r\ndata: {}\r\n\r\ndata: a\rdata: b\r\r")
    evs += p.feed(b"data: last")
    evs += p.close()
    assert [(e.event, e.data) for e in evs] == [("ping", "{}"), (None, "a\nb"), (None, "last")]


def test_cr_split_from_lf_across_chunks():
    p = SSEParser()
    evs = p.feed(b"data: x\r") + p.feed(b"\n\r\n")
    assert [e.data for e in evs] == ["x"]


def test_format_round_trip():
    raw = format_event("line1\nline2", event="message_start") + format_event('{"a": 1}')
    assert [(e.event, e.data) for e in _events(raw)] == [("message_start", "line1\nline2"), (None, '{"a": 1}')]


def _reference(data: bytes) -> list[tuple[str | None, str]]:
    """The spec's reading, line by line (lines end at \\r\\n, \\r or \\n), for the whole stream at once."""
    out, lines, event = [], [], None
    for line in [*re.split(r"\r\n|\r|\n", data.decode()), ""]:
        if line == "":
            if lines or event is not None:
                out.append((event, "\n".join(lines)))
            lines, event = [], None
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                lines.append(value)
            elif name == "event":
                event = value
    return out


def test_mixed_line_endings_in_any_slicing_read_as_the_spec_says():
    """\\n, \\r\\n and \\r mixed in one stream, cut anywhere (a \\r\\n split across two reads included)."""
    rng = random.Random(7)
    for _ in range(40):
        parts = []
        for i in range(rng.randint(1, 30)):
            a, b, c, blank = (rng.choice(["\n", "\r\n", "\r"]) for _ in range(4))
            parts.append(f'event: e{i}{a}data: {{"i": {i}}}{b}: note{c}{blank}')
        data = "".join(parts).encode()
        want = _reference(data)
        assert [(e.event, e.data) for e in _events(data)] == want
        for seed in range(3):
            assert [(e.event, e.data) for e in _parse_in_slices(data, seed)] == want


def test_an_event_is_handed_over_before_the_rest_of_its_read_is_split(monkeypatch):
    """An upstream's first read may hold its whole stream: its first event goes on before the rest is read."""
    p, lines = SSEParser(), []
    real = p._line
    monkeypatch.setattr(p, "_line", lambda line: lines.append(line) or real(line))
    events = p.events(b"data: 1\n\ndata: 2\n\ndata: 3\n\n")
    assert next(events).data == "1" and lines == ["data: 1", ""]
    assert [e.data for e in events] == ["2", "3"] and len(lines) == 6


def test_events_left_early_keep_what_was_not_read():
    p = SSEParser()
    events = p.events(b"data: 1\n\ndata: 2\n\ndata: 3")
    assert next(events).data == "1"
    events.close()  # the consumer went on without the rest
    assert [e.data for e in p.feed(b"\n\n")] == ["2", "3"]


def test_events_in_any_slicing_are_the_lists_feed_returns():
    data = recorded("anthropic_messages_tool_use_stream.sse")
    for seed in range(3):
        rng, lazy, i = random.Random(seed), SSEParser(), 0
        out = []
        while i < len(data):
            n = rng.randint(1, 400)
            out += [(e.event, e.data) for e in lazy.events(data[i : i + n])]
            i += n
        assert out + [(e.event, e.data) for e in lazy.close()] == [(e.event, e.data) for e in _events(data)]
