"""The per-request context that travels down the pipeline, and the ``pisces`` extension object."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from pisces import GATEWAY_NAME
from pisces.canonical import Usage
from pisces.store.keys import KeyRecord

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")


def request_id_from(client_value: str | None) -> str:
    """Echo a client-sent X-Request-Id when it is safe to (≤128 chars of [A-Za-z0-9._:-]), else mint one."""
    if client_value and _VALID_REQUEST_ID.match(client_value):
        return client_value
    return new_request_id()


_second: list[Any] = [None, ""]  # the second utc_timestamp last wrote, as text


def utc_timestamp() -> str:
    """Now in UTC, to the millisecond: 2026-12-07T18:22:07.788Z (the second's text made once a second)."""
    now = time.time()
    second = int(now)
    micros = round((now - second) * 1e6)  # as datetime reads a timestamp: to the microsecond, then truncated
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    if _second[0] != second:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{micros // 1000:03d}Z"


def new_request_id() -> str:
    """``req_`` and 32 random hex digits (128 bits from the OS; uuid4's 122 and its object took 4x as long)."""
    return "req_" + os.urandom(16).hex()


@dataclass(slots=True)
class RequestContext:
    request_id: str  # what X-Request-Id and the pisces object say: the client's, when it sent a valid one
    protocol: str
    started: float = field(default_factory=time.perf_counter)
    key: KeyRecord | None = None
    client_model: str | None = None
    model: str | None = None  # the canonical model name after aliases
    upstream_model: str | None = None
    channel: str | None = None
    attempts: list[str] = field(default_factory=list)  # channels tried, in order
    first_byte: float | None = None
    # the outcome, filled in as the request goes (logged once, when the response has been sent)
    stream: bool = False
    usage: Usage | None = None
    finish: str | None = None
    error: str | None = None
    generated_tokens: int = 0  # counted as a stream passes: what a cut stream is charged for
    cost: int | None = None  # micro-dollars, once known
    settle_failed: bool = False  # settlement's write failed: the hold is left to the reconciler
    upstream_status: int | None = None  # the last upstream's HTTP status (200 once it answered)
    # where the request ran: the Lambda request id the Web Adapter passed in, and whether this
    # process had served nothing before (a cold start)
    path: str = ""
    lambda_request_id: str | None = None
    cold_start: bool = False
    logged: bool = False  # its log line and metrics are written (once, before the last byte)
    # The client's own X-Request-Id, when it sent one: a correlation id, echoed and logged, never
    # trusted for money. ``usage_id`` is the gateway's own unique id of the request, which keys its
    # hold and its usage record (the request id itself when the gateway minted that).
    client_request_id: str | None = None
    usage_id: str = ""
    answered: bool = False  # a non-streamed answer arrived (charged by estimate if it reports no usage)
    # added to the response's headers, whatever it turns out to be (rate limits, replay marker)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.usage_id:
            self.usage_id = new_request_id() if self.client_request_id else self.request_id

    def pisces(self) -> dict[str, Any]:
        out = {
            "gateway": GATEWAY_NAME,
            "protocol": self.protocol,
            "request_id": self.request_id,
            "channel": self.channel,
            "timestamp": utc_timestamp(),
        }
        if self.cost is not None:
            out["cost"] = self.cost
        return out

    def elapsed_ms(self, since: float | None = None) -> float:
        return round(((since or time.perf_counter()) - self.started) * 1000, 2)
