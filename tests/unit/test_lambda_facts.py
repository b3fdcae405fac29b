"""What the gateway takes from Lambda: the adapter's context header, the stack's parameters, EMF."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from pisces.config import load_config
from pisces.pipeline import logs
from pisces.pipeline.context import RequestContext
from pisces.pipeline.gateway import Gateway


def _ctx() -> RequestContext:
    return RequestContext(request_id="req_x", protocol="openai")


def test_lambda_request_id_and_cold_start_from_the_adapters_header(monkeypatch):
    monkeypatch.setattr(logs, "_served", {"invocations": 0, "requests": 5})  # a readiness check came first
    first, second = _ctx(), _ctx()
    header = {"x-amzn-lambda-context": json.dumps({"request_id": "8f5c-11", "deadline": 1, "env_config": {}})}
    logs.note_lambda_context(first, header)
    logs.note_lambda_context(second, header)
    assert (first.lambda_request_id, first.cold_start) == ("8f5c-11", True)
    assert second.cold_start is False


@pytest.mark.parametrize("raw", ["not json", "[1]", json.dumps({"request_id": "bad id\n<x>"}),
                                 json.dumps({"request_id": 7}), "{" * 10_000])  # fmt: skip
def test_a_malformed_lambda_context_is_ignored(raw):
    ctx = _ctx()
    logs.note_lambda_context(ctx, {"x-amzn-lambda-context": raw})
    assert ctx.lambda_request_id is None


def test_without_the_adapter_the_first_request_is_the_cold_one(monkeypatch):
    monkeypatch.setattr(logs, "_served", {"invocations": 0, "requests": 0})
    a, b = _ctx(), _ctx()
    logs.note_lambda_context(a, {})
    logs.note_lambda_context(b, {})
    assert (a.cold_start, b.cold_start) == (True, False)


def test_key_cache_seconds_parameter_reaches_the_key_cache(tmp_path, monkeypatch, local_dynamo):
    path = tmp_path / "pisces.yaml"
    path.write_text("channels: [{name: mock, kind: mock, models: [mock-echo]}]\nlimits: {key_cache_seconds: 5}\n")
    assert load_config(path).limits.key_cache_seconds == 5
    monkeypatch.setenv("PISCES_KEY_CACHE_SECONDS", "120")  # template.yaml: !Ref KeyCacheSeconds
    config = load_config(path)
    assert config.limits.key_cache_seconds == 120
    assert Gateway(config).auth.cache.ttl == 120


def test_emf_metrics_line_and_its_switch(capsys, monkeypatch):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    ctx = _ctx()
    ctx.model, ctx.channel, ctx.cost, ctx.upstream_status = "m", "c", 42, 503
    logs.emit_metrics(ctx, 502)
    blob = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Pisces"
    assert (blob["model"], blob["channel"], blob["CostMicros"], blob["Errors"]) == ("m", "c", [42.0], [1.0])
    assert blob["UpstreamErrors"] == [1.0] and blob["upstream_status"] == 503 and blob["request_id"] == "req_x"
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    logs.emit_metrics(ctx, 200)
    assert capsys.readouterr().out == ""


def test_each_emf_line_holds_its_own_request_only(capsys, monkeypatch):
    """One serializer serves the process: a line carries nothing of the request before it."""
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    first = _ctx()
    first.model, first.channel, first.cost, first.upstream_status = "m1", "c1", 42, 503
    first.lambda_request_id = "lambda-1"
    second = RequestContext(request_id="req_y", protocol="openai")
    logs.emit_metrics(first, 502)
    logs.emit_metrics(second, 200)
    with pytest.raises(ZeroDivisionError):  # a failure while adding leaves the serializer empty too
        monkeypatch.setattr(RequestContext, "elapsed_ms", lambda self, *a: 1 / 0)
        logs.emit_metrics(first, 200)
    monkeypatch.undo()
    logs.emit_metrics(second, 200)
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    same = lambda line: {k: v for k, v in line.items() if k not in ("_aws", "LatencyMs")}  # noqa: E731
    assert len(lines) == 3 and same(lines[1]) == same(lines[2]) and lines[1].keys() == lines[2].keys()
    one, two = lines[0], lines[1]
    assert (one["model"], one["lambda_request_id"], one["CostMicros"]) == ("m1", "lambda-1", [42.0])
    assert (two["model"], two["channel"], two["request_id"], two["Errors"]) == ("none", "none", "req_y", [0.0])
    assert not {"lambda_request_id", "CostMicros", "UpstreamErrors", "upstream_status"} & two.keys()
    names = [m["Name"] for m in two["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert names == ["Requests", "Errors", "LatencyMs"]
    assert two["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["model", "channel", "service"]]


def _by_add_metric(ctx: RequestContext, status: int) -> dict:
    """The EMF line as Powertools' own adders build it (name and unit checked on every call)."""
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    m = EphemeralMetrics(namespace="Pisces", service="pisces")
    m.add_dimension("model", ctx.model or "none")
    m.add_dimension("channel", ctx.channel or "none")
    m.add_metric("Requests", MetricUnit.Count, 1)
    m.add_metric("Errors", MetricUnit.Count, 1 if status >= 500 or (ctx.stream and ctx.error) else 0)
    m.add_metric("LatencyMs", MetricUnit.Milliseconds, ctx.elapsed_ms())
    if ctx.first_byte:
        m.add_metric("TimeToFirstTokenMs", MetricUnit.Milliseconds, ctx.elapsed_ms(ctx.first_byte))
    if ctx.usage is not None:
        m.add_metric("InputTokens", MetricUnit.Count, ctx.usage.input_tokens)
        m.add_metric("OutputTokens", MetricUnit.Count, ctx.usage.output_tokens)
    if ctx.cost is not None:
        m.add_metric("CostMicros", MetricUnit.Count, ctx.cost)
    if ctx.upstream_status is not None:
        m.add_metric("UpstreamErrors", MetricUnit.Count, 1 if ctx.upstream_status >= 400 else 0)
        m.add_metadata("upstream_status", ctx.upstream_status)
    m.add_metadata("status", status)
    m.add_metadata("request_id", ctx.request_id)
    if ctx.lambda_request_id:
        m.add_metadata("lambda_request_id", ctx.lambda_request_id)
    return json.loads(json.dumps(m.serialize_metric_set()))


