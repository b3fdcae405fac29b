"""The gateway configuration the tests run with: the mock, the fake upstream, a dead channel, fallbacks."""

from __future__ import annotations

import time
from typing import Any

from pisces.config import Config, parse_config
from pisces.localaws import free_port

TEST_BALANCE = 10**12  # micro-dollars ($1M): enough that no test but the money tests ever runs out


def in_one_rate_window(margin: float = 5.0) -> None:
    """Waits, if need be, until the next ``margin`` seconds lie in one of the gateway's one-minute rate
    windows. A test that counts requests against ``rpm`` must not straddle a window's end: its second
    request would be the first of a new minute (seen once: admitted 0.1 s apart, across 19:44:00)."""
    from pisces.store.ledger import WINDOW_SECONDS

    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < margin:
        time.sleep(left + 0.05)


# client-facing names of the fake Anthropic upstream's models (tests/support/fake_anthropic.py)
CLAUDE_MODELS = {
    "claude-fake": "claude-fake",
    "claude-recorded-text": "recorded-text",
    "claude-recorded-tool": "recorded-tool",
    "claude-fail-400": "fail-400",
    "claude-fail-429": "fail-429",
    "claude-fail-529": "fail-529",
    "claude-cut": "cut",
    "claude-fail-quote": "fail-quote",
    "claude-quote-mid": "quote-mid",
}
CLAUDE_PATIENT = {"claude-gated": "gated"}  # on a channel that waits: its silence is the test's, not a timeout


# client-facing names of the fake Gemini upstream's models (tests/support/fake_gemini.py)
GEMINI_MODELS = {
    "gemini-fake": "gemini-fake",
    "gemini-recorded-call": "recorded-call",
    "gemini-fail-400": "fail-400",
    "gemini-fail-429": "fail-429",
    "gemini-fail-503": "fail-503",
    "gemini-cut": "cut",
    "gemini-fail-quote": "fail-quote",
    "gemini-quote-mid": "quote-mid",
}
GEMINI_PATIENT = {"gemini-gated": "gated"}

# Image models: mock-image offline (per image), the fake OpenAI's and Gemini's (tests/support/
# fake_openai_images.py, fake_gemini_images.py) by tokens or per image.
IMAGE_MODELS: dict[str, Any] = {
    "mock-image": {"images": {"per_image": {"default": 0.01, "512x512": 0.005, "1024x1024/hd": 0.05}}},
    "gpt-image-1": {"price": {"input": 5, "output": 40}, "images": {"image_input": 10, "max_output_tokens": 6240,
                    "sizes": ["1024x1024", "1536x1024", "1024x1536"]}},
    "dall-e-3": {"images": {"per_image": {"default": 0.04, "1024x1024/hd": 0.08, "1792x1024": 0.08},
                 "sizes": ["1024x1024", "1792x1024", "1024x1792"], "max_n": 1}},
    "playground-v3": {"images": {"per_image": {"default": 0.02}}},
    "img-fail-400": {"images": {"per_image": {"default": 0.02}}},
    "img-fail-500": {"images": {"per_image": {"default": 0.02}}},
    "gemini-image-fake": {"price": {"input": 0.3, "output": 30}, "images": {"max_output_tokens": 1290}},
    "imagen-fake": {"images": {"per_image": {"default": 0.04}, "max_n": 4}},
}  # fmt: skip


def image_channels(upstream_url: str, gemini_url: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": "mock-images", "kind": "mock", "models": ["mock-image"]},
        {"name": "fake-images", "kind": "openai", "base_url": f"{upstream_url}/v1",
         "api_key_env": "PISCES_TEST_UPSTREAM_KEY", "read_timeout": 5.0,
         "models": ["gpt-image-1", "dall-e-3", "playground-v3", "img-fail-400", "img-fail-500"]},
    ]  # fmt: skip
    if gemini_url:
        out.append({"name": "fake-gemini-images", "kind": "gemini", "base_url": f"{gemini_url}/v1beta",
                    "api_key_env": "PISCES_TEST_UPSTREAM_KEY", "read_timeout": 5.0,
                    "models": {"gemini-image-fake": "gemini-2.5-flash-image",
                               "imagen-fake": "imagen-4.0-generate-001"}})  # fmt: skip
    return out


