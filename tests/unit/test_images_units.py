"""Units of the image operation: the multipart reader, the OpenAI images codec both ways, the
Gemini/Imagen mapping, the mock's PNGs, prices and holds, case-insensitive model names."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from pisces.canonical_images import GeneratedImage, ImageFile, ImageRequest, ImageResponse, ImageUsage
from pisces.config import parse_config
from pisces.errors import PiscesError
from pisces.pipeline.image_billing import charged, image_hold, unit_price
from pisces.pipeline.multipart import parse_form
from pisces.protocols import openai_images
from pisces.upstreams import gemini_images
from pisces.upstreams.base import UpstreamError
from pisces.upstreams.mock_images import mock_images, striped_png
from support.media import png

BOUNDARY = "xyzBOUNDARY"


def form_body(*parts: tuple[str, str | tuple[str, bytes, str]]) -> bytes:
    out = b""
    for name, value in parts:
        if isinstance(value, str):
            out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        else:
            filename, data, ctype = value
            out += (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    f"Content-Type: {ctype}\r\n\r\n").encode() + data + b"\r\n"  # fmt: skip
    return out + f"--{BOUNDARY}--\r\n".encode()


CTYPE = f"multipart/form-data; boundary={BOUNDARY}"


def test_a_form_keeps_fields_and_files_in_order():
    body = form_body(("model", "m"), ("prompt", "héllo"), ("image[]", ("a.png", b"\x89PNG..", "image/png")),
                     ("image[]", ("b.png", b"second", "image/png")))  # fmt: skip
    form = parse_form(CTYPE, body)
    assert form.text("prompt") == "héllo" and form.text("missing") is None
    assert [(f.filename, f.data) for f in form.files("image", "image[]")] == [("a.png", b"\x89PNG.."),
                                                                              ("b.png", b"second")]  # fmt: skip


@pytest.mark.parametrize(
    ("ctype", "body", "why"),
    [
        ("application/json", b"{}", "multipart/form-data"),
        ("multipart/form-data", b"x", "no boundary"),
        (CTYPE, b"--xyzBOUNDARY\r\nnonsense", "no fields"),
        (CTYPE, b"", "no fields"),
    ],
)
def test_a_bad_form_is_a_400(ctype, body, why):
    with pytest.raises(PiscesError) as info:
        parse_form(ctype, body)
    assert info.value.status == 400 and why in info.value.message


def test_decode_generation_keeps_known_fields_and_passes_the_rest():
    req = openai_images.decode_generation({"model": "m", "prompt": "p", "n": 2, "size": "512x256", "quality": "hd",
                                           "input_fidelity": "high", "response_format": "b64_json"})  # fmt: skip
    assert (req.n, req.pixels(), req.quality, req.response_format) == (2, (512, 256), "hd", "b64_json")
    assert req.extra == {"input_fidelity": "high"}
    assert openai_images.upstream_fields(req, "dall-e-3")["response_format"] == "b64_json"
    assert "response_format" not in openai_images.upstream_fields(req, "gpt-image-1")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "p"}, "model"),
        ({"model": "m"}, "prompt"),
        ({"model": "m", "prompt": "p", "n": True}, "n"),
        ({"model": "m", "prompt": "p", "n": "2"}, None),
        ({"model": "m", "prompt": "p", "size": "10x10"}, "size"),
        ({"model": "m", "prompt": "p", "output_compression": 101}, "output_compression"),
        ({"model": "m", "prompt": "p", "output_format": "bmp"}, "output_format"),
        ({"model": "m", "prompt": "p", "stream": True}, "stream"),
        ({"model": "m", "prompt": "x" * 32_001}, "prompt"),
    ],
)
def test_decode_generation_refuses_bad_fields(body, param):
    if param is None:
        assert openai_images.decode_generation(body).n == 2
        return
    with pytest.raises(PiscesError) as info:
        openai_images.decode_generation(body)
    assert info.value.status == 400 and info.value.param == param


def test_decode_edit_reads_images_and_mask():
    body = form_body(("model", "m"), ("prompt", "p"), ("n", "2"), ("image", ("a.png", png(40, 20), "image/png")),
                     ("mask", ("m.png", png(40, 20), "image/png")))  # fmt: skip
    req = openai_images.decode_edit(parse_form(CTYPE, body), 4096)
    assert req.operation == "edit" and req.n == 2 and [(i.width, i.height) for i in req.images] == [(40, 20)]
    assert req.mask is not None and req.mask.media_type == "image/png"
    with pytest.raises(PiscesError, match="at most 10 bytes"):
        openai_images.decode_edit(parse_form(CTYPE, body), 10)


def test_encode_response_in_openais_shape():
    resp = ImageResponse(created=5, images=[GeneratedImage(data=b"abc", revised_prompt="r")], size="1x1",
                         usage=ImageUsage(input_tokens=3, output_tokens=4, input_text_tokens=1,
                                          input_image_tokens=2))  # fmt: skip
    out = openai_images.encode_response(resp, "b64_json", None, {"gateway": "Pisces"})
    assert out == {"created": 5, "data": [{"b64_json": "YWJj", "revised_prompt": "r"}], "size": "1x1",
                   "usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7,
                             "input_tokens_details": {"text_tokens": 1, "image_tokens": 2}},
                   "pisces": {"gateway": "Pisces"}}  # fmt: skip
    assert openai_images.encode_response(resp, "url", ["https://u"], {})["data"][0]["url"] == "https://u"


def test_decode_upstream_reads_base64_links_and_usage():
    payload = {
        "created": 9,
        "data": [{"b64_json": base64.b64encode(png(2, 2)).decode()}, {"url": "https://x/1"}],
        "usage": {"input_tokens": 5, "output_tokens": 6, "input_tokens_details": {"image_tokens": 2}},
    }
    resp, links = openai_images.decode_upstream(payload)
    assert resp.images[0].media_type == "image/png" and links == {1: "https://x/1"}
    assert resp.usage == ImageUsage(input_tokens=5, output_tokens=6, input_image_tokens=2)
    for bad in ({}, {"data": [{}]}, {"data": [{"b64_json": "%%%"}]}):
        with pytest.raises(UpstreamError):
            openai_images.decode_upstream(bad)


def test_gemini_and_imagen_requests_and_answers():
    req = ImageRequest(model="m", prompt="p", n=2, size="1024x1792",
                       images=[ImageFile(data=png(4, 4), media_type="image/png", width=4, height=4)])  # fmt: skip
    body = gemini_images.gemini_request(req)
    assert body["generationConfig"] == {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": {"aspectRatio": "9:16"}}
    assert body["contents"][0]["parts"][1]["inlineData"]["mimeType"] == "image/png"
    data = base64.b64encode(png(3, 3)).decode()
    parts = [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": data}}]
    images, usage = gemini_images.gemini_response({
        "candidates": [{"content": {"parts": parts}}],
        "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 1290,
                          "promptTokensDetails": [{"modality": "IMAGE", "tokenCount": 258}]}})  # fmt: skip
    assert len(images) == 1 and usage == ImageUsage(input_tokens=300, input_image_tokens=258, input_text_tokens=42,
                                                    output_tokens=1290)  # fmt: skip
    with pytest.raises(UpstreamError, match="without an image"):
        gemini_images.gemini_response({"candidates": [{"content": {"parts": [{"text": "no"}]},
                                                       "finishReason": "SAFETY"}]})  # fmt: skip
    assert gemini_images.imagen_request(req.model_copy(update={"images": []}))["parameters"] == {
        "sampleCount": 2,
        "aspectRatio": "9:16",
    }
    with pytest.raises(UpstreamError):
        gemini_images.imagen_request(req.model_copy(update={"operation": "edit"}))
    resp = gemini_images.imagen_response({"predictions": [{"bytesBase64Encoded": data, "mimeType": "image/png"}]})
    assert resp.images[0].data == png(3, 3)


def test_mock_pngs_are_valid_and_sized():
    data = striped_png(5, 7, [b"\x01\x02\x03", b"\x04\x05\x06"])
    (w, h) = struct.unpack(">II", data[16:24])
    (length,) = struct.unpack(">I", data[33:37])
    rows = zlib.decompress(data[41 : 41 + length])
    assert (w, h) == (5, 7) and len(rows) == 7 * 16 and rows[1:4] == b"\x01\x02\x03" and rows[-3:] == b"\x04\x05\x06"
    resp = mock_images(ImageRequest(model="mock-image", prompt="p", n=3, size="16x16"))
    assert len({im.data for im in resp.images}) == 3 and resp.size == "16x16"
    with pytest.raises(UpstreamError):
        mock_images(ImageRequest(model="mock-image", prompt="p", output_format="jpeg"))


CONFIG = parse_config({
    "channels": [{"name": "mock", "kind": "mock", "models": ["mock-image", "Other-Model"]}],
    "models": {
        "dall-e-3": {"aliases": ["DALLE"], "images": {"per_image": {"default": 0.04, "1024x1024/hd": 0.08,
                                                                   "1792x1024": 0.08}, "sizes": ["1024x1024"]}},
        "gpt-image-1": {"price": {"input": 5, "output": 40}, "images": {"image_input": 10}},
    },
})  # fmt: skip


def test_model_names_resolve_case_insensitively():
    assert CONFIG.resolve("GPT-IMAGE-1") == "gpt-image-1"
    assert CONFIG.resolve("dalle") == "dall-e-3"
    assert CONFIG.resolve("other-model") == "Other-Model"
    assert CONFIG.resolve("unknown") == "unknown"


def test_prices_and_holds():
    ic = CONFIG.models["dall-e-3"].images
    assert ic is not None
    assert unit_price(ic, None, "hd") == 80_000 and unit_price(ic, "1792x1024", None) == 80_000
    assert unit_price(ic, "1024x1024", "standard") == 40_000
    req = ImageRequest(model="dall-e-3", prompt="p", n=3, quality="hd")
    assert image_hold(CONFIG, "dall-e-3", req) == 3 * 80_000
    two = ImageResponse(created=0, images=[GeneratedImage(data=b"x")] * 2)
    assert charged(CONFIG, "dall-e-3", req, two)[0] == 2 * 80_000, "charged for the images made"
    tok = ImageRequest(model="gpt-image-1", prompt="p", n=1)
    used = two.model_copy(update={"usage": ImageUsage(input_tokens=110, input_image_tokens=100, output_tokens=1000)})
    assert charged(CONFIG, "gpt-image-1", tok, used) == (10 * 5 + 100 * 10 + 1000 * 40, used.usage, "upstream")
    cost, _, source = charged(CONFIG, "gpt-image-1", tok, two)
    assert source == "estimate" and cost >= 2 * 6240 * 40
    assert charged(CONFIG, "gpt-image-1", tok, None) == (0, ImageUsage(), "none")
