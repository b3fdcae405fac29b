"""Upstream credentials: from the environment, or from Secrets Manager through Powertools (moto server)."""

from __future__ import annotations

import boto3
import httpx

from pisces.config import ChannelConfig, parse_config
from pisces.upstreams.credentials import resolve_api_key
from support.config import TEST_BALANCE
from support.fake_openai import UPSTREAM_SECRET
from support.servers import GATEWAY_HTTP, ServerThread


async def test_env_and_secret_arn(local_dynamo, monkeypatch):
    monkeypatch.setenv("PISCES_TEST_CRED", "sk-from-env")
    env = ChannelConfig(name="a", kind="openai", base_url="http://x/v1", api_key_env="PISCES_TEST_CRED")
    assert await resolve_api_key(env) == "sk-from-env"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", local_dynamo.endpoint)
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    arn = sm.create_secret(Name="pisces/test-upstream", SecretString="sk-from-secrets-manager")["ARN"]
    secret = ChannelConfig(name="b", kind="openai", base_url="http://x/v1", api_key_secret_arn=arn)
    assert secret.enabled
    assert await resolve_api_key(secret) == "sk-from-secrets-manager"


def test_channel_with_secret_reaches_upstream(local_dynamo, key_store, fake_openai, monkeypatch, clients):
    """End to end: the gateway sends the secret's value upstream, and never to the client."""
    from pisces_gateway.app import create_app

    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", local_dynamo.endpoint)
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    arn = sm.create_secret(Name="pisces/fake-upstream", SecretString=UPSTREAM_SECRET)["ARN"]
    cfg = parse_config({"channels": [{"name": "sm", "kind": "openai", "base_url": f"{fake_openai.url}/v1",
                                      "api_key_secret_arn": arn, "models": ["gpt-fake"]}]})  # fmt: skip
    server = ServerThread(create_app(cfg, key_store), http=GATEWAY_HTTP).start()
    try:
        key = key_store.create(name="sm", balance=TEST_BALANCE)[0]
        c = clients.openai(f"{server.url}/v1", key)
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-fake", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.parse().choices[0].message.content == "Hello from upstream: hi"
        assert fake_openai.last()["authorization"] == f"Bearer {UPSTREAM_SECRET}"
        assert UPSTREAM_SECRET not in raw.http_response.text
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()
