"""POST /v1/embeddings with the official `openai` SDK (Python and Node) over real HTTP: the offline mock
embedding model and the fake OpenAI-compatible upstream; errors in OpenAI's shape."""

from __future__ import annotations

import base64
import json
import math
import struct

import httpx
import openai
import pytest

from pisces.tokens import estimate_text
from pisces.upstreams.mock import EMBED_DIMENSIONS, mock_vector
from support.fake_openai import FAKE_EMBED_DIMENSIONS, fake_embed_tokens, fake_vector
from support.node import clean_env, run_node


@pytest.fixture
def client(gateway, clients) -> openai.OpenAI:
    return clients.openai(gateway.v1, gateway.key)


def _pisces(obj) -> dict:
    extra = obj.model_extra or {}
    assert "pisces" in extra, f"no pisces object in {obj}"
    return extra["pisces"]


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def post(gateway, body: dict, key: str | None = None, **headers: str) -> httpx.Response:
    return httpx.post(f"{gateway.v1}/embeddings", json=body, timeout=15,
                      headers={"Authorization": f"Bearer {key or gateway.key}", **headers})  # fmt: skip


# --- the mock embedding model ---------------------------------------------------------------------


def test_mock_one_string_base64_by_default(client, gateway, clients):
    seen: list[httpx.Request] = []
    with httpx.Client(event_hooks={"request": [seen.append]}) as http:  # closed: no unclosed socket left
        sdk = clients.openai(gateway.v1, gateway.key, http_client=http)
        raw = sdk.embeddings.with_raw_response.create(model="mock-embed", input="The food was delicious")
    resp = raw.parse()
    assert json.loads(seen[-1].content)["encoding_format"] == "base64", "the SDK asks for base64 by default"
    assert resp.object == "list" and len(resp.data) == 1
    vec = resp.data[0].embedding
    assert len(vec) == EMBED_DIMENSIONS and abs(_norm(vec) - 1) < 1e-5
    assert vec == mock_vector("The food was delicious"), "decoded from base64 exactly (float32 values)"
    assert resp.usage.prompt_tokens == resp.usage.total_tokens == estimate_text("The food was delicious") == 6
    p = _pisces(resp)
    assert p["gateway"] == "Pisces" and p["protocol"] == "openai" and p["channel"] == "mock-embeddings"
    assert p["request_id"] == raw.headers["x-request-id"] and p["cost"] >= 0


def test_mock_is_deterministic_and_tells_texts_apart(client):
    a = client.embeddings.create(model="mock-embed", input=["alpha", "beta", "alpha"], encoding_format="float")
    assert [d.index for d in a.data] == [0, 1, 2]
    assert a.data[0].embedding == a.data[2].embedding != a.data[1].embedding
    again = client.embeddings.create(model="mock-embed", input="alpha", encoding_format="float")
    assert again.data[0].embedding == a.data[0].embedding
    cosine = sum(x * y for x, y in zip(a.data[0].embedding, a.data[1].embedding, strict=True))
    assert abs(cosine) < 0.3, "different texts get unrelated vectors"


def test_mock_float_and_base64_say_the_same_numbers(gateway):
    body = {"model": "mock-embed", "input": ["one", "two"]}
    floats = post(gateway, {**body, "encoding_format": "float"}).json()
    b64 = post(gateway, {**body, "encoding_format": "base64"}).json()
    for f, b in zip(floats["data"], b64["data"], strict=True):
        assert isinstance(f["embedding"], list) and isinstance(b["embedding"], str)
        raw = base64.b64decode(b["embedding"])
        assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == f["embedding"]  # little-endian float32
        assert f["object"] == "embedding"
    assert floats["model"] == "mock-embed" and floats["pisces"]["protocol"] == "openai"


