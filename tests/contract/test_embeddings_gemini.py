"""Gemini's :embedContent and :batchEmbedContents with the official `google-genai` SDK over real HTTP
(``client.models.embed_content``): the mock embedding model, the fake Gemini upstream (and the fake
OpenAI-compatible one behind the Gemini door); errors in Gemini's shape."""

from __future__ import annotations

import httpx
import pytest
from google import genai
from google.genai import errors, types

from pisces.store import dynamo
from pisces.store.schema import table_name
from pisces.store.usage import UsageRecord, UsageStore
from pisces.tokens import estimate_text
from pisces.upstreams.mock import EMBED_DIMENSIONS, mock_vector
from support.clients import Clients
from support.fake_gemini import GEMINI_EMBED_DIMENSIONS
from support.fake_openai import fake_embed_tokens, fake_vector


def make_client(
    clients: Clients, gateway, api_version: str | None = None, seen: list[httpx.Request] | None = None
) -> genai.Client:
    """A google-genai client of the gateway that never retries, closed when the test ends (as
    tests/contract/test_gemini_sdk.py sets one up: base_url the gateway, v1 unless ``api_version`` says
    otherwise); ``seen`` collects its requests."""
    hooks = {"event_hooks": {"request": [seen.append]}} if seen is not None else None
    return clients.gemini(gateway.url, gateway.key, api_version=api_version, client_args=hooks,
                          retry_options=types.HttpRetryOptions(attempts=1))  # fmt: skip


