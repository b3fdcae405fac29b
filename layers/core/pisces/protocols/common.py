"""What the wire formats share without being a protocol: helpers any codec may use."""

from __future__ import annotations

import json
import uuid
from typing import Any

# Tool call ids the gateway made up where a protocol carries none (Gemini 2.x matches a functionResponse
# to its call by name): never sent to a provider, which did not make them.
GENERATED_ID_PREFIX = "call_gm"


def token_count(usage: Any, key: str) -> int:
    """A token count from an upstream's usage object; anything not a number counts 0, never raises."""
    v = usage.get(key) if isinstance(usage, dict) else None
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 else 0


def json_object(text: str) -> dict[str, Any]:
    """A tool call's JSON text as an object (what Anthropic and Gemini want); anything else is {}."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def split_data_url(url: str | None) -> tuple[str, str] | None:
    """``data:<media type>;base64,<data>`` as (media type, base64 data); None for any other URL."""
    if not url or not url.startswith("data:") or ";base64," not in url:
        return None
    media_type, _, data = url[5:].partition(";base64,")
    return media_type, data


def new_call_id() -> str:
    return f"{GENERATED_ID_PREFIX}{uuid.uuid4().hex[:24]}"


def is_generated_id(call_id: str) -> bool:
    return call_id.startswith(GENERATED_ID_PREFIX)


def error_message(body: bytes) -> str:
    """The message inside a provider's error body: OpenAI, Anthropic and Gemini all say
    ``{"error": {"message": ...}}``; anything else is shown as it came, cut to 500 characters."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body[:500].decode("utf-8", errors="replace").strip()
    err = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return err["message"][:500]
    if isinstance(err, str):
        return err[:500]
    return json.dumps(payload)[:500]
