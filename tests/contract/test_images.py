"""Images through the official `openai` SDK over real HTTP: the seed's generate → url and edit
examples, b64_json, masks, case-insensitive model names, bad inputs; the mock, a fake OpenAI images
upstream and a fake Gemini image upstream (Gemini image models and Imagen)."""

from __future__ import annotations

import base64
import struct
import zlib

import httpx
import openai
import pytest

from pisces.media import image_size
from support.fake_openai_images import OUTPUT_TOKENS_PER_IMAGE, REVISED, USAGE_IMAGE_TOKENS_PER_INPUT
from support.media import png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def client(gateway, clients):
    # as the seed's product page writes it: base_url + "/v1/"
    return clients.openai(gateway.url + "/v1/", gateway.key)


def _pisces(obj) -> dict:
    extra = obj.model_extra or {}
    assert "pisces" in extra, f"no pisces object in {obj}"
    return extra["pisces"]


def decoded_png(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and raw scanlines of a PNG, checked chunk by chunk (CRCs, IDAT inflates whole)."""
    assert data[:8] == PNG_MAGIC
    at, idat, w, h = 8, b"", 0, 0
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    return w, h, zlib.decompress(idat)


def test_seed_generate_returns_a_url_the_client_can_fetch(client, gateway):
    result = client.images.generate(model="mock-image", prompt="A cute kitten", n=1)
    image_url = result.data[0].url
    assert image_url and result.data[0].b64_json is None
    assert gateway.url not in image_url, "the URL is the bucket's presigned one, not the gateway's"
    assert "X-Amz-Signature=" in image_url and "X-Amz-Expires=3600" in image_url
    got = httpx.get(image_url, timeout=30)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    w, h, rows = decoded_png(got.content)
    assert (w, h) == (1024, 1024) and len(rows) == h * (1 + 3 * w)  # 8-bit RGB, every scanline there
    assert httpx.get(image_url.split("?")[0], timeout=30).status_code == 403, "the bucket is private"
    p = _pisces(result)
    assert p["gateway"] == "Pisces" and p["channel"] == "mock-images" and p["cost"] == 10_000
    assert result.usage.output_tokens > 0


def test_generate_is_deterministic_and_follows_the_prompt(client):
    def pixels(prompt: str) -> bytes:
        r = client.images.generate(model="mock-image", prompt=prompt, size="64x32", response_format="b64_json")
        return decoded_png(base64.b64decode(r.data[0].b64_json))[2]

    assert pixels("a red fox") == pixels("a red fox")
    assert pixels("a red fox") != pixels("a blue fox")


def test_n2_b64_json_of_the_size_asked(client):
    raw = client.images.with_raw_response.generate(model="mock-image", prompt="two cats", n=2, size="512x512",
                                                   response_format="b64_json")  # fmt: skip
    result = raw.parse()
    assert len(result.data) == 2 and all(d.url is None for d in result.data)
    images = [base64.b64decode(d.b64_json) for d in result.data]
    assert all(image_size(im[:64]) == (512, 512) for im in images)
    assert images[0] != images[1], "each image of n has its own pixels"
    assert result.size == "512x512" and result.output_format == "png"
    assert _pisces(result)["cost"] == 2 * 5_000 and raw.headers["x-request-id"] == _pisces(result)["request_id"]


def test_model_names_match_case_insensitively(client, gateway, clients):
    a = client.images.generate(model="MOCK-Image", prompt="x", size="32x32", response_format="b64_json")
    assert a.data[0].b64_json
    b = client.images.generate(model="GPT-Image-1", prompt="x", size="1024x1024")
    assert gateway.upstream.last()["body"]["model"] == "gpt-image-1"
    assert b.data[0].url and httpx.get(b.data[0].url, timeout=30).content[:8] == PNG_MAGIC
    r = httpx.get(gateway.v1 + "/models/MOCK-ECHO", headers={"Authorization": f"Bearer {gateway.key}"}, timeout=30)
    assert r.status_code == 200 and r.json()["id"] == "mock-echo", "every door resolves names alike"
    chat = clients.openai(gateway.v1, gateway.key)
    resp = chat.chat.completions.create(model="Mock-Echo", messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content == "hi"


def test_seed_edit_with_one_image_file(client, tmp_path):
    doro = tmp_path / "doro.png"
    doro.write_bytes(png(256, 128))
    with doro.open("rb") as f:
        result = client.images.edit(model="mock-image", prompt="Give it a hat", image=[f], n=1,
                                    response_format="b64_json")  # fmt: skip
    image_bytes = base64.b64decode(result.data[0].b64_json)
    assert image_bytes[:8] == PNG_MAGIC
    assert result.usage.input_tokens_details.image_tokens > 0, "the input image is counted"


def test_edit_several_images_and_a_mask_reach_an_openai_upstream(client, gateway):
    raw = client.images.with_raw_response.edit(
        model="GPT-Image-1", prompt="Blend them", image=[("a.png", png(64, 64), "image/png"),
                                                         ("b.png", png(64, 64), "image/png")],
        mask=("mask.png", png(64, 64), "image/png"), size="1024x1024", n=2)  # fmt: skip
    result = raw.parse()
    sent = gateway.upstream.last()
    assert sent["path"] == "/v1/images/edits" and sent["body"]["model"] == "gpt-image-1"
    assert [(f["name"], f["filename"]) for f in sent["files"]] == [("image[]", "a.png"), ("image[]", "b.png"),
                                                                   ("mask", "mask.png")]  # fmt: skip
    assert "response_format" not in sent["body"], "GPT Image models refuse it"
    assert len(result.data) == 2 and all(d.url for d in result.data)
    u = result.usage
    assert u.input_tokens_details.image_tokens == 2 * USAGE_IMAGE_TOKENS_PER_INPUT
    assert u.output_tokens == 2 * OUTPUT_TOKENS_PER_IMAGE
    # tokens: 10 text at $5, 646 image at $10, 544 output at $40 per million
    assert _pisces(result)["cost"] == -(-(10 * 5 + 646 * 10 + 544 * 40) * 1_000_000 // 1_000_000)


def test_an_upstream_url_is_fetched_and_replaced_by_the_gateways_own(client, gateway):
    fetched = gateway.upstream.images.fetched
    result = client.images.generate(model="playground-v3", prompt="A lighthouse", n=2, size="256x256")
    assert gateway.upstream.images.fetched == fetched + 2, "the upstream's links are read by the gateway"
    for d in result.data:
        assert gateway.upstream.url not in d.url and "X-Amz-Signature=" in d.url
        assert image_size(httpx.get(d.url, timeout=30).content[:64]) == (256, 256)
    assert gateway.upstream.last()["body"]["response_format"] == "b64_json"


def test_a_revised_prompt_is_passed_on(client):
    result = client.images.generate(model="dall-e-3", prompt="A fox", quality="hd", response_format="b64_json")
    assert result.data[0].revised_prompt == REVISED + "A fox"
    assert _pisces(result)["cost"] == 80_000


def test_gemini_image_model_through_generate_content(client, gateway):
    result = client.images.generate(model="gemini-image-fake", prompt="A banana", n=2, size="1536x1024",
                                    response_format="b64_json")  # fmt: skip
    sent = [r for r in gateway.gemini.requests if r["model"] == "gemini-2.5-flash-image"][-2:]
    assert [r["action"] for r in sent] == ["generateContent"] * 2
    assert sent[0]["body"]["generationConfig"] == {"responseModalities": ["TEXT", "IMAGE"],
                                                   "imageConfig": {"aspectRatio": "3:2"}}  # fmt: skip
    assert [image_size(base64.b64decode(d.b64_json)[:64]) for d in result.data] == [(1024, 682)] * 2
    assert result.usage.output_tokens == 2 * 1290


def test_gemini_image_edit_sends_the_image_inline(client, gateway):
    result = client.images.edit(model="gemini-image-fake", prompt="Add a hat",
                                image=("cat.png", png(32, 32), "image/png"))  # fmt: skip
    parts = gateway.gemini.last()["body"]["contents"][0]["parts"]
    assert parts[0] == {"text": "Add a hat"} and base64.b64decode(parts[1]["inlineData"]["data"]) == png(32, 32)
    assert result.usage.input_tokens_details.image_tokens == 258
    assert httpx.get(result.data[0].url, timeout=30).content[:8] == PNG_MAGIC


def test_imagen_through_predict(client, gateway):
    result = client.images.generate(model="imagen-fake", prompt="A mountain", n=3, size="1792x1024",
                                    response_format="b64_json")  # fmt: skip
    sent = gateway.gemini.last()
    assert sent["action"] == "predict" and sent["model"] == "imagen-4.0-generate-001"
    assert sent["body"] == {"instances": [{"prompt": "A mountain"}],
                            "parameters": {"sampleCount": 3, "aspectRatio": "16:9"}}  # fmt: skip
    assert len(result.data) == 3 and _pisces(result)["cost"] == 3 * 40_000


# --- bad inputs: OpenAI's error shape, the pisces object, X-Request-Id -----------------------------


def _status_error(call) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as info:
        call()
    err = info.value
    assert err.response.headers.get("x-request-id")
    body = err.response.json()
    assert body["pisces"]["request_id"] == err.response.headers["x-request-id"]
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return err


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"n": 0}, "n"),
        ({"n": 11}, "n"),
        ({"size": "huge"}, "size"),
        ({"size": "5000x5000"}, "size"),
        ({"response_format": "png"}, "response_format"),
        ({"model": "dall-e-3", "size": "512x512"}, "size"),
        ({"model": "dall-e-3", "n": 2}, "n"),
        ({"model": "mock-echo"}, "model"),
    ],
)
def test_bad_generation_inputs_are_400(client, kwargs, param):
    args = {"model": "mock-image", "prompt": "x", **kwargs}
    err = _status_error(lambda: client.images.generate(**args))
    assert err.status_code == 400 and err.body["param"] == param and err.body["type"] == "invalid_request_error"


def test_unknown_model_is_404(client):
    err = _status_error(lambda: client.images.generate(model="no-such-image-model", prompt="x"))
    assert err.status_code == 404 and err.body["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("image", "param", "why"),
    [
        (("notes.txt", b"not an image at all", "text/plain"), "image", "not a readable"),
        (("big.png", png(5000, 10), "image/png"), "image", "at most 4096"),
        (("empty.png", b"", "image/png"), "image", "empty"),
    ],
)
def test_unreadable_or_oversized_images_are_400(client, image, param, why):
    err = _status_error(lambda: client.images.edit(model="mock-image", prompt="x", image=image))
    assert err.status_code == 400 and err.body["param"] == param and why in err.body["message"]


def test_a_mask_of_another_size_is_400(client):
    err = _status_error(lambda: client.images.edit(model="mock-image", prompt="x", image=("a.png", png(64, 64)),
                                                   mask=("m.png", png(32, 32))))  # fmt: skip
    assert err.status_code == 400 and err.body["param"] == "mask"


def test_an_edit_without_an_image_is_400(gateway):
    headers = {"Authorization": f"Bearer {gateway.key}"}
    r = httpx.post(gateway.v1 + "/images/edits", headers=headers, data={"model": "mock-image", "prompt": "x"},
                   files={"other": ("a.txt", b"x")}, timeout=30)  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["param"] == "image"


def test_a_body_over_the_limit_is_413_with_a_clear_message(client):
    big = png(64, 64) + b"\0" * 70_000  # the test gateway takes 64 KiB bodies (6 MiB deployed)
    err = _status_error(lambda: client.images.edit(model="mock-image", prompt="x", image=("a.png", big)))
    assert err.status_code == 413 and "Lambda request payload limit" in err.body["message"]


def test_an_upstream_error_is_passed_on_in_openais_shape(client):
    err = _status_error(lambda: client.images.generate(model="img-fail-400", prompt="x"))
    assert err.status_code == 400 and "upstream says 400" in err.body["message"]
    err = _status_error(lambda: client.images.generate(model="img-fail-500", prompt="x"))
    assert err.status_code == 502 and err.body["code"] == "upstream_error"


def test_the_spec_lists_the_image_routes(gateway):
    spec = httpx.get(gateway.url + "/api/public/spec", timeout=30).json()
    routes = {(r["method"], r["path"]) for r in spec["routes"]}
    assert {("POST", "/v1/images/generations"), ("POST", "/v1/images/edits")} <= routes


def test_an_image_over_max_image_bytes_is_400_before_any_money_moves(client, gateway, monkeypatch):
    """limits.max_image_bytes (4 MiB by default, under the body limit in a deployed stack): an input image
    above it is a 400 naming the param and the limit; one below it is answered."""
    limits = gateway.app.state.gateway.config.limits
    monkeypatch.setattr(limits, "max_image_bytes", 150)
    big = png(1024, 1024)  # a valid PNG of about 200 bytes
    assert len(big) > 150
    err = _status_error(lambda: client.images.edit(model="mock-image", prompt="x", image=("big.png", big)))
    assert err.status_code == 400 and err.body["param"] == "image" and "at most 150 bytes" in err.body["message"]
    ok = client.images.edit(model="mock-image", prompt="x", image=("small.png", png(16, 16)),
                            response_format="b64_json")  # fmt: skip
    assert ok.data and ok.data[0].b64_json
