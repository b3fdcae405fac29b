"""OpenAI's embeddings wire format (``POST /v1/embeddings``), both as the client door and as an upstream.

Request: ``{model, input, dimensions?, encoding_format?: "float" | "base64", user?}``, where ``input``
is a string, an array of strings, an array of token ids, or an array of token-id arrays (at most
2048 items, none empty). Response: ``{object: "list", data: [{object: "embedding", index, embedding}],
model, usage: {prompt_tokens, total_tokens}}``; with ``encoding_format: "base64"`` (what the official
SDKs ask for by default) each ``embedding`` is the base64 of the vector as little-endian float32s.
Errors are the chat codec's (:func:`pisces.protocols.openai_chat.render_error`).
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from pisces.canonical import Usage
from pisces.canonical_embeddings import EmbedInput, EmbedRequest, EmbedResponse
from pisces.errors import PiscesError
from pisces.protocols.common import token_count

NAME = "openai"
MAX_INPUTS = 2048  # OpenAI's limit on the items of one request's input array
ENCODINGS = ("float", "base64")
KNOWN = {"model", "input", "dimensions", "encoding_format", "user"}
EXTRA = "extra"  # provider_options["openai"][EXTRA]: fields OpenAI-compatible servers add (input_type...)


def _invalid(message: str, param: str = "input") -> PiscesError:
    return PiscesError("invalid_request", message, param=param)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _tokens(value: list[Any], where: str) -> list[int]:
    if not value:
        raise _invalid(f"'{where}' is invalid: a token array cannot be empty.")
    if not all(_is_int(t) and t >= 0 for t in value):
        raise _invalid(f"'{where}' is invalid: a token array holds only non-negative integers.")
    return list(value)


def decode_inputs(value: Any) -> list[EmbedInput]:
    """``input`` in any of its four forms, as a list of inputs."""
    if isinstance(value, str):
        if not value:
            raise _invalid("'$.input' is invalid: it cannot be an empty string.")
        return [value]
    if not isinstance(value, list):
        raise _invalid("'$.input' must be a string, an array of strings, an array of integers or an array of "
                       "arrays of integers.")  # fmt: skip
    if not value:
        raise _invalid("'$.input' is invalid: it cannot be an empty array.")
    if len(value) > MAX_INPUTS:
        raise _invalid(f"'$.input' is too long. Maximum length is {MAX_INPUTS}, but got {len(value)} items.")
    if all(_is_int(v) for v in value):
        return [_tokens(value, "$.input")]
    out: list[EmbedInput] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise _invalid(f"'$.input[{i}]' is invalid: it cannot be an empty string.")
            out.append(item)
        elif isinstance(item, list):
            out.append(_tokens(item, f"$.input[{i}]"))
        else:
            raise _invalid(f"'$.input[{i}]' must be a string or an array of integers.")
    return out


def decode_embed_request(body: Any) -> EmbedRequest:
    """A client's ``POST /v1/embeddings`` body, as canonical; the 400 OpenAI would answer otherwise."""
    if not isinstance(body, dict):
        raise PiscesError("invalid_request", "The body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("you must provide a model parameter", "model")
    if "input" not in body or body["input"] is None:
        raise _invalid("'input' is a required property")
    inputs = decode_inputs(body["input"])
    dims = body.get("dimensions")
    if dims is not None and (not _is_int(dims) or dims < 1):
        raise _invalid(f"Invalid value for 'dimensions' = {dims!r}: it must be an integer of at least 1.",
                       "dimensions")  # fmt: skip
    enc = body.get("encoding_format")
    if enc is not None and enc not in ENCODINGS:
        raise _invalid(f"Invalid value for 'encoding_format' = {enc!r}: expected 'float' or 'base64'.",
                       "encoding_format")  # fmt: skip
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _invalid("'user' must be a string.", "user")
    options: dict[str, Any] = {"encoding_format": enc or "float"}
    extra = {k: v for k, v in body.items() if k not in KNOWN}
    if extra:
        options[EXTRA] = extra
    return EmbedRequest(model=model, inputs=inputs, dimensions=dims, user=user,
                        provider_options={NAME: options})  # fmt: skip


def pack_base64(vector: list[float]) -> str:
    """A vector as OpenAI's base64: its float32s, little-endian."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def unpack_base64(data: str) -> list[float]:
    raw = base64.b64decode(data)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw[: len(raw) // 4 * 4]))


def encode_embed_response(resp: EmbedResponse, pisces: dict[str, Any], req: EmbedRequest) -> dict[str, Any]:
    """The client's answer, its vectors as the request's ``encoding_format`` asked."""
    b64 = req.provider_options.get(NAME, {}).get("encoding_format") == "base64"
    data = [{"object": "embedding", "index": i, "embedding": pack_base64(v) if b64 else v}
            for i, v in enumerate(resp.vectors)]  # fmt: skip
    tokens = resp.usage.input_tokens
    return {"object": "list", "data": data, "model": resp.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}, "pisces": pisces}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# as an upstream


def encode_embed_request(req: EmbedRequest, model: str) -> dict[str, Any]:
    """The upstream's body: vectors asked for as floats (what every OpenAI-compatible server speaks)."""
    own = req.provider_options.get(NAME, {})
    single = len(req.inputs) == 1 and isinstance(req.inputs[0], list)
    body: dict[str, Any] = {
        **own.get(EXTRA, {}),
        "model": model,
        "input": req.inputs[0] if single else list(req.inputs),
        "encoding_format": "float",
    }
    if req.dimensions is not None:
        body["dimensions"] = req.dimensions
    if req.user is not None:
        body["user"] = req.user
    return body


def _vector(item: Any) -> list[float]:
    value = item.get("embedding") if isinstance(item, dict) else None
    if isinstance(value, str):
        return unpack_base64(value)
    if isinstance(value, list) and all(isinstance(x, int | float) and not isinstance(x, bool) for x in value):
        return [float(x) for x in value]
    raise ValueError("an embedding is neither a list of numbers nor base64")


def decode_embed_response(body: Any, count: int) -> EmbedResponse:
    """An upstream's answer: its vectors in ``index`` order (``count`` of them), its prompt tokens."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) != count:
        raise ValueError(f"expected {count} embeddings, got {len(data) if isinstance(data, list) else 'none'}")
    ordered = sorted(data, key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
    usage = body.get("usage")
    return EmbedResponse(model=str(body.get("model") or ""), vectors=[_vector(d) for d in ordered],
                         usage=Usage(input_tokens=token_count(usage, "prompt_tokens")))  # fmt: skip
