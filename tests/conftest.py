"""Shared fixtures: moto DynamoDB on loopback, a fake OpenAI upstream, and the gateway under uvicorn."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pisces.config import Config, parse_config
from pisces.localaws import LocalDynamo, free_port
from pisces.store import dynamo
from pisces.store.keys import KeyRecord, KeyStore
from pisces.store.schema import table_name
from support.fake_openai import UPSTREAM_SECRET, FakeOpenAI
from support.servers import ServerThread

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "INFO")


@pytest.fixture(scope="session")
def local_dynamo() -> Iterator[LocalDynamo]:
    local = LocalDynamo().start()
    dynamo.client.cache_clear()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def key_store(local_dynamo: LocalDynamo) -> KeyStore:
    return KeyStore(dynamo.client(), table_name("keys"))


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    server = ServerThread(fake.app).start()
    fake.url = server.url  # type: ignore[attr-defined]
    yield fake
    server.stop()


def gateway_config(upstream_url: str, **limits: object) -> Config:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    fake_models = ["gpt-fake", "recorded", "fail-500", "fail-400", "fail-401", "fail-429", "slow", "cut"]
    return parse_config(
        {
            "channels": [
                {"name": "mock", "kind": "mock", "models": ["mock-echo"]},
                {
                    "name": "fake",
                    "kind": "openai",
                    "base_url": f"{upstream_url}/v1",
                    "api_key_env": "PISCES_TEST_UPSTREAM_KEY",
                    "models": {m: m for m in fake_models},
                    "read_timeout": 1.0,
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
                {
                    "name": "disabled",
                    "kind": "openai",
                    "base_url": f"{upstream_url}/v1",
                    "api_key_env": "PISCES_TEST_UNSET_VARIABLE",
                    "models": ["never-listed"],
                },
            ],
            "models": {"mock-echo": {"aliases": ["mock"]}, "gpt-fake": {"aliases": ["gpt-fake-latest"]}},
            "limits": {"max_body_bytes": 65536, "key_cache_seconds": 0.5, **limits},
        }
    )


@dataclass
class Gateway:
    url: str
    key: str
    record: KeyRecord
    store: KeyStore
    upstream: FakeOpenAI

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def new_key(self, models: list[str] | None = None, name: str = "test") -> str:
        return self.store.create(name=name, models=models)[0]


@pytest.fixture(scope="session")
def gateway(key_store: KeyStore, fake_openai: FakeOpenAI) -> Iterator[Gateway]:
    from pisces_gateway.app import create_app

    os.environ["PISCES_TEST_UPSTREAM_KEY"] = UPSTREAM_SECRET
    os.environ.pop("PISCES_TEST_UNSET_VARIABLE", None)
    app = create_app(gateway_config(fake_openai.url), key_store)  # type: ignore[attr-defined]
    server = ServerThread(app).start()
    key, rec = key_store.create(name="contract")
    yield Gateway(server.url, key, rec, key_store, fake_openai)
    server.stop()
