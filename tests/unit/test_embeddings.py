"""The embedding codecs (OpenAI's /v1/embeddings, Gemini's :embedContent / :batchEmbedContents) against
the official reference examples (tests/unit/fixtures/*/README.md), the mock's vectors, and the router's
and billing's view of embedding models."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
from pathlib import Path

import httpx
import pytest

from pisces.canonical import Usage
from pisces.canonical_embeddings import EmbedRequest, EmbedResponse
from pisces.config import parse_config
from pisces.errors import PiscesError
from pisces.pipeline.billing import cost_of, estimate_input, max_cost
from pisces.pipeline.context import RequestContext
from pisces.pipeline.routing import Router
from pisces.protocols import EMBEDDING_CODECS
from pisces.protocols import gemini_embeddings as ge
from pisces.protocols import openai_embeddings as oe
from pisces.store.keys import KeyRecord
from pisces.tokens import estimate_text
from pisces.upstreams import build_channel
from pisces.upstreams.base import UpstreamError
from pisces.upstreams.mock import mock_vector

FIXTURES = Path(__file__).parent / "fixtures"
PISCES = {"gateway": "Pisces", "protocol": "openai", "request_id": "req_1", "channel": "c", "timestamp": "t"}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


# --- OpenAI ---------------------------------------------------------------------------------------


def test_openai_reference_request_decodes():
    req = oe.decode_embed_request(fixture("openai/embeddings_request.json"))
    assert req.model == "text-embedding-ada-002"
    assert req.inputs == ["The food was delicious and the waiter..."]
    assert req.dimensions is None and req.provider_options == {"openai": {"encoding_format": "float"}}


def test_openai_reference_response_decodes_and_encodes_back():
    body = fixture("openai/embeddings_response.json")
    resp = oe.decode_embed_response(body, 1)
    assert resp.model == "text-embedding-ada-002" and resp.usage.input_tokens == 8
    assert resp.vectors == [[0.0023064255, -0.009327292, -0.0028842222]]
    req = oe.decode_embed_request(fixture("openai/embeddings_request.json"))
    out = oe.encode_embed_response(resp, PISCES, req)
    assert out == {**body, "data": [{**body["data"][0]}], "pisces": PISCES}


@pytest.mark.parametrize(
    ("value", "inputs"),
    [
        ("one", ["one"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]]),
        ([[1, 2], [3]], [[1, 2], [3]]),
        (["a", [4, 5]], ["a", [4, 5]]),
    ],
)
def test_openai_input_forms(value, inputs):
    assert oe.decode_embed_request({"model": "m", "input": value}).inputs == inputs


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "input": ""}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": [True, 1]}, "input"),
        ({"model": "m", "input": [[1, "2"]]}, "input"),
        ({"model": "m", "input": ["a"] * 2049}, "input"),
        ({"model": "m", "input": 7}, "input"),
        ({"model": "m", "input": "x", "dimensions": True}, "dimensions"),
        ({"model": "m", "input": "x", "dimensions": 1.5}, "dimensions"),
        ({"model": "m", "input": "x", "encoding_format": "binary"}, "encoding_format"),
        ({"model": "m", "input": "x", "user": 5}, "user"),
        ({"model": "", "input": "x"}, "model"),
    ],
)
def test_openai_invalid_bodies(body, param):
    with pytest.raises(PiscesError) as e:
        oe.decode_embed_request(body)
    assert e.value.status == 400 and e.value.param == param


def test_openai_base64_is_little_endian_float32():
    vec = [0.5, -1.25, 3.0]
    data = oe.pack_base64(vec)
    assert base64.b64decode(data) == struct.pack("<3f", *vec) and oe.unpack_base64(data) == vec
    req = oe.decode_embed_request({"model": "m", "input": "x", "encoding_format": "base64"})
    out = oe.encode_embed_response(EmbedResponse(model="m", vectors=[vec]), PISCES, req)
    assert out["data"][0]["embedding"] == data


def test_openai_upstream_request_asks_floats_and_keeps_extra_fields():
    req = oe.decode_embed_request({"model": "client", "input": ["a"], "encoding_format": "base64", "dimensions": 3,
                                   "user": "u", "input_type": "query"})  # fmt: skip
    want = {"input_type": "query", "model": "upstream", "input": ["a"], "encoding_format": "float", "dimensions": 3,
            "user": "u"}  # fmt: skip
    assert oe.encode_embed_request(req, "upstream") == want
    tokens = oe.decode_embed_request({"model": "m", "input": [1, 2]})
    assert oe.encode_embed_request(tokens, "u")["input"] == [1, 2]


def test_openai_upstream_response_in_index_order_and_base64():
    body = {"data": [{"index": 1, "embedding": oe.pack_base64([2.0])}, {"index": 0, "embedding": [1.0]}],
            "model": "x", "usage": {"prompt_tokens": 3}}  # fmt: skip
    assert oe.decode_embed_response(body, 2).vectors == [[1.0], [2.0]]
    for bad in ({"data": []}, {"data": [{"index": 0, "embedding": ["x"]}]}, {"nope": 1}):
        with pytest.raises(ValueError):
            oe.decode_embed_response(bad, 1)


# --- Gemini ---------------------------------------------------------------------------------------


def test_gemini_reference_embed_content_decodes():
    req = ge.decode_embed_request(fixture("gemini/embed_content_request.json"), "gemini-embedding-001", False)
    assert req.model == "gemini-embedding-001" and req.inputs == ["What is the meaning of life?"]
    assert req.provider_options == {"gemini": {"single": True}}
    resp = EmbedResponse(model="m", vectors=[fixture("gemini/embed_content_response.json")["embedding"]["values"]])
    assert ge.encode_embed_response(resp, PISCES, req) == {**fixture("gemini/embed_content_response.json"),
                                                           "pisces": PISCES}  # fmt: skip


def test_gemini_reference_batch_decodes_and_reencodes_for_the_upstream():
    body = fixture("gemini/batch_embed_contents_request.json")
    req = ge.decode_embed_request(body, "models/gemini-embedding-001", True)
    assert req.inputs == ["What is the meaning of life?", "How much wood would a woodchuck chuck?",
                          "How does the brain work?"]  # fmt: skip
    assert ge.encode_embed_request(req, "gemini-embedding-001") == body, "the same body goes upstream"
    resp = EmbedResponse(model="m", vectors=[[0.1], [0.2], [0.3]])
    want = {"embeddings": [{"values": [0.1]}, {"values": [0.2]}, {"values": [0.3]}], "pisces": PISCES}
    assert ge.encode_embed_response(resp, PISCES, req) == want


def test_gemini_task_type_title_and_dimensions_per_input():
    body = {"requests": [{"model": "models/e", "content": {"parts": [{"text": "q"}]}, "taskType": "RETRIEVAL_QUERY",
                          "outputDimensionality": 8},
                         {"model": "models/e", "content": {"parts": [{"text": "d"}]}, "task_type": "RETRIEVAL_DOCUMENT",
                          "title": "T", "output_dimensionality": 8}]}  # fmt: skip
    req = ge.decode_embed_request(body, "e", True)
    assert req.dimensions == 8
    assert req.provider_options["gemini"]["requests"] == [{"taskType": "RETRIEVAL_QUERY"},
                                                          {"taskType": "RETRIEVAL_DOCUMENT", "title": "T"}]  # fmt: skip
    sent = ge.encode_embed_request(req, "up")["requests"]
    assert sent[1] == {"model": "models/up", "content": {"parts": [{"text": "d"}]}, "taskType": "RETRIEVAL_DOCUMENT",
                       "title": "T", "outputDimensionality": 8}  # fmt: skip
    config = {"content": {"parts": [{"text": "x"}]}, "embedContentConfig": {"taskType": "CLUSTERING",
                                                                            "outputDimensionality": 4}}  # fmt: skip
    single = ge.decode_embed_request(config, "e", False)
    assert single.dimensions == 4 and single.provider_options["gemini"]["requests"] == [{"taskType": "CLUSTERING"}]


@pytest.mark.parametrize(
    ("body", "batch", "code"),
    [
        ({"content": {"parts": []}}, False, "invalid_request"),
        ({"content": {"parts": [{"text": " "}]}}, False, "invalid_request"),
        ({"content": {"parts": [{"fileData": {"fileUri": "gs://x"}}]}}, False, "unsupported_parameter"),
        ({"content": {"parts": [{"text": "x"}]}, "outputDimensionality": 0}, False, "invalid_request"),
        ({"content": {"parts": [{"text": "x"}]}, "title": 3}, False, "invalid_request"),
        ({"requests": "x"}, True, "invalid_request"),
        ({"requests": [{"content": {"parts": [{"text": "x"}]}, "outputDimensionality": 4},
                       {"content": {"parts": [{"text": "y"}]}}]}, True, "unsupported_parameter"),
        ([], False, "invalid_request"),
    ],
)  # fmt: skip
def test_gemini_invalid_bodies(body, batch, code):
    with pytest.raises(PiscesError) as e:
        ge.decode_embed_request(body, "e", batch)
    assert e.value.code == code and e.value.status == 400


def test_gemini_upstream_response_and_token_arrays():
    assert ge.decode_embed_response({"embeddings": [{"values": [1, 2.5]}]}, 1).vectors == [[1.0, 2.5]]
    assert ge.decode_embed_response({"embeddings": [{"values": [1]}]}, 1).usage.input_tokens == 0
    with pytest.raises(ValueError):
        ge.decode_embed_response({"embeddings": [{"values": [1]}]}, 2)
    with pytest.raises(PiscesError) as e:
        ge.encode_embed_request(EmbedRequest(model="m", inputs=[[1, 2]]), "m")
    assert e.value.param == "input" and e.value.status == 400


def test_the_codecs_meet_only_in_the_canonical_model():
    """A Gemini door's request reaches an OpenAI upstream as OpenAI's body: taskType dropped on purpose."""
    req = ge.decode_embed_request({"content": {"parts": [{"text": "x"}]}, "taskType": "CLUSTERING",
                                   "outputDimensionality": 4}, "e", False)  # fmt: skip
    assert oe.encode_embed_request(req, "up") == {"model": "up", "input": ["x"], "encoding_format": "float",
                                                  "dimensions": 4}  # fmt: skip
    back = oe.encode_embed_response(EmbedResponse(model="up", vectors=[[0.5]]), PISCES,
                                    oe.decode_embed_request({"model": "m", "input": "x"}))  # fmt: skip
    assert set(EMBEDDING_CODECS) == {"openai", "gemini"} and back["data"][0]["embedding"] == [0.5]


# --- the mock, the router, billing ----------------------------------------------------------------

CONFIG = parse_config({
    "channels": [{"name": "mock", "kind": "mock", "models": ["mock-echo", "mock-embed"]},
                 {"name": "claude", "kind": "anthropic", "base_url": "http://127.0.0.1:9/v1", "models": ["c-embed"]}],
    "models": {"mock-embed": {"kind": "embedding", "price": {"input": 3}}, "c-embed": {"kind": "embedding"}},
})  # fmt: skip


def test_mock_vectors_are_deterministic_unit_and_float32_exact():
    a, b = mock_vector("same"), mock_vector("same")
    assert a == b != mock_vector("other") and len(a) == 256 and abs(math.sqrt(sum(x * x for x in a)) - 1) < 1e-6
    assert list(struct.unpack("<256f", struct.pack("<256f", *a))) == a
    assert mock_vector([1, 2]) != mock_vector("[1, 2]x") and len(mock_vector("x", 3000)) == 3000
    assert len(mock_vector("\ud800 a lone surrogate")) == 256, "any JSON string, even one UTF-8 cannot say"


def test_mock_channel_embeds_and_counts():
    async def go() -> tuple[EmbedResponse, UpstreamError]:
        async with httpx.AsyncClient() as http:
            ch = build_channel(CONFIG.channels[0], http)
            req = EmbedRequest(model="mock-embed", inputs=["a b c", [1, 2]], dimensions=8)
            resp = await ch.embed(req, "mock-embed")
            try:
                await ch.embed(EmbedRequest(model="mock-embed", inputs=["x"], dimensions=5000), "mock-embed")
            except UpstreamError as e:
                return resp, e
        raise AssertionError("no error for 5000 dimensions")

    resp, err = asyncio.run(go())
    assert resp.vectors == [mock_vector("a b c", 8), mock_vector([1, 2], 8)]
    assert resp.usage.input_tokens == estimate_text("a b c") + 2 and err.param == "dimensions"


def test_the_anthropic_channel_has_no_embeddings():
    async def go() -> None:
        async with httpx.AsyncClient() as http:
            await build_channel(CONFIG.channels[1], http).embed(EmbedRequest(model="c", inputs=["x"]), "c")

    with pytest.raises(UpstreamError) as e:
        asyncio.run(go())
    assert e.value.status == 400 and "no embeddings API" in e.value.message


def test_the_router_knows_which_model_does_what():
    async def go() -> Router:
        async with httpx.AsyncClient() as http:
            return Router(CONFIG, {c.name: build_channel(c, http) for c in CONFIG.channels})

    router = asyncio.run(go())
    key = KeyRecord(key_id="k", key_hash="h", prefix="p", name="n", created_at="t", balance=1)
    ctx = RequestContext(request_id="r", protocol="openai")
    assert [c.name for c, _ in router.resolve(ctx, "mock-embed", key, operation="embed")] == ["mock"]
    cases = [("mock-echo", "embed", "does not support embeddings"), ("mock-embed", "chat", "embedding model"),
             ("c-embed", "embed", "no upstream with an embeddings API")]  # fmt: skip
    for model, op, words in cases:
        with pytest.raises(PiscesError) as e:
            router.resolve(ctx, model, key, operation=op)
        assert e.value.status == 400 and words in e.value.message
    with pytest.raises(PiscesError) as nf:
        router.resolve(ctx, "nope", key, operation="embed")
    assert nf.value.status == 404


def test_billing_holds_and_charges_input_only():
    req = EmbedRequest(model="mock-embed", inputs=["one two three four", [1, 2, 3]])
    n = estimate_input(req)
    assert n == estimate_text("one two three four") + 3
    assert max_cost(CONFIG, "mock-embed", req) == math.ceil(math.ceil(n * 1.5) * 3 / 1)  # $3 per 1M: 3 micros a token
    assert cost_of(CONFIG.price("mock-embed"), Usage(input_tokens=n)) == 3 * n
    assert CONFIG.model("mock-echo").kind == "chat" and CONFIG.model("mock-embed").kind == "embedding"


def test_pisces_yaml_serves_mock_embed_offline():
    from pisces.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "pisces.yaml")
    assert "mock-embed" in config.available_models() and config.model("mock-embed").kind == "embedding"
    assert [c.kind for c in config.serving("mock-embed")] == ["mock"]
    for name in ("text-embedding-3-small", "text-embedding-3-large", "gemini-embedding-001"):
        assert config.model(name).kind == "embedding" and config.price(name).input > 0 == config.price(name).output
