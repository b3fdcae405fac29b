"""What the docs page shows beyond the route table: each model with its prices and the protocols and
operations it serves, the example model of each operation, the headers and the production conventions.

All of it is read from the configuration the gateway runs with (never a second list to keep in step):
a model's operations follow from its ``kind``, its ``images`` block and what its channels' kinds serve.
"""

from __future__ import annotations

from typing import Any

from pisces.config import Config, ModelConfig, Price
from pisces.money import usd

# The operations of the docs page's tabs, and the protocols (client doors) that have each.
OPERATIONS: dict[str, dict[str, Any]] = {
    "chat": {"title": "Chat", "protocols": ["openai", "anthropic", "gemini"]},
    "streaming": {"title": "Streaming", "protocols": ["openai", "anthropic", "gemini"]},
    "tools": {"title": "Tools", "protocols": ["openai", "anthropic", "gemini"]},
    "responses": {"title": "Responses", "protocols": ["openai"]},
    "images": {"title": "Images", "protocols": ["openai"]},
    "embeddings": {"title": "Embeddings", "protocols": ["openai", "gemini"]},
}
CHAT_OPERATIONS = ["chat", "streaming", "tools", "responses"]

HEADERS: list[dict[str, str]] = [
    {"name": "Authorization", "in": "request", "meaning": "Bearer pisces-...: the key (or x-api-key, x-goog-api-key, "
     "?key=; any style on any route)"},
    {"name": "Idempotency-Key", "in": "request", "meaning": "1 to 255 printable ASCII characters: a retry with the "
     "same key and body gets the stored answer, charged once; another body is a 422, one still running a 409"},
    {"name": "X-Request-Id", "in": "both", "meaning": "on every response; a client-sent value of up to 128 "
     "[A-Za-z0-9._:-] is echoed, else the gateway makes one (it is pisces.request_id too)"},
    {"name": "anthropic-version", "in": "request", "meaning": "accepted on the Anthropic door; on GET /v1/models it "
     "asks for Anthropic's list shape"},
    {"name": "Idempotent-Replayed", "in": "response", "meaning": "true on a response replayed for an Idempotency-Key "
     "(nothing is charged again)"},
    {"name": "Retry-After", "in": "response", "meaning": "seconds to wait, on a 429 (the key's rate limit, or an "
     "upstream's 429 that said it)"},
    {"name": "Content-Type", "in": "response", "meaning": "application/json, or text/event-stream for a stream "
     "(Gemini's :streamGenerateContent without ?alt=sse: a streamed JSON array)"},
]  # fmt: skip

RETRY_STATUSES = [408, 409, 429, 500, 502, 503, 504]


def _usd(micros: int | None) -> str | None:
    """Micro-dollars as a short decimal string of dollars: 150000 -> "0.15", 0 -> "0"."""
    if micros is None:
        return None
    s = usd(micros).rstrip("0")
    return s[:-1] if s.endswith(".") else s


def _price(p: Price, embedding: bool = False) -> dict[str, str]:
    """USD per million tokens (an embedding model has input only)."""
    out = {"input": _usd(p.input), "output": None if embedding else _usd(p.output),
           "cached_input": _usd(p.cached_input), "cache_write": _usd(p.cache_write)}  # fmt: skip
    return {k: v for k, v in out.items() if v is not None}


def _operations(mc: ModelConfig, kinds_ops: set[str]) -> list[str]:
    if mc.kind == "embedding":
        return ["embeddings"] if "embed" in kinds_ops else []
    if mc.images is not None:
        return ["images"] if "images" in kinds_ops else []
    return list(CHAT_OPERATIONS) if "chat" in kinds_ops else []


def catalog(config: Config) -> list[dict[str, Any]]:
    """Every model an enabled channel serves: aliases, kind, operations, protocols and prices (USD)."""
    from pisces.upstreams import KINDS  # the channel kinds' classes say what each serves

    out = []
    for name in config.available_models():
        mc = config.model(name)
        channels = config.serving(name)
        kinds_ops = {op for c in channels for op in KINDS[c.kind].operations}
        ops = _operations(mc, kinds_ops)
        protocols = sorted({p for op in ops for p in OPERATIONS[op]["protocols"]})
        entry: dict[str, Any] = {
            "name": name,
            "aliases": list(mc.aliases),
            "kind": "image" if mc.images is not None else mc.kind,
            "operations": ops,
            "protocols": protocols,
            "offline": bool(channels) and all(c.kind == "mock" for c in channels),
            "price": _price(mc.price, embedding=mc.kind == "embedding"),
            "unit": "USD per million tokens",
        }
        if mc.kind == "chat" and mc.images is None:
            entry["max_output_tokens"] = mc.max_output_tokens
        if mc.images is not None:
            entry["per_image"] = {k: _usd(v) for k, v in mc.images.per_image.items()}
            entry["sizes"] = list(mc.images.sizes)
        if mc.description:
            entry["description"] = mc.description
        out.append(entry)
    return out


def example_models(models: list[dict[str, Any]]) -> dict[str, str | None]:
    """The model the docs page's examples use for each operation: an offline (mock) one first, so that
    they run as shown without any upstream key; else the first that serves the operation."""
    out: dict[str, str | None] = {}
    for op in OPERATIONS:
        serving = [m for m in models if op in m["operations"]]
        offline = [m for m in serving if m["offline"]]
        out[op] = (offline or serving or [{"name": None}])[0]["name"]
    return out


def conventions(config: Config) -> dict[str, Any]:
    return {
        "auth": "Any key style works on any route: Authorization: Bearer, x-api-key, x-goog-api-key or ?key=.",
        "retry": {
            "statuses": RETRY_STATUSES,
            "advice": "Retry 408, 409, 429 and 5xx with exponential backoff and jitter (0.5 s, 1 s, 2 s, ... up to "
            "a minute); when the answer has Retry-After, wait that many seconds instead. 4xx other than those are "
            "final: fix the request.",
        },
        "idempotency": {
            "header": "Idempotency-Key",
            "hours": config.limits.idempotency_hours,
            "advice": "Send a fresh Idempotency-Key (a UUID) with every paid write (chat, messages, "
            "generateContent, Responses, embeddings, images) and the same one on its retries: a repeat gets the "
            "stored answer with Idempotent-Replayed: true and is charged once.",
        },
        "tracing": {
            "header": "X-Request-Id",
            "advice": "Every response, stream and error carries X-Request-Id and the pisces object (request_id, "
            "channel, cost in micro-dollars once known). Send your own X-Request-Id to trace a call end to end; "
            "quote it when you report a problem.",
        },
    }