def raw_post(gateway, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", json=body, headers={"x-goog-api-key": gateway.key}, timeout=15)


def usage_of(request_id: str) -> UsageRecord:
    rec = UsageStore(dynamo.client(), table_name("usage")).get(request_id)
    assert rec is not None, "settled before the response's last byte"
    return rec


@pytest.mark.parametrize("version", [None, "v1", "v1beta"])
def test_embed_one_content_against_the_mock(gateway, version, clients):
    seen: list[httpx.Request] = []
    client = make_client(clients, gateway, api_version=version, seen=seen)
    resp = client.models.embed_content(model="mock-embed", contents="What is the meaning of life?")
    assert seen[-1].url.path == f"/{version or 'v1'}/models/mock-embed:batchEmbedContents"
    assert len(resp.embeddings) == 1
    assert resp.embeddings[0].values == mock_vector("What is the meaning of life?")
    assert len(resp.embeddings[0].values) == EMBED_DIMENSIONS
    headers = {k.lower(): v for k, v in resp.sdk_http_response.headers.items()}
    assert headers["x-request-id"]


def test_embed_several_contents_with_output_dimensionality(gateway, clients):
    seen: list[httpx.Request] = []
    client = make_client(clients, gateway, seen=seen)
    texts = ["What is the meaning of life?", "What is the purpose of existence?", "How do I bake a cake?"]
    config = types.EmbedContentConfig(output_dimensionality=32, task_type="SEMANTIC_SIMILARITY")
    resp = client.models.embed_content(model="mock-embed", contents=texts, config=config)
    assert [e.values for e in resp.embeddings] == [mock_vector(t, 32) for t in texts]
    sent = httpx.Response(200, content=seen[-1].content).json()
    assert [r["taskType"] for r in sent["requests"]] == ["SEMANTIC_SIMILARITY"] * 3
    assert all(r["model"] == "models/mock-embed" for r in sent["requests"])


def test_raw_embed_content_and_batch_carry_pisces(gateway):
    r = raw_post(gateway, "/v1beta/models/mock-embed:embedContent",
                 {"content": {"parts": [{"text": "Hello"}, {"text": "world"}]}, "outputDimensionality": 8})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["embedding"]["values"] == mock_vector("Hello\nworld", 8)
    p = body["pisces"]
    assert (p["gateway"], p["protocol"], p["channel"]) == ("Pisces", "gemini", "mock-embeddings")
    assert p["request_id"] == r.headers["x-request-id"] and isinstance(p["cost"], int)
    batch = {"requests": [{"model": "models/mock-embed", "content": {"parts": [{"text": t}]}} for t in "ab"]}
    rb = raw_post(gateway, "/v1/models/mock-embed:batchEmbedContents", batch)
    assert rb.status_code == 200 and [e["values"] for e in rb.json()["embeddings"]] == [mock_vector("a"),
                                                                                        mock_vector("b")]  # fmt: skip


# --- the fake Gemini upstream ---------------------------------------------------------------------


def test_embed_against_the_gemini_upstream(gateway, clients):
    client = make_client(clients, gateway)
    config = types.EmbedContentConfig(output_dimensionality=6, task_type="RETRIEVAL_DOCUMENT", title="A doc")
    # a "gemini-..." model other than gemini-embedding-001 is multimodal to google-genai: a list of strings
    # becomes one content of several parts (one vector); several contents are given as Content objects
    contents = [types.Content(parts=[types.Part(text=t)]) for t in ("first text", "second")]
    resp = client.models.embed_content(model="gemini-embedding-fake", contents=contents, config=config)
    assert [e.values for e in resp.embeddings] == [fake_vector("first text", 6), fake_vector("second", 6)]
    sent = gateway.gemini.last()
    assert sent["action"] == "batchEmbedContents" and sent["model"] == "embedding-fake"
    assert sent["x-goog-api-key"] != gateway.key, "the channel's own key goes upstream"
    assert sent["body"]["requests"][0] == {"model": "models/embedding-fake", "content": {"parts": [{"text":
                                           "first text"}]}, "taskType": "RETRIEVAL_DOCUMENT", "title": "A doc",
                                           "outputDimensionality": 6}  # fmt: skip
    merged = client.models.embed_content(model="gemini-embedding-fake", contents=["one", "two"])
    assert [e.values for e in merged.embeddings] == [fake_vector("one\ntwo", GEMINI_EMBED_DIMENSIONS)]


def test_embed_content_single_reaches_the_upstream_as_a_batch(gateway):
    r = raw_post(gateway, "/v1beta/models/gemini-embedding-fake:embedContent",
                 {"content": {"parts": [{"text": "solo"}]}, "taskType": "RETRIEVAL_QUERY"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["embedding"]["values"] == fake_vector("solo", GEMINI_EMBED_DIMENSIONS)
    assert gateway.gemini.last()["action"] == "batchEmbedContents"
    assert gateway.gemini.last()["body"]["requests"][0]["taskType"] == "RETRIEVAL_QUERY"


def test_the_gemini_door_over_an_openai_upstream(gateway, clients):
    client = make_client(clients, gateway)
    resp = client.models.embed_content(
        model="text-embedding-fake",
        contents=["via openai"],
        config=types.EmbedContentConfig(output_dimensionality=4, task_type="CLUSTERING"),
    )
    assert resp.embeddings[0].values == fake_vector("via openai", 4)
    sent = gateway.upstream.last()["body"]
    assert sent == {"model": "text-embedding-fake", "input": ["via openai"], "encoding_format": "float",
                    "dimensions": 4}, "taskType has no OpenAI field: dropped on purpose"  # fmt: skip
    assert fake_embed_tokens(["via openai"]) == 4


def test_the_gemini_upstream_reports_no_usage_so_the_count_is_charged(gateway):
    one = {"model": "models/gemini-embedding-fake", "content": {"parts": [{"text": "count me in"}]}}
    r = raw_post(gateway, "/v1beta/models/gemini-embedding-fake:batchEmbedContents", {"requests": [one]})
    assert r.status_code == 200, r.text
    rec = usage_of(r.headers["x-request-id"])
    assert rec.usage_source == "estimate" and rec.input_tokens == estimate_text("count me in")
    assert rec.output_tokens == 0 and rec.cost == r.json()["pisces"]["cost"]


# --- errors in Gemini's shape ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "body", "status", "words"),
    [
        ("embedContent", {"content": {"parts": []}}, 400, "contents is not specified"),
        ("embedContent", {"content": {"parts": [{"text": ""}]}}, 400, "empty"),
        ("embedContent", {"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "AA=="}}]}}, 400,
         "only text"),
        ("embedContent", {"content": {"parts": [{"text": "x"}]}, "taskType": "NOPE"}, 400, "task_type"),
        ("batchEmbedContents", {"requests": []}, 400, "requests is not specified"),
        ("batchEmbedContents", {"requests": [{"model": "models/mock-embed", "content": {"parts": [{"text": "x"}]}}]
                                * 101}, 400, "at most 100"),
        ("batchEmbedContents", {"requests": [{"model": "models/other", "content": {"parts": [{"text": "x"}]}}]}, 400,
         "must be models/mock-embed"),
    ],
)  # fmt: skip
def test_invalid_requests_in_gemini_shape(gateway, action, body, status, words):
    r = raw_post(gateway, f"/v1beta/models/mock-embed:{action}", body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == status and err["status"] == "INVALID_ARGUMENT" and words in err["message"]
    assert r.json()["pisces"]["request_id"] == r.headers["x-request-id"]


def test_sdk_errors_unknown_model_chat_model_and_upstream_failure(gateway, clients):
    client = make_client(clients, gateway)
    with pytest.raises(errors.ClientError) as nf:
        client.models.embed_content(model="no-such-embedder", contents="x")
    assert nf.value.code == 404 and nf.value.status == "NOT_FOUND"
    with pytest.raises(errors.ClientError) as chat:
        client.models.embed_content(model="mock-echo", contents="x")
    assert chat.value.code == 400 and "does not support embeddings" in chat.value.message
    with pytest.raises(errors.ServerError) as down:
        client.models.embed_content(model="gemini-embed-fail-503", contents="x")
    assert down.value.code in (502, 503)
    with pytest.raises(errors.ClientError) as gen:
        client.models.generate_content(model="mock-embed", contents="hi")
    assert gen.value.code == 400 and "embedding model" in gen.value.message


def test_token_arrays_cannot_reach_a_gemini_upstream(gateway):
    r = httpx.post(f"{gateway.v1}/embeddings", json={"model": "gemini-embedding-fake", "input": [[1, 2, 3]]},
                   headers={"Authorization": f"Bearer {gateway.key}"}, timeout=15)  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    assert "OpenAI-compatible" in r.json()["error"]["message"]


# --- the models lists -----------------------------------------------------------------------------


def test_models_say_which_methods_an_embedding_model_has(gateway, clients):
    client = make_client(clients, gateway)
    models = {m.name: m for m in client.models.list()}
    assert models["models/mock-embed"].supported_actions == ["embedContent", "batchEmbedContents"]
    assert "generateContent" in models["models/mock-echo"].supported_actions
    assert client.models.get(model="mock-embed").supported_actions == ["embedContent", "batchEmbedContents"]


def test_anthropic_clients_are_not_shown_embedding_models(gateway):
    headers = {"x-api-key": gateway.key, "anthropic-version": "2023-06-01"}
    listed = httpx.get(f"{gateway.v1}/models", headers=headers, timeout=15).json()
    ids = [m["id"] for m in listed["data"]]
    assert "mock-echo" in ids and "mock-embed" not in ids and "text-embedding-fake" not in ids
    one = httpx.get(f"{gateway.v1}/models/mock-embed", headers=headers, timeout=15)
    assert one.status_code == 404 and one.json()["error"]["type"] == "not_found_error"
