"""The canonical model: the one language every protocol codec and every upstream channel speaks.

A client door decodes its wire request into a :class:`ChatRequest`; a channel encodes that into its
provider's wire format, and decodes the provider's answer into a :class:`ChatResponse` or a sequence
of :data:`StreamEvent`; the door encodes those back into the client's wire format. Protocols never
meet each other, only this module.

It covers the union of what the OpenAI Chat Completions, Anthropic Messages and Gemini
generateContent protocols can say. A field one protocol has and another lacks is either mapped, or
kept in :attr:`ChatRequest.provider_options` under the protocol's name, which only an upstream of
that same protocol reads (so it is dropped on purpose, and tested as such, everywhere else).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


# ---------------------------------------------------------------------------------------------
# Content parts


class TextPart(_Model):
    type: Literal["text"] = "text"
    text: str
    # Anthropic prompt-caching marker ({"type": "ephemeral", ...}); kept for Anthropic upstreams only.
    cache_control: dict[str, Any] | None = None


class ImagePart(_Model):
    """An image given by URL (http(s) or a ``data:`` URL) or by base64 data with a media type."""

    type: Literal["image"] = "image"
    url: str | None = None
    data: str | None = None  # base64, no data: prefix
    media_type: str | None = None  # e.g. image/png
    detail: str | None = None  # OpenAI's low/high/auto
    cache_control: dict[str, Any] | None = None


class FilePart(_Model):
    """A file by URI (Gemini fileData) or inline data of a non-image type."""

    type: Literal["file"] = "file"
    uri: str | None = None
    data: str | None = None
    media_type: str | None = None
    name: str | None = None
    # Anthropic documents' own settings (citations {"enabled": true}, context): Anthropic upstreams only.
    cache_control: dict[str, Any] | None = None
    citations: dict[str, Any] | None = None
    context: str | None = None


class ToolCallPart(_Model):
    """The assistant asks for a tool. ``arguments`` is the JSON text as the model wrote it."""

    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: str = "{}"
    # Gemini's thoughtSignature travels with a functionCall part.
    signature: str | None = None
    cache_control: dict[str, Any] | None = None


class ToolResultPart(_Model):
    """The answer to a tool call, carried in a user turn (OpenAI's ``tool`` role decodes to this)."""

    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    name: str | None = None  # Gemini's functionResponse needs the function name
    # OpaquePart: an Anthropic tool_reference or search result, its text for other upstreams
    content: list[TextPart | ImagePart | OpaquePart] = Field(default_factory=list)
    is_error: bool = False
    cache_control: dict[str, Any] | None = None


class ThinkingPart(_Model):
    """Reasoning shown by the model; ``redacted`` carries opaque ``data`` instead of text."""

    type: Literal["thinking"] = "thinking"
    text: str = ""
    signature: str | None = None
    redacted: bool = False
    data: str | None = None


class OpaquePart(_Model):
    """A block only one protocol can say (Anthropic's server tool use and results, search results,
    container uploads...), kept whole in ``block`` for an upstream of ``protocol``. Every other upstream
    gets ``text`` instead (a search result's text, say), or nothing when it is empty: dropped on purpose."""

    type: Literal["opaque"] = "opaque"
    protocol: str
    block: dict[str, Any]
    text: str = ""


Part = Annotated[
    TextPart | ImagePart | FilePart | ToolCallPart | ToolResultPart | ThinkingPart | OpaquePart,
    Field(discriminator="type"),
]


ToolResultPart.model_rebuild()


def text_of(parts: list[Any]) -> str:
    """The concatenated text of the text parts in ``parts`` (an opaque part's stand-in text too)."""
    return "".join(p.text for p in parts if isinstance(p, TextPart | OpaquePart))


# ---------------------------------------------------------------------------------------------
# Request


Role = Literal["user", "assistant", "system"]


class Message(_Model):
    """One conversation turn. The system prompt is not a message (see :attr:`ChatRequest.system`); a
    ``system`` message is an instruction given at its place in the conversation (Anthropic's
    mid-conversation system message), text parts only, applying from there on."""

    role: Role
    content: list[Part] = Field(default_factory=list)
    name: str | None = None


class Tool(_Model):
    name: str
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None
    cache_control: dict[str, Any] | None = None


class ToolChoice(_Model):
    """auto: the model decides; none: no tool; required: some tool; tool: the tool named ``name``.

    ``allowed`` narrows ``required``/``auto`` to a subset of the tools (Gemini's allowedFunctionNames).
    ``parallel`` False forbids several calls in one turn (Anthropic disable_parallel_tool_use,
    OpenAI parallel_tool_calls=false).
    """

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None
    allowed: list[str] | None = None
    parallel: bool | None = None


class ResponseFormat(_Model):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    json_schema: dict[str, Any] | None = None
    strict: bool | None = None


class ThinkingConfig(_Model):
    enabled: bool = True
    budget_tokens: int | None = None
    effort: Literal["minimal", "low", "medium", "high"] | None = None


class ChatRequest(_Model):
    model: str
    system: list[TextPart] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    tools: list[Tool] = Field(default_factory=list)
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    response_format: ResponseFormat | None = None
    thinking: ThinkingConfig | None = None
    stream: bool = False
    # The client asked for usage in the stream (OpenAI stream_options.include_usage). Upstream
    # channels always ask their provider for usage, whatever this says: billing needs it.
    stream_usage: bool = False
    user: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    # Fields only one protocol can say, by protocol name ("openai", "anthropic", "gemini"): read
    # by an upstream of the same protocol, dropped on purpose by every other.
    provider_options: dict[str, dict[str, Any]] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Response

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


class Usage(_Model):
    input_tokens: int = 0  # all prompt tokens, cached ones included
    output_tokens: int = 0  # all generated tokens, reasoning included
    cached_tokens: int = 0  # prompt tokens read from a cache
    cache_write_tokens: int = 0  # prompt tokens written to a cache (Anthropic)
    reasoning_tokens: int = 0  # generated tokens spent thinking

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ChatResponse(_Model):
    id: str
    model: str
    content: list[Part] = Field(default_factory=list)
    finish_reason: FinishReason = "stop"
    # the provider's own word for why it stopped (stop_sequence, SAFETY, ...), for codecs that can say it
    stop_detail: str | None = None
    usage: Usage = Field(default_factory=Usage)
    created: int = 0  # unix seconds

    @property
    def text(self) -> str:
        return text_of(self.content)

    @property
    def tool_calls(self) -> list[ToolCallPart]:
        return [p for p in self.content if isinstance(p, ToolCallPart)]


# ---------------------------------------------------------------------------------------------
# Stream events
#
# A stream is: StreamStart, then for each content part (index 0, 1, ...) a start (implicit for
# text/thinking: their first delta starts them), its deltas and a ContentEnd; then Usage (if the
# provider reported it) and Finish. An ErrorEvent may end a stream anywhere.


class StreamStart(_Model):
    type: Literal["start"] = "start"
    id: str
    model: str
    created: int = 0
    usage: Usage | None = None  # some providers report input tokens up front


class TextDelta(_Model):
    type: Literal["text_delta"] = "text_delta"
    index: int
    text: str


class ToolCallStart(_Model):
    type: Literal["tool_call_start"] = "tool_call_start"
    index: int
    id: str
    name: str
    signature: str | None = None


class ToolArgsDelta(_Model):
    type: Literal["tool_args_delta"] = "tool_args_delta"
    index: int
    delta: str


class ThinkingDelta(_Model):
    type: Literal["thinking_delta"] = "thinking_delta"
    index: int
    text: str = ""
    signature: str | None = None
    redacted_data: str | None = None


class OpaqueBlock(_Model):
    """A whole block only ``protocol`` can say (Anthropic's server tool use and results), as one event:
    a codec of that protocol sends it on, every other skips it (its ``text``, if any, is not streamed)."""

    type: Literal["opaque"] = "opaque"
    index: int
    protocol: str
    block: dict[str, Any]


class ContentEnd(_Model):
    type: Literal["content_end"] = "content_end"
    index: int


class UsageEvent(_Model):
    type: Literal["usage"] = "usage"
    usage: Usage


class Finish(_Model):
    type: Literal["finish"] = "finish"
    reason: FinishReason
    stop_detail: str | None = None


class ErrorEvent(_Model):
    type: Literal["error"] = "error"
    code: str
    message: str
    status: int = 502


StreamEvent = (
    StreamStart
    | TextDelta
    | ToolCallStart
    | ToolArgsDelta
    | ThinkingDelta
    | OpaqueBlock
    | ContentEnd
    | UsageEvent
    | Finish
    | ErrorEvent
)


class ResponseAccumulator:
    """Folds a canonical event stream into a :class:`ChatResponse` (for logging, billing, replay)."""

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.created = 0
        self.parts: dict[int, Any] = {}
        self.finish_reason: FinishReason | None = None
        self.stop_detail: str | None = None
        self.usage: Usage | None = None
        self.error: ErrorEvent | None = None

    def add(self, ev: StreamEvent) -> None:
        if isinstance(ev, StreamStart):
            self.id, self.model, self.created = ev.id, ev.model, ev.created
            if ev.usage is not None:
                self.usage = ev.usage
        elif isinstance(ev, TextDelta):
            part = self.parts.setdefault(ev.index, TextPart(text=""))
            part.text += ev.text
        elif isinstance(ev, ThinkingDelta):
            part = self.parts.setdefault(ev.index, ThinkingPart())
            part.text += ev.text
            if ev.signature:
                part.signature = (part.signature or "") + ev.signature
            if ev.redacted_data is not None:
                part.redacted, part.data = True, ev.redacted_data
        elif isinstance(ev, OpaqueBlock):
            self.parts[ev.index] = OpaquePart(protocol=ev.protocol, block=ev.block)
        elif isinstance(ev, ToolCallStart):
            self.parts[ev.index] = ToolCallPart(id=ev.id, name=ev.name, arguments="", signature=ev.signature)
        elif isinstance(ev, ToolArgsDelta):
            part = self.parts.get(ev.index)
            if isinstance(part, ToolCallPart):
                part.arguments += ev.delta
        elif isinstance(ev, UsageEvent):
            self.usage = merge_usage(self.usage, ev.usage)
        elif isinstance(ev, Finish):
            self.finish_reason, self.stop_detail = ev.reason, ev.stop_detail
        elif isinstance(ev, ErrorEvent):
            self.error = ev

    def response(self) -> ChatResponse:
        content = [self.parts[i] for i in sorted(self.parts)]
        for p in content:
            if isinstance(p, ToolCallPart) and not p.arguments:
                p.arguments = "{}"
        return ChatResponse(
            id=self.id,
            model=self.model,
            content=content,
            finish_reason=self.finish_reason or ("error" if self.error else "stop"),
            stop_detail=self.stop_detail,
            usage=self.usage or Usage(),
            created=self.created,
        )


def merge_usage(old: Usage | None, new: Usage) -> Usage:
    """Providers report usage in pieces (input at start, output at the end): keep the largest of each."""
    if old is None:
        return new
    return Usage(**{k: max(getattr(old, k), getattr(new, k)) for k in Usage.model_fields})