def _variants() -> list[tuple[RequestContext, int]]:
    from pisces.canonical import Usage

    bare = _ctx()
    full = RequestContext(request_id="req_full", protocol="anthropic", model="claude-x", channel="anthropic",
                          first_byte=1.0, stream=True, usage=Usage(input_tokens=7, output_tokens=11), cost=42,
                          upstream_status=200, lambda_request_id="lambda-1")  # fmt: skip
    cut = RequestContext(request_id="req_cut", protocol="gemini", model="g", channel="c", stream=True,
                         error="client_cut", upstream_status=429)  # fmt: skip
    return [(bare, 404), (full, 200), (cut, 200), (full, 502)]


@pytest.mark.parametrize("case", range(4))
def test_the_emf_line_is_the_one_powertools_adders_build(case, capsys, monkeypatch):
    """The metric set is handed to Powertools' serializer whole: the same line, names, units and order
    as its ``add_metric`` checks and builds, in every shape a request's line takes."""
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    monkeypatch.setattr(RequestContext, "elapsed_ms", lambda self, since=None: 12.5 if since is None else 3.25)
    ctx, status = _variants()[case]
    logs.emit_metrics(ctx, status)
    ours = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    theirs = _by_add_metric(ctx, status)
    ours["_aws"].pop("Timestamp"), theirs["_aws"].pop("Timestamp")
    assert json.dumps(ours) == json.dumps(theirs)  # the same keys in the same order, the same values


