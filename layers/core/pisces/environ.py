"""The environment as a request reads it: ``os.environ.get``'s answer from one dictionary look-up.

A request reads about eight variables (a channel's key and its ``_SECRET_ARN``, the log format, the X-Ray
trace id, Powertools' two metrics switches), and each DynamoDB call its signing credentials (three).
``os.environ`` is a Python mapping over its own dictionary: each ``get`` runs five Python functions (the
mapping's ``get``, ``__getitem__``, the key's encoding, the value's decoding), 6 µs a read on a gateway
woken from idle (bench/RESULTS.md, performance part 9). On POSIX, :func:`env` looks the name up in that
same dictionary (``os.environ._data``, which every write through ``os.environ`` updates:
``monkeypatch.setenv`` too), encoded and decoded as ``os.environ`` does; elsewhere it is
``os.environ.get``. The variables are read on each request, not once: tests (and ``make dev``) change
them at run time.
"""

from __future__ import annotations

import os
import sys

_ENCODING = sys.getfilesystemencoding()
_LIVE: dict[bytes, bytes] | None = None
if os.name == "posix":
    _data = getattr(os.environ, "_data", None)
    if isinstance(_data, dict) and isinstance(next(iter(_data), b""), bytes):  # POSIX: bytes to bytes
        _LIVE = _data


def env(name: str) -> str | None:
    """``os.environ.get(name)``."""
    if _LIVE is None:
        return os.environ.get(name)
    value = _LIVE.get(name.encode(_ENCODING, "surrogateescape"))
    return None if value is None else value.decode(_ENCODING, "surrogateescape")
