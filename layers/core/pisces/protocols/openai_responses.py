"""OpenAI Responses (``/v1/responses``): the client door's wire format and the ``openai-responses`` upstream's.

Requests are decoded in :mod:`.openai_responses_request`, response objects built and read in
:mod:`.openai_responses_output`, streams in :mod:`.openai_responses_stream`, requests for an upstream
in :mod:`.openai_responses_upstream`. Errors are OpenAI's ``{"error": {message, type, param, code}}``.
What the door adds to the chat road (previous_response_id, stored responses) is
:mod:`pisces.pipeline.responses`, reached through :func:`new_door`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pisces.errors import PiscesError
from pisces.protocols import openai_chat
from pisces.protocols.common import error_message
from pisces.protocols.openai_responses_output import decode_response, encode_response
from pisces.protocols.openai_responses_request import NAME, decode_request
from pisces.protocols.openai_responses_stream import StreamDecoder, StreamEncoder
from pisces.protocols.openai_responses_tools import check_builtin_tools
from pisces.protocols.openai_responses_upstream import encode_request

if TYPE_CHECKING:
    from pisces.pipeline.context import RequestContext
    from pisces.pipeline.gateway import Gateway
    from pisces.pipeline.responses import ResponsesDoor

__all__ = [
    "NAME",
    "StreamDecoder",
    "StreamEncoder",
    "check_builtin_tools",
    "decode_request",
    "decode_response",
    "encode_model",
    "encode_model_list",
    "encode_request",
    "encode_response",
    "new_door",
    "render_error",
    "upstream_error_message",
]


def render_error(err: PiscesError, pisces: dict[str, Any]) -> dict[str, Any]:
    return openai_chat.render_error(err, pisces)


def upstream_error_message(body: bytes) -> str:
    return error_message(body)


def encode_model(model_id: str, owner: str) -> dict[str, Any]:
    return openai_chat.encode_model(model_id, owner)


def encode_model_list(models: list[dict[str, Any]], pisces: dict[str, Any]) -> dict[str, Any]:
    return openai_chat.encode_model_list(models, pisces)


def new_door(gw: Gateway, ctx: RequestContext, body: Any) -> ResponsesDoor:
    """The per-request state of the door: the response id, what it echoes, its stored conversation."""
    from pisces.pipeline.responses import ResponsesDoor

    return ResponsesDoor(gw, ctx, body)