# embedding models: the mock's, the fake OpenAI upstream's (/v1/embeddings), the fake Gemini upstream's
# (:batchEmbedContents), and one marked as an embedding model on an Anthropic channel (which has none)
OPENAI_EMBED_MODELS = {"text-embedding-fake": "text-embedding-fake", "embed-fail-500": "fail-500",
                       "embed-fail-400": "fail-400"}  # fmt: skip
GEMINI_EMBED_MODELS = {"gemini-embedding-fake": "embedding-fake", "gemini-embed-fail-503": "fail-503"}
EMBED_PRICES = {"mock-embed": 1, "text-embedding-fake": 0.5, "gemini-embedding-fake": 0.25}  # USD per 1M input

# client-facing names of the fake OpenAI upstream's Responses API models (an openai-responses channel)
RESPONSES_MODELS = {"gpt-resp": "gpt-resp", "gpt-resp-fail-400": "fail-400", "gpt-resp-fail-500": "fail-500",
                    "gpt-resp-fail-mid": "fail-mid"}  # fmt: skip

# The fakes' "slow" models wait 30 s, the channels' read timeout is 1 s (a 30x margin); "gated"
# models wait for the test's release on channels that would wait 60 s (their 10 s cap is the fake's).
PATIENT_SECONDS = 60.0


def gateway_config(
    upstream_url: str, anthropic_url: str | None = None, gemini_url: str | None = None, **limits: object
) -> Config:
    return parse_config(gateway_config_raw(upstream_url, anthropic_url, gemini_url, **limits))


