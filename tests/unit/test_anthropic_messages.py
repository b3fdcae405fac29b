"""The Anthropic Messages codec against the Claude API documentation's own examples and real recordings.

Fixtures: tests/unit/fixtures/anthropic/ (see its README for the documentation examples they are
copied from) and shared/fixtures/recorded/anthropic_messages_*.sse (PISCES_SHARED_DIR overrides
shared/). Every event and message the encoders write is validated with the anthropic SDK's own
pydantic types, and streams are folded with the SDK's own accumulator.
"""

from __future__ import annotations

import ast
import copy
import json
import random
from pathlib import Path
from typing import Any

import anthropic
import pydantic
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as SDKMessage
from anthropic.types import ModelInfo, RawMessageStreamEvent

from pisces.canonical import (
    ChatRequest,
    ChatResponse,
    ContentEnd,
    ErrorEvent,
    FilePart,
    Finish,
    ImagePart,
    Message,
    OpaqueBlock,
    ResponseAccumulator,
    ResponseFormat,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ThinkingConfig,
    ThinkingDelta,
    ThinkingPart,
    Tool,
    ToolArgsDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from pisces.errors import ERRORS, PiscesError
from pisces.protocols import CODECS
from pisces.protocols import anthropic_messages as am
from pisces.protocols import openai_chat as oc
from pisces.protocols.sse import SSEEvent, SSEParser
from support.servers import recorded

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
PISCES = {"gateway": "Pisces", "protocol": "anthropic", "request_id": "req_test", "channel": "c", "timestamp": "T"}
EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)
RECORDED = ["anthropic_messages_text_stream.sse", "anthropic_messages_tool_use_stream.sse"]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def sse_events(data: bytes, seed: int | None = None) -> list[SSEEvent]:
    """Parse SSE bytes, fed whole or (with a seed) in random slices of 1..64 bytes."""
    parser, out, i = SSEParser(), [], 0
    rng = random.Random(seed)
    while i < len(data):
        n = len(data) if seed is None else rng.randint(1, 64)
        out += parser.feed(data[i : i + n])
        i += n
    return out + parser.close()


def decode_stream(data: bytes, seed: int | None = None) -> list[StreamEvent]:
    dec = am.StreamDecoder()
    out: list[StreamEvent] = []
    for ev in sse_events(data, seed):
        out += dec.feed(ev)
    return out + dec.close()


def accumulate(events: list[StreamEvent]) -> ChatResponse:
    acc = ResponseAccumulator()
    for ev in events:
        acc.add(ev)
    return acc.response()


def events_of(data: bytes) -> list[dict[str, Any]]:
    """The events an encoder wrote, checking the framing (``event: <type>``, one ``data:`` line of JSON)."""
    assert data.endswith(b"\n\n")
    out = []
    for raw in data.decode().split("\n\n")[:-1]:
        head, data_line = raw.split("\n")
        assert head.startswith("event: ") and data_line.startswith("data: {"), raw
        body = json.loads(data_line[len("data: ") :])
        assert body["type"] == head[len("event: ") :]
        out.append(body)
    return out


def sdk_fold(data: bytes) -> SDKMessage:
    """Every event validated with the SDK's own types, then folded by the SDK's own accumulator."""
    snapshot, bufs = None, {}
    for body in events_of(data):
        if body["type"] == "ping":
            assert body == {"type": "ping"}
            continue
        event = EVENT.validate_python(body)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=bufs)
    assert snapshot is not None
    return SDKMessage.model_validate(snapshot.to_dict())


def encode_all(events: list[StreamEvent]) -> bytes:
    enc = am.StreamEncoder(PISCES)
    return b"".join(enc.encode(e) for e in events) + enc.close()


def bad(body: Any, decode: Any = am.decode_request) -> PiscesError:
    with pytest.raises(PiscesError) as e:
        decode(body)
    return e.value


def _body(**kw: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}], **kw}


def normalized(body: dict[str, Any]) -> dict[str, Any]:
    """The API's own equivalences: string content is one text block, stream false is no stream."""
    body = copy.deepcopy(body)
    for m in body["messages"]:
        if isinstance(m["content"], str):
            m["content"] = [{"type": "text", "text": m["content"]}]
    if body.get("stream") is False:
        del body["stream"]
    return body


# =============================================================================================
# the registry and the codec's boundaries


def test_registered_under_its_name():
    assert am.NAME == "anthropic" and CODECS["anthropic"] is am


_MODULES = ["__init__", "request", "blocks", "stream", "upstream", "wire"]  # the codec's package


@pytest.mark.parametrize("module", _MODULES)
def test_imports_no_other_codec(module):
    path = Path(am.__file__).parent / f"{module}.py"
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    pisces = {m for m in imported if m.startswith("pisces")}
    shared = {"pisces.protocols.sse", "pisces.protocols.common", "pisces.jsonwire"}
    allowed = {"pisces.canonical", "pisces.errors", *shared}
    assert pisces <= allowed | {f"pisces.protocols.anthropic_messages.{n}" for n in _MODULES[1:]}
    assert len(path.read_text().splitlines()) <= 400


# =============================================================================================
# decode_request: the documentation's examples


def test_decode_reference_request():
    req = am.decode_request(fixture("request_basic.json"))
    assert req.model == "claude-sonnet-4-5-20250929" and req.max_tokens == 1024
    assert req.messages == [Message(role="user", content=[TextPart(text="Hello, world")])]
    assert req.system == [] and req.tools == [] and req.stream is False and req.provider_options == {}


def test_decode_reference_stream_and_tool_requests():
    assert am.decode_request(fixture("request_stream.json")).stream is True
    req = am.decode_request(fixture("request_tool_stream.json"))
    (tool,) = req.tools
    assert tool.name == "get_weather" and tool.description == "Get the current weather in a given location"
    assert tool.parameters["required"] == ["location"]
    assert req.tool_choice == ToolChoice(mode="required")


def test_decode_reference_thinking_requests():
    for name, budget in (("request_thinking.json", 10000), ("request_thinking_stream.json", 16000)):
        req = am.decode_request(fixture(name))
        assert req.thinking == ThinkingConfig(enabled=True, budget_tokens=budget)
        assert "anthropic" not in req.provider_options


def test_decode_reference_prompt_caching_request():
    req = am.decode_request(fixture("request_prompt_caching.json"))
    first, second = req.system
    assert first.cache_control is None and first.text.startswith("You are an AI assistant")
    assert second == TextPart(text="<the entire contents of Pride and Prejudice>", cache_control={"type": "ephemeral"})