def test_mock_token_arrays(client):
    one = client.embeddings.create(model="mock-embed", input=[101, 2023, 2003], encoding_format="float")
    assert len(one.data) == 1 and one.usage.prompt_tokens == 3, "a token array counts its tokens exactly"
    assert one.data[0].embedding == mock_vector([101, 2023, 2003])
    many = client.embeddings.create(model="mock-embed", input=[[1, 2], [3, 4, 5], [1, 2]])
    assert len(many.data) == 3 and many.usage.prompt_tokens == 7
    assert many.data[0].embedding == many.data[2].embedding == mock_vector([1, 2])


def test_mock_dimensions_shortens_and_renormalises(client):
    full = client.embeddings.create(model="mock-embed", input="shorten me", encoding_format="float")
    short = client.embeddings.create(model="mock-embed", input="shorten me", dimensions=64)
    v, s = full.data[0].embedding, short.data[0].embedding
    assert len(s) == 64 and abs(_norm(s) - 1) < 1e-5
    scale = _norm(v[:64])
    assert all(abs(a / scale - b) < 1e-5 for a, b in zip(v[:64], s, strict=True)), "the prefix, renormalised"


# --- the fake OpenAI-compatible upstream ----------------------------------------------------------


def test_upstream_gets_floats_and_its_usage_is_what_is_charged(client, gateway):
    texts = ["the quick brown fox", "jumps"]
    resp = client.embeddings.create(model="text-embedding-fake", input=texts, dimensions=5, user="u-42")
    sent = gateway.upstream.last()
    assert sent["path"] == "/v1/embeddings"
    assert sent["body"] == {"model": "text-embedding-fake", "input": texts, "encoding_format": "float",
                            "dimensions": 5, "user": "u-42"}, "asked as floats, whatever the client asked"  # fmt: skip
    assert [d.embedding for d in resp.data] == [fake_vector(t, 5) for t in texts], "base64 for the SDK, exact"
    assert resp.usage.prompt_tokens == fake_embed_tokens(texts) == 10, "the upstream's own count"
    assert resp.model == "text-embedding-fake-v1"
    assert _pisces(resp)["channel"] == "fake-embeddings"


def test_upstream_token_arrays_and_float(client, gateway):
    resp = client.embeddings.create(model="text-embedding-fake", input=[[5, 6, 7], [8]], encoding_format="float")
    assert gateway.upstream.last()["body"]["input"] == [[5, 6, 7], [8]]
    assert [d.embedding for d in resp.data] == [fake_vector([5, 6, 7]), fake_vector([8])]
    assert len(resp.data[0].embedding) == FAKE_EMBED_DIMENSIONS and resp.usage.prompt_tokens == 4
    single = client.embeddings.create(model="text-embedding-fake", input=[9, 10])
    assert gateway.upstream.last()["body"]["input"] == [9, 10], "one token array stays one"
    assert single.data[0].embedding == fake_vector([9, 10])


def test_upstream_errors_keep_their_meaning(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="embed-fail-400", input="x")
    assert e.value.status_code == 400 and "upstream says 400" in e.value.message
    with pytest.raises(openai.APIStatusError) as e5:
        client.embeddings.create(model="embed-fail-500", input="x")
    assert e5.value.status_code == 502
    body = e5.value.response.json()
    assert body["error"]["code"] == "upstream_error" and body["pisces"]["request_id"]


