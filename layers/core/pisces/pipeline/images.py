"""The image operation (``/v1/images/generations``, ``/v1/images/edits``) on the one request road:

    authenticate → read the body (JSON, or multipart for an edit) → decode → route (an image model,
      a channel kind that makes images) → idempotency → admit (n images at their price, or the token
      cap) → upstream → store the images in S3 (for ``url``) → settle → complete idempotency → log

It is :meth:`Lifecycle._metered` and :meth:`Lifecycle._settled`, the road chat takes, with the image
request's own hold and usage record (:mod:`pisces.pipeline.image_billing`). Images that cannot be
stored are a 500 and are charged nothing (the gateway bears what the upstream billed).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from pisces.canonical_images import ImageRequest, ImageResponse
from pisces.errors import PiscesError
from pisces.pipeline.billing import Bill
from pisces.pipeline.body import read_json
from pisces.pipeline.context import RequestContext
from pisces.pipeline.image_billing import image_hold, image_record
from pisces.pipeline.lifecycle import json_bytes
from pisces.pipeline.logs import logger
from pisces.pipeline.multipart import Form, read_form
from pisces.protocols import openai_images

if TYPE_CHECKING:
    from pisces.pipeline.lifecycle import Incoming, Lifecycle, Reply

OPERATIONS = ("generate", "edit")


def _fingerprint(form: Form) -> dict[str, Any]:
    """What an Idempotency-Key compares of a form: its text fields and its files' digests."""
    return {"fields": [[n, v] for n, v in form.fields if isinstance(v, str)],
            "files": [[n, v.filename, hashlib.sha256(v.data).hexdigest()] for n, v in form.fields
                      if not isinstance(v, str)]}  # fmt: skip


def _check_model(lc: Lifecycle, ctx: RequestContext, req: ImageRequest) -> None:
    """A 400 for a model that makes no images, or a size or n this model does not take."""
    model = ctx.model or req.model
    ic = lc.gw.config.model(model).images
    if ic is None:
        raise PiscesError("invalid_request", f"The model '{req.model}' does not generate images. Use an image "
                          "model (see GET /v1/models).", param="model")  # fmt: skip
    if ic.sizes and req.size not in (None, "auto", *ic.sizes):
        raise PiscesError("invalid_request", f"Invalid size '{req.size}' for {model}. Supported sizes: "
                          f"{', '.join(ic.sizes)}, auto.", param="size")  # fmt: skip
    if req.n > ic.max_n:
        raise PiscesError("invalid_request", f"n: {req.n} is more than {model} makes at once ({ic.max_n}).",
                          param="n")  # fmt: skip


async def images(lc: Lifecycle, ctx: RequestContext, incoming: Incoming, operation: str) -> Reply:
    gw = lc.gw
    limits = gw.config.limits
    key = await lc.authenticate(ctx, incoming)
    fingerprint: Any
    if operation == "edit":
        form = await read_form(incoming.headers, incoming.body, limits.max_body_bytes)
        req = openai_images.decode_edit(form, limits.max_image_bytes)
        fingerprint = _fingerprint(form)
    else:
        fingerprint = await read_json(incoming.headers, incoming.body, limits.max_body_bytes)
        req = openai_images.decode_generation(fingerprint)
    candidates = gw.router.resolve(ctx, req.model, key)
    _check_model(lc, ctx, req)
    candidates = [(c, m) for c, m in candidates if "images" in c.operations]
    if not candidates:
        raise PiscesError("invalid_request", f"No channel that serves '{req.model}' makes images (its provider kind "
                          "has no image operation).", param="model")  # fmt: skip
    fmt = req.response_format or "url"
    answered: list[ImageResponse] = []

    async def call() -> tuple[ImageResponse, list[str] | None]:
        resp = await gw.router.images(ctx, req, candidates)
        if not resp.images:
            raise PiscesError("upstream_error", "upstream: the images response holds no image.")
        urls = None
        if fmt == "url":
            try:
                urls = await gw.images.store(ctx.usage_id, resp.images, limits.image_url_seconds)
            except Exception:
                logger.exception("could not store the images", extra={"request_id": ctx.request_id})
                raise PiscesError("internal_error", "The gateway could not store the images; nothing was "
                                  "charged. Retry, or ask for response_format b64_json.") from None  # fmt: skip
        answered.append(resp)
        return resp, urls

    async def settle(bill: Bill, status: int) -> None:
        resp = answered[0] if answered else None
        await gw.billing.write(ctx, bill, image_record(gw.config, ctx, req, bill, status, resp))

    admit = lambda: gw.billing.hold(ctx, key, image_hold(gw.config, ctx.model or req.model, req))  # noqa: E731
    road = await lc._metered(ctx, incoming, key, fingerprint, admit, call, settle)
    if not isinstance(road, tuple):
        return road
    claim, bill, (resp, urls) = road
    ctx.answered = True
    return await lc._settled(
        ctx,
        claim,
        lambda: settle(bill, 200),
        lambda: json_bytes(openai_images.encode_response(resp, fmt, urls, ctx.pisces())),
    )
