"""Gemini's embeddings wire format, as the client door and as an upstream.

``models/{model}:embedContent`` takes one ``{content, taskType?, title?, outputDimensionality?}`` and
answers ``{embedding: {values}}``; ``models/{model}:batchEmbedContents`` takes ``{requests: [...]}``
of those, each naming its ``model`` (google-genai's ``embed_content`` sends this one), and answers
``{embeddings: [{values}, ...]}``. Only text parts can be embedded here. ``taskType`` and ``title``
are kept per input in ``provider_options["gemini"]``, for a Gemini upstream; the other upstreams
have no such fields and drop them. The API reports no usage: the gateway charges its own count.
Errors are the generateContent codec's (:func:`pisces.protocols.gemini.render_error`).
"""

from __future__ import annotations

from typing import Any

from pisces.canonical import Usage
from pisces.canonical_embeddings import EmbedRequest, EmbedResponse
from pisces.errors import PiscesError
from pisces.protocols.common import token_count

NAME = "gemini"
MAX_BATCH = 100  # the Gemini API's limit on the requests of one batchEmbedContents
TASK_TYPES = (
    "TASK_TYPE_UNSPECIFIED",
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
)
SINGLE = "single"  # provider_options["gemini"][SINGLE]: the client asked :embedContent (one vector back)
PER_INPUT = "requests"  # provider_options["gemini"][PER_INPUT]: each input's taskType and title


def _invalid(message: str, param: str | None = None) -> PiscesError:
    return PiscesError("invalid_request", message, param=param)


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    """A field by its camelCase or snake_case name (the API takes both), or in embedContentConfig."""
    if camel in obj or snake in obj:
        return obj.get(camel, obj.get(snake))
    config = obj.get("embedContentConfig", obj.get("embed_content_config"))
    return config.get(camel, config.get(snake)) if isinstance(config, dict) else None


def _text(content: Any, where: str) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise _invalid(f"* {where}.content: contents is not specified")
    texts = []
    for p in parts:
        if not isinstance(p, dict) or not isinstance(p.get("text"), str):
            raise PiscesError("unsupported_parameter", f"* {where}.content: only text parts can be embedded "
                              "through this gateway.")  # fmt: skip
        texts.append(p["text"])
    text = "\n".join(texts)
    if not text.strip():
        raise _invalid(f"* {where}.content: the text to embed is empty")
    return text


def _one(req: Any, where: str) -> tuple[str, dict[str, Any], int | None]:
    if not isinstance(req, dict):
        raise _invalid(f"* {where}: must be an object")
    text = _text(req.get("content"), where)
    task, title = _get(req, "taskType", "task_type"), _get(req, "title", "title")
    if task is not None and task not in TASK_TYPES:
        raise _invalid(f"* {where}.task_type: invalid value {task!r}; expected one of {', '.join(TASK_TYPES)}")
    if title is not None and not isinstance(title, str):
        raise _invalid(f"* {where}.title: must be a string")
    dims = _get(req, "outputDimensionality", "output_dimensionality")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise _invalid(f"* {where}.output_dimensionality: must be a positive integer")
    extra = {k: v for k, v in (("taskType", task), ("title", title)) if v is not None}
    return text, extra, dims


def decode_embed_request(body: Any, model: str, batch: bool) -> EmbedRequest:
    """``:embedContent`` (``batch`` false) or ``:batchEmbedContents``, ``model`` from the URL."""
    if not isinstance(body, dict):
        raise _invalid("Invalid JSON payload received. The body must be an object.")
    model = model.removeprefix("models/")
    if not batch:
        requests, where = [body], "EmbedContentRequest"
    else:
        requests, where = body.get("requests"), "BatchEmbedContentsRequest.requests"
        if not isinstance(requests, list) or not requests:
            raise _invalid("* BatchEmbedContentsRequest.requests: requests is not specified")
        if len(requests) > MAX_BATCH:
            raise _invalid(f"* BatchEmbedContentsRequest.requests: at most {MAX_BATCH} requests can be in one batch")
    texts, per_input, dims_seen = [], [], set()
    for i, r in enumerate(requests):
        at = f"{where}[{i}]" if batch else where
        named = r.get("model") if isinstance(r, dict) else None
        if batch and isinstance(named, str) and named.removeprefix("models/") != model:
            raise _invalid(f"* {at}.model: the model of every request must be models/{model}, the batch's own")
        text, extra, dims = _one(r, at)
        texts.append(text)
        per_input.append(extra)
        dims_seen.add(dims)
    if len(dims_seen) > 1:
        raise PiscesError("unsupported_parameter", f"* {where}: every request of a batch must ask for the same "
                          "output_dimensionality here.")  # fmt: skip
    options: dict[str, Any] = {SINGLE: not batch}
    if any(per_input):
        options[PER_INPUT] = per_input
    return EmbedRequest(model=model, inputs=list(texts), dimensions=dims_seen.pop(),
                        provider_options={NAME: options})  # fmt: skip


def encode_embed_response(resp: EmbedResponse, pisces: dict[str, Any], req: EmbedRequest) -> dict[str, Any]:
    if req.provider_options.get(NAME, {}).get(SINGLE):
        return {"embedding": {"values": resp.vectors[0]}, "pisces": pisces}
    return {"embeddings": [{"values": v} for v in resp.vectors], "pisces": pisces}


# ---------------------------------------------------------------------------------------------
# as an upstream (always :batchEmbedContents, one request per input)


def encode_embed_request(req: EmbedRequest, model: str) -> dict[str, Any]:
    name = f"models/{model.removeprefix('models/')}"
    per_input = req.provider_options.get(NAME, {}).get(PER_INPUT) or [{}] * len(req.inputs)
    requests = []
    for text, extra in zip(req.inputs, per_input, strict=True):
        if not isinstance(text, str):
            raise PiscesError("unsupported_parameter", "Token arrays can be embedded only by an OpenAI-compatible "
                              "upstream; this model's is Gemini, which takes text.", param="input")  # fmt: skip
        one: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}, **extra}
        if req.dimensions is not None:
            one["outputDimensionality"] = req.dimensions
        requests.append(one)
    return {"requests": requests}


def decode_embed_response(body: Any, count: int) -> EmbedResponse:
    items = body.get("embeddings") if isinstance(body, dict) else None
    if not isinstance(items, list) or len(items) != count:
        raise ValueError(f"expected {count} embeddings, got {len(items) if isinstance(items, list) else 'none'}")
    vectors = []
    for e in items:
        values = e.get("values") if isinstance(e, dict) else None
        if not isinstance(values, list) or not all(isinstance(x, int | float) and not isinstance(x, bool)
                                                   for x in values):  # fmt: skip
            raise ValueError("an embedding has no list of values")
        vectors.append([float(x) for x in values])
    usage = body.get("usageMetadata")  # not reported today; used when it is
    return EmbedResponse(model="", vectors=vectors, usage=Usage(input_tokens=token_count(usage, "promptTokenCount")))