def test_decode_reference_image_requests():
    (msg,) = am.decode_request(fixture("request_image_base64.json")).messages
    assert msg.content == [
        ImagePart(data="/9j/4AAQSkZJRg==", media_type="image/jpeg"),
        TextPart(text="Describe this image."),
    ]
    (msg,) = am.decode_request(fixture("request_image_url.json")).messages
    assert isinstance(msg.content[0], ImagePart) and msg.content[0].url.endswith("Camponotus_flavomarginatus_ant.jpg")


def test_decode_reference_tool_results():
    messages = fixture("message_tool_results.json")
    req = am.decode_request({"model": "m", "max_tokens": 5, "messages": messages})
    results = [m.content[0] for m in req.messages]
    assert all(isinstance(r, ToolResultPart) and r.tool_call_id == "toolu_01A09q90qw90lq917835lq9" for r in results)
    plain, images, empty, document, error = results
    assert plain.content == [TextPart(text="15 degrees")] and not plain.is_error
    assert images.content == [TextPart(text="15 degrees"), ImagePart(data="/9j/4AAQSkZJRg...", media_type="image/jpeg")]
    assert empty.content == []
    assert document.content == [TextPart(text="The weather is"), TextPart(text="15 degrees")]
    assert error.is_error and error.content[0].text.startswith("ConnectionError")


# =============================================================================================
# decode_request: each parameter


def test_system_string_and_blocks():
    assert am.decode_request(_body(system="Be terse.")).system == [TextPart(text="Be terse.")]
    assert am.decode_request(_body(system="")).system == []
    blocks = [{"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}]
    assert am.decode_request(_body(system=blocks)).system == [
        TextPart(text="a"),
        TextPart(text="b", cache_control={"type": "ephemeral"}),
    ]


def test_content_blocks_of_every_kind():
    assistant = [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "calling"},
        {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "f",
            "input": {"a": [1, "é"]},
            "cache_control": {"type": "ephemeral"},
        },
    ]
    user = [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
            "title": "t",
        },
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}},
        {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}},
    ]
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": assistant}]
    req = am.decode_request(_body(messages=[*messages, {"role": "user", "content": user}]))
    think, redacted, text, call = req.messages[1].content
    assert think == ThinkingPart(text="hmm", signature="sig")
    assert redacted == ThinkingPart(redacted=True, data="opaque")
    assert text == TextPart(text="calling")
    assert isinstance(call, ToolCallPart) and (call.id, call.name) == ("toolu_1", "f")
    assert json.loads(call.arguments) == {"a": [1, "é"]} and call.cache_control == {"type": "ephemeral"}
    pdf, plain, url = req.messages[2].content
    assert pdf == FilePart(data="JVBERi0=", media_type="application/pdf", name="t")
    assert isinstance(plain, FilePart) and plain.media_type == "text/plain"
    assert url == FilePart(uri="https://x.test/a.pdf", media_type="application/pdf")
    # and back: the documents as they came
    body = am.encode_request(req, "m")
    assert body["messages"][2]["content"] == user


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"type": "auto"}, ToolChoice(mode="auto")),
        ({"type": "any"}, ToolChoice(mode="required")),
        ({"type": "tool", "name": "f"}, ToolChoice(mode="tool", name="f")),
        ({"type": "none"}, ToolChoice(mode="none")),
        ({"type": "auto", "disable_parallel_tool_use": True}, ToolChoice(mode="auto", parallel=False)),
        ({"type": "any", "disable_parallel_tool_use": False}, ToolChoice(mode="required", parallel=True)),
    ],
)
def test_tool_choice(given, expected):
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    req = am.decode_request(_body(tools=tools, tool_choice=given))
    assert req.tool_choice == expected
    assert am.encode_request(req, "m")["tool_choice"] == given


def test_tools_custom_server_and_extra_fields():
    tools = [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"name": "a", "description": "d", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
        {"type": "custom", "name": "b", "input_schema": {"type": "object"}, "strict": True, "defer_loading": True},
        {"type": "mcp_toolset", "mcp_server_name": "docs"},
    ]
    req = am.decode_request(_body(tools=tools))
    assert req.tools == [
        Tool(name="a", description="d", parameters={"type": "object"}, cache_control={"type": "ephemeral"}),
        Tool(name="b", parameters={"type": "object"}, strict=True),
    ]
    opts = req.provider_options["anthropic"]
    assert opts["_server_tools"] == [[0, tools[0]], [3, tools[3]]]
    assert opts["_tool_extras"] == {"b": {"type": "custom", "defer_loading": True}}
    assert am.encode_request(req, "m")["tools"] == tools  # in the client's order: the cache keys on it


def test_thinking_configs():
    assert am.decode_request(_body(thinking={"type": "disabled"})).thinking == ThinkingConfig(enabled=False)
    req = am.decode_request(_body(max_tokens=5000, thinking={"type": "enabled", "budget_tokens": 2048}))
    assert req.thinking == ThinkingConfig(enabled=True, budget_tokens=2048)
    for raw in ({"type": "adaptive"}, {"type": "enabled", "budget_tokens": 2048, "display": "omitted"}):
        req = am.decode_request(_body(thinking=raw))
        assert req.thinking is not None and req.thinking.enabled
        assert am.encode_request(req, "m")["thinking"] == raw  # kept whole for Anthropic


def test_metadata_sampling_stop_and_stream():
    req = am.decode_request(_body(metadata={"user_id": "u-1"}, temperature=0.5, top_p=0.9, top_k=40,
                                  stop_sequences=["END"], stream=True))  # fmt: skip
    assert req.user == "u-1" and req.metadata == {}
    assert (req.temperature, req.top_p, req.top_k, req.stop, req.stream) == (0.5, 0.9, 40, ["END"], True)
    assert req.stream_usage is True  # Anthropic streams always report usage


def test_output_config_format_maps_to_response_format():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    req = am.decode_request(_body(output_config={"format": {"type": "json_schema", "schema": schema}, "effort": "low"}))
    assert req.response_format == ResponseFormat(type="json_schema", json_schema=schema)
    assert req.provider_options["anthropic"] == {"output_config": {"effort": "low"}}
    out = am.encode_request(req, "m")["output_config"]
    assert out == {"format": {"type": "json_schema", "schema": schema}, "effort": "low"}


def test_anthropic_only_fields_travel_in_provider_options():
    only_anthropic = {
        "service_tier": "standard_only",
        "container": "container_123",
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "mcp_servers": [{"type": "url", "url": "https://mcp.test/sse", "name": "docs"}],
        "cache_control": {"type": "ephemeral"},
        "some_future_field": {"nested": [1, 2]},
    }
    req = am.decode_request(_body(**only_anthropic))
    assert req.provider_options == {"anthropic": only_anthropic}
    body = am.encode_request(req, "m")
    assert {k: body[k] for k in only_anthropic} == only_anthropic


