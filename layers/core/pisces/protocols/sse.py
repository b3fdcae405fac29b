"""Server-sent events framing (https://html.spec.whatwg.org/multipage/server-sent-events.html).

:class:`SSEParser` turns bytes, fed in arbitrary chunks, into events (a list, or one at a time as each is
read); :func:`format_event` writes one. Both are protocol-neutral: the codecs give meaning to ``event`` and ``data``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    data: str
    event: str | None = None
    id: str | None = None


class SSEParser:
    """Incremental parser: ``feed`` takes any slice of the stream and returns the events completed."""

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return list(self.events(chunk))

    def events(self, chunk: bytes) -> Iterator[SSEEvent]:
        """The events ``chunk`` completes, each handed over as soon as its blank line is read: the rest of
        the chunk is split only when the next one is asked for (an upstream's first read may hold its
        whole stream; its first event goes on at once). Take them all before feeding more; left early, the
        parser keeps what it had not read."""
        buf = self._buf + chunk if self._buf else chunk
        pos, end = 0, len(buf)
        crs = b"\r" in buf  # most streams end lines with \n alone: then only \n is looked for
        try:
            while True:
                # a line ends at \n, \r\n or \r; a lone \r at the end of the buffer may be half of \r\n.
                # Each search starts where the last line ended (one pass over the buffer, not one a line).
                i = buf.find(b"\n", pos)
                if crs:
                    cr = buf.find(b"\r", pos, i if i >= 0 else end)
                    i = cr if cr >= 0 else i
                if i < 0 or (buf[i] == 13 and i + 1 == end):
                    break
                line = buf[pos:i].decode("utf-8", errors="replace")
                pos = i + (2 if buf[i : i + 2] == b"\r\n" else 1)
                ev = self._line(line)
                if ev is not None:
                    yield ev
        finally:
            self._buf = buf[pos:]

    def close(self) -> list[SSEEvent]:
        """End of stream: a last event without its blank line still counts (servers often omit it)."""
        out = self.feed(b"\n") if self._buf else []
        ev = self._line("")
        if ev is not None:
            out.append(ev)
        return out

    def _line(self, line: str) -> SSEEvent | None:
        if line == "":
            if not self._data and self._event is None:
                return None
            ev = SSEEvent(data="\n".join(self._data), event=self._event, id=self._id)
            self._data, self._event = [], None
            return ev
        if line.startswith(":"):
            return None  # comment / keep-alive
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            self._id = value
        return None


def format_event(data: str, event: str | None = None) -> bytes:
    """One SSE event; multi-line data is split over several ``data:`` lines as the spec requires."""
    head = f"event: {event}\n" if event else ""
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return (head + body + "\n").encode()


def comment(text: str = "") -> bytes:
    """A comment line, which every SSE client ignores (used as a keep-alive)."""
    return f": {text}\n\n".encode()
