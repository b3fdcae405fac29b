"""Shared fixtures: moto DynamoDB on loopback, a fake OpenAI upstream, and the gateway under uvicorn."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pisces.localaws import LocalDynamo
from pisces.store import dynamo
from pisces.store.keys import KeyRecord, KeyStore
from pisces.store.schema import table_name
from support.clients import Clients
from support.config import TEST_BALANCE, gateway_config
from support.fake_anthropic import FakeAnthropic
from support.fake_gemini import FakeGemini
from support.fake_openai import UPSTREAM_SECRET, FakeOpenAI
from support.servers import GATEWAY_HTTP, ServerThread, serving

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
    with serving(FakeOpenAI()) as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with serving(FakeAnthropic()) as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_gemini() -> Iterator[FakeGemini]:
    with serving(FakeGemini()) as fake:
        yield fake


@dataclass
class Gateway:
    url: str
    key: str
    record: KeyRecord
    store: KeyStore
    upstream: FakeOpenAI
    anthropic: FakeAnthropic
    gemini: FakeGemini
    app: Any  # the FastAPI app under uvicorn (for tests that must reach into its state)

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def new_key(self, models: list[str] | None = None, name: str = "test", **money: int | None) -> str:
        """A key with TEST_BALANCE unless ``balance=`` says otherwise (also monthly_budget, rpm, tpm)."""
        return self.store.create(name=name, models=models, **{"balance": TEST_BALANCE, **money})[0]


@pytest.fixture(scope="session")
def gateway(
    key_store: KeyStore, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini
) -> Iterator[Gateway]:
    from pisces_gateway.app import create_app

    os.environ["PISCES_TEST_UPSTREAM_KEY"] = UPSTREAM_SECRET
    os.environ.pop("PISCES_TEST_UNSET_VARIABLE", None)
    app = create_app(gateway_config(fake_openai.url, fake_anthropic.url, fake_gemini.url), key_store)
    server = ServerThread(app, http=GATEWAY_HTTP).start()
    key, rec = key_store.create(name="contract", balance=TEST_BALANCE)
    yield Gateway(server.url, key, rec, key_store, fake_openai, fake_anthropic, fake_gemini, app)
    server.stop()


@pytest.fixture
def clients() -> Iterator[Clients]:
    """The SDK clients of one test, all closed when it ends (tests/support/clients.py)."""
    with Clients() as made:
        yield made