def test_count_tokens_needs_no_max_tokens():
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "system": "s"}
    req = am.decode_count_tokens(body)
    assert req.max_tokens is None and req.system == [TextPart(text="s")]
    err = bad(body)
    assert (err.param, err.message) == ("max_tokens", "max_tokens: Field required")
    assert bad({"model": "m"}, am.decode_count_tokens).param == "messages"


# =============================================================================================
# decode_request: validation errors (status, code, param, message in the API's own words)


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ([], None, "JSON object"),
        ({"max_tokens": 1, "messages": []}, "model", "model: Field required"),
        (_body(model=5), "model", "model: Input should be a valid string"),
        (_body(model=""), "model", "model: String should have"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens", "max_tokens: Field required"),
        (_body(max_tokens="10"), "max_tokens", "max_tokens: Input should be a valid integer"),
        (_body(max_tokens=1.5), "max_tokens", "a valid integer"),
        (_body(max_tokens=-1), "max_tokens", "greater than or equal to 0"),
        ({"model": "m", "max_tokens": 1}, "messages", "messages: Field required"),
        (_body(messages={}), "messages", "messages: Input should be a valid list"),
        (_body(messages=[]), "messages", "at least one message"),
        (_body(messages=["x"]), "messages.0", "messages.0: Input should be a valid dictionary"),
        (_body(messages=[{"content": "x"}]), "messages.0.role", "Field required"),
        (_body(messages=[{"role": "robot", "content": "x"}]), "messages.0.role", "'user', 'assistant' or 'system'"),
        (_body(messages=[{"role": "user"}]), "messages.0.content", "messages.0.content: Field required"),
        (_body(messages=[{"role": "user", "content": 5}]), "messages.0.content", "a valid string or a valid list"),
        (_body(messages=[{"role": "user", "content": [{"text": "x"}]}]), "messages.0.content.0.type", "Field required"),
        (
            _body(messages=[{"role": "user", "content": [{"type": "text"}]}]),
            "messages.0.content.0.text",
            "Field required",
        ),
        (
            _body(messages=[{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": "yes"}]}]),
            "messages.0.content.0.cache_control",
            "a valid dictionary",
        ),
        (_body(messages=[{"role": "user", "content": [{"type": "image"}]}]), "messages.0.content.0.source", "Field"),
        (
            _body(
                messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}]}]
            ),
            "messages.0.content.0.source.media_type",
            "Field required",
        ),
        (
            _body(messages=[{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f"}]}]),
            "messages.0.content.0.input",
            "Field required",
        ),
        (
            _body(messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": 5}]}]),
            "messages.0.content.0.content",
            "a valid string or a valid list",
        ),
        (
            _body(messages=[{"role": "user", "content": [{"type": "tool_result", "content": "r"}]}]),
            "messages.0.content.0.tool_use_id",
            "Field required",
        ),
        (
            _body(messages=[{"role": "assistant", "content": [{"type": "thinking", "thinking": "t"}]}]),
            "messages.0.content.0.signature",
            "Field required",
        ),
        (_body(system=5), "system", "system: Input should be a valid string or a valid list"),
        (_body(system=[{"type": "image"}]), "system.0.type", "'text'"),
        (_body(tools={}), "tools", "tools: Input should be a valid list"),
        (_body(tools=[{"input_schema": {}}]), "tools.0.name", "tools.0.name: Field required"),
        (_body(tools=[{"name": "f"}]), "tools.0.input_schema", "tools.0.input_schema: Field required"),
        (_body(tools=[{"name": "f", "input_schema": []}]), "tools.0.input_schema", "a valid dictionary"),
        (_body(tool_choice="auto"), "tool_choice", "tool_choice: Input should be a valid dictionary"),
        (_body(tool_choice={"type": "sometimes"}), "tool_choice.type", "'auto', 'any', 'tool' or 'none'"),
        (_body(tool_choice={"type": "tool"}), "tool_choice.name", "tool_choice.name: Field required"),
        (_body(temperature="hot"), "temperature", "temperature: Input should be a valid number"),
        (_body(temperature=True), "temperature", "a valid number"),
        (_body(temperature=1.5), "temperature", "temperature: Input should be less than or equal to 1"),
        (_body(top_p=-0.1), "top_p", "greater than or equal to 0"),
        (_body(top_k=1.5), "top_k", "top_k: Input should be a valid integer"),
        (_body(stop_sequences="END"), "stop_sequences", "a valid list"),
        (_body(stream="yes"), "stream", "stream: Input should be a valid boolean"),
        (_body(metadata="u"), "metadata", "a valid dictionary"),
        (_body(metadata={"user_id": 5}), "metadata.user_id", "a valid string"),
        (_body(metadata={"team": "a"}), "metadata.team", "metadata.team: Extra inputs are not permitted"),
        (_body(thinking={"type": "enabled"}), "thinking.budget_tokens", "thinking.budget_tokens: Field required"),
        (
            _body(thinking={"type": "enabled", "budget_tokens": 100}),
            "thinking.budget_tokens",
            "greater than or equal to 1024",
        ),
        (_body(thinking={"type": "on"}), "thinking.type", "'enabled', 'disabled'"),
        (_body(output_config={"format": {"type": "json_schema"}}), "output_config.format.schema", "Field required"),
    ],
)
def test_validation_errors_name_the_param(body, param, message):
    err = bad(body)
    assert (err.status, err.code, err.param) == (400, "invalid_request", param)
    assert message in err.message


@pytest.mark.parametrize(
    ("block", "param", "code"),
    [
        ({"type": "hologram"}, "messages.0.content.0.type", "unsupported_parameter"),
        ({"type": "image", "source": {"type": "file"}}, "messages.0.content.0.source.file_id", "invalid_request"),
        (
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "search_result"}]},
            "messages.0.content.0.content.0.source",
            "invalid_request",
        ),
    ],
)
def test_blocks_the_api_has_not_or_malformed_are_refused(block, param, code):
    """Every block of the current Messages API is accepted (tests/unit/test_anthropic_surface.py); a type
    it has not, or one missing its required fields, is a 400 naming the parameter."""
    err = bad(_body(messages=[{"role": "user", "content": [block]}]))
    assert (err.status, err.code, err.param) == (400, code, param)


def _paths(obj: Any, path: tuple = ()) -> Any:
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*path, i))


def _mutations(base: dict[str, Any]) -> Any:
    """Every value anywhere in ``base`` replaced, one at a time, by values of every JSON type."""
    for path in list(_paths(base))[1:]:
        for value in (None, 0, 1, -1, 1.5, True, "x", "", [], {}, [1], {"a": 1}, [{"a": 1}], {"type": "text"}):
            body = copy.deepcopy(base)
            target = body
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
            yield ".".join(map(str, path)), value, body


