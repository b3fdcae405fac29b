"""pisces.jsonwire: the JSON the gateway writes is the JSON the standard library wrote (compact, UTF-8,
keys in order), orjson's where it can, the standard library's where orjson refuses."""

from __future__ import annotations

import json
import logging
import math

import pytest

from pisces import jsonwire
from pisces.pipeline.logs import logger


def stdlib(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.mark.parametrize("value", [
    {"b": 1, "a": [1.5, -0.0, 1e-7, 123456789.125, None, True, False], "z": "héllo \u2028 ☃ 😀"},
    {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "\"quoted\"\n\t\\"}}], "usage": None},
    [], {}, "", 0, 2**63 - 1, -(2**63),
])  # fmt: skip
def test_what_orjson_writes_reads_back_as_what_the_standard_library_wrote(value):
    assert json.loads(jsonwire.dumps(value)) == json.loads(stdlib(value))
    assert b" " not in jsonwire.dumps({"a": [1, 2]})  # compact


@pytest.mark.parametrize(("value", "expected"), [
    ({"t": "a\ud800b"}, b'{"t":"a\\ud800b"}'),  # a client's lone surrogate: its escape, not a lost body
    ({"n": 2**70}, b'{"n":1180591620717411303424}'),  # past 64 bits
    ({1: "x", "k": "y"}, b'{"1":"x","k":"y"}'),  # a key that is not a string
])  # fmt: skip
def test_what_orjson_refuses_the_standard_library_writes(value, expected):
    assert jsonwire.dumps(value) == expected


def test_what_json_cannot_say_raises_type_error_and_a_log_line_says_its_str():
    with pytest.raises(TypeError):
        jsonwire.dumps({"x": object()})
    assert json.loads(jsonwire.dumps_str({"x": b"raw", "s": "a\udfffb"})) == {"x": "b'raw'", "s": "a\udfffb"}


def test_an_upstreams_json_is_read_and_what_orjson_refuses_the_standard_library_reads():
    assert jsonwire.loads(b'{"a":[1,{"b":"\\u00e9"}]}') == {"a": [1, {"b": "é"}]}
    assert math.isnan(jsonwire.loads(b'{"x": NaN}')["x"])
    with pytest.raises(ValueError):
        jsonwire.loads(b"<html>bad gateway</html>")


def test_the_log_line_is_powertools_json_written_by_orjson(caplog):
    caplog.set_level(logging.INFO)
    logger.info("request", extra={"request_id": "r-1", "model": "ünï", "latency_ms": 1.25})
    (record,) = [r for r in caplog.records if r.getMessage() == "request"]
    line = logger.registered_formatter.format(record)
    assert logger.registered_formatter.json_serializer is jsonwire.dumps_str
    parsed = json.loads(line)
    assert (parsed["level"], parsed["service"], parsed["message"], parsed["model"]) == ("INFO", "pisces", "request",
                                                                                         "ünï")  # fmt: skip
    assert list(parsed)[:4] == ["level", "location", "message", "timestamp"] and line == jsonwire.dumps_str(parsed)
