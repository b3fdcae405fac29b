"""/api/public/spec's parts for the docs page: user-written paths, the model catalog with prices and
operations, the examples' models, headers and conventions, all read from the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from pisces.config import load_config, parse_config
from pisces.spec import RouteInfo, build_spec, user_paths
from pisces.spec_catalog import OPERATIONS, _usd, catalog, example_models

ROOT = Path(__file__).resolve().parents[2]


def test_paths_as_users_write_them():
    gem = RouteInfo("gemini", "POST", "/v1beta/models/{model:path}", True, "")
    assert user_paths(gem) == [
        "/v1beta/models/{model}:generateContent",
        "/v1beta/models/{model}:streamGenerateContent?alt=sse",
        "/v1beta/models/{model}:countTokens",
        "/v1beta/models/{model}:embedContent",
        "/v1beta/models/{model}:batchEmbedContents",
    ]
    assert user_paths(RouteInfo("openai", "GET", "/v1/models/{model:path}", False, "")) == ["/v1/models/{model}"]
    assert user_paths(RouteInfo("openai", "POST", "/v1/chat/completions", True, "")) == ["/v1/chat/completions"]


@pytest.mark.parametrize(("micros", "text"), [(0, "0"), (150_000, "0.15"), (10_000_000, "10"), (8_750, "0.00875"),
                                              (2_500_000, "2.5")])  # fmt: skip
def test_prices_are_short_decimal_strings(micros, text):
    assert _usd(micros) == text


def test_catalog_of_the_dev_configuration(monkeypatch):
    """`make dev`'s pisces.yaml without upstream keys: the mock's three models, each with its operations."""
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "DEEPSEEK_API_KEY", "PLAYGROUND_API_KEY",
                "PISCES_BEDROCK", "PISCES_MOCK"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(f"{var}_SECRET_ARN", raising=False)
    cat = {m["name"]: m for m in catalog(load_config(ROOT / "pisces.yaml"))}
    assert set(cat) == {"mock-echo", "mock-image", "mock-embed"}
    echo = cat["mock-echo"]
    assert echo["operations"] == ["chat", "streaming", "tools", "responses"]
    assert echo["protocols"] == ["anthropic", "gemini", "openai"] and echo["aliases"] == ["mock"] and echo["offline"]
    assert cat["mock-embed"]["operations"] == ["embeddings"] and cat["mock-embed"]["protocols"] == ["gemini", "openai"]
    assert cat["mock-embed"]["price"] == {"input": "0"}  # no output price for an embedding model
    assert cat["mock-image"]["operations"] == ["images"] and cat["mock-image"]["per_image"] == {"default": "0.001"}
    assert example_models(list(cat.values())) == {"chat": "mock-echo", "streaming": "mock-echo", "tools": "mock-echo",
                                                  "responses": "mock-echo", "images": "mock-image",
                                                  "embeddings": "mock-embed"}  # fmt: skip


def test_catalog_with_upstream_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    cat = {m["name"]: m for m in catalog(load_config(ROOT / "pisces.yaml"))}
    assert cat["gpt-4o-mini"]["price"] == {"input": "0.15", "output": "0.6", "cached_input": "0.075"}
    assert cat["claude-sonnet-4-5"]["price"]["cache_write"] == "3.75"
    assert cat["claude-sonnet-4-5"]["max_output_tokens"] == 64000 and not cat["claude-sonnet-4-5"]["offline"]
    assert cat["dall-e-3"]["operations"] == ["images"] and cat["dall-e-3"]["per_image"]["1792x1024/hd"] == "0.12"
    assert cat["dall-e-3"]["sizes"] == ["1024x1024", "1792x1024", "1024x1792"]
    assert cat["text-embedding-3-small"]["operations"] == ["embeddings"]
    assert "gemini-embedding-001" not in cat  # its channel has no key here


def test_an_operation_no_channel_kind_serves_is_not_listed():
    """An embedding model on an Anthropic channel (which has no embeddings API) serves nothing."""
    config = parse_config({
        "channels": [{"name": "a", "kind": "anthropic", "base_url": "http://127.0.0.1:9/v1", "models": ["e", "c"]}],
        "models": {"e": {"kind": "embedding"}, "c": {}},
    })  # fmt: skip
    cat = {m["name"]: m for m in catalog(config)}
    assert cat["e"]["operations"] == [] and cat["e"]["protocols"] == []
    assert cat["c"]["operations"] == ["chat", "streaming", "tools", "responses"] and not cat["c"]["offline"]
    assert example_models(list(cat.values()))["embeddings"] is None
    assert example_models(list(cat.values()))["chat"] == "c"


def test_build_spec_keeps_its_fields_and_adds_the_docs_pages():
    config = parse_config({"channels": [{"name": "m", "kind": "mock", "models": ["mock-echo"]}]})
    routes = [RouteInfo("openai", "POST", "/v1/chat/completions", True, "chat")]
    spec = build_spec(routes, config.available_models(), config)
    for field in ("gateway", "version", "routes", "errors", "auth", "models", "headers"):
        assert field in spec
    route = spec["routes"][0]
    assert route["paths"] == ["/v1/chat/completions"] and route["path"] == "/v1/chat/completions"
    assert spec["operations"] == OPERATIONS and spec["examples"]["chat"] == "mock-echo"
    assert {h["name"] for h in spec["header_list"]} >= {"Idempotency-Key", "X-Request-Id", "Retry-After"}
    assert spec["headers"]["X-Request-Id"].startswith("on every response")
    conv = spec["conventions"]
    assert {429, 503} <= set(conv["retry"]["statuses"]) and "Retry-After" in conv["retry"]["advice"]
    assert conv["idempotency"]["hours"] == 24 and conv["tracing"]["header"] == "X-Request-Id"
    assert "catalog" not in build_spec(routes, ["mock-echo"])  # without the configuration: the old fields only