FULL_REQUEST: dict[str, Any] = {
    "model": "m",
    "max_tokens": 5,
    "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "t"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/i.png"}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}, "title": "t"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "th", "signature": "sig"},
                {"type": "redacted_thinking", "data": "r"},
                {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "c1",
                    "is_error": False,
                    "content": [
                        {"type": "text", "text": "r"},
                        {"type": "image", "source": {"type": "url", "url": "u"}},
                    ],
                }
            ],
        },
    ],
    "tools": [
        {"name": "f", "description": "d", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
        {"type": "web_search_20250305", "name": "web_search"},
    ],
    "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "low"},
    "metadata": {"user_id": "u"},
    "temperature": 0.5,
    "top_p": 0.5,
    "top_k": 5,
    "stop_sequences": ["x"],
    "stream": True,
    "service_tier": "auto",
}


def test_malformed_requests_are_always_400_never_a_crash():
    crashes = {}
    for where, value, body in _mutations(FULL_REQUEST):
        try:
            req = am.decode_request(body)
            am.encode_request(req, "m")  # whatever decodes also encodes
        except PiscesError as e:
            assert e.status == 400, (where, value)
        except Exception as e:  # the point of the test: nothing but PiscesError
            crashes[where] = f"{value!r}: {type(e).__name__}: {e}"
    assert crashes == {}


# =============================================================================================
# encode_request

# A request shaped like Claude Code's: system blocks with cache_control, many tools with
# cache_control on the last, thinking with signatures in the history, stream, metadata.user_id,
# and a beta feature it turns on.
CLAUDE_CODE: dict[str, Any] = {
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 32000,
    "stream": True,
    "temperature": 1,
    "metadata": {"user_id": "user_5f1c0e_account_9a7d_session_3b2e8c"},
    "system": [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
         "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "\nYou are an interactive CLI tool that helps users with software engineering tasks.",
         "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>\nAs you answer, use the context below.\n</system-reminder>"},
            {"type": "text", "text": "Fix the failing test in tests/test_math.py"},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "The user wants me to fix a test. Read it first.",
             "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds=="},
            {"type": "text", "text": "Let me look at the test first."},
            {"type": "tool_use", "id": "toolu_01Read", "name": "Read",
             "input": {"file_path": "/repo/tests/test_math.py"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01Read",
             "content": "     1\tfrom math_utils import add\n     2\n     3\tdef test_add():\n"
                        "     4\t    assert add(2, 2) == 5\n"},
        ]},
        {"role": "assistant", "content": [
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"},
            {"type": "tool_use", "id": "toolu_02Bash", "name": "Bash",
             "input": {"command": "pytest -q tests/test_math.py", "description": "Run the failing test"}},
            {"type": "tool_use", "id": "toolu_03Shot", "name": "Screenshot", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_02Bash", "content": "F\n1 failed in 0.02s", "is_error": True},
            {"type": "tool_result", "tool_use_id": "toolu_03Shot", "content": [
                {"type": "text", "text": "screen:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            ], "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "The expected value is wrong, not add().", "cache_control": {"type": "ephemeral"}},
        ]},
    ],
    "tools": [
        *[{"name": n, "description": f"{n} tool", "input_schema": {
            "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False,
            "properties": {"arg": {"type": "string", "description": "an argument"}}, "required": ["arg"]}}
          for n in ("Task", "Bash", "Glob", "Grep", "Read", "Edit", "Write", "WebFetch", "TodoWrite", "Screenshot")],
        {"name": "mcp__docs__search", "description": "Search the docs", "input_schema": {"type": "object"},
         "cache_control": {"type": "ephemeral"}},
    ],
    "tool_choice": {"type": "auto"},
    "thinking": {"type": "enabled", "budget_tokens": 31999},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
}  # fmt: skip


def test_claude_code_request_survives_the_round_trip_whole():
    req = am.decode_request(copy.deepcopy(CLAUDE_CODE))
    assert am.encode_request(req, CLAUDE_CODE["model"]) == CLAUDE_CODE
    # and the canonical request survives a JSON trip (what logs and idempotency records store)
    assert ChatRequest.model_validate_json(req.model_dump_json()) == req
    assert (
        am.encode_request(ChatRequest.model_validate_json(req.model_dump_json()), CLAUDE_CODE["model"]) == CLAUDE_CODE
    )


def test_claude_code_request_to_another_protocol_drops_anthropic_things_only():
    req = am.decode_request(copy.deepcopy(CLAUDE_CODE))
    body = oc.encode_request(req, "gpt-4o")
    text = json.dumps(body)
    assert "cache_control" not in text and "context_management" not in text and "EqQBCgIY" not in text
    assert [t["function"]["name"] for t in body["tools"]][-1] == "mcp__docs__search"


@pytest.mark.parametrize(
    "name",
    ["request_basic.json", "request_stream.json", "request_tool_stream.json", "request_thinking.json",
     "request_thinking_stream.json", "request_prompt_caching.json", "request_image_base64.json",
     "request_image_url.json"],
)  # fmt: skip
def test_reference_requests_round_trip(name):
    body = fixture(name)
    assert am.encode_request(am.decode_request(copy.deepcopy(body)), body["model"]) == normalized(body)


def test_encode_uses_the_upstream_model_and_a_default_max_tokens():
    req = ChatRequest(model="alias", messages=[Message(role="user", content=[TextPart(text="hi")])])
    assert am.encode_request(req, "claude-x") == {
        "model": "claude-x",
        "max_tokens": am.DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    assert am.encode_request(req.model_copy(update={"max_tokens": 0}), "m")["max_tokens"] == 0


def test_encode_from_another_protocols_canonical_request():
    req = ChatRequest(
        model="m",
        system=[TextPart(text="one")],
        messages=[
            Message(
                role="user",
                content=[
                    ImagePart(data="/9j/AAA"),
                    ImagePart(url="data:image/gif;base64,R0lG"),
                    TextPart(text=""),
                    TextPart(text="hi"),
                ],
            ),
            Message(
                role="assistant",
                content=[
                    ThinkingPart(text="unsigned reasoning"),
                    ToolCallPart(id="c1", name="f", arguments='{"a":1}', signature="g"),
                    ToolCallPart(id="c2", name="f", arguments="not json"),
                ],
            ),
            Message(
                role="user",
                content=[
                    TextPart(text="and"),
                    ToolResultPart(tool_call_id="c1", name="f", content=[TextPart(text="ok")]),
                    ToolResultPart(tool_call_id="c2"),
                ],
            ),
            Message(role="assistant", content=[]),
        ],
        tools=[Tool(name="f")],
        tool_choice=ToolChoice(mode="required", parallel=False, allowed=["f"]),
        temperature=1.7,
        seed=7,
        stop=["END"],
        user="user-1",
        metadata={"team": "a"},
        response_format=ResponseFormat(type="json_object"),
        provider_options={"openai": {"logprobs": True}},
    )
    body = am.encode_request(req, "m")
    assert body["system"] == "one"
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/AAA"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"}},
        {"type": "text", "text": "hi"},
    ]
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
        {"type": "tool_use", "id": "c2", "name": "f", "input": {}},
    ]
    assert body["messages"][2]["content"] == [  # tool results first, as the API requires
        {"type": "tool_result", "tool_use_id": "c1", "content": "ok"},
        {"type": "tool_result", "tool_use_id": "c2"},
        {"type": "text", "text": "and"},
    ]
    assert len(body["messages"]) == 3  # the empty assistant turn is left out
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["temperature"] == 1.0 and body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "user-1"}
    for dropped in ("seed", "logprobs", "output_config", "response_format"):
        assert dropped not in body