def test_a_blank_model_is_counted_under_none(capsys, monkeypatch):
    """Powertools would drop a blank dimension (and file the line under another dimension set)."""
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    ctx = RequestContext(request_id="req_b", protocol="openai", model="  ", channel="")
    logs.emit_metrics(ctx, 400)
    blob = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (blob["model"], blob["channel"]) == ("none", "none")
    assert blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["model", "channel", "service"]]


def test_a_log_message_is_decoded_only_when_it_can_be_json(caplog):
    """What Powertools does with a message (a JSON one becomes an object), without trying the rest."""
    for message in ("request", '{"k": 2}', "[1, 2", "{not json"):
        logs.logger.info(message, extra={"request_id": "req_x"})
    formatter = logs.logger.handlers[0].formatter
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "pisces"]
    assert [line["message"] for line in lines] == ["request", {"k": 2}, "[1, 2", "{not json"]
    assert all(line["request_id"] == "req_x" for line in lines)


class _Pipe(io.RawIOBase):
    """stdout as Lambda has it, a pipe: what reaches it, one write at a time."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.writes.append(bytes(b))
        return len(b)


@pytest.mark.parametrize("straight", [True, False], ids=["line-straight", "line-through-logging"])
@pytest.mark.parametrize("buffered", [True, False], ids=["block-buffered", "unbuffered"])
def test_a_requests_metrics_and_log_line_leave_in_one_write_before_it_returns(monkeypatch, buffered, straight):
    if straight:  # as Lambda runs it: no handler on the root logger (pytest's capture handler taken away)
        monkeypatch.setattr(logging.root, "handlers", [])
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("PISCES_LOG_FORMAT", raising=False)
    pipe = _Pipe()
    # block-buffered, as a pipe is; or as PYTHONUNBUFFERED (python -u) leaves stdout: every write goes out
    stdout = (io.TextIOWrapper(io.BufferedWriter(pipe), encoding="utf-8") if buffered
              else io.TextIOWrapper(pipe, encoding="utf-8", write_through=True))  # fmt: skip
    monkeypatch.setattr(sys, "stdout", stdout)
    ctx = _ctx()
    ctx.model, ctx.channel, ctx.path = "m", "c", "/v1/chat/completions"
    assert (logs._straight() is not None) == straight
    logs.record_request(ctx, 200)
    (written,) = pipe.writes  # flushed, and in one write: not one a line
    emf, line = (json.loads(x) for x in written.decode().splitlines())
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Pisces" and emf["Requests"] == [1.0]
    assert (line["message"], line["request_id"], line["status"]) == ("request", "req_x", 200)


def test_the_line_formatter_writes_the_line_powertools_own_formatter_writes():
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    from pisces import jsonwire

    ours = logs.logger.registered_formatter
    assert isinstance(ours, logs.LineFormatter)
    theirs = LambdaPowertoolsFormatter(json_deserializer=logs._message, json_serializer=jsonwire.dumps_str)
    theirs.log_format = dict(ours.log_format)  # the same keys: service and the rest the logger appended
    try:
        raise ValueError("boom")
    except ValueError:
        failure = sys.exc_info()
    log = logs.logger._logger
    records = [
        log.makeRecord(log.name, logging.INFO, "f.py", 7, "request", (), None, "fn",
                       {"request_id": "r", "status": 200, "attempts": ["a"], "cost_micros": None}),
        log.makeRecord(log.name, logging.ERROR, "f.py", 9, "unhandled %s", ("x",), failure, "fn", {"path": "/v1"}),
        log.makeRecord(log.name, logging.WARNING, "f.py", 1, '{"k": 1}', (), None, "fn", None),
    ]  # fmt: skip
    logs.logger.thread_safe_append_keys(tenant="t")  # a context's keys, as Powertools keeps them
    try:
        for record in records:
            assert ours.format(record) == theirs.format(record)
        assert json.loads(ours.format(records[0]))["tenant"] == "t"
    finally:
        logs.logger.thread_safe_clear_keys()
