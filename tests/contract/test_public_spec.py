"""GET /api/public/spec over real HTTP: what the docs page renders, without a key."""

from __future__ import annotations

import httpx


def test_spec_has_what_the_docs_page_needs(gateway):
    r = httpx.get(f"{gateway.url}/api/public/spec")
    assert r.status_code == 200
    spec = r.json()
    paths = [p for route in spec["routes"] for p in route["paths"]]
    assert "/v1beta/models/{model}:generateContent" in paths and "/v1/models/{model}:batchEmbedContents" in paths
    assert "/v1/responses/{response_id}/cancel" in paths and not any(":path}" in p for p in paths)
    cat = {m["name"]: m for m in spec["catalog"]}
    assert [m["name"] for m in spec["catalog"]] == spec["models"]
    assert cat["mock-echo"]["price"] == {"input": "1", "output": "2"} and cat["mock-echo"]["offline"]
    assert cat["gpt-fake"]["price"] == {"input": "2", "output": "8", "cached_input": "0.5"}
    assert cat["mock-image"]["per_image"] == {"default": "0.01", "512x512": "0.005", "1024x1024/hd": "0.05"}
    assert cat["text-embedding-fake"]["operations"] == ["embeddings"] and cat["claude-embed"]["operations"] == []
    chat_ops = dict.fromkeys(["chat", "streaming", "tools", "responses"], "mock-echo")
    assert spec["examples"] == {**chat_ops, "images": "mock-image", "embeddings": "mock-embed"}
    assert spec["conventions"]["idempotency"]["hours"] == 24
    assert "never-listed" not in cat


def test_the_examples_models_answer_their_operation(gateway):
    """The models the spec names for the examples do what it says, with an ordinary key."""
    spec = httpx.get(f"{gateway.url}/api/public/spec").json()
    ex, h = spec["examples"], {"Authorization": f"Bearer {gateway.key}"}
    chat = httpx.post(f"{gateway.v1}/chat/completions", headers=h,
                      json={"model": ex["chat"], "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    emb = httpx.post(f"{gateway.v1}/embeddings", headers=h, json={"model": ex["embeddings"], "input": "hi"})
    body = {"model": ex["images"], "prompt": "hi", "size": "64x64", "response_format": "b64_json"}
    img = httpx.post(f"{gateway.v1}/images/generations", headers=h, json=body)
    assert (chat.status_code, emb.status_code, img.status_code) == (200, 200, 200)
    assert chat.json()["choices"][0]["message"]["content"] == "hi"