@pytest.mark.parametrize(
    ("thinking", "max_tokens", "expected_thinking", "expected_max"),
    [
        (ThinkingConfig(effort="high"), None, {"type": "enabled", "budget_tokens": 16384}, 16384 + 4096),
        (ThinkingConfig(effort="low"), 10000, {"type": "enabled", "budget_tokens": 2048}, 10000),
        (ThinkingConfig(effort="high"), 5000, {"type": "enabled", "budget_tokens": 4999}, 5000),
        (ThinkingConfig(effort="low"), 500, None, 500),  # no room to think: dropped
        (ThinkingConfig(budget_tokens=3000), None, {"type": "enabled", "budget_tokens": 3000}, 3000 + 4096),
        (ThinkingConfig(enabled=False), None, {"type": "disabled"}, 4096),
    ],
)
def test_encode_thinking_from_other_protocols(thinking, max_tokens, expected_thinking, expected_max):
    req = ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="q")])], thinking=thinking,
                      max_tokens=max_tokens)  # fmt: skip
    body = am.encode_request(req, "m")
    assert body.get("thinking") == expected_thinking and body["max_tokens"] == expected_max


def test_json_schema_maps_to_output_config():
    rf = ResponseFormat(type="json_schema", name="n", json_schema={"type": "object"})
    req = ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="q")])], response_format=rf)
    assert am.encode_request(req, "m")["output_config"] == {
        "format": {"type": "json_schema", "schema": {"type": "object"}}
    }


def test_cache_control_is_dropped_by_other_codecs_only():
    req = am.decode_request(fixture("request_prompt_caching.json"))
    assert am.encode_request(req, "m")["system"][1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in json.dumps(oc.encode_request(req, "m"))


# =============================================================================================
# decode_response / encode_response


def test_decode_reference_response():
    resp = am.decode_response(fixture("response_basic.json"))
    assert resp.id == "msg_013Zva2CMHLNnXjNJJKqJ2EF" and resp.model == "claude-sonnet-4-5-20250929"
    assert resp.content == [TextPart(text="Hi! My name is Claude.")]
    assert (resp.finish_reason, resp.stop_detail) == ("stop", "end_turn")
    assert resp.usage == Usage(input_tokens=2095, output_tokens=503)
    assert resp.created > 0


def test_decode_reference_tool_use_and_thinking_responses():
    resp = am.decode_response(fixture("response_tool_use.json"))
    text, call = resp.content
    assert text == TextPart(text="I'll check the current weather in San Francisco for you.")
    assert isinstance(call, ToolCallPart) and call.id == "toolu_01A09q90qw90lq917835lq9"
    assert json.loads(call.arguments) == {"location": "San Francisco, CA", "unit": "celsius"}
    assert resp.finish_reason == "tool_calls"
    resp = am.decode_response(fixture("response_thinking_redacted.json"))
    think, redacted, text = resp.content
    assert isinstance(think, ThinkingPart) and think.signature.startswith("WaUjzkyp")
    assert isinstance(redacted, ThinkingPart) and redacted.redacted and redacted.data.startswith("EmwKAhgB")
    assert text == TextPart(text="Based on my analysis...")


def test_usage_counts_cache_reads_and_writes_as_input():
    write, read = fixture("usage_prompt_caching.json")
    assert am.usage_from(write) == Usage(input_tokens=21 + 188086, output_tokens=393, cache_write_tokens=188086)
    assert am.usage_from(read) == Usage(input_tokens=21 + 188086, output_tokens=393, cached_tokens=188086)
    for u in (write, read):
        assert am.usage_to(am.usage_from(u)) == u
    assert am.usage_from({"input_tokens": 5, "output_tokens": 9, "output_tokens_details": {"thinking_tokens": 4}})  \
        == Usage(input_tokens=5, output_tokens=9, reasoning_tokens=4)  # fmt: skip


@pytest.mark.parametrize(
    ("stop_reason", "finish", "back"),
    [
        ("end_turn", "stop", "end_turn"),
        ("max_tokens", "length", "max_tokens"),
        ("stop_sequence", "stop", "stop_sequence"),
        ("tool_use", "tool_calls", "tool_use"),
        ("pause_turn", "stop", "pause_turn"),
        ("refusal", "content_filter", "refusal"),
        ("model_context_window_exceeded", "length", "model_context_window_exceeded"),
        ("something_new", "stop", "end_turn"),
        (None, "stop", "end_turn"),
    ],
)
def test_stop_reasons(stop_reason, finish, back):
    body = {**fixture("response_basic.json"), "stop_reason": stop_reason}
    resp = am.decode_response(body)
    assert resp.finish_reason == finish
    assert am.encode_response(resp, PISCES)["stop_reason"] == back


def test_stop_sequence_is_carried_through():
    body = {**fixture("response_basic.json"), "stop_reason": "stop_sequence", "stop_sequence": "END"}
    resp = am.decode_response(body)
    assert (resp.finish_reason, resp.stop_detail) == ("stop", "stop_sequence:END")
    out = am.encode_response(resp, PISCES)
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "END")


@pytest.mark.parametrize(
    ("finish", "detail", "stop_reason"),
    [("stop", "stop", "end_turn"), ("stop", "STOP", "end_turn"), ("length", "length", "max_tokens"),
     ("tool_calls", "tool_calls", "tool_use"), ("content_filter", "SAFETY", "refusal"), ("error", None, "end_turn")],
)  # fmt: skip
def test_encode_stop_reason_from_other_protocols(finish, detail, stop_reason):
    resp = ChatResponse(id="x", model="m", finish_reason=finish, stop_detail=detail)
    out = am.encode_response(resp, PISCES)
    assert (out["stop_reason"], out["stop_sequence"]) == (stop_reason, None)


