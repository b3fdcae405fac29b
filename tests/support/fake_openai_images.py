"""The fake OpenAI upstream's Images API: POST /v1/images/generations (JSON) and /v1/images/edits
(multipart: ``image`` or ``image[]``, ``mask``), and GET /files/{name} for the images it links to.

Model names choose its behaviour:
  gpt-image-1     base64 PNGs, GPT Image usage (input_tokens with text/image details, output 272 per
                  image), echoes size/quality/output_format; it refuses ``response_format`` as OpenAI does
  dall-e-3        one image with a revised_prompt; a URL to /files/... unless response_format b64_json
  playground-v3   an OpenAI-compatible provider that always answers URLs and reports no usage
  img-fail-400 / img-fail-500   that HTTP error in OpenAI's shape
Each image is support.media.png of the size asked (1024x1024 for auto). Requests are recorded in
``FakeOpenAI.requests`` with ``kind: "images"``: the JSON body, or the form's text fields and files
(name, filename, content type, size); ``fetched`` counts the /files/ downloads.
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from support.media import png

OUTPUT_TOKENS_PER_IMAGE = 272
USAGE_TEXT_TOKENS = 10
USAGE_IMAGE_TOKENS_PER_INPUT = 323
REVISED = "A revised prompt: "


def _dims(size: Any) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", str(size or ""))
    return (int(m.group(1)), int(m.group(2))) if m else (1024, 1024)


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    err = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return JSONResponse({"error": err}, status_code=status)


class FakeImages:
    def __init__(self, owner: Any) -> None:
        self.owner = owner
        self.files: dict[str, bytes] = {}
        self.fetched = 0
        owner.app.post("/v1/images/generations")(self.generations)
        owner.app.post("/v1/images/edits")(self.edits)
        owner.app.get("/files/{name}")(self.file)

    async def file(self, name: str) -> Response:
        self.fetched += 1
        if name not in self.files:
            return Response(status_code=404)
        return Response(self.files[name], media_type="image/png")

    async def generations(self, request: Request) -> Response:
        body = await request.json()
        self.owner.requests.append({"kind": "images", "path": request.url.path, "body": body,
                                    "authorization": request.headers.get("authorization")})  # fmt: skip
        return self._answer(request, body, inputs=0)

    async def edits(self, request: Request) -> Response:
        fields: dict[str, Any] = {}
        files = []
        async with request.form() as form:  # closes the uploaded files' spooled temporary files
            for name, value in form.multi_items():
                if isinstance(value, str):
                    fields[name] = value
                else:
                    data = await value.read()
                    files.append({"name": name, "filename": value.filename, "content_type": value.content_type,
                                  "size": len(data)})  # fmt: skip
        self.owner.requests.append({"kind": "images", "path": request.url.path, "body": fields, "files": files,
                                    "authorization": request.headers.get("authorization")})  # fmt: skip
        if not any(f["name"] in ("image", "image[]") for f in files):
            return _error(400, "image is required", "image")
        return self._answer(request, fields, inputs=sum(f["name"] in ("image", "image[]") for f in files))

    def _answer(self, request: Request, body: dict[str, Any], inputs: int) -> Response:
        from support.fake_openai import UPSTREAM_SECRET

        if request.headers.get("authorization") != f"Bearer {UPSTREAM_SECRET}":
            return _error(401, "Incorrect API key provided")
        model = str(body.get("model", ""))
        if model.startswith("img-fail-"):
            status = int(model.rsplit("-", 1)[1])
            return _error(status, f"upstream says {status}")
        n = int(body.get("n") or 1)
        w, h = _dims(body.get("size"))
        image = png(w, h)
        out: dict[str, Any] = {"created": 1700000000}
        if model == "gpt-image-1":
            if "response_format" in body:
                return _error(400, "Unknown parameter: 'response_format'.", "response_format")
            out["data"] = [{"b64_json": base64.b64encode(image).decode()} for _ in range(n)]
            image_in = inputs * USAGE_IMAGE_TOKENS_PER_INPUT
            out["usage"] = {
                "input_tokens": USAGE_TEXT_TOKENS + image_in,
                "output_tokens": OUTPUT_TOKENS_PER_IMAGE * n,
                "total_tokens": USAGE_TEXT_TOKENS + image_in + OUTPUT_TOKENS_PER_IMAGE * n,
                "input_tokens_details": {"text_tokens": USAGE_TEXT_TOKENS, "image_tokens": image_in},
            }
            out.update({"size": f"{w}x{h}", "quality": body.get("quality") or "high", "output_format": "png"})
            return JSONResponse(out)
        linked = model == "playground-v3" or body.get("response_format") != "b64_json"
        data = []
        for _ in range(n):
            if linked:
                name = secrets.token_hex(8) + ".png"
                self.files[name] = image
                item: dict[str, Any] = {"url": f"{request.base_url}files/{name}"}
            else:
                item = {"b64_json": base64.b64encode(image).decode()}
            if model == "dall-e-3":
                item["revised_prompt"] = REVISED + str(body.get("prompt"))
            data.append(item)
        out["data"] = data
        return JSONResponse(out)
