"""What the wire formats share without being a protocol: helpers any codec may use."""

from __future__ import annotations

import json
import uuid

# Tool call ids the gateway made up where a protocol carries none (Gemini 2.x matches a functionResponse
# to its call by name): never sent to a provider, which did not make them.
GENERATED_ID_PREFIX = "call_gm"


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
