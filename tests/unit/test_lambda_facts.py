"""What the gateway takes from Lambda: the adapter's context header, the stack's parameters, EMF."""

from __future__ import annotations

import json

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


def test_a_log_message_is_decoded_only_when_it_can_be_json(caplog):
    """What Powertools does with a message (a JSON one becomes an object), without trying the rest."""
    for message in ("request", '{"k": 2}', "[1, 2", "{not json"):
        logs.logger.info(message, extra={"request_id": "req_x"})
    formatter = logs.logger.handlers[0].formatter
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "pisces"]
    assert [line["message"] for line in lines] == ["request", {"k": 2}, "[1, 2", "{not json"]
    assert all(line["request_id"] == "req_x" for line in lines)
