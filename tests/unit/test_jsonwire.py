"""pisces.jsonwire: the JSON the gateway writes is the JSON the standard library wrote (compact, UTF-8,
keys in order), orjson's where it can, the standard library's where orjson refuses."""

from __future__ import annotations

import json
import logging
import math
import re

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
    for raw in (b'{"n": 18446744073709551616}', '{"n": 18446744073709551616}'):  # orjson: a float
        assert repr(jsonwire.loads(raw)) == "{'n': 18446744073709551616}"


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


def _reading(read: object, body: bytes) -> object:
    try:
        return ("value", read(body))  # type: ignore[operator]
    except Exception as e:  # the error a client gets: its code and message
        return ("error", getattr(e, "code", type(e).__name__), str(e))


_BODIES = [
    b'{"model":"m","messages":[{"role":"user","content":"hi \\u00e9 \\ud83d\\ude00 \\u2028"}],"n":1,"t":0.7}',
    b'{"a":1,"b":2,"a":3}', b"[]", b"{}", b" {\"a\" : [ 1 , -0 , -0.0 , 1e5 , 1.5e308 , true , null ] } ",
    b'{"seed": 9223372036854775807}', b'{"seed": 18446744073709551615}', b'{"seed": 18446744073709551616}',
    b'{"x": 1e400}', b'{"x": NaN}', b'{"x": -Infinity}', b'{"s": "\\ud800"}', b'{"s": "\\udc00\\ud800"}',
    b'\xef\xbb\xbf{"bom": 1}', '{"utf16": "é"}'.encode("utf-16"), b'{"bad": "\xff"}', b'{"a": 1,}', b"",
    b"[" * 65 + b"]" * 65, b"[" * 64 + b"]" * 64, b"[" * 2000 + b"]" * 2000, b'{"n": ' + b"9" * 101 + b"}",
    b'{"n": ' + b"9" * 100 + b"}", b'{"ctl": "a\x01b"}', b'"just a string"', b"12", b'{"k": "' + b"1" * 25 + b'"}',
]  # fmt: skip


@pytest.mark.parametrize("body", _BODIES)
def test_a_request_body_reads_as_the_standard_library_path_reads_it(body):
    """orjson reads a request body only where its reading is the standard library's (pipeline.body)."""
    from pisces.pipeline import body as reader

    ours, theirs = _reading(reader._decode, body), _reading(reader._read_by_the_standard_library, body)
    assert ours == theirs
    if ours[0] == "value":  # the same types too (an int is not a float)
        assert json.dumps(ours[1]) == json.dumps(theirs[1])


@pytest.mark.parametrize("run", [19, 20, 21, 40])
@pytest.mark.parametrize("around", [(b"", b""), (b'{"n": ', b"}"), (b"/", b":"), ("é€".encode(), b"\xff")])
def test_a_run_of_twenty_digits_sends_a_body_the_standard_librarys_way(run, around):
    """orjson would read an integer past 64 bits (20 digits or more) as a float: any run of 20 digits,
    wherever it is and whatever is beside it ("/" and ":" are the bytes either side of the digits')."""
    before, after = around
    for body in (before + b"7" * run + after, before + b"1" * (run - 1) + b"/" + b"2" * (run - 1) + after):
        digits_run = max(len(r) for r in re.findall(rb"[0-9]*", body))
        assert jsonwire.orjson_reads_exactly(body) == (digits_run < 20), body
        assert jsonwire.orjson_reads_exactly(body.decode("utf-8", "replace")) == (digits_run < 20), body
