"""One structured log line and one set of EMF metrics per request. Never a key, a header or a body.

Both are written by :func:`record_request` **before** the response's last byte (Lambda freezes the
container when the response ends: a line written after it waits for the next thaw, or is lost), and
flushed at once: stdout is a pipe in Lambda, block-buffered unless flushed.

Behind the Lambda Web Adapter every invocation carries ``x-amzn-lambda-context`` (the adapter sets it,
replacing any value a client sent): a JSON object whose ``request_id`` is the Lambda request id that
CloudWatch's REPORT line names. The first such invocation of a process is its cold start.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import RESERVED_LOG_ATTRS, LambdaPowertoolsFormatter
from aws_lambda_powertools.shared.constants import METRICS_DISABLED_ENV, POWERTOOLS_DEV_ENV
from aws_lambda_powertools.shared.functions import strtobool

from pisces import jsonwire
from pisces.environ import env
from pisces.money import usd
from pisces.pipeline.context import RequestContext


def _message(text: str) -> Any:
    """Powertools decodes a message that is JSON into the line's ``message``; it tries every message and
    catches the failure (a fifth of a line's cost for "request"). Only what can be JSON is tried."""
    return json.loads(text) if text[:1] in ("{", "[") else text


_RESERVED = frozenset(RESERVED_LOG_ATTRS)


class LineFormatter(LambdaPowertoolsFormatter):
    """Powertools' formatter, whose record's keys are sifted against a set: Powertools tests each of a
    record's 40-odd attributes against its tuple of 24 reserved names, a third of a request line's
    formatting. The same line: a test compares the two formatters' lines for the same records."""

    def _extract_log_keys(self, log_record: logging.LogRecord) -> dict[str, Any]:
        record = log_record.__dict__.copy()
        record["asctime"] = self.formatTime(record=log_record)
        formatted: dict[str, Any] = {}
        for keys in (self.log_format, self.thread_safe_get_current_keys()):
            for key, value in keys.items():
                if value and key in _RESERVED:
                    if not isinstance(value, str):  # Powertools' own check, its own words
                        raise ValueError("Logging keys that override reserved log attributes need to be type "
                                         f"'str', instead got '{type(value).__name__}'")  # fmt: skip
                    formatted[key] = value % record
                else:
                    formatted[key] = value
        formatted.update({k: v for k, v in record.items() if k not in _RESERVED})
        return formatted


class Lines:
    """stdout as the gateway writes its lines: what is written is held until the next flush, which hands it
    to ``sys.stdout`` (whatever it is then) in one write and flushes that. A request's EMF line, written
    unflushed, and its log line (Powertools' handler flushes after each record) leave in one ``write``,
    whether stdout buffers or not (``PYTHONUNBUFFERED``, ``python -u``). The lines are held as UTF-8 and
    go to stdout's byte stream where it has one (after whatever its text layer holds): orjson writes
    bytes, and decoding them only for stdout to encode them again was a tenth of a line's cost."""

    def __init__(self) -> None:
        self.held: list[bytes] = []

    def write(self, text: str | bytes) -> int:
        self.held.append(text if isinstance(text, bytes) else text.encode("utf-8", "backslashreplace"))
        return len(text)

    def flush(self) -> None:
        out = sys.stdout
        if self.held:
            data = b"".join(self.held)
            self.held.clear()
            raw = getattr(out, "buffer", None)
            if raw is not None:
                out.flush()  # what its text layer holds goes first
                raw.write(data)
                raw.flush()
                return
            out.write(data.decode("utf-8"))
        out.flush()


LINES = Lines()
SERVICE = "pisces"  # the log line's and the metrics' service
# Powertools' own serializer is json.dumps (default=str, compact, UTF-8): the same line from orjson
logger = Logger(
    service=SERVICE,
    logger_handler=logging.StreamHandler(LINES),  # type: ignore[arg-type]
    logger_formatter=LineFormatter(json_deserializer=_message, json_serializer=jsonwire.dumps_str),
)

_STD = logging.getLogger(SERVICE)  # the standard library's logger under Powertools' (it logs through it)

LAMBDA_CONTEXT_HEADER = "x-amzn-lambda-context"
METRICS_NAMESPACE = "Pisces"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_served = {"invocations": 0, "requests": 0}


def note_lambda_context(ctx: RequestContext, headers: Mapping[str, str]) -> None:
    """The Lambda request id and the cold-start flag of this request, from the adapter's header.
    Without the header (uvicorn on its own) the first request of the process is the cold one."""
    raw = headers.get(LAMBDA_CONTEXT_HEADER)
    if raw:
        try:
            data = orjson.loads(raw[:8192])  # the adapter sends it with every request: orjson, 1.2 vs 4.6 µs
        except ValueError:
            data = None
        rid = data.get("request_id") if isinstance(data, dict) else None
        if isinstance(rid, str) and _SAFE_ID.match(rid):
            ctx.lambda_request_id = rid
        _served["invocations"] += 1
        ctx.cold_start = _served["invocations"] == 1
    else:
        ctx.cold_start = _served["requests"] == 0 and _served["invocations"] == 0
    _served["requests"] += 1


def printable(text: str) -> str:
    """``text`` as UTF-8 can carry it: a lone surrogate (a client's ``\\ud800``) as its escape. Powertools
    writes lines with ``ensure_ascii=False``; one unencodable character would lose the whole line."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def log_request(ctx: RequestContext, status: int, path: str) -> None:
    fields: dict[str, Any] = {
        "request_id": ctx.request_id,
        "usage_id": ctx.usage_id,  # the gateway's own id: the usage record's key
        "client_request_id": ctx.client_request_id,
        "lambda_request_id": ctx.lambda_request_id,
        "cold_start": ctx.cold_start,
        "protocol": ctx.protocol,
        "key_id": ctx.key.key_id if ctx.key else None,
        "model": ctx.client_model,
        "resolved_model": ctx.model,
        "upstream_model": ctx.upstream_model,
        "channel": ctx.channel,
        "attempts": ctx.attempts,
        "status": status,
        "upstream_status": ctx.upstream_status,
        "path": path,
        "stream": ctx.stream,
        "latency_ms": ctx.elapsed_ms(),
        "ttft_ms": ctx.elapsed_ms(ctx.first_byte) if ctx.first_byte else None,
        "finish": ctx.finish,
        "error": ctx.error,
        "cost_micros": ctx.cost,  # the settled charge; a cut stream's estimate lands in its usage record
        "idempotent_replay": "Idempotent-Replayed" in ctx.headers,
    }
    if ctx.settle_failed:
        fields["settle_failed"] = True
    usage = ctx.usage
    if usage is not None:
        fields |= {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens,
        }
    if env("PISCES_LOG_FORMAT") == "text":  # make dev's terminal: one line a person reads
        LINES.write(text_line(_writable(fields)) + "\n")
        LINES.flush()
        return
    formatter = _straight()
    if formatter is None:  # another handler, filter, level or key in play: the record goes through logging
        # Powertools leaves a None out of the line: left out here, it is not copied through the record either
        logger.info("request", extra={k: v for k, v in _writable(fields).items() if v is not None})
        return
    now = time.time_ns()
    line = {"level": "INFO", "location": f"log_request:{sys._getframe().f_lineno}", "message": "request",
            "timestamp": asctime(formatter, now / 1e9, (now % 1_000_000_000) // 1_000_000), "service": SERVICE,
            **{k: v for k, v in fields.items() if v is not None}}  # fmt: skip
    trace = env(XRAY_TRACE_ENV)
    if trace:
        line["xray_trace_id"] = trace.split(";")[0].replace("Root=", "")
    try:
        LINES.write(orjson.dumps(line, default=str) + b"\n")
    except TypeError:  # a lone surrogate (orjson.JSONEncodeError is a TypeError): written as its escape
        LINES.write(formatter.json_serializer(_writable(line)) + "\n")
    LINES.flush()


def _writable(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields as UTF-8 can carry them: a client's model name may be any string."""
    return {name: printable(value) if isinstance(value, str) and not value.isascii() else value
            for name, value in fields.items()}  # fmt: skip


XRAY_TRACE_ENV = "_X_AMZN_TRACE_ID"  # what Powertools' formatter reads for a line's xray_trace_id
_HEAD = {"level": "%(levelname)s", "location": "%(funcName)s:%(lineno)d", "message": None,
         "timestamp": "%(asctime)s", "service": SERVICE, "sampling_rate": None}  # fmt: skip


def _straight() -> LineFormatter | None:
    """The formatter, when the request line may be written straight to :data:`LINES` as Powertools would
    format its record (a test holds the two lines equal): the logger logs INFO, its one handler is the
    stdout one with this module's formatter as it was made (no key appended, no sampling, the default
    time format), and nothing else would see the record (no filter, no handler above it). Making and
    passing the record through logging and Powertools' formatter is most of the line's cost: 55 µs
    against 16 (bench/RESULTS.md, performance part 8). Under pytest the root logger has handlers
    (caplog): the records go through logging there."""
    std = _STD
    handlers = std.handlers
    if len(handlers) != 1 or std.filters or not std.isEnabledFor(logging.INFO):
        return None
    handler = handlers[0]
    formatter = handler.formatter
    if (getattr(handler, "stream", None) is not LINES or handler.filters or handler.level > logging.INFO
            or (std.propagate and logging.root.handlers) or not isinstance(formatter, LineFormatter)
            or formatter.log_format != _HEAD or formatter.thread_safe_get_current_keys() or formatter.datefmt
            or formatter.use_rfc3339_iso8601 or formatter.converter is not time.localtime):  # fmt: skip
        return None
    return formatter


_second: list[Any] = [None, "", ""]  # the second asctime last wrote: its text before and after the milliseconds


def asctime(formatter: LambdaPowertoolsFormatter, created: float, msecs: int) -> str:
    """Powertools' default timestamp for a record made at ``created`` (2026-12-07 18:22:07,788+0000, in
    local time), its second's text made once a second."""
    second = int(created)
    if _second[0] != second:
        before, _, after = formatter.default_time_format.partition(formatter.custom_ms_time_directive)
        stamp = formatter.converter(created)
        _second[:] = [second, time.strftime(before, stamp), time.strftime(after, stamp)]
    return f"{_second[1]}{msecs:03d}{_second[2]}"


def text_line(f: dict[str, Any]) -> str:
    """One short line of a request's log fields: time, status, path, model and channel, latency and time to
    the first token, tokens, cost, error, request id. ``PISCES_LOG_FORMAT=text`` (``make dev``) writes it
    instead of the JSON line (the default, what CloudWatch Logs Insights queries)."""
    parts = [time.strftime("%H:%M:%S"), str(f["status"]), f["path"] or "?"]
    if f["model"]:
        parts.append(f["model"] + (f" via {f['channel']}" if f["channel"] else ""))
    parts.append(f"{f['latency_ms']:.0f} ms" + (f" (first token {f['ttft_ms']:.0f} ms)" if f["ttft_ms"] else ""))
    if "input_tokens" in f:
        parts.append(f"{f['input_tokens']} in / {f['output_tokens']} out")
    if f["cost_micros"] is not None:
        parts.append("$" + usd(f["cost_micros"]))
    if f["error"]:
        parts.append(f"error {f['error']}")
    if f["idempotent_replay"]:
        parts.append("replay")
    parts.append(f["request_id"])
    return "  ".join(parts)


def emit_metrics(ctx: RequestContext, status: int, flush: bool = True) -> None:
    """The request's CloudWatch metrics as one EMF line on stdout, by model and channel. Requests that
    reached no model (docs, spec, a 404) count under ``model: none``. ``POWERTOOLS_METRICS_DISABLED=true``
    turns them off (``make dev`` does). Unflushed, it goes out with the next flush of :data:`LINES` (the
    log line's)."""
    if metrics_disabled():
        return
    LINES.write(jsonwire.dumps(emf_line(ctx, status)) + b"\n")
    if flush:
        LINES.flush()


def metrics_disabled() -> bool:
    """Powertools' ``is_metrics_disabled`` (its rules, its ``strtobool`` and its ValueError for a value that
    is neither), each of its two variables read once, through :func:`pisces.environ.env` (a test holds the
    two equal): ``POWERTOOLS_METRICS_DISABLED`` true, or ``POWERTOOLS_DEV`` true with it unset."""
    dev, said = env(POWERTOOLS_DEV_ENV), env(METRICS_DISABLED_ENV)
    dev_mode = strtobool("false" if dev is None else dev)
    return strtobool("false" if said is None else said) or (dev_mode and said is None)


# Each metric's CloudWatch unit (the name and unit Powertools' ``add_metric`` would check, checked by a
# test against it), as the line's definition of it.
_UNITS = {
    "Requests": "Count",
    "Errors": "Count",
    "LatencyMs": "Milliseconds",
    "TimeToFirstTokenMs": "Milliseconds",
    "InputTokens": "Count",
    "OutputTokens": "Count",
    "CostMicros": "Count",
    "UpstreamErrors": "Count",
}
_DEFINITIONS = {name: {"Name": name, "Unit": unit} for name, unit in _UNITS.items()}
_DIMENSIONS = ["model", "channel", "service"]


def _dimension(value: str | None) -> str:
    return value if value and value.strip() else "none"  # CloudWatch takes no empty dimension value


def emf_line(ctx: RequestContext, status: int) -> dict[str, Any]:
    """The request's metrics, dimensions and metadata in CloudWatch's embedded metric format, the line
    Powertools' ``EphemeralMetrics`` writes for them with its adders (a test holds the two equal in every
    shape a request's line takes). Built as it is, not through the adders (each formats a debug message
    of the whole metric) or the serializer (its checks are for sets it did not build): 18 µs against 5
    (bench/RESULTS.md, performance part 8)."""
    values: dict[str, float] = {
        "Requests": 1,
        "Errors": 1 if status >= 500 or (ctx.stream and ctx.error) else 0,
        "LatencyMs": ctx.elapsed_ms(),
    }
    if ctx.first_byte:
        values["TimeToFirstTokenMs"] = ctx.elapsed_ms(ctx.first_byte)
    if ctx.usage is not None:
        values["InputTokens"] = ctx.usage.input_tokens
        values["OutputTokens"] = ctx.usage.output_tokens
    if ctx.cost is not None:
        values["CostMicros"] = ctx.cost
    metadata: dict[str, Any] = {}
    if ctx.upstream_status is not None:
        values["UpstreamErrors"] = 1 if ctx.upstream_status >= 400 else 0
        metadata["upstream_status"] = ctx.upstream_status
    metadata["status"] = status
    metadata["request_id"] = ctx.request_id
    if ctx.lambda_request_id:
        metadata["lambda_request_id"] = ctx.lambda_request_id
    definitions = [_DEFINITIONS[name] for name in values]
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {"Namespace": METRICS_NAMESPACE, "Dimensions": [_DIMENSIONS], "Metrics": definitions}
            ],
        },
        "model": _dimension(ctx.model),
        "channel": _dimension(ctx.channel),
        "service": SERVICE,
        **metadata,
        **{name: [float(v)] for name, v in values.items()},
    }


def record_request(ctx: RequestContext, status: int) -> None:
    """The request's log line and metrics, once; called before its last byte is sent."""
    if ctx.logged:
        return
    ctx.logged = True
    try:  # the metrics line first, unflushed: the log line's flush sends both in one write
        emit_metrics(ctx, status, flush=False)
    except Exception:  # metrics never fail a request
        logger.exception("metrics failed", extra={"request_id": ctx.request_id})
    log_request(ctx, status, ctx.path)
    LINES.flush()  # where the log line went elsewhere (a handler on another stream); else nothing left