def test_encode_response_is_an_sdk_message_with_pisces():
    resp = ChatResponse(
        id="chatcmpl-abc123",
        model="gpt-4o",
        content=[
            ThinkingPart(text="hmm"),
            TextPart(text="Hello"),
            ToolCallPart(id="call_1", name="f", arguments='{"a":1}'),
        ],
        finish_reason="tool_calls",
        usage=Usage(input_tokens=100, output_tokens=20, cached_tokens=30, cache_write_tokens=10, reasoning_tokens=5),
    )
    out = am.encode_response(resp, PISCES)
    msg = SDKMessage.model_validate(out)
    assert msg.id == "msg_chatcmplabc123" and msg.role == "assistant" and msg.type == "message"
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[2].input == {"a": 1} and msg.stop_reason == "tool_use"
    assert out["usage"] == {"input_tokens": 60, "output_tokens": 20, "cache_creation_input_tokens": 10,
                            "cache_read_input_tokens": 30, "output_tokens_details": {"thinking_tokens": 5}}  # fmt: skip
    assert out["pisces"] == PISCES
    assert am.encode_response(resp.model_copy(update={"id": "msg_keep"}), PISCES)["id"] == "msg_keep"
    assert am.encode_response(resp.model_copy(update={"id": ""}), PISCES)["id"].startswith("msg_")


@pytest.mark.parametrize("name", ["response_basic.json", "response_tool_use.json", "response_thinking_redacted.json"])
def test_response_round_trip(name):
    resp = am.decode_response(fixture(name))
    again = am.decode_response(am.encode_response(resp, PISCES))
    exclude = {"created", "id"} | ({"stop_detail"} if resp.stop_detail is None else set())  # none given: end_turn
    assert again.model_dump(exclude=exclude) == resp.model_dump(exclude=exclude)


@pytest.mark.parametrize("body", [None, [], "x", {}, {"content": "x"}, {"content": [1]}, {"content": [{"type": 5}]},
                                  {"content": [], "usage": "lots", "id": 5}])  # fmt: skip
def test_malformed_upstream_responses_are_upstream_errors(body):
    try:
        resp = am.decode_response(body)
    except PiscesError as e:
        assert e.code == "upstream_error"
    else:
        assert isinstance(resp, ChatResponse)


# =============================================================================================
# StreamDecoder


def test_decode_reference_stream():
    events = decode_stream((FIXTURES / "stream_basic.sse").read_bytes())
    start, *rest = events
    assert isinstance(start, StreamStart) and start.id == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"
    assert start.usage == Usage(input_tokens=25, output_tokens=1)
    assert rest == [
        TextDelta(index=0, text="Hello"),
        TextDelta(index=0, text="!"),
        ContentEnd(index=0),
        UsageEvent(usage=Usage(input_tokens=25, output_tokens=15)),
        Finish(reason="stop", stop_detail="end_turn"),
    ]


def test_decode_reference_tool_stream_fragments_as_they_come():
    events = decode_stream((FIXTURES / "stream_tool_use.sse").read_bytes())
    fragments = [e.delta for e in events if isinstance(e, ToolArgsDelta)]
    assert len(fragments) == 8 and all(fragments)  # the empty first fragment is no event
    resp = accumulate(events)
    assert resp.text == "Okay, let's check the weather for San Francisco, CA:"
    (call,) = resp.tool_calls
    assert json.loads(call.arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert resp.finish_reason == "tool_calls" and resp.usage == Usage(input_tokens=472, output_tokens=89)


def test_decode_reference_thinking_stream():
    events = decode_stream((FIXTURES / "stream_thinking.sse").read_bytes())
    resp = accumulate(events)
    think, text = resp.content
    assert isinstance(think, ThinkingPart) and think.text.endswith("= 12,231") and think.signature.startswith("EqQB")
    assert text == TextPart(text="27 * 453 = 12,231")
    assert resp.usage == Usage()  # the documentation's example has none
    assert not any(isinstance(e, UsageEvent) for e in events)


@pytest.mark.parametrize("name", RECORDED)
@pytest.mark.parametrize("seed", [None, 1, 2, 3, 4])
def test_recorded_streams_decode_the_same_at_any_byte_boundary(name, seed):
    whole = decode_stream(recorded(name))
    sliced = decode_stream(recorded(name), seed)
    strip = [e for e in sliced if not isinstance(e, StreamStart)]
    assert strip == [e for e in whole if not isinstance(e, StreamStart)]
    assert not any(isinstance(e, ErrorEvent) for e in sliced)


def test_recorded_tool_stream():
    resp = accumulate(decode_stream(recorded("anthropic_messages_tool_use_stream.sse"), seed=7))
    assert resp.id == "msg_019Q1hrJbZG26Fb9BQhrkHEr" and resp.model == "claude-sonnet-4-20250514"
    assert resp.text == "I'll check the current weather in Paris for you."
    (call,) = resp.tool_calls
    assert (call.id, call.name, json.loads(call.arguments)) == ("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather",
                                                                {"location": "Paris"})  # fmt: skip
    assert resp.finish_reason == "tool_calls" and resp.usage == Usage(input_tokens=377, output_tokens=65)


def test_error_event_in_stream():
    events = decode_stream(recorded(RECORDED[0])[:400] + (FIXTURES / "stream_error.sse").read_bytes())
    err = events[-1]
    assert isinstance(err, ErrorEvent) and (err.code, err.status) == ("upstream_error", 529)
    assert "Overloaded" in err.message and sum(isinstance(e, ErrorEvent) for e in events) == 1
    assert isinstance(events[-2], ContentEnd)  # the open block is ended first


def test_stream_cut_short_is_an_error_without_a_fake_finish():
    data = recorded(RECORDED[0])
    events = decode_stream(data[: data.index(b"event: content_block_stop")])
    assert not any(isinstance(e, Finish) for e in events)
    assert events[-2:] == [
        ContentEnd(index=0),
        ErrorEvent(code="upstream_error", message="upstream stream ended early"),
    ]


def test_message_delta_usage_is_cumulative_with_cache_counters():
    dec = am.StreamDecoder()
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "model": "c",
            "usage": {
                "input_tokens": 5,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 0,
                "output_tokens": 1,
            },
        },
    }
    delta = {"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "##"},
             "usage": {"output_tokens": 40, "cache_creation_input_tokens": 7}}  # fmt: skip
    events = dec.feed(SSEEvent(data=json.dumps(start))) + dec.feed(SSEEvent(data=json.dumps(delta)))
    assert events[1:] == [
        UsageEvent(usage=Usage(input_tokens=112, output_tokens=40, cached_tokens=100, cache_write_tokens=7)),
        Finish(reason="stop", stop_detail="stop_sequence:##"),
    ]


