"""pisces.yaml from SSM Parameter Store (moto server), through Powertools Parameters with caching,
and a gateway that takes a changed parameter without a new build; keys given as Secrets Manager ARNs
beside their environment variable (what the template's key parameters set)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import boto3
import pytest
import yaml

from pisces import config_source
from pisces.config import ChannelConfig, ConfigError
from pisces.config_source import ConfigSource
from pisces.upstreams.credentials import resolve_api_key
from support.config import TEST_BALANCE
from support.servers import GATEWAY_HTTP, ServerThread

ROOT = Path(__file__).resolve().parents[2]


def _yaml(models: list[str], price: float = 1.0) -> str:
    return yaml.safe_dump({"channels": [{"name": "mock", "kind": "mock", "models": models}],
                           "models": {m: {"price": {"input": price, "output": price}} for m in models}})  # fmt: skip


class Calls:
    """Counts the GetParameter calls that reach SSM (not Powertools' cache)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, **_: object) -> None:
        self.n += 1


@pytest.fixture
def ssm(local_dynamo, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", local_dynamo.endpoint)
    monkeypatch.delenv("PISCES_MOCK", raising=False)
    monkeypatch.setattr(config_source, "_provider", None)  # a provider made now, for moto
    client = boto3.client("ssm", region_name="us-east-1")
    calls = Calls()
    provider = config_source.provider()
    provider.client.meta.events.register("before-call.ssm.GetParameter", calls)
    return client, calls


def test_loads_from_ssm_and_caches(ssm):
    client, calls = ssm
    client.put_parameter(Name="/pisces/test-cache", Value=_yaml(["m-one"]), Type="String", Overwrite=True)
    source = ConfigSource(parameter="/pisces/test-cache", cache_seconds=3600)
    assert source.load().available_models() == ["m-one"]
    assert calls.n == 1
    client.put_parameter(Name="/pisces/test-cache", Value=_yaml(["m-two"]), Type="String", Overwrite=True)
    source.checked = float("-inf")  # as if the gateway's own interval had passed: Powertools' cache still answers
    assert asyncio.run(source.fresh()) is None and calls.n == 1
    config_source.provider().clear_cache()  # the cache expired
    source.checked = float("-inf")
    fresh = asyncio.run(source.fresh())
    assert fresh is not None and fresh.available_models() == ["m-two"] and calls.n == 2
    assert asyncio.run(source.fresh()) is None  # not looked at again before cache_seconds


def test_a_secure_string_is_decrypted(ssm):
    client, _ = ssm
    client.put_parameter(Name="/pisces/test-secure", Value=_yaml(["m-secure"]), Type="SecureString", Overwrite=True)
    assert ConfigSource(parameter="/pisces/test-secure", cache_seconds=0).load().available_models() == ["m-secure"]


def test_a_missing_or_broken_parameter(ssm):
    client, _ = ssm
    with pytest.raises(ConfigError, match="cannot read the configuration parameter /pisces/nope"):
        ConfigSource(parameter="/pisces/nope", cache_seconds=0).load()
    client.put_parameter(Name="/pisces/test-broken", Value=_yaml(["m-ok"]), Type="String", Overwrite=True)
    source = ConfigSource(parameter="/pisces/test-broken", cache_seconds=0)
    source.load()
    client.put_parameter(Name="/pisces/test-broken", Value="channels: [{kind: nonsense}]", Type="String",
                         Overwrite=True)  # fmt: skip
    assert asyncio.run(source.fresh()) is None  # a broken change keeps the configuration the gateway has


def test_without_a_parameter_the_file_is_read(monkeypatch):
    monkeypatch.delenv(config_source.PARAMETER_ENV, raising=False)
    monkeypatch.setenv("PISCES_CONFIG", str(ROOT / "pisces.yaml"))
    source = ConfigSource()
    assert source.parameter is None and "mock-echo" in [m for m in source.load().models]
    assert asyncio.run(source.fresh()) is None


def test_gateway_takes_a_changed_parameter_without_a_rebuild(ssm, key_store, monkeypatch, clients):
    from pisces_gateway.app import create_app

    client, _ = ssm
    client.put_parameter(Name="/pisces/test-live", Value=_yaml(["live-a"]), Type="String", Overwrite=True)
    monkeypatch.setenv(config_source.PARAMETER_ENV, "/pisces/test-live")
    monkeypatch.setenv(config_source.CACHE_ENV, "0")  # every request looks (a deployed stack: 60 s)
    server = ServerThread(create_app(key_store=key_store), http=GATEWAY_HTTP).start()
    try:
        key = key_store.create(name="ssm", balance=TEST_BALANCE)[0]
        oai = clients.openai(f"{server.url}/v1", key)
        assert [m.id for m in oai.models.list()] == ["live-a"]
        client.put_parameter(Name="/pisces/test-live", Value=_yaml(["live-a", "live-b"], price=2.0), Type="String",
                             Overwrite=True)  # fmt: skip
        assert [m.id for m in oai.models.list()] == ["live-a", "live-b"]
        r = oai.chat.completions.create(model="live-b", messages=[{"role": "user", "content": "hello there"}])
        assert r.choices[0].message.content == "hello there" and r.model_extra["pisces"]["channel"] == "mock"
        tokens = r.usage.prompt_tokens + r.usage.completion_tokens
        assert r.model_extra["pisces"]["cost"] == 2 * tokens  # the new price: $2 per million
    finally:
        server.stop()


async def test_key_by_secret_arn_beside_its_env(local_dynamo, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", local_dynamo.endpoint)
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    arn = sm.create_secret(Name="pisces/test-beside-env", SecretString="sk-from-the-arn")["ARN"]
    cfg = ChannelConfig(name="o", kind="openai", base_url="http://x/v1", api_key_env="PISCES_TEST_BESIDE")
    monkeypatch.delenv("PISCES_TEST_BESIDE", raising=False)
    monkeypatch.delenv("PISCES_TEST_BESIDE_SECRET_ARN", raising=False)
    assert not cfg.enabled
    monkeypatch.setenv("PISCES_TEST_BESIDE_SECRET_ARN", arn)  # the template's <Upstream>ApiKeySecretArn
    assert cfg.enabled and await resolve_api_key(cfg) == "sk-from-the-arn"
    monkeypatch.setenv("PISCES_TEST_BESIDE", "sk-plain")  # a plain key given too: it wins
    assert await resolve_api_key(cfg) == "sk-plain"