# --- errors in OpenAI's shape ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"model": "mock-embed", "input": ""}, "input", "empty string"),
        ({"model": "mock-embed", "input": []}, "input", "empty array"),
        ({"model": "mock-embed", "input": ["ok", ""]}, "input", "empty string"),
        ({"model": "mock-embed", "input": [[]]}, "input", "cannot be empty"),
        ({"model": "mock-embed", "input": ["x"] * 2049}, "input", "Maximum length is 2048"),
        ({"model": "mock-embed", "input": [1, -2]}, "input", "non-negative"),
        ({"model": "mock-embed", "input": [{"text": "x"}]}, "input", "must be a string"),
        ({"model": "mock-embed"}, "input", "required"),
        ({"input": "x"}, "model", "model"),
        ({"model": "mock-embed", "input": "x", "dimensions": 0}, "dimensions", "dimensions"),
        ({"model": "mock-embed", "input": "x", "encoding_format": "int8"}, "encoding_format", "base64"),
        ({"model": "mock-embed", "input": "x", "dimensions": 5000}, "dimensions", "4096"),
    ],
)
def test_invalid_requests_are_400s_in_openai_shape(gateway, body, param, words):
    r = post(gateway, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param and words in err["message"]
    assert r.json()["pisces"]["request_id"] == r.headers["x-request-id"]


def test_2048_inputs_are_fine(client):
    resp = client.embeddings.create(model="mock-embed", input=[f"t{i}" for i in range(2048)], dimensions=4)
    assert len(resp.data) == 2048 and resp.data[-1].index == 2047


def test_unknown_model_is_a_404_and_a_chat_model_a_400(client):
    with pytest.raises(openai.NotFoundError) as nf:
        client.embeddings.create(model="no-such-embedder", input="x")
    assert nf.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as chat:
        client.embeddings.create(model="mock-echo", input="x")
    assert "does not support embeddings" in chat.value.message and chat.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as claude:
        client.embeddings.create(model="claude-embed", input="x")
    assert "no upstream with an embeddings API" in claude.value.message


def test_a_chat_request_to_an_embedding_model_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="mock-embed", messages=[{"role": "user", "content": "hi"}])
    assert "embedding model" in e.value.message


def test_embedding_models_are_listed(client):
    ids = {m.id for m in client.models.list()}
    assert {"mock-embed", "text-embedding-fake", "mock-echo"} <= ids


# --- openai-node ----------------------------------------------------------------------------------

NODE_SCRIPT = """
import OpenAI from 'openai';
const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.API_KEY, maxRetries: 0 });
const out = {};
const one = await client.embeddings.create({ model: 'mock-embed', input: 'The food was delicious' });
out.one = one.data[0].embedding; out.usage = one.usage; out.pisces = one.pisces;
const f = await client.embeddings.create({ model: 'mock-embed', input: ['a', 'b'], encoding_format: 'float' });
out.floats = f.data.map(d => d.embedding);
const t = await client.embeddings.create({ model: 'mock-embed', input: [[1, 2], [3]], dimensions: 16 });
out.tokens = t.data.map(d => d.embedding.length); out.tokenUsage = t.usage.prompt_tokens;
const up = await client.embeddings.create({ model: 'text-embedding-fake', input: ['x y', 'z'], dimensions: 3 });
out.upstream = up.data.map(d => d.embedding); out.upstreamUsage = up.usage.prompt_tokens;
try { await client.embeddings.create({ model: 'mock-echo', input: 'x' }); out.chat = 'no error'; }
catch (e) { out.chat = { status: e.status, param: e.param, message: e.message }; }
console.log(JSON.stringify(out));
"""


def test_openai_node_embeddings(gateway, tmp_path):
    env = clean_env(tmp_path / "home", BASE_URL=gateway.v1, API_KEY=gateway.key)
    done = run_node(NODE_SCRIPT, env)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["one"] == mock_vector("The food was delicious"), "openai-node decodes the base64 it asked for"
    assert out["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    assert out["pisces"]["gateway"] == "Pisces"
    assert out["floats"] == [mock_vector("a"), mock_vector("b")]
    assert out["tokens"] == [16, 16] and out["tokenUsage"] == 3
    assert out["upstream"] == [fake_vector("x y", 3), fake_vector("z", 3)] and out["upstreamUsage"] == 6
    assert out["chat"]["status"] == 400 and out["chat"]["param"] == "model"


def test_the_readme_example(client):
    vectors = client.embeddings.create(model="mock-embed", input=["first text", "second"], dimensions=64)
    assert (len(vectors.data[0].embedding), vectors.usage.prompt_tokens) == (64, 5)
