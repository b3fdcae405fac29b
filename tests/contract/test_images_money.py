"""Money of the image operation: held at admission, charged once from the price per image or the
upstream's token usage, recorded; an Idempotency-Key replay returns the same images and charges nothing."""

from __future__ import annotations

import math
from collections.abc import Callable

import httpx
import openai
import pytest

from pisces.store import dynamo
from pisces.store.keys import hash_key
from pisces.store.schema import table_name
from pisces.store.usage import UsageRecord, UsageStore
from pisces.tokens import estimate_text
from support.media import png


@pytest.fixture(scope="module")
def usage(local_dynamo) -> UsageStore:
    return UsageStore(dynamo.client(), table_name("usage"))


def record_of(usage: UsageStore, request_id: str) -> UsageRecord:
    rec = usage.get(request_id)
    assert rec is not None, f"no usage record for {request_id} once its response was read"
    return rec


def balance(gateway, key: str) -> int:
    rec = gateway.store.get_by_hash(hash_key(key))
    assert rec is not None
    return rec.balance


def holds(gateway, key: str) -> list[str]:
    item = gateway.store.client.get_item(TableName=gateway.store.table, Key={"key_hash": {"S": hash_key(key)}},
                                         ConsistentRead=True)["Item"]  # fmt: skip
    return item.get("holds", {}).get("SS", [])


@pytest.fixture
def sdk(gateway, clients) -> Callable[[str], openai.OpenAI]:
    """An openai client of the gateway with a key (``sdk(key)``), closed when the test ends."""
    return lambda key: clients.openai(gateway.v1, key)


def test_per_image_charge_and_usage_record(gateway, usage, sdk):
    key = gateway.new_key(balance=1_000_000)
    raw = sdk(key).images.with_raw_response.generate(model="mock-image", prompt="two", n=2, size="512x512")
    result = raw.parse()
    rec = record_of(usage, raw.headers["x-request-id"])
    assert rec.cost == 2 * 5_000 == result.model_extra["pisces"]["cost"]
    assert rec.hold == 2 * 5_000 and rec.images == 2 and rec.model == "mock-image" and rec.channel == "mock-images"
    assert rec.status == 200 and rec.outcome == "ok" and rec.usage_source == "upstream"
    assert rec.output_tokens == result.usage.output_tokens
    assert balance(gateway, key) == 1_000_000 - rec.cost and holds(gateway, key) == []


def test_token_priced_model_is_charged_from_the_upstreams_image_usage(gateway, usage, sdk):
    key = gateway.new_key(balance=10_000_000)
    raw = sdk(key).images.with_raw_response.edit(model="gpt-image-1", prompt="a hat",
                                                          image=("a.png", png(64, 64), "image/png"))  # fmt: skip
    result = raw.parse()
    rec = record_of(usage, raw.headers["x-request-id"])
    u = result.usage
    text, image_in = u.input_tokens_details.text_tokens, u.input_tokens_details.image_tokens
    expected = math.ceil((text * 5 + image_in * 10 + u.output_tokens * 40) / 1)  # micro-dollars per token: USD/M
    assert rec.cost == expected and rec.input_tokens == u.input_tokens and rec.output_tokens == u.output_tokens
    # the hold: the prompt with a margin, the input image at its bound, n x max_output_tokens
    held_text = math.ceil(estimate_text("a hat") * 1.5)
    assert rec.hold == held_text * 5 + (85 + 170 * 64 + 4_200) * 10 + 6240 * 40
    assert balance(gateway, key) == 10_000_000 - rec.cost and holds(gateway, key) == []


def test_an_upstream_failure_is_charged_nothing(gateway, usage, sdk):
    key = gateway.new_key(balance=1_000_000)
    with pytest.raises(openai.APIStatusError) as info:
        sdk(key).images.generate(model="img-fail-500", prompt="x", n=3)
    rec = record_of(usage, info.value.response.headers["x-request-id"])
    assert rec.cost == 0 and rec.status == 502 and rec.outcome == "upstream_error" and rec.hold == 3 * 20_000
    assert balance(gateway, key) == 1_000_000 and holds(gateway, key) == []


def test_a_key_without_balance_is_refused_before_the_upstream(gateway, sdk):
    key = gateway.new_key(balance=0)
    before = len(gateway.upstream.requests)
    with pytest.raises(openai.APIStatusError) as info:
        sdk(key).images.generate(model="gpt-image-1", prompt="x")
    assert info.value.status_code == 402 and len(gateway.upstream.requests) == before


def test_an_idempotency_key_replays_the_images_without_charging(gateway, usage, sdk):
    key = gateway.new_key(balance=1_000_000)
    client = sdk(key)
    headers = {"Idempotency-Key": "images-replay-1"}
    first = client.images.with_raw_response.generate(model="mock-image", prompt="once", n=2, extra_headers=headers)
    after_first = balance(gateway, key)
    assert after_first == 1_000_000 - 2 * 10_000
    again = client.images.with_raw_response.generate(model="mock-image", prompt="once", n=2, extra_headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content, "the same images, the same URLs"
    assert balance(gateway, key) == after_first, "a replay charges nothing"
    assert usage.get(again.headers["x-request-id"]) is None, "and records no usage"
    for d in again.parse().data:
        assert httpx.get(d.url, timeout=30).status_code == 200
    with pytest.raises(openai.APIStatusError) as info:
        client.images.generate(model="mock-image", prompt="another", extra_headers=headers)
    assert info.value.status_code == 422


def test_an_idempotency_key_replays_an_edit(gateway, sdk):
    key = gateway.new_key(balance=1_000_000)
    client = sdk(key)
    headers = {"Idempotency-Key": "images-edit-replay-1"}

    def edit(image: bytes):
        return client.images.with_raw_response.edit(model="mock-image", prompt="hat", image=("a.png", image),
                                                    response_format="b64_json", extra_headers=headers)  # fmt: skip

    first = edit(png(32, 32))
    spent = balance(gateway, key)
    again = edit(png(32, 32))
    assert again.headers["idempotent-replayed"] == "true" and again.content == first.content
    assert balance(gateway, key) == spent == 1_000_000 - 10_000
    with pytest.raises(openai.APIStatusError) as info:
        edit(png(33, 32))  # another file under the same key
    assert info.value.status_code == 422
