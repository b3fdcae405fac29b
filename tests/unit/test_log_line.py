"""The request's log line written straight to stdout is the line Powertools' logger writes for its record."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import time

import pytest

from pisces.canonical import Usage
from pisces.pipeline import logs
from pisces.pipeline.context import RequestContext


def _contexts() -> list[RequestContext]:
    plain = RequestContext(request_id="req_a", protocol="openai", path="/v1/chat/completions", client_model="gpt-x",
                           model="gpt-x", upstream_model="gpt-x-2", channel="fake", upstream_status=200,
                           finish="stop", usage=Usage(input_tokens=12, output_tokens=9, cached_tokens=3),
                           cost=75)  # fmt: skip
    plain.attempts = ["other", "fake"]
    plain.key = None
    failed = RequestContext(request_id="req_b", protocol="anthropic", path="/v1/messages", client_model="clau\u00e9",
                            error="upstream_error", upstream_status=502, settle_failed=True, first_byte=1.0,
                            stream=True, client_request_id="mine-1", lambda_request_id="lambda-9")  # fmt: skip
    failed.headers["Idempotent-Replayed"] = "true"
    lone = RequestContext(request_id="req_c", protocol="gemini", path="/v1beta/models/x", client_model="g\ud800x")
    return [plain, failed, lone]


@pytest.fixture(autouse=True)
def _fixed(monkeypatch):
    monkeypatch.delenv("PISCES_LOG_FORMAT", raising=False)
    monkeypatch.setattr(RequestContext, "elapsed_ms", lambda self, since=None: 12.5 if since is None else 3.25)


def _alone(monkeypatch) -> io.StringIO:
    """The process as Lambda runs it: nothing but the logger's own handler sees its records (pytest's
    capture handler, on the root logger while a test runs, is taken away); stdout collected."""
    monkeypatch.setattr(logging.root, "handlers", [])
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    return out


@pytest.mark.parametrize("trace", [None, "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"])
def test_the_straight_line_is_the_line_of_the_record_powertools_formats(monkeypatch, caplog, trace):
    if trace:
        monkeypatch.setenv("_X_AMZN_TRACE_ID", trace)
    else:
        monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    straight = _alone(monkeypatch)
    assert logs._straight() is logs.logger.registered_formatter
    contexts = _contexts()
    for ctx in contexts:
        logs.log_request(ctx, 200, ctx.path)
    ours = [json.loads(line) for line in straight.getvalue().splitlines()]
    assert len(ours) == 3 and not caplog.records  # written straight: no record was made

    monkeypatch.setattr(logging.root, "handlers", [caplog.handler])  # a handler above: the record way
    assert logs._straight() is None
    caplog.set_level(logging.INFO)
    for ctx in contexts:
        logs.log_request(ctx, 200, ctx.path)
    assert len([r for r in caplog.records if r.name == "pisces"]) == 3
    # the records' lines, as the logger's handler wrote them (Powertools' formatter) after the straight ones
    theirs = [json.loads(line) for line in straight.getvalue().splitlines()[3:]]
    for mine, its in zip(ours, theirs, strict=True):
        assert re.fullmatch(r"log_request:\d+", mine.pop("location")) and its.pop("location").startswith("log_")
        stamp = mine.pop("timestamp")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}[+-]\d{4}", stamp) and its.pop("timestamp")
        assert json.dumps(mine) == json.dumps(its)  # the same keys, in the same order, with the same values
    assert ours[2]["model"] == "g\\ud800x"  # a lone surrogate as its escape, the line kept
    assert ("xray_trace_id" in ours[0]) == bool(trace)


@pytest.mark.parametrize("created", [1796667727.0, 1796667727.9995, 1796667728.0421, 1799999999.999])
def test_the_straight_timestamp_is_powertools_own(created):
    formatter = logs.logger.registered_formatter
    record = logging.LogRecord("pisces", logging.INFO, "f.py", 1, "request", (), None)
    record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
    assert logs.asctime(formatter, created, int(record.msecs)) == formatter.formatTime(record)
    # the second's text is kept: the next millisecond of the same second, and the next second
    record.msecs = float((int(record.msecs) + 1) % 1000)
    assert logs.asctime(formatter, created, int(record.msecs)) == formatter.formatTime(record)
    record.created += 1
    assert logs.asctime(formatter, record.created, int(record.msecs)) == formatter.formatTime(record)


def test_the_line_goes_through_logging_when_anything_else_may_see_or_change_it(monkeypatch):
    _alone(monkeypatch)
    assert logs._straight() is not None
    formatter = logs.logger.registered_formatter
    logs.logger.thread_safe_append_keys(tenant="t")  # a key appended (a Lambda context's, say)
    try:
        assert logs._straight() is None
    finally:
        logs.logger.thread_safe_clear_keys()
    catch = logging.Filter("nothing")
    logs.logger.addFilter(catch)
    try:
        assert logs._straight() is None
    finally:
        logs.logger.removeFilter(catch)
    monkeypatch.setattr(formatter, "log_format", {**formatter.log_format, "sampling_rate": 0.1})
    assert logs._straight() is None
    fewer = {k: v for k, v in formatter.log_format.items() if k != "sampling_rate"}
    monkeypatch.setattr(formatter, "log_format", fewer)
    assert logs._straight() is None
    monkeypatch.undo()
    straight = _alone(monkeypatch)
    logs.logger.setLevel(logging.WARNING)  # the level says no: no line at all, either way
    try:
        assert logs._straight() is None
        logs.log_request(_contexts()[0], 200, "/v1/chat/completions")
        assert straight.getvalue() == ""
    finally:
        logs.logger.setLevel(logging.INFO)
    logs.log_request(_contexts()[0], 200, "/v1/chat/completions")
    assert json.loads(straight.getvalue())["request_id"] == "req_a"
    assert time.localtime is logs.logger.registered_formatter.converter


@pytest.mark.parametrize(
    "now", [1796667727.0, 1796667727.5, 1796667727.9991, 1796667727.9999996, 1796667728.0421, 1893456000.123]
)
def test_the_pisces_objects_timestamp_is_utc_to_the_millisecond(monkeypatch, now):
    from datetime import UTC, datetime

    from pisces.pipeline import context

    for t in (now, now + 0.0005, now + 1):  # the same second again, and the next one
        monkeypatch.setattr(context.time, "time", lambda t=t: t)
        expected = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert context.utc_timestamp() == expected


def test_lines_go_to_stdouts_bytes_after_what_its_text_layer_holds(monkeypatch):
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")  # block-buffered: a print waits in its text layer
    monkeypatch.setattr(sys, "stdout", out)
    print("printed first", end="\n")
    logs.LINES.write(b'{"emf": 1}\n')
    logs.LINES.write('{"line": "\u00e9 \ud800"}\n')  # a handler's text (a lone surrogate as its escape)
    logs.LINES.flush()
    assert raw.getvalue().decode() == 'printed first\n{"emf": 1}\n{"line": "\u00e9 \\ud800"}\n'
    monkeypatch.setattr(sys, "stdout", text := io.StringIO())  # no byte stream: the text, decoded
    logs.LINES.write(b'{"emf": 2}\n')
    logs.LINES.flush()
    assert text.getvalue() == '{"emf": 2}\n'
