"""Loads ``pisces.yaml``: channels (where models are served), models (aliases, prices) and limits.

Example::

    channels:
      - name: openai
        kind: openai                       # openai | openai-responses | anthropic | gemini | bedrock | mock
        base_url: https://api.openai.com/v1
        api_key_env: OPENAI_API_KEY        # or api_key_secret_arn: arn:aws:secretsmanager:...
        models: [gpt-4o-mini]              # or a mapping {client name: upstream name}
        priority: 0                        # lower is tried first
        weight: 1                          # share among channels of the same priority
    models:
      gpt-4o-mini:
        aliases: [gpt-4o-mini-2024-07-18]
        price: {input: 0.15, output: 0.60, cached_input: 0.075}   # USD per million tokens
      text-embedding-3-small:
        kind: embedding                    # chat (the default) | embedding
        price: {input: 0.02}

A channel whose credential is unset (its env var empty) is disabled: its models are neither listed
nor routed to. ``api_key_env: X`` also accepts a Secrets Manager ARN in ``X_SECRET_ARN`` (what the
deployed stack's key parameters set). A ``bedrock`` channel needs no key (the function's IAM role
signs its calls): it is on where ``PISCES_BEDROCK`` says ``on`` (the deployed stack, by default) or
where its ``base_url`` names an endpoint, and off otherwise. A ``mock`` channel is on unless
``PISCES_MOCK`` says ``off`` (the deployed stack, unless its EnableMock parameter turns it on).
 A model a channel serves needs no entry under ``models`` unless it has aliases or a
price.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pisces.environ import env
from pisces.money import parse_usd


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Price(_Strict):
    """Prices in integer micro-dollars per million tokens (given in the file as USD per million)."""

    input: int = 0
    output: int = 0
    cached_input: int | None = None  # defaults to the input price
    cache_write: int | None = None  # prompt tokens written to a cache (Anthropic); defaults to the input price

    @field_validator("input", "output", "cached_input", "cache_write", mode="before")
    @classmethod
    def _usd_to_micros(cls, v: Any) -> Any:
        if v is None:
            return v
        try:
            return parse_usd(v)
        except ValueError as e:
            raise ValueError(f"a price is USD per million tokens: {e}") from None


class ImageConfig(_Strict):
    """An image model (``/v1/images/*``): what it accepts and what an image costs.

    ``per_image`` prices an image in USD by ``"<size>/<quality>"``, ``"<size>"``, ``"<quality>"`` or
    ``"default"`` (the first that matches; none matching: the dearest, an upper bound). Without
    ``per_image`` the model is priced by its reported tokens: text input at ``price.input``, image
    input at ``image_input`` (USD per million; else ``price.input``), output at ``price.output``;
    admission holds ``max_output_tokens`` per image."""

    per_image: dict[str, int] = Field(default_factory=dict)
    image_input: int | None = None
    max_output_tokens: int = Field(default=6240, ge=1)  # gpt-image-1 at high quality, 1536x1024
    sizes: list[str] = Field(default_factory=list)  # empty: "auto" or any WxH from 16 to 4096
    max_n: int = Field(default=10, ge=1)

    @field_validator("per_image", mode="before")
    @classmethod
    def _per_image_usd(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        try:
            return {str(k): parse_usd(p) for k, p in v.items()}
        except ValueError as e:
            raise ValueError(f"an image price is USD per image: {e}") from None

    @field_validator("image_input", mode="before")
    @classmethod
    def _image_input_usd(cls, v: Any) -> Any:
        try:
            return v if v is None else parse_usd(v)
        except ValueError as e:
            raise ValueError(f"an image input price is USD per million tokens: {e}") from None


class ModelConfig(_Strict):
    aliases: list[str] = Field(default_factory=list)
    price: Price = Field(default_factory=Price)
    description: str = ""
    # The output a request may cost at most when it sets no max_tokens: what admission holds.
    max_output_tokens: int = Field(default=8192, ge=1)
    images: ImageConfig | None = None  # set for an image model (served on /v1/images/*)
    # What the model does: ``chat`` (the chat doors) or ``embedding`` (POST /v1/embeddings, Gemini's
    # :embedContent and :batchEmbedContents); a request for the other operation is a 400.
    kind: Literal["chat", "embedding"] = "chat"


_DEFAULT_MODEL = ModelConfig()


class ChannelConfig(_Strict):
    name: str
    kind: Literal["openai", "anthropic", "gemini", "bedrock", "mock", "openai-responses"]
    base_url: str | None = None
    region: str | None = None  # bedrock: the AWS region (default: the function's, AWS_REGION)
    api_key_env: str | None = None
    api_key_secret_arn: str | None = None
    models: dict[str, str] = Field(default_factory=dict)  # client-facing name -> upstream name
    priority: int = 0
    weight: int = Field(default=1, ge=1)
    headers: dict[str, str] = Field(default_factory=dict)  # extra headers sent upstream
    connect_timeout: float = 10.0
    read_timeout: float = 300.0
    retries: int = Field(default=1, ge=0)  # extra attempts on this channel for a connection failure

    @field_validator("models", mode="before")
    @classmethod
    def _list_to_map(cls, v: Any) -> Any:
        if isinstance(v, list):
            return {str(m): str(m) for m in v}
        return v

    @model_validator(mode="after")
    def _needs_url(self) -> ChannelConfig:
        if self.kind not in ("mock", "bedrock") and not self.base_url:
            raise ValueError(f"channel {self.name!r} of kind {self.kind!r} needs a base_url")
        return self

    def credential(self) -> str | None:
        """The upstream API key from the environment (None when given by a secret ARN or unset)."""
        return env(self.api_key_env) if self.api_key_env else None

    def secret_arn(self) -> str | None:
        """The Secrets Manager ARN of the key: the channel's own, else the one in ``<api_key_env>_SECRET_ARN``."""
        if self.api_key_secret_arn:
            return self.api_key_secret_arn
        return (env(f"{self.api_key_env}_SECRET_ARN") or None) if self.api_key_env else None

    @property
    def enabled(self) -> bool:
        if self.kind == "mock":
            return not switched_off("PISCES_MOCK")
        if self.kind == "bedrock":
            return bool(self.base_url) or switched_on("PISCES_BEDROCK")
        if self.api_key_env and env(self.api_key_env):
            return True
        if self.secret_arn():
            return True
        return not self.api_key_env  # keyless upstreams (a local vLLM or Ollama)


def switched_on(name: str) -> bool:
    return (env(name) or "").strip().lower() in ("on", "true", "1", "yes")


def switched_off(name: str) -> bool:
    return (env(name) or "").strip().lower() in ("off", "false", "0", "no")


class Limits(_Strict):
    max_body_bytes: int = 6 * 1024 * 1024  # the Lambda request payload limit
    key_cache_seconds: float = 30.0
    # Per-key defaults (a key's own values override them); 0 means unlimited.
    requests_per_minute: int = Field(default=600, ge=0)
    tokens_per_minute: int = Field(default=2_000_000, ge=0)
    idempotency_hours: int = Field(default=24, ge=1)
    # A stream whose upstream is silent this long gets a keep-alive (Anthropic's ping event).
    heartbeat_seconds: float = Field(default=10.0, gt=0)
    usage_retention_days: int = Field(default=400, ge=1)
    # Generated images: how long their presigned URLs work, and the largest input image (edits).
    image_url_seconds: int = Field(default=3600, ge=1, le=7 * 86400)
    max_image_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    responses_retention_days: int = Field(default=30, ge=1)  # stored Responses (OpenAI keeps them 30 days)


class Config(_Strict):
    channels: list[ChannelConfig] = Field(default_factory=list)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)

    @model_validator(mode="after")
    def _check(self) -> Config:
        names = [c.name for c in self.channels]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"channel names must be unique: {sorted(dupes)}")
        seen: dict[str, str] = {}
        for model, mc in self.models.items():
            for alias in mc.aliases:
                if alias in seen or alias in self.models:
                    raise ValueError(f"alias {alias!r} of {model!r} is already a model or an alias")
                seen[alias] = model
        return self

    def resolve(self, name: str) -> str:
        """The canonical model name for a client-facing name or alias (unchanged when unknown).
        An exact name wins; else names match case-insensitively ("GPT-Image-1" is gpt-image-1),
        the configured models and aliases first, then the names channels serve."""
        if name in self.models:
            return name
        for model, mc in self.models.items():
            if name in mc.aliases:
                return model
        folded = name.casefold()
        for model, mc in self.models.items():
            if model.casefold() == folded or any(a.casefold() == folded for a in mc.aliases):
                return model
        for c in self.channels:
            for served in c.models:
                if served.casefold() == folded:
                    return served
        return name

    def serving(self, model: str) -> list[ChannelConfig]:
        """The enabled channels that serve ``model`` (a canonical name)."""
        return [c for c in self.channels if model in c.models and c.enabled]

    def available_models(self) -> list[str]:
        """Every model at least one enabled channel serves, in configuration order."""
        out: dict[str, None] = {}
        for c in self.channels:
            if c.enabled:
                for m in c.models:
                    out.setdefault(self.resolve(m), None)
        return list(out)

    def model(self, name: str) -> ModelConfig:
        """The configuration of a canonical model name (the defaults, one object read by all, when it has
        no entry: built a request, they were a pydantic validation a request)."""
        return self.models.get(name) or _DEFAULT_MODEL

    def price(self, model: str) -> Price:
        return self.model(model).price


class ConfigError(Exception):
    pass


def default_path() -> Path:
    return Path(os.environ.get("PISCES_CONFIG") or "pisces.yaml")


# Limits the deployed stack sets from its parameters (template.yaml): the environment wins over the file.
LIMIT_ENV = {"PISCES_KEY_CACHE_SECONDS": "key_cache_seconds"}


def load_config(path: str | Path | None = None) -> Config:
    p = Path(path) if path is not None else default_path()
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read the configuration {p}: {e.strerror}") from e
    return parse_text(text, source=str(p))


def parse_text(text: str, source: str = "<config>") -> Config:
    """The configuration in ``text`` (pisces.yaml's YAML, from a file or an SSM parameter)."""
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{source} is not valid YAML: {e}") from e
    if isinstance(raw, dict):
        for env, name in LIMIT_ENV.items():
            if os.environ.get(env):
                limits = raw["limits"] = dict(raw.get("limits") or {})
                limits[name] = os.environ[env]
    return parse_config(raw, source=source)


def parse_config(raw: Any, source: str = "<config>") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: {e}") from e
