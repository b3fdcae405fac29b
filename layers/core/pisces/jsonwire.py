"""JSON as the gateway writes it: compact UTF-8 bytes, by orjson, with the standard library behind it.

Every response body, stream event, upstream request, log line and metrics line is JSON the gateway
writes itself; ``json.dumps`` was 5-9% of a money-off request's CPU (bench/RESULTS.md part 6) and most
of a stream encoder's. orjson writes the same JSON (keys in order, no spaces, UTF-8 rather than
``\\u`` escapes, as ``ensure_ascii=False`` does) in a tenth of the time. What it refuses, the standard
library writes as it always did: an integer past 64 bits, a key that is not a string, and a lone
surrogate (a client's ``\\ud800``, which UTF-8 cannot carry: written as its escape).

Reading: orjson reads what it reads as the standard library does (:func:`orjson_reads_exactly`: not an
integer past 64 bits, which it would make a float); the standard library reads what orjson refuses or
would misread. An upstream's answer is read by :func:`loads`; a request body by
:mod:`pisces.pipeline.body`, whose own standard-library reading keeps the input limits and their messages.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson


def _stdlib(value: Any, default: Any = None) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=default).encode()
    except UnicodeEncodeError:  # a lone surrogate cannot be UTF-8: its escape instead
        return json.dumps(value, separators=(",", ":"), default=default).encode()


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON (a value JSON cannot say raises ``TypeError``, as ``json.dumps`` does)."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is one
        return _stdlib(value)


def dumps_str(value: Any) -> str:
    """:func:`dumps` as text, with ``str()`` of what JSON cannot say (Powertools' log lines)."""
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return _stdlib(value, str).decode()


_TWENTY_DIGITS_STR = re.compile(r"[0-9]{20}")
# every digit as "0", every other byte as a space: a run of 20 digits is then a run of twenty "0"s, which
# ``in`` finds (in C, as fast as memchr) where the regular expression tried the class at every position:
# 0.4 against 1.7 µs for a short chat body, 14 against 228 µs for 17 KB
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_TWENTY_ZEROS = b"0" * 20


def orjson_reads_exactly(raw: bytes | str) -> bool:
    """Whether orjson's reading of ``raw``, if it reads it, is the standard library's: it reads an
    integer past 64 bits as a float (a run of 20 digits in a string only sends it the slower way)."""
    if isinstance(raw, bytes):
        return _TWENTY_ZEROS not in raw.translate(_DIGITS_AS_ZEROS)
    return not _TWENTY_DIGITS_STR.search(raw)


UNREAD = object()  # what :func:`read_exactly` gives for what orjson refuses or would misread


def read_exactly(raw: bytes | str) -> Any:
    """orjson's reading of ``raw`` where it is the standard library's, else :data:`UNREAD` (NaN, Infinity,
    1e400, an integer past 64 bits, a lone surrogate, a BOM...: for the standard library's reading)."""
    if orjson_reads_exactly(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return UNREAD


def loads(raw: bytes | str) -> Any:
    """An upstream's JSON (``ValueError`` if it is none)."""
    value = read_exactly(raw)
    return json.loads(raw) if value is UNREAD else value  # what the standard library still reads