def test_server_tool_blocks_are_whole_opaque_blocks_and_unknown_events_skipped():
    result = {"type": "web_search_tool_result", "tool_use_id": "s", "content": []}
    blocks = [
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "server_tool_use", "id": "s", "name": "w", "input": {}}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "input_json_delta", "partial_json": '{"query": "cap'}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": 'ital"}'}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": result},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "citations_delta", "citation": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "found it"}},
        {"type": "content_block_stop", "index": 2},
        {"type": "brand_new_event"},
    ]  # fmt: skip
    dec = am.StreamDecoder()
    events = [e for b in blocks for e in dec.feed(SSEEvent(data=json.dumps(b), event=b["type"]))]
    use = {"type": "server_tool_use", "id": "s", "name": "w", "input": {"query": "capital"}}
    assert events == [OpaqueBlock(index=0, protocol="anthropic", block=use),
                      OpaqueBlock(index=1, protocol="anthropic", block=result),
                      TextDelta(index=2, text="found it"), ContentEnd(index=2)]  # fmt: skip
    # an Anthropic client gets them back, whole, each opened and closed; an OpenAI client only the text
    enc = am.StreamEncoder(PISCES)
    wire = b"".join(enc.encode(e) for e in [StreamStart(id="m", model="c"), *events]) + enc.close()
    starts = [json.loads(e.data) for e in sse_events(wire) if e.event == "content_block_start"]
    assert [s["content_block"] for s in starts] == [use, result, {"type": "text", "text": ""}]
    oenc = oc.StreamEncoder(PISCES)
    assert b"".join(oenc.encode(e) for e in events[:2]) == b""
    acc = ResponseAccumulator()
    for e in events:
        acc.add(e)
    assert [type(p).__name__ for p in acc.response().content] == ["OpaquePart", "OpaquePart", "TextPart"]


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        '{"type": "content_block_delta", "index": "zero", "delta": 5}',
        '{"type": "content_block_start", "index": [1], "content_block": {"type": "text"}}',
        '{"type": "content_block_start", "content_block": {"type": "text"}}',
        '{"type": "message_delta", "delta": "x", "usage": {"output_tokens": "many"}}',
        '{"type": "message_start", "message": [1]}',
        '{"type": "error", "error": "boom"}',
        "[1, 2]",
    ],
)
def test_malformed_events_never_raise(data):
    dec = am.StreamDecoder()
    events = dec.feed(SSEEvent(data=json.dumps({"type": "message_start", "message": {"id": "m"}})))
    events += dec.feed(SSEEvent(data=data)) + dec.close()
    assert all(isinstance(e, StreamEvent.__args__) for e in events)  # type: ignore[attr-defined]


# =============================================================================================
# StreamEncoder


def test_recorded_streams_through_the_gateway_are_what_the_sdk_expects():
    """Upstream recording -> StreamDecoder -> StreamEncoder -> the SDK's own types and accumulator."""
    for name, seed in zip(RECORDED, (5, 6), strict=True):
        data = encode_all(decode_stream(recorded(name), seed))
        events = events_of(data)
        assert [e["type"] for e in events[:2]] == ["message_start", "ping"]
        assert events[0]["message"]["pisces"] == PISCES
        assert [e["type"] for e in events[-2:]] == ["message_delta", "message_stop"]
        assert sum(e["type"] == "message_delta" for e in events) == 1
        final = sdk_fold(data)
        original = [json.loads(s.data) for s in sse_events(recorded(name)) if s.event != "ping"]
        expected_id = original[0]["message"]["id"]
        assert final.id == expected_id and final.pisces == PISCES  # type: ignore[attr-defined]
        assert final.stop_reason == original[-2]["delta"]["stop_reason"]
        assert final.usage.output_tokens == original[-2]["usage"]["output_tokens"]
        # the same input_json_delta fragments the upstream sent, one event each: nothing buffered
        upstream = [e["delta"] for e in original if e["type"] == "content_block_delta"]
        ours = [e["delta"] for e in events if e["type"] == "content_block_delta"]
        assert ours == [d for d in upstream if d.get("partial_json", "x") != ""]


def test_reference_thinking_stream_re_encodes_with_signature():
    final = sdk_fold(encode_all(decode_stream((FIXTURES / "stream_thinking.sse").read_bytes())))
    think, text = final.content
    assert think.type == "thinking" and think.signature.startswith("EqQBCgIY") and think.thinking.startswith("Let me")
    assert text.type == "text" and text.text == "27 * 453 = 12,231"


OPENAI_STYLE: list[StreamEvent] = [
    StreamStart(id="chatcmpl-abc", model="gpt-4o", created=1700000000),
    ThinkingDelta(index=0, text="User wants weather."),
    TextDelta(index=1, text="Let me "),
    TextDelta(index=1, text="check."),
    ToolCallStart(index=2, id="call_1", name="get_weather"),
    ToolArgsDelta(index=2, delta='{"ci'),
    ToolArgsDelta(index=2, delta='ty": "Pa'),
    ToolArgsDelta(index=2, delta='ris"}'),
    ToolCallStart(index=3, id="call_2", name="get_time"),
    ToolArgsDelta(index=3, delta="{}"),
    Finish(reason="tool_calls", stop_detail="tool_calls"),
    UsageEvent(usage=Usage(input_tokens=100, output_tokens=20, cached_tokens=40)),
]


def test_openai_style_event_order_makes_a_well_formed_stream():
    """No ContentEnd, tool args in fragments, Finish before usage: still one proper Messages stream."""
    enc = am.StreamEncoder(PISCES)
    chunks = [enc.encode(e) for e in OPENAI_STYLE]
    assert all(chunks[i] for i in (5, 6, 7))  # each fragment goes out at once
    data = b"".join(chunks) + enc.close()
    events = events_of(data)
    kinds = [e["type"] for e in events]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 4
    assert [e["index"] for e in events if e["type"] == "content_block_start"] == [0, 1, 2, 3]
    final = sdk_fold(data)
    assert final.id == "msg_chatcmplabc" and final.model == "gpt-4o"
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert final.content[1].text == "Let me check."
    assert (final.content[2].id, final.content[2].name, final.content[2].input) == ("call_1", "get_weather",
                                                                                   {"city": "Paris"})  # fmt: skip
    assert final.content[3].input == {}
    assert final.stop_reason == "tool_use" and final.stop_sequence is None
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.output_tokens) == (60, 40, 20)


def test_openai_recording_through_the_anthropic_door():
    events = oc.StreamDecoder()
    canonical = [e for s in sse_events(recorded("openai_chat_tool_call_stream.sse")) for e in events.feed(s)]
    final = sdk_fold(encode_all(canonical + events.close()))
    (call,) = [b for b in final.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "San Francisco", "state": "CA"}
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 19


def test_encoder_output_decodes_back_to_the_same_response():
    data = encode_all(OPENAI_STYLE)
    for seed in (None, 1, 2):
        back = accumulate(decode_stream(data, seed))
        expected = accumulate(OPENAI_STYLE)
        assert back.model_dump(exclude={"stop_detail", "id", "created"}) == expected.model_dump(
            exclude={"stop_detail", "id", "created"}
        )


