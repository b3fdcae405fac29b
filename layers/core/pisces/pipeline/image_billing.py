"""What an image request may cost (its hold) and what it does cost (its usage record).

A model with ``images.per_image`` prices is charged per image made, at the price of its size and
quality (the size and quality the upstream says it used, else those asked for); the hold is ``n``
images at the price of the size and quality asked for. A model without is charged by tokens: the
upstream's reported usage (text input, image input, output), or, when it reports none, a counted
estimate (the prompt's tokens and ``images.max_output_tokens`` per image made); the hold is the
prompt with a margin, each input image at its tile bound and ``n`` x ``max_output_tokens``.
"""

from __future__ import annotations

import math

from pisces.canonical import Usage
from pisces.canonical_images import ImageFile, ImageRequest, ImageResponse, ImageUsage
from pisces.config import Config, ImageConfig
from pisces.pipeline.billing import INPUT_HOLD_FACTOR, MAX_HOLD, PER_MILLION, Bill, usage_record
from pisces.pipeline.context import RequestContext
from pisces.store.usage import UsageRecord
from pisces.tokens import estimate_text

# Input image tokens held per image at most: gpt-image-1 with input_fidelity high counts a large
# image as its 512-pixel tiles (up to 8x8 at 4096 px, 170 each, plus 85) and adds up to ~4,200.
IMAGE_INPUT_BOUND = 85 + 170 * 64 + 4_200


def unit_price(ic: ImageConfig, size: str | None, quality: str | None) -> int:
    """The price of one image: ``size/quality``, ``size``, ``quality``, ``default``; else the dearest.
    No size (or ``auto``) is the model's first listed size, when it lists them (its default)."""
    if size in (None, "auto") and ic.sizes:
        size = ic.sizes[0]
    for k in (f"{size}/{quality}", size, quality, "default"):
        if k and k in ic.per_image:
            return ic.per_image[k]
    return max(ic.per_image.values(), default=0)


def _image_tokens(im: ImageFile) -> int:
    return 85 + 170 * math.ceil(im.width / 512) * math.ceil(im.height / 512)


def token_cost(config: Config, model: str, usage: ImageUsage) -> int:
    price, ic = config.price(model), config.model(model).images or ImageConfig()
    image_in = min(usage.input_image_tokens, usage.input_tokens)
    text_in = usage.input_tokens - image_in
    image_price = price.input if ic.image_input is None else ic.image_input
    total = text_in * price.input + image_in * image_price + usage.output_tokens * price.output
    return -(-total // PER_MILLION)


def image_hold(config: Config, model: str, req: ImageRequest) -> int:
    ic = config.model(model).images or ImageConfig()
    if ic.per_image:
        return min(req.n * unit_price(ic, req.size, req.quality), MAX_HOLD)
    text = math.ceil(estimate_text(req.prompt) * INPUT_HOLD_FACTOR)
    image_in = IMAGE_INPUT_BOUND * (len(req.images) + (1 if req.mask else 0))
    usage = ImageUsage(input_tokens=text + image_in, input_image_tokens=image_in, input_text_tokens=text,
                       output_tokens=req.n * ic.max_output_tokens)  # fmt: skip
    return min(token_cost(config, model, usage), MAX_HOLD)


def charged(config: Config, model: str, req: ImageRequest, resp: ImageResponse | None) -> tuple[int, ImageUsage, str]:
    """The cost, the usage it is for and where it came from (upstream, estimate, none)."""
    if resp is None or not resp.images:
        return 0, ImageUsage(), "none"
    ic = config.model(model).images or ImageConfig()
    made = len(resp.images)
    reported = resp.usage is not None and (resp.usage.input_tokens > 0 or resp.usage.output_tokens > 0)
    usage = resp.usage if reported and resp.usage is not None else None
    if ic.per_image:
        cost = made * unit_price(ic, resp.size or req.size, resp.quality or req.quality)
        return cost, usage or ImageUsage(), "upstream"
    if usage is not None:
        return token_cost(config, model, usage), usage, "upstream"
    text = estimate_text(req.prompt)
    image_in = sum(_image_tokens(im) for im in [*req.images, *([req.mask] if req.mask else [])])
    usage = ImageUsage(input_tokens=text + image_in, input_text_tokens=text, input_image_tokens=image_in,
                       output_tokens=made * ic.max_output_tokens)  # fmt: skip
    return token_cost(config, model, usage), usage, "estimate"


def image_record(
    config: Config, ctx: RequestContext, req: ImageRequest, bill: Bill, status: int, resp: ImageResponse | None
) -> UsageRecord:
    model = ctx.model or req.model
    cost, usage, source = charged(config, model, req, resp if status == 200 else None)
    ctx.usage = Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)
    made = len(resp.images) if resp is not None and status == 200 else 0
    return usage_record(config, ctx, bill, req.model, usage, cost, status, source, images=made)
