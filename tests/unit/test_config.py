from __future__ import annotations

from pathlib import Path

import pytest

from pisces.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_loads_and_serves_mock(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    cfg = load_config(ROOT / "pisces.yaml")
    assert cfg.available_models() == ["mock-echo", "mock-image", "mock-embed"]  # make dev: offline
    assert cfg.resolve("mock") == "mock-echo"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    assert "gpt-4o-mini" in load_config(ROOT / "pisces.yaml").available_models()


def test_function_copy_of_config_is_the_same_file():
    assert (ROOT / "functions" / "gateway" / "pisces.yaml").read_text() == (ROOT / "pisces.yaml").read_text()


def test_prices_are_integer_micro_dollars():
    cfg = parse_config(
        {"channels": [], "models": {"m": {"price": {"input": 0.15, "output": "2.5", "cached_input": 0.075}}}}
    )
    p = cfg.price("m")
    assert (p.input, p.output, p.cached_input) == (150_000, 2_500_000, 75_000)
    assert all(isinstance(v, int) for v in (p.input, p.output, p.cached_input))
    with pytest.raises(ConfigError):
        parse_config({"models": {"m": {"price": {"input": 0.0000001}}}})
    with pytest.raises(ConfigError):
        parse_config({"models": {"m": {"price": {"input": -1}}}})


def test_channel_models_list_or_map_and_validation():
    cfg = parse_config(
        {
            "channels": [
                {"name": "a", "kind": "openai", "base_url": "http://x/v1", "models": ["m1"]},
                {"name": "b", "kind": "openai", "base_url": "http://y/v1", "models": {"m1": "upstream-m1"}},
            ]
        }
    )
    assert cfg.channels[0].models == {"m1": "m1"} and cfg.channels[1].models == {"m1": "upstream-m1"}
    assert [c.name for c in cfg.serving("m1")] == ["a", "b"]
    with pytest.raises(ConfigError, match="base_url"):
        parse_config({"channels": [{"name": "a", "kind": "openai", "models": ["m"]}]})
    with pytest.raises(ConfigError, match="unique"):
        parse_config({"channels": [{"name": "a", "kind": "mock"}, {"name": "a", "kind": "mock"}]})
    with pytest.raises(ConfigError, match="alias"):
        parse_config({"models": {"x": {"aliases": ["y"]}, "y": {}}})
    with pytest.raises(ConfigError):
        parse_config({"channels": [{"name": "a", "kind": "carrier-pigeon"}]})


def test_unreadable_or_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("channels: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