def test_cut_stream_closes_as_a_proper_message():
    enc = am.StreamEncoder(PISCES)
    data = b"".join(enc.encode(e) for e in OPENAI_STYLE[:6]) + enc.close()
    events = events_of(data)
    assert [e["type"] for e in events[-3:]] == ["content_block_stop", "message_delta", "message_stop"]
    final = sdk_fold(data)
    assert final.stop_reason == "end_turn" and final.content[-1].type == "tool_use"
    assert enc.close() == b""  # once


def test_close_without_any_event_is_an_empty_message():
    enc = am.StreamEncoder(PISCES)
    final = sdk_fold(enc.close())
    assert final.content == [] and final.stop_reason == "end_turn" and final.id.startswith("msg_")


def test_error_event_ends_the_stream():
    enc = am.StreamEncoder(PISCES)
    data = enc.encode(StreamStart(id="msg_1", model="m")) + enc.encode(TextDelta(index=0, text="a"))
    data += enc.encode(ErrorEvent(code="upstream_error", message="upstream stream ended early", status=502))
    tail = enc.close() + enc.encode(TextDelta(index=0, text="more"))
    assert tail == b""
    *_, err = events_of(data)
    assert err == {"type": "error", "error": {"type": "api_error", "message": "upstream stream ended early"},
                   "request_id": "req_test", "pisces": PISCES}  # fmt: skip


def test_heartbeat_is_a_ping():
    enc = am.StreamEncoder(PISCES)
    assert events_of(enc.heartbeat()) == [{"type": "ping"}]


def test_stop_sequence_and_usage_in_message_delta():
    events = [StreamStart(id="msg_1", model="m", usage=Usage(input_tokens=30, cached_tokens=20, cache_write_tokens=5)),
              TextDelta(index=0, text="a"), UsageEvent(usage=Usage(output_tokens=3)),
              Finish(reason="stop", stop_detail="stop_sequence:END")]  # fmt: skip
    out = events_of(encode_all(events))
    assert out[0]["message"]["usage"] == {"input_tokens": 5, "output_tokens": 0, "cache_creation_input_tokens": 5,
                                          "cache_read_input_tokens": 20}  # fmt: skip
    delta = out[-2]
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"} and delta["pisces"] == PISCES
    assert delta["usage"] == {"input_tokens": 5, "output_tokens": 3, "cache_creation_input_tokens": 5,
                              "cache_read_input_tokens": 20}  # fmt: skip


def test_redacted_thinking_and_interleaved_text_blocks():
    events = [StreamStart(id="msg_1", model="m"), ThinkingDelta(index=0, redacted_data="opaque"),
              TextDelta(index=1, text="a"), ThinkingDelta(index=2, text="more", signature="sig"),
              TextDelta(index=1, text="b"), ContentEnd(index=1), Finish(reason="stop")]  # fmt: skip
    final = sdk_fold(encode_all(events))
    assert [b.type for b in final.content] == ["redacted_thinking", "text", "thinking", "text"]
    assert final.content[0].data == "opaque" and final.content[2].signature == "sig"
    assert final.content[1].text + final.content[3].text == "ab"


# =============================================================================================
# errors and models


@pytest.mark.parametrize(
    ("code", "type_"),
    [
        ("invalid_json", "invalid_request_error"),
        ("invalid_request", "invalid_request_error"),
        ("unsupported_parameter", "invalid_request_error"),
        ("missing_api_key", "authentication_error"),
        ("invalid_api_key", "authentication_error"),
        ("insufficient_balance", "billing_error"),
        ("key_revoked", "permission_error"),
        ("model_not_allowed", "permission_error"),
        ("model_not_found", "not_found_error"),
        ("not_found", "not_found_error"),
        ("method_not_allowed", "invalid_request_error"),
        ("idempotency_in_progress", "invalid_request_error"),
        ("request_too_large", "request_too_large"),
        ("idempotency_key_reused", "invalid_request_error"),
        ("rate_limit_exceeded", "rate_limit_error"),
        ("internal_error", "api_error"),
        ("upstream_error", "api_error"),
        ("no_available_channel", "overloaded_error"),
        ("service_unavailable", "overloaded_error"),
        ("upstream_timeout", "timeout_error"),
    ],
)
def test_render_error(code, type_):
    err = PiscesError(code, "something went wrong")
    body = am.render_error(err, PISCES)
    assert body == {"type": "error", "error": {"type": type_, "message": "something went wrong"},
                    "request_id": "req_test", "pisces": PISCES}  # fmt: skip
    if type_ != "request_too_large":  # documented, though the SDK's union does not list it
        anthropic.types.ErrorResponse.model_validate(body)


def test_render_error_covers_the_whole_taxonomy_and_passed_on_statuses():
    assert {am.render_error(PiscesError(c, "m"), {})["error"]["type"] for c in ERRORS} <= {
        "invalid_request_error", "authentication_error", "billing_error", "permission_error", "not_found_error",
        "request_too_large", "rate_limit_error", "api_error", "overloaded_error", "timeout_error"}  # fmt: skip
    assert am.render_error(PiscesError("invalid_request", "m", status=422), {})["error"]["type"] == (
        "invalid_request_error"
    )
    assert am.render_error(PiscesError("upstream_error", "m", status=529), {})["error"]["type"] == "overloaded_error"


def test_upstream_error_message():
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "r"}
    assert am.upstream_error_message(json.dumps(body).encode()) == "Overloaded"
    assert am.upstream_error_message(b'{"error": "plain"}') == "plain"
    assert am.upstream_error_message(b"<html>Bad Gateway</html>") == "<html>Bad Gateway</html>"
    assert 0 < len(am.upstream_error_message(b"x" * 5000)) <= 500
    assert len(am.upstream_error_message(json.dumps({"detail": "z" * 5000}).encode())) <= 500
    assert am.upstream_error_message("héllo".encode() + b"\xff").startswith("héllo")


def test_models_in_the_models_api_shape():
    reference = fixture("models_list.json")
    listing = am.encode_model_list([am.encode_model("claude-sonnet-4-20250514", "anthropic"),
                                    am.encode_model("gpt-4o", "openai")], PISCES)  # fmt: skip
    assert set(listing) == set(reference) | {"pisces"}
    assert set(listing["data"][0]) >= set(reference["data"][0])
    for model in listing["data"]:
        ModelInfo.model_validate(model)
    assert (listing["first_id"], listing["last_id"], listing["has_more"]) == (
        "claude-sonnet-4-20250514",
        "gpt-4o",
        False,
    )
    assert am.encode_model_list([], PISCES)["first_id"] is None