def gateway_config_raw(
    upstream_url: str, anthropic_url: str | None = None, gemini_url: str | None = None, **limits: object
) -> dict[str, Any]:
    """The test configuration as pisces.yaml would say it (prices in USD per million tokens)."""
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    fake_models = ["gpt-fake", "recorded", "fail-500", "fail-400", "fail-401", "fail-429", "slow", "cut",
                   "fail-quote", "quote-mid"]  # fmt: skip
    return {
        "channels": [
            {"name": "mock", "kind": "mock", "models": ["mock-echo", "org/mock-slash"]},
            {
                "name": "fake",
                "kind": "openai",
                "base_url": f"{upstream_url}/v1",
                "api_key_env": "PISCES_TEST_UPSTREAM_KEY",
                "models": {m: m for m in fake_models},
                "read_timeout": 1.0,
            },
            {
                "name": "fake-patient",
                "kind": "openai",
                "base_url": f"{upstream_url}/v1",
                "api_key_env": "PISCES_TEST_UPSTREAM_KEY",
                "models": {"gated": "gated"},
                "read_timeout": PATIENT_SECONDS,
            },
            {
                "name": "dead",
                "kind": "openai",
                "base_url": dead,
                "models": {"fallback-model": "gpt-fake"},
                "priority": 0,
                "retries": 0,
                "connect_timeout": 1.0,
            },
            {
                "name": "fake-backup",
                "kind": "openai",
                "base_url": f"{upstream_url}/v1",
                "api_key_env": "PISCES_TEST_UPSTREAM_KEY",
                "models": {"fallback-model": "gpt-fake"},
                "priority": 1,
            },
            *(
                [
                    {
                        "name": "fake-anthropic",
                        "kind": "anthropic",
                        "base_url": f"{anthropic_url}/v1",
                        "api_key_env": "PISCES_TEST_UPSTREAM_KEY",
                        "models": CLAUDE_MODELS,
                        "read_timeout": 1.0,
                    },
                    {
                        "name": "fake-anthropic-patient",
                        "kind": "anthropic",
                        "base_url": f"{anthropic_url}/v1",
                        "api_key_env": "PISCES_TEST_UPSTREAM_KEY",
                        "models": CLAUDE_PATIENT,
                        "read_timeout": PATIENT_SECONDS,
                    },
                ]
                if anthropic_url
                else []
            ),
            *(
                [
                    {
                        "name": "fake-gemini",
                        "kind": "gemini",
                        "base_url": f"{gemini_url}/v1beta",
                        "api_key_env": "PISCES_TEST_UPSTREAM_KEY",
                        "models": GEMINI_MODELS,
                        "read_timeout": 1.0,
                    },
                    {
                        "name": "fake-gemini-patient",
                        "kind": "gemini",
                        "base_url": f"{gemini_url}/v1beta",
                        "api_key_env": "PISCES_TEST_UPSTREAM_KEY",
                        "models": GEMINI_PATIENT,
                        "read_timeout": PATIENT_SECONDS,
                    },
                ]
                if gemini_url
                else []
            ),
            *image_channels(upstream_url, gemini_url),
            {"name": "mock-embeddings", "kind": "mock", "models": ["mock-embed"]},
            {
                "name": "fake-embeddings",
                "kind": "openai",
                "base_url": f"{upstream_url}/v1",
                "api_key_env": "PISCES_TEST_UPSTREAM_KEY",
                "models": OPENAI_EMBED_MODELS,
                "read_timeout": 1.0,
                "retries": 0,
            },
            *(
                [
                    {
                        "name": "fake-gemini-embeddings",
                        "kind": "gemini",
                        "base_url": f"{gemini_url}/v1beta",
                        "api_key_env": "PISCES_TEST_UPSTREAM_KEY",
                        "models": GEMINI_EMBED_MODELS,
                        "read_timeout": 1.0,
                    }
                ]
                if gemini_url
                else []
            ),
            *(
                [
                    {
                        "name": "fake-anthropic-embeddings",
                        "kind": "anthropic",
                        "base_url": f"{anthropic_url}/v1",
                        "api_key_env": "PISCES_TEST_UPSTREAM_KEY",
                        "models": {"claude-embed": "claude-fake"},
                    }
                ]
                if anthropic_url
                else []
            ),
            {
                "name": "fake-responses",  # OpenAI's Responses API (support.fake_openai_responses)
                "kind": "openai-responses",
                "base_url": f"{upstream_url}/v1",
                "api_key_env": "PISCES_TEST_UPSTREAM_KEY",
                "models": RESPONSES_MODELS,
                "read_timeout": 1.0,
            },
            {
                "name": "disabled",
                "kind": "openai",
                "base_url": f"{upstream_url}/v1",
                "api_key_env": "PISCES_TEST_UNSET_VARIABLE",
                "models": ["never-listed"],
            },
        ],
        "models": {
            "mock-echo": {"aliases": ["mock"], "price": {"input": 1, "output": 2}},
            "gpt-fake": {"aliases": ["gpt-fake-latest"], "price": {"input": 2, "output": 8, "cached_input": 0.5}},
            "gated": {"price": {"input": 1, "output": 2}},
            "cut": {"price": {"input": 1, "output": 2}},
            "claude-fake": {"price": {"input": 3, "output": 15, "cached_input": 0.3, "cache_write": 3.75}},
            "gemini-fake": {"price": {"input": 0.3, "output": 2.5, "cached_input": 0.075}},
            **IMAGE_MODELS,
            **{m: {"kind": "embedding", "price": {"input": p}} for m, p in EMBED_PRICES.items()},
            **{
                m: {"kind": "embedding"}
                for m in [*OPENAI_EMBED_MODELS, *GEMINI_EMBED_MODELS, "claude-embed"]
                if m not in EMBED_PRICES
            },
            "gpt-resp": {"price": {"input": 1.25, "output": 10, "cached_input": 0.125}},
        },
        "limits": {"max_body_bytes": 65536, "key_cache_seconds": 0.5, "heartbeat_seconds": 0.3, **limits},
    }
