"""What the Responses door adds to the chat road, as hooks the lifecycle calls at its steps.

``POST /v1/responses`` is the chat road (:meth:`Lifecycle.chat` with protocol ``openai-responses``)
with three additions, each at its step and all before the last byte:

- after routing, :meth:`ResponsesDoor.prepare`: built-in tools are refused unless OpenAI's Responses
  API serves the model; ``previous_response_id`` loads the stored conversation (this key's only:
  another key's id, or an expired one, is a 404) and puts it before the request's input;
- encoding: the response object carries the door's own id and echoes the request's parameters;
- after settlement, before the Idempotency-Key record and the last byte, :meth:`keep` stores the
  response (unless ``store: false``), so that its id works the moment the client has it.

``GET``, ``DELETE`` and ``POST .../cancel`` on ``/v1/responses/{id}`` are :meth:`Lifecycle.run`
operations over the same store (:func:`retrieve`, :func:`delete`, :func:`cancel`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pisces.canonical import ChatRequest, ChatResponse, Message, TextPart
from pisces.errors import PiscesError
from pisces.pipeline.logs import logger
from pisces.protocols.openai_responses_output import echo_of, encode_response, new_id, parts_of
from pisces.protocols.openai_responses_stream import StreamEncoder
from pisces.protocols.openai_responses_tools import NAME, NAMESPACES, check_builtin_tools

if TYPE_CHECKING:
    from pisces.pipeline.context import RequestContext
    from pisces.pipeline.gateway import Gateway
    from pisces.pipeline.routing import Candidates


def not_found(rid: str, param: str | None = None) -> PiscesError:
    return PiscesError("not_found", f"Response with id '{rid}' not found.", param=param)


class ResponsesDoor:
    def __init__(self, gw: Gateway, ctx: RequestContext, body: Any) -> None:
        self.gw, self.ctx = gw, ctx
        self.rid = new_id("resp")
        self.echo = echo_of(body)
        self.store = not (isinstance(body, dict) and body.get("store") is False)
        prev = body.get("previous_response_id") if isinstance(body, dict) else None
        self.previous = prev if isinstance(prev, str) and prev else None
        self.messages: list[Message] = []
        self.system: list[TextPart] = []  # system and developer input items (instructions are not carried over)
        inst = body.get("instructions") if isinstance(body, dict) else None
        self.instructions = 1 if isinstance(inst, str) and inst else 0  # decode puts them first in req.system
        self.namespaces: list[str] = []
        self.encoder: StreamEncoder | None = None

    async def prepare(self, req: ChatRequest, candidates: Candidates) -> ChatRequest:
        check_builtin_tools(req, [channel.cfg.kind for channel, _ in candidates])
        self.namespaces = list(req.provider_options.get(NAME, {}).get(NAMESPACES, []))
        if self.previous:
            key_id = self.ctx.key.key_id if self.ctx.key else ""
            stored = await asyncio.to_thread(self.gw.responses.get, self.previous, key_id)
            if stored is None:
                raise not_found(self.previous, "previous_response_id")
            conv = stored.conversation
            history = [Message.model_validate(m) for m in conv["messages"]]
            before = [TextPart.model_validate(p) for p in conv["system"]]
            # the new instructions replace the old ones; system and developer input items carry over
            req = req.model_copy(update={"messages": history + req.messages,
                                         "system": req.system[: self.instructions] + before
                                         + req.system[self.instructions :]})  # fmt: skip
        if not req.messages:
            raise PiscesError("invalid_request", "Missing required parameter: 'input'.", param="input")
        self.messages = req.messages
        self.system = req.system[self.instructions :]
        return req

    @property
    def openai_origin(self) -> bool:
        """Whether the answer came from OpenAI's Responses API (its encrypted reasoning passes as it is)."""
        channel = self.gw.channels.get(self.ctx.channel or "")
        return channel is not None and channel.cfg.kind == NAME

    def encode_response(self, resp: ChatResponse, pisces: dict[str, Any]) -> dict[str, Any]:
        return encode_response(resp, pisces, rid=self.rid, echo=self.echo, openai_origin=self.openai_origin,
                               namespaces=self.namespaces)  # fmt: skip

    def stream_encoder(self, pisces: dict[str, Any], include_usage: bool = True, **_: Any) -> StreamEncoder:
        self.encoder = StreamEncoder(pisces, include_usage, rid=self.rid, echo=self.echo,
                                     openai_origin=self.openai_origin, namespaces=self.namespaces)  # fmt: skip
        return self.encoder

    async def keep(self, response: dict[str, Any]) -> None:
        """Store the response and the conversation it ends (a failure to is logged, never the client's)."""
        if not self.store or response.get("status") == "failed" or self.ctx.key is None:
            return
        answer = Message(role="assistant", content=parts_of(response.get("output")))
        conversation = {
            "system": [p.model_dump(mode="json", exclude_none=True) for p in self.system],
            "messages": [m.model_dump(mode="json", exclude_none=True) for m in [*self.messages, answer]],
        }
        try:
            kept = await asyncio.to_thread(self.gw.responses.put, self.rid, self.ctx.key.key_id, response,
                                           conversation)  # fmt: skip
        except Exception:
            logger.exception("storing a response failed", extra={"request_id": self.ctx.request_id})
            return
        if not kept:
            logger.warning("a response too large to store", extra={"request_id": self.ctx.request_id})

    async def stream_done(self) -> None:
        """A stream's hook, after settlement: its last event's response object is the one stored."""
        if self.encoder is not None and self.encoder.final is not None:
            await self.keep(self.encoder.final)


# ---------------------------------------------------------------------------------------------
# the stored responses' own operations


async def retrieve(gw: Gateway, ctx: RequestContext, rid: str) -> dict[str, Any]:
    stored = await asyncio.to_thread(gw.responses.get, rid, ctx.key.key_id if ctx.key else "")
    if stored is None:
        raise not_found(rid)
    return {**stored.response, "pisces": ctx.pisces()}


async def delete(gw: Gateway, ctx: RequestContext, rid: str) -> dict[str, Any]:
    if not await asyncio.to_thread(gw.responses.delete, rid, ctx.key.key_id if ctx.key else ""):
        raise not_found(rid)
    return {"id": rid, "object": "response", "deleted": True, "pisces": ctx.pisces()}


async def cancel(gw: Gateway, ctx: RequestContext, rid: str) -> dict[str, Any]:
    """Only a background response can be cancelled, and Pisces runs none: a stored one says so (400)."""
    await retrieve(gw, ctx, rid)
    raise PiscesError("invalid_request", "Only responses created with background=true can be cancelled; "
                      f"response '{rid}' was not.", param="response_id")  # fmt: skip
