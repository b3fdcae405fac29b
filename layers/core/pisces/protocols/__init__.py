"""Protocol codecs: one module per wire format, meeting the others only in :mod:`pisces.canonical`.

Each codec module (``openai_chat``, ``anthropic_messages``, ``gemini``) provides:

``NAME``                                   the protocol's name in the ``pisces`` object ("openai", ...)
``decode_request(body) -> ChatRequest``    client wire request -> canonical; ``PiscesError`` on bad input
``encode_request(req, model) -> dict``     canonical -> provider wire request (the codec as an upstream)
``decode_response(body) -> ChatResponse``  provider wire response -> canonical
``encode_response(resp, pisces) -> dict``  canonical -> client wire response, with the ``pisces`` object
``StreamDecoder``                          provider SSE events -> canonical stream events
``StreamEncoder``                          canonical stream events -> client SSE bytes
``render_error(err, pisces) -> dict``      a ``PiscesError`` in the protocol's error shape
``upstream_error_message(body) -> str``    the message inside a provider's error body
``encode_model(id, owner) -> dict``        one model in the protocol's models-API shape
``encode_model_list(models, pisces)``      the protocol's model list around those

Codecs whose protocol counts tokens (Anthropic, Gemini) add ``decode_count_tokens(body)`` and
``encode_count(tokens, pisces)``.

A codec may list ``FORWARDED_HEADERS``: client request headers kept (in ``provider_options``) for an
upstream of the same protocol. A ``StreamEncoder`` may also have ``heartbeat() -> bytes``
(Anthropic's ``ping``): the door sends it while the upstream is silent.

A codec whose door does more than chat (Responses: ``previous_response_id``, stored responses) has
``new_door(gw, ctx, body)``: the lifecycle calls that object's hooks at its own steps.

Adding a protocol is one new module and one line in :data:`CODECS`.
"""

from __future__ import annotations

from types import ModuleType

from pisces.protocols import anthropic_messages, gemini, openai_chat, openai_responses

CODECS: dict[str, ModuleType] = {
    openai_chat.NAME: openai_chat,
    anthropic_messages.NAME: anthropic_messages,
    gemini.NAME: gemini,
    openai_responses.NAME: openai_responses,
}

# Embeddings, by the door's protocol: ``decode_embed_request(body, *url_args) -> EmbedRequest``,
# ``encode_embed_response(resp, pisces, req)``; as an upstream ``encode_embed_request(req, model)`` and
# ``decode_embed_response(body, count)``. Errors render through the protocol's codec in CODECS.
from pisces.protocols import gemini_embeddings, openai_embeddings  # noqa: E402

EMBEDDING_CODECS: dict[str, ModuleType] = {
    openai_embeddings.NAME: openai_embeddings,
    gemini_embeddings.NAME: gemini_embeddings,
}
