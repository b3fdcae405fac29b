"""Money on the Responses door: charged once from the upstream's usage, an Idempotency-Key replay charges
nothing, a stream is settled (and its response stored) before ``response.completed`` reaches the client."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import openai
import pytest

from pisces.store import dynamo
from pisces.store.keys import hash_key
from pisces.store.schema import table_name
from pisces.store.usage import UsageStore


@pytest.fixture(scope="module")
def usage(local_dynamo) -> UsageStore:
    return UsageStore(dynamo.client(), table_name("usage"))


def balance(gateway, key: str) -> int:
    rec = gateway.store.get_by_hash(hash_key(key))
    assert rec is not None
    return rec.balance


@pytest.fixture
def sdk(gateway, clients) -> Callable[[str], openai.OpenAI]:
    """An openai client of the gateway with a key (``sdk(key)``), closed when the test ends."""
    return lambda key: clients.openai(gateway.v1, key)


def test_a_response_is_charged_once_from_upstream_usage(gateway, usage, sdk):
    key = gateway.new_key(balance=1_000_000)
    raw = sdk(key).responses.with_raw_response.create(model="gpt-resp", input="hello")
    resp = raw.parse()
    # the fake Responses upstream: 21 input (4 cached), 9 output -> 17*1.25 + 4*0.125 + 9*10 = 111.75 -> 112
    rec = usage.get(raw.headers["x-request-id"])
    assert rec is not None, "settled before the response was sent"
    assert (rec.input_tokens, rec.cached_tokens, rec.output_tokens, rec.reasoning_tokens) == (21, 4, 9, 3)
    assert rec.protocol == "openai-responses" and rec.channel == "fake-responses" and rec.usage_source == "upstream"
    assert resp.model_extra["pisces"]["cost"] == rec.cost > 0
    assert balance(gateway, key) == 1_000_000 - rec.cost
    assert resp.usage.input_tokens_details.cached_tokens == 4 and resp.usage.output_tokens_details.reasoning_tokens == 3


@pytest.mark.parametrize("stream", [False, True])
def test_an_idempotency_key_replay_charges_nothing(gateway, usage, stream, sdk):
    key = gateway.new_key(balance=1_000_000)
    client = sdk(key)
    idem = {"Idempotency-Key": f"resp-{uuid.uuid4()}"}
    kwargs = {"model": "mock-echo", "input": "pay me once", "stream": stream, "extra_headers": idem}
    with client.responses.with_streaming_response.create(**kwargs) as first:
        first_body = first.read()
        first_id = first.headers["x-request-id"]
    assert usage.get(first_id) is not None
    charged = balance(gateway, key)
    assert charged < 1_000_000
    with client.responses.with_streaming_response.create(**kwargs) as again:
        again_body = again.read()
        assert again.headers["idempotent-replayed"] == "true"
        assert usage.get(again.headers["x-request-id"]) is None, "a replay is never settled"
    assert again_body == first_body
    assert balance(gateway, key) == charged


def test_a_stream_is_settled_and_stored_before_response_completed(gateway, usage, sdk):
    key = gateway.new_key(balance=1_000_000)
    client = sdk(key)
    with client.responses.with_streaming_response.create(model="mock-echo", input="alpha beta", stream=True) as raw:
        rid = raw.headers["x-request-id"]
        for event in raw.parse():
            if event.type == "response.completed":
                # the client holds the terminal event: what it owes is durable, its id already works
                rec = usage.get(rid)
                assert rec is not None and rec.cost == event.response.model_extra["pisces"]["cost"]
                assert client.responses.retrieve(event.response.id).output_text == "alpha beta"
    assert balance(gateway, key) == 1_000_000 - rec.cost


def test_a_failed_upstream_charges_nothing(gateway, usage, sdk):
    key = gateway.new_key(balance=1_000_000)
    with pytest.raises(openai.BadRequestError):
        sdk(key).responses.create(model="gpt-resp-fail-400", input="hi")
    assert balance(gateway, key) == 1_000_000


def test_an_empty_balance_is_402_in_openai_shape(gateway, sdk):
    key = gateway.new_key(balance=0)
    with pytest.raises(openai.APIStatusError) as e:
        sdk(key).responses.create(model="mock-echo", input="hi")
    assert e.value.status_code == 402 and e.value.body["code"] == "insufficient_balance"
