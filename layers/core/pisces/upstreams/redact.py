"""Credentials out of what an upstream wrote, before the gateway passes its words on to a client.

An upstream's error message may quote the gateway's own credential (OpenAI's 401 says "Incorrect API
key provided: sk-proj-********xyz1", some providers echo the ``Authorization`` header they got).
:func:`redact` replaces with ``[redacted]``:

- the channel's own secrets, wherever they appear, and fragments of them quoted partially (a token
  starting with its first 8 characters; any other 8 consecutive characters of it that are not a plain
  word; its last 4 alone or after mask characters such as ``****``, its first 4 before them);
- ``Bearer <token>`` / ``Basic <token>``;
- keys by their look: ``sk-…`` (``sk-proj-…``, ``sk-ant-…``), ``AIza…``, JWTs, and the gateway's own
  client keys ``pisces-…``;
- the values of ``x-api-key: …``, ``x-goog-api-key: …``, ``api_key=…``, ``key=…``, ``token=…``,
  ``Authorization: …`` and the like.

:func:`passable` says whether a message may be passed on at all: an empty one, one longer than
:data:`MAX_UPSTREAM_MESSAGE` (a codec cuts longer ones there) or one with control characters is
replaced by the gateway's own words (see :func:`pisces.upstreams.base.status_error`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote

REDACTED = "[redacted]"
MAX_UPSTREAM_MESSAGE = 500  # characters; codecs cut an upstream's message here, so a message this long was cut
FRAGMENT_MIN_KEY = 12  # a secret shorter than this is redacted whole only: its fragments say nothing
WINDOW = 8  # this many consecutive characters of a secret, quoted anywhere, are a fragment of it
EDGE = 4  # a secret's first / last characters, quoted next to mask characters ("sk-p****", "****xyz1")
MASK = "*\u2022\u2026."  # characters providers hide the rest of a key with: * bullet ellipsis .

# a token: a run of the characters keys (and their masked forms) are made of
_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=~*\u2022\u2026.]+")
# a credential's value after its name: up to whitespace, a quote or punctuation; never a trailing "."
_VALUE = r"(?!\[redacted\])[^\s\"'`,;&<>()\[\]{}]*[^\s\"'`,;&<>()\[\]{}.]"
_WORDS = r"(?:Bearer|Basic|Token)"
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # a header or parameter that carries a credential: its name stays, its value goes
    (
        re.compile(
            r"(?i)(?<![A-Za-z0-9_-])(x-goog-api-key|x-api-key|api[ _-]?key|authorization|proxy-authorization"
            r"|access[_-]?token|auth[_-]?token|refresh[_-]?token|id[_-]?token|client[_-]?secret|secret[_-]?key"
            r"|password|passwd)"
            rf"([\"']?\s*[:=]\s*[\"']?)((?:{_WORDS}\s+)?)(?!{_WORDS}\s){_VALUE}"
        ),
        rf"\1\2\3{REDACTED}",
    ),
    # key=, token=, secret= in a query string or a "name=value" text (not "key: ...", which is prose)
    (re.compile(rf"(?i)(?<![A-Za-z0-9_-])(key|token|secret|sig|signature)(=){_VALUE}"), rf"\1\2{REDACTED}"),
    # an authorization scheme and its credential, wherever they are
    (
        re.compile(
            rf"(?<![A-Za-z0-9_-])((?i:bearer|basic)\s+)"
            rf"(?!(?i:token|tokens|auth|authentication|authorization|credentials?|scheme|header|is|was|required"
            rf"|missing|invalid|expired|must|should|or|and|the|a|an)\b){_VALUE}"
        ),
        rf"\1{REDACTED}",
    ),
    # keys by their look (masked ones too: "sk-proj-****xyz1")
    (re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_\-*\u2022\u2026]{6,}"), REDACTED),
    (re.compile(r"(?<![A-Za-z0-9_-])AIza[A-Za-z0-9_\-*\u2022\u2026]{8,}"), REDACTED),
    (re.compile(r"(?<![A-Za-z0-9_-])pisces-[A-Za-z0-9_\-*\u2022\u2026]{4,}"), REDACTED),
    (re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?"), REDACTED),
)
_WORDLIKE = re.compile(r"[a-z_\-]+|[A-Z_\-]+")  # pieces of a secret that are ordinary words
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _distinctive(piece: str) -> bool:
    """Whether a piece of a secret could only be that secret: not a word ("upstream", "-secret-")."""
    return _WORDLIKE.fullmatch(piece) is None


def _is_fragment(token: str, secret: str) -> bool:
    """Whether ``token`` (a run of key characters) quotes ``secret`` partially."""
    core = token.strip(".")
    prefix = secret[:WINDOW]
    if core.startswith(prefix) and (len(core) > len(prefix) or _distinctive(prefix)):  # "sk-proj-****"
        return True
    windows = (secret[i : i + WINDOW] for i in range(1, len(secret) - WINDOW + 1))
    if any(w in core and _distinctive(w) for w in windows):  # a piece from its middle or its end
        return True
    first, last = secret[:EDGE], secret[-EDGE:]
    if core.endswith(last):
        before = token.rstrip(".")[: -len(last)]
        if (before and before[-1] in MASK) or (not before and _distinctive(last)):  # "****xyz1", "...xyz1", "xyz1"
            return True
    return core.startswith(first) and len(core) > EDGE and core[EDGE] in MASK  # "sk-p****"


def _without_secret(text: str, secret: str) -> str:
    for form in dict.fromkeys((secret, quote(secret, safe=""))):
        if len(form) >= WINDOW:
            text = text.replace(form, REDACTED)
        else:  # a short secret: only where it stands alone, not inside another word
            text = re.sub(rf"(?<![A-Za-z0-9_-]){re.escape(form)}(?![A-Za-z0-9_-])", REDACTED, text)
    if len(secret) >= FRAGMENT_MIN_KEY:
        text = _TOKEN.sub(lambda m: _redact_token(m.group(), secret), text)
    return text


def _redact_token(token: str, secret: str) -> str:
    if not _is_fragment(token, secret):
        return token
    return REDACTED + token[len(token.rstrip(".")) :]  # a sentence's full stop stays


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every credential in it (``secrets`` always, whole or in part) as ``[redacted]``."""
    for secret in sorted({s for s in secrets if s and s.strip()}, key=len, reverse=True):
        text = _without_secret(text, secret)
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def passable(message: str | None) -> bool:
    """Whether an upstream's message may be passed on (redacted): not empty, not cut, no control bytes."""
    text = (message or "").removeprefix("upstream: ").strip()
    return bool(text) and len(text) < MAX_UPSTREAM_MESSAGE and not _CONTROL.search(text)


_KIND = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")


def error_kind(body: bytes) -> str | None:
    """The error's type in a provider's error body (OpenAI's and Anthropic's ``error.type``, Gemini's
    ``error.status``, else ``error.code``), when it is a plain word; None otherwise."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(payload, list) and payload:  # Gemini's stream endpoint without alt=sse
        payload = payload[0]
    err = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(err, dict):
        return None
    for field in ("type", "status", "code"):
        value = err.get(field)
        if isinstance(value, str) and _KIND.fullmatch(value) and redact(value) == value:
            return value
    return None
