"""The canonical embeddings model: a request of several inputs, a vector for each. Every embeddings
door decodes to it and every upstream that embeds encodes from it (as :mod:`pisces.canonical` is for chat).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pisces.canonical import Usage, _Model

EmbedInput = str | list[int]  # a text, or a text already tokenised (OpenAI's token arrays)


class EmbedRequest(_Model):
    """Inputs to embed, each a text or a token array, with the vectors' wanted length (OpenAI's
    ``dimensions``, Gemini's ``outputDimensionality``). Gemini's ``taskType`` and ``title`` go in
    ``provider_options["gemini"]`` (one entry per input), read only by a Gemini upstream."""

    model: str
    inputs: list[EmbedInput]
    dimensions: int | None = None
    user: str | None = None
    provider_options: dict[str, dict[str, Any]] = Field(default_factory=dict)


class EmbedResponse(_Model):
    """One vector per input, in the inputs' order; ``usage.input_tokens`` as the upstream reported
    it (0 when it reports none: then the gateway charges its own count)."""

    model: str
    vectors: list[list[float]]
    usage: Usage = Field(default_factory=Usage)
