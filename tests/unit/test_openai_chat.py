"""The OpenAI Chat Completions codec against the OpenAI API reference's own examples and a real recording.

Fixtures: tests/unit/fixtures/openai/ (see its README for the reference examples they are copied from)
and shared/fixtures/recorded/openai_chat_tool_call_stream.sse (PISCES_SHARED_DIR overrides shared/).
"""

from __future__ import annotations

import copy
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from pisces.canonical import (
    ChatRequest,
    ChatResponse,
    ContentEnd,
    ErrorEvent,
    Finish,
    ImagePart,
    Message,
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
from pisces.errors import PiscesError
from pisces.protocols import openai_chat as oc
from pisces.protocols.sse import SSEEvent, SSEParser

FIXTURES = Path(__file__).parent / "fixtures" / "openai"
PISCES = {"gateway": "Pisces", "protocol": "openai", "request_id": "req_test", "channel": "c", "timestamp": "T"}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def recorded(name: str) -> bytes:
    shared = os.environ.get("PISCES_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared"
    return (Path(shared) / "fixtures" / "recorded" / name).read_bytes()


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
    dec = oc.StreamDecoder()
    out: list[StreamEvent] = []
    for ev in sse_events(data, seed):
        out += dec.feed(ev)
    return out + dec.close()


def chunks_of(data: bytes) -> list[dict[str, Any]]:
    """The JSON objects of an encoder's output; checks the framing of every event on the way."""
    assert data.endswith(b"data: [DONE]\n\n")
    events = data.decode().split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    out = []
    for ev in events[:-2]:
        assert ev.startswith("data: {") and "\n" not in ev, ev
        out.append(json.loads(ev[len("data: ") :]))
    return out


def accumulate(events: list[StreamEvent]) -> ChatResponse:
    acc = ResponseAccumulator()
    for ev in events:
        acc.add(ev)
    return acc.response()


def bad(body: Any) -> PiscesError:
    with pytest.raises(PiscesError) as e:
        oc.decode_request(body)
    return e.value


# =============================================================================================
# decode_request: the reference examples


def test_name():
    assert oc.NAME == "openai"


def test_decode_reference_default_request():
    req = oc.decode_request(fixture("request_default.json"))
    assert req.model == "VAR_model_id"
    assert req.system == [TextPart(text="You are a helpful assistant.")]
    assert req.messages == [Message(role="user", content=[TextPart(text="Hello!")])]
    assert req.stream is False and req.tools == [] and req.provider_options == {}


def test_decode_reference_image_request():
    req = oc.decode_request(fixture("request_image.json"))
    (msg,) = req.messages
    assert msg.content[0] == TextPart(text="What's in this image?")
    image = msg.content[1]
    assert isinstance(image, ImagePart) and image.url.startswith("https://upload.wikimedia.org/")
    assert req.max_tokens == 300


def test_decode_reference_stream_request():
    req = oc.decode_request(fixture("request_stream.json"))
    assert req.stream is True and req.stream_usage is False


def test_decode_reference_tools_request():
    req = oc.decode_request(fixture("request_tools.json"))
    (tool,) = req.tools
    assert tool.name == "get_current_weather"
    assert tool.description == "Get the current weather in a given location"
    assert tool.parameters["required"] == ["location"]
    assert tool.parameters["properties"]["unit"]["enum"] == ["celsius", "fahrenheit"]
    assert req.tool_choice == ToolChoice(mode="auto")


def test_decode_reference_legacy_functions_request():
    req = oc.decode_request(fixture("request_legacy_functions.json"))
    assert [t.name for t in req.tools] == ["get_current_weather"]
    assert req.tool_choice is not None and req.tool_choice.mode == "auto"
    assert "functions" not in req.provider_options.get("openai", {})


# =============================================================================================
# decode_request: each parameter


def test_system_and_developer_become_system_text_in_order():
    req = oc.decode_request(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "one"},
                {"role": "system", "content": [{"type": "text", "text": "two"}, {"type": "text", "text": "three"}]},
                {"role": "user", "content": "hi"},
            ],
        }
    )
    assert [p.text for p in req.system] == ["one", "two", "three"]
    assert [m.role for m in req.messages] == ["user"]


def test_user_parts_text_url_image_and_data_url_image():
    req = oc.decode_request(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "name": "ann",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}},
                        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA", "detail": "low"}},
                    ],
                }
            ],
        }
    )
    (msg,) = req.messages
    assert msg.name == "ann"
    assert msg.content == [
        TextPart(text="look"),
        ImagePart(url="https://x.test/a.png", detail="high"),
        ImagePart(data="AAAA", media_type="image/jpeg", detail="low"),
    ]


def test_assistant_tool_calls_and_tool_results_in_one_user_turn():
    req = oc.decode_request(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Paris"}'}},
                        {"id": "c2", "type": "function", "function": {"name": "w", "arguments": '{"city":"Rome"}'}},
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "rain"}]},
                {"role": "user", "content": "thanks, and tomorrow?"},
            ],
        }
    )
    _question, assistant, results = req.messages
    assert assistant.role == "assistant"
    assert assistant.content == [
        ToolCallPart(id="c1", name="w", arguments='{"city":"Paris"}'),
        ToolCallPart(id="c2", name="w", arguments='{"city":"Rome"}'),
    ]
    assert results.role == "user"
    r1, r2, text = results.content
    assert isinstance(r1, ToolResultPart) and r1.tool_call_id == "c1" and r1.content == [TextPart(text="sunny")]
    assert isinstance(r2, ToolResultPart) and r2.tool_call_id == "c2" and r2.content == [TextPart(text="rain")]
    assert text == TextPart(text="thanks, and tomorrow?")


def test_assistant_string_content_and_refusal_are_text():
    req = oc.decode_request(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "I can help."},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": None, "refusal": "I can't help with that."},
            ],
        }
    )
    assert req.messages[1].content == [TextPart(text="I can help.")]
    assert req.messages[3].content == [TextPart(text="I can't help with that.")]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"tool_choice": "auto"}, ToolChoice(mode="auto")),
        ({"tool_choice": "none"}, ToolChoice(mode="none")),
        ({"tool_choice": "required"}, ToolChoice(mode="required")),
        ({"tool_choice": {"type": "function", "function": {"name": "w"}}}, ToolChoice(mode="tool", name="w")),
        ({"tool_choice": "required", "parallel_tool_calls": False}, ToolChoice(mode="required", parallel=False)),
        ({"parallel_tool_calls": True}, ToolChoice(mode="auto", parallel=True)),
        ({"function_call": {"name": "w"}}, ToolChoice(mode="tool", name="w")),
        ({}, None),
    ],
)
def test_tool_choice(given, expected):
    tools = [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}]
    req = oc.decode_request({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools, **given})
    assert req.tool_choice == expected


def test_tools_strict_and_default_parameters():
    req = oc.decode_request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [
                {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}, "strict": True}},
                {"type": "function", "function": {"name": "b"}},
            ],
        }
    )
    assert req.tools[0] == Tool(name="a", parameters={"type": "object"}, strict=True)
    assert req.tools[1].name == "b" and req.tools[1].parameters["type"] == "object"


def test_max_completion_tokens_wins_over_max_tokens():
    req = oc.decode_request(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10, "max_completion_tokens": 99}
    )
    assert req.max_tokens == 99
    req = oc.decode_request({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10})
    assert req.max_tokens == 10


def test_sampling_parameters():
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    req = oc.decode_request({**base, "temperature": 0.5, "top_p": 0.9, "seed": 7, "stop": "END", "n": 1})
    assert (req.temperature, req.top_p, req.seed, req.stop) == (0.5, 0.9, 7, ["END"])
    assert oc.decode_request({**base, "stop": ["a", "b"]}).stop == ["a", "b"]
    assert oc.decode_request({**base, "temperature": 1}).temperature == 1


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"type": "text"}, ResponseFormat(type="text")),
        ({"type": "json_object"}, ResponseFormat(type="json_object")),
        (
            {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}, "strict": True}},
            ResponseFormat(type="json_schema", name="r", json_schema={"type": "object"}, strict=True),
        ),
    ],
)
def test_response_format(given, expected):
    req = oc.decode_request({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": given})
    assert req.response_format == expected


def test_reasoning_effort_stream_options_user_metadata():
    req = oc.decode_request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "high",
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": "user-1",
            "metadata": {"team": "a"},
        }
    )
    assert req.thinking == ThinkingConfig(effort="high")
    assert req.stream is True and req.stream_usage is True
    assert req.user == "user-1" and req.metadata == {"team": "a"}


def test_openai_only_fields_travel_in_provider_options():
    only_openai = {
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "logit_bias": {"50256": -100},
        "logprobs": True,
        "top_logprobs": 2,
        "service_tier": "flex",
        "store": True,
        "prediction": {"type": "content", "content": "x"},
        "modalities": ["text"],
        "web_search_options": {},
        "some_future_field": {"nested": [1, 2]},
    }
    req = oc.decode_request({"model": "m", "messages": [{"role": "user", "content": "x"}], **only_openai})
    assert req.provider_options["openai"] == only_openai


# =============================================================================================
# decode_request: validation errors (status, code, param, message)


def _body(**kw: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "x"}], **kw}


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ([], None, "JSON object"),
        ("hello", None, "JSON object"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "Missing required parameter: 'model'."),
        (_body(model=42), "model", "Invalid type for 'model'"),
        (_body(model=""), "model", "'model'"),
        ({"model": "m"}, "messages", "Missing required parameter: 'messages'."),
        (_body(messages="hello"), "messages", "Invalid type for 'messages'"),
        (_body(messages=[]), "messages", "empty array"),
        (_body(messages=[5]), "messages[0]", "Invalid type for 'messages[0]'"),
        (_body(messages=[{"content": "x"}]), "messages[0].role", "Missing required parameter"),
        (_body(messages=[{"role": "wizard", "content": "x"}]), "messages[0].role", "'wizard'"),
        (_body(messages=[{"role": "user", "content": 5}]), "messages[0].content", "Invalid type"),
        (_body(messages=[{"role": "user", "content": [{"type": "audio"}]}]), "messages[0].content[0].type", "audio"),
        (_body(messages=[{"role": "user", "content": [{"type": "text"}]}]), "messages[0].content[0].text", "text"),
        (
            _body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
            "messages[0].content[0].image_url.url",
            "url",
        ),
        (
            _body(messages=[{"role": "user", "content": "x"}, {"role": "tool", "content": "r"}]),
            "messages[1].tool_call_id",
            "Missing required parameter: 'messages[1].tool_call_id'.",
        ),
        (_body(messages=[{"role": "assistant", "tool_calls": "x"}]), "messages[0].tool_calls", "Invalid type"),
        (
            _body(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "function": {}}]}]),
            "messages[0].tool_calls[0].function.name",
            "Missing required parameter",
        ),
        (
            _body(temperature="hot"),
            "temperature",
            "Invalid type for 'temperature': expected a number, but got a string",
        ),
        (_body(temperature=True), "temperature", "expected a number, but got a boolean"),
        (_body(temperature=3), "temperature", "temperature"),
        (_body(top_p="x"), "top_p", "Invalid type for 'top_p'"),
        (_body(max_tokens="10"), "max_tokens", "Invalid type for 'max_tokens': expected an integer"),
        (_body(max_tokens=0), "max_tokens", "max_tokens"),
        (_body(max_completion_tokens=1.5), "max_completion_tokens", "expected an integer, but got a number"),
        (_body(seed="7"), "seed", "Invalid type for 'seed'"),
        (_body(stop=5), "stop", "Invalid type for 'stop'"),
        (_body(stop=["a", 1]), "stop", "Invalid type for 'stop'"),
        (_body(stream="yes"), "stream", "Invalid type for 'stream': expected a boolean"),
        (_body(stream_options="x"), "stream_options", "Invalid type for 'stream_options'"),
        (_body(n="2"), "n", "Invalid type for 'n'"),
        (_body(n=0), "n", "'n'"),
        (_body(tools="x"), "tools", "Invalid type for 'tools'"),
        (_body(tools=[{"type": "function"}]), "tools[0].function.name", "Missing required parameter"),
        (
            _body(tools=[{"type": "function", "function": {"name": "f", "parameters": 1}}]),
            "tools[0].function.parameters",
            "parameters",
        ),
        (_body(tool_choice="sometimes"), "tool_choice", "tool_choice"),
        (_body(response_format={"type": "xml"}), "response_format", "response_format"),
        (_body(response_format={"type": "json_schema"}), "response_format.json_schema", "json_schema"),
        (_body(metadata={"a": 1}), "metadata", "Invalid type for 'metadata'"),
    ],
)
def test_validation_errors_name_the_param(body, param, message):
    err = bad(body)
    assert (err.status, err.code, err.param) == (400, "invalid_request", param)
    assert message in err.message


def test_n_above_one_is_unsupported():
    err = bad(_body(n=2))
    assert (err.status, err.code, err.param) == (400, "unsupported_parameter", "n")


def test_legacy_function_role_is_rejected_cleanly():
    err = bad(_body(messages=[{"role": "function", "name": "f", "content": "x"}]))
    assert (err.code, err.param) == ("invalid_request", "messages[0].role")


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
        for value in (None, 0, 1, -1, 1.5, True, "x", "", [], {}, [1], {"a": 1}, [{"a": 1}]):
            body = copy.deepcopy(base)
            target = body
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
            yield ".".join(map(str, path)), value, body


FULL_REQUEST: dict[str, Any] = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "s"},
        {
            "role": "user",
            "name": "u",
            "content": [
                {"type": "text", "text": "t"},
                {"type": "image_url", "image_url": {"url": "http://x.test/i.png", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "name": "a",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {"name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True},
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "parallel_tool_calls": False,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "n", "schema": {"type": "object"}, "strict": True},
    },
    "stream": True,
    "stream_options": {"include_usage": True},
    "metadata": {"k": "v"},
    "user": "u",
    "reasoning_effort": "low",
    "max_tokens": 5,
    "temperature": 0.5,
    "top_p": 0.5,
    "stop": ["x"],
    "seed": 1,
}


def test_malformed_requests_are_always_400_never_a_crash():
    crashes = {}
    for where, value, body in _mutations(FULL_REQUEST):
        try:
            oc.decode_request(body)
        except PiscesError as e:
            assert e.status == 400, (where, value)
        except Exception as e:  # the point of the test: nothing but PiscesError
            crashes[where] = f"{value!r}: {type(e).__name__}"
    assert crashes == {}


# =============================================================================================
# encode_request


ROUND_TRIP: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "name": "ann",
            "content": [
                {"type": "text", "text": "What is in these images?"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
        {"role": "assistant", "content": "Two cats. Want the weather too?"},
        {"role": "user", "content": "Yes, in Paris and Rome."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Paris"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "w", "arguments": '{"city":"Rome"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
        {"role": "user", "content": "Thanks."},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "w",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "strict": True,
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "w"}},
    "parallel_tool_calls": False,
    "max_completion_tokens": 256,
    "temperature": 0.2,
    "top_p": 0.9,
    "stop": ["END", "STOP"],
    "seed": 42,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    },
    "reasoning_effort": "medium",
    "stream": True,
    "stream_options": {"include_usage": True},
    "user": "user-1",
    "store": True,
    "metadata": {"team": "a"},
    "frequency_penalty": 0.1,
    "presence_penalty": 0.2,
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "top_logprobs": 3,
    "service_tier": "auto",
    "prediction": {"type": "content", "content": "x"},
    "some_future_field": {"nested": True},
}


def test_request_round_trip_preserves_everything():
    req = oc.decode_request(copy.deepcopy(ROUND_TRIP))
    assert oc.encode_request(req, "gpt-4o") == ROUND_TRIP
    # and the canonical request survives a JSON trip (what logs and idempotency records store)
    assert ChatRequest.model_validate_json(req.model_dump_json()) == req


@pytest.mark.parametrize("name", ["request_default.json", "request_image.json", "request_tools.json"])
def test_reference_requests_round_trip(name):
    body = fixture(name)
    assert oc.encode_request(oc.decode_request(copy.deepcopy(body)), body["model"]) == body


def test_encode_uses_the_upstream_model_and_max_tokens():
    body = oc.encode_request(
        ChatRequest(model="alias", messages=[Message(role="user", content=[TextPart(text="hi")])], max_tokens=9),
        "upstream-model",
    )
    assert body == {"model": "upstream-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9}


def test_encode_stream_always_asks_for_usage():
    req = oc.decode_request(_body(stream=True))
    assert req.stream_usage is False
    body = oc.encode_request(req, "m")
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "stream" not in oc.encode_request(req.model_copy(update={"stream": False}), "m")


def test_encode_from_another_protocols_canonical_request():
    req = ChatRequest(
        model="m",
        system=[TextPart(text="one"), TextPart(text="two")],
        messages=[
            Message(role="user", content=[ImagePart(data="QUJD", media_type="image/webp"), TextPart(text="hi")]),
            Message(role="assistant", content=[ToolCallPart(id="t1", name="f", arguments='{"a":1}')]),
            Message(
                role="user",
                content=[
                    ToolResultPart(tool_call_id="t1", content=[TextPart(text="ok"), TextPart(text="!")]),
                    TextPart(text="go on"),
                ],
            ),
        ],
        tools=[Tool(name="f")],
        tool_choice=ToolChoice(mode="required"),
        thinking=ThinkingConfig(effort="low"),
        response_format=ResponseFormat(type="json_object"),
    )
    body = oc.encode_request(req, "m")
    assert body["messages"][0]["role"] == "system" and "one" in body["messages"][0]["content"]
    assert "two" in "".join(m["content"] for m in body["messages"] if m["role"] == "system")
    user = body["messages"][1]
    assert user["content"][0] == {"type": "image_url", "image_url": {"url": "data:image/webp;base64,QUJD"}}
    assert user["content"][1] == {"type": "text", "text": "hi"}
    assert body["messages"][2]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "t1", "content": "ok!"}
    assert body["messages"][4] == {"role": "user", "content": "go on"}
    assert body["tools"][0]["function"]["parameters"] == {"type": "object", "properties": {}}
    assert body["tool_choice"] == "required"
    assert body["reasoning_effort"] == "low"
    assert body["response_format"] == {"type": "json_object"}


def test_dropped_on_purpose_top_k_thinking_parts_and_tool_result_images():
    """OpenAI chat has no top_k, no way to send reasoning back, and text-only tool messages."""
    req = ChatRequest(
        model="m",
        top_k=40,
        messages=[
            Message(role="user", content=[TextPart(text="q")]),
            Message(
                role="assistant",
                content=[
                    ThinkingPart(text="let me think", signature="sig"),
                    TextPart(text="calling"),
                    ToolCallPart(id="t", name="f"),
                ],
            ),
            Message(
                role="user",
                content=[ToolResultPart(tool_call_id="t", content=[TextPart(text="r"), ImagePart(url="https://x/i")])],
            ),
        ],
        tools=[Tool(name="f")],
    )
    body = oc.encode_request(req, "m")
    text = json.dumps(body)
    assert "top_k" not in body
    assert "let me think" not in text and "sig" not in text and "https://x/i" not in text
    assert body["messages"][1]["content"] == "calling"
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "t", "content": "r"}


def test_metadata_only_with_store():
    """OpenAI answers 400 to metadata without store=true: another protocol's metadata is dropped on purpose."""
    req = ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="q")])], metadata={"a": "b"})
    assert "metadata" not in oc.encode_request(req, "m")
    req = req.model_copy(update={"provider_options": {"openai": {"store": True}}})
    assert oc.encode_request(req, "m")["metadata"] == {"a": "b"}


def test_provider_options_merged_last_and_only_for_openai():
    req = ChatRequest(
        model="m",
        messages=[Message(role="user", content=[TextPart(text="q")])],
        temperature=0.1,
        provider_options={"openai": {"logprobs": True, "temperature": 0.9}, "anthropic": {"top_k": 5}},
    )
    body = oc.encode_request(req, "m")
    assert body["logprobs"] is True and body["temperature"] == 0.9
    assert "top_k" not in body


def test_max_completion_tokens_form_is_kept_with_the_canonical_value():
    req = oc.decode_request(_body(max_completion_tokens=100))
    body = oc.encode_request(req.model_copy(update={"max_tokens": 50}), "m")
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body


# =============================================================================================
# decode_response / encode_response


def test_decode_reference_response():
    resp = oc.decode_response(fixture("response.json"))
    assert resp.id == "chatcmpl-123" and resp.model == "gpt-4o-mini" and resp.created == 1677652288
    assert resp.content == [TextPart(text="\n\nHello there, how may I assist you today?")]
    assert resp.finish_reason == "stop"
    assert resp.usage == Usage(input_tokens=9, output_tokens=12)


def test_decode_reference_tool_call_response():
    resp = oc.decode_response(fixture("response_tool_call.json"))
    (call,) = resp.content
    assert isinstance(call, ToolCallPart)
    assert (call.id, call.name) == ("call_abc123", "get_current_weather")
    assert json.loads(call.arguments) == {"location": "Boston, MA"}
    assert resp.finish_reason == "tool_calls"
    assert resp.usage.input_tokens == 82 and resp.usage.output_tokens == 17


def test_decode_reference_response_object():
    resp = oc.decode_response(fixture("response_object.json"))
    assert resp.text.startswith("The image shows a wooden boardwalk")
    assert resp.usage == Usage(input_tokens=1117, output_tokens=46)


def test_decode_response_reasoning_content_first_and_usage_details():
    resp = oc.decode_response(
        {
            "id": "x",
            "model": "deepseek-reasoner",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "42", "reasoning_content": "6 times 7"},
                    "finish_reason": "length",
                }
            ],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "prompt_tokens_details": {"cached_tokens": 64},
                "completion_tokens_details": {"reasoning_tokens": 30},
            },
        }
    )
    assert resp.content == [ThinkingPart(text="6 times 7"), TextPart(text="42")]
    assert resp.finish_reason == "length"
    assert resp.usage == Usage(input_tokens=100, output_tokens=50, cached_tokens=64, reasoning_tokens=30)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
        ("function_call", "tool_calls"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_decode_response_finish_reasons(raw, expected):
    body = fixture("response.json")
    body["choices"][0]["finish_reason"] = raw
    assert oc.decode_response(body).finish_reason == expected


@pytest.mark.parametrize(
    "body",
    [
        [],
        "x",
        {},
        {"choices": []},
        {"choices": "x"},
        {"choices": ["x"]},
        {"error": {"message": "overloaded"}},
        {"choices": [{"message": "x"}]},
        {"choices": [{"message": {"content": "x"}}], "created": "yesterday"},
        {"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "many"}},
        {"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens_details": 1}},
        {"choices": [{"message": {"content": "x"}, "finish_reason": 1}]},
        {"choices": [{"message": {"content": "x", "tool_calls": [{"function": 1}]}}]},
    ],
)
def test_decode_malformed_response_is_upstream_error(body):
    try:
        oc.decode_response(body)
    except PiscesError as e:
        assert (e.code, e.status) == ("upstream_error", 502)


@pytest.mark.parametrize("body", [[], "x", {}, {"choices": []}, {"choices": "x"}, {"error": {"message": "no"}}])
def test_decode_response_without_choices_raises(body):
    with pytest.raises(PiscesError) as e:
        oc.decode_response(body)
    assert e.value.code == "upstream_error"


RESPONSE = ChatResponse(
    id="chatcmpl-abc",
    model="gpt-4o",
    created=1700000000,
    content=[
        ThinkingPart(text="pondering"),
        TextPart(text="Let me check."),
        ToolCallPart(id="call_1", name="w", arguments='{"city":"Paris"}'),
        ToolCallPart(id="call_2", name="w", arguments='{"city":"Rome"}'),
    ],
    finish_reason="tool_calls",
    usage=Usage(input_tokens=20, output_tokens=30, cached_tokens=8, reasoning_tokens=10),
)


def test_encode_response_exact_shape():
    out = oc.encode_response(RESPONSE, PISCES)
    assert out["id"] == "chatcmpl-abc" and out["object"] == "chat.completion"
    assert out["created"] == 1700000000 and out["model"] == "gpt-4o"
    assert out["system_fingerprint"] is None and out["pisces"] == PISCES
    (choice,) = out["choices"]
    assert choice["index"] == 0 and choice["logprobs"] is None and choice["finish_reason"] == "tool_calls"
    msg = choice["message"]
    assert msg["role"] == "assistant" and msg["content"] == "Let me check." and msg["refusal"] is None
    assert msg["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "w", "arguments": '{"city":"Rome"}'}},
    ]
    assert "pondering" not in msg["content"] and msg.get("reasoning_content") == "pondering"
    usage = out["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (20, 30, 50)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 8
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 10


def test_encode_response_content_null_when_only_tool_calls():
    resp = RESPONSE.model_copy(update={"content": [ToolCallPart(id="c", name="f")]})
    msg = oc.encode_response(resp, PISCES)["choices"][0]["message"]
    assert msg["content"] is None and msg["tool_calls"][0]["function"]["arguments"] == "{}"
    plain = ChatResponse(id="chatcmpl-x", model="m", content=[TextPart(text="hi")])
    msg = oc.encode_response(plain, PISCES)["choices"][0]["message"]
    assert msg["content"] == "hi" and "tool_calls" not in msg
    assert oc.encode_response(plain.model_copy(update={"finish_reason": "error"}), PISCES)["choices"][0][
        "finish_reason"
    ] in ("stop", "length", "tool_calls", "content_filter")


def test_response_round_trip():
    back = oc.decode_response(json.loads(json.dumps(oc.encode_response(RESPONSE, PISCES))))
    assert back.model_dump(exclude={"stop_detail"}) == RESPONSE.model_dump(exclude={"stop_detail"})
    for name in ("response.json", "response_tool_call.json", "response_object.json"):
        resp = oc.decode_response(fixture(name))
        again = oc.decode_response(oc.encode_response(resp, PISCES))
        assert again.model_dump(exclude={"stop_detail"}) == resp.model_dump(exclude={"stop_detail"})


def test_encode_response_validates_with_the_openai_sdk():
    completion = ChatCompletion.model_validate(oc.encode_response(RESPONSE, PISCES))
    assert completion.choices[0].message.tool_calls[1].function.name == "w"
    assert completion.usage.prompt_tokens_details.cached_tokens == 8
    assert completion.model_extra["pisces"] == PISCES
    for name in ("response.json", "response_tool_call.json", "response_object.json"):
        ChatCompletion.model_validate(oc.encode_response(oc.decode_response(fixture(name)), PISCES))


# =============================================================================================
# StreamDecoder


def test_recorded_stream_in_random_slices():
    data = recorded("openai_chat_tool_call_stream.sse")
    whole = decode_stream(data)
    for seed in range(12):
        assert decode_stream(data, seed) == whole
    assert isinstance(whole[0], StreamStart)
    assert whole[0].id == "chatcmpl-ABgJDo0JIRWSH5W2cE0J8vaImv3Dm" and whole[0].model == "gpt-4o-2024-08-06"
    assert not any(isinstance(e, ErrorEvent) for e in whole)
    starts = [e for e in whole if isinstance(e, ToolCallStart)]
    assert [(s.index, s.id, s.name) for s in starts] == [(0, "call_nZUB8dEnPSMykLtTKRRS3sT8", "get_weather")]
    kinds = [type(e).__name__ for e in whole]
    assert kinds.index("ContentEnd") < kinds.index("Finish")
    resp = accumulate(whole)
    (call,) = resp.tool_calls
    assert json.loads(call.arguments) == {"city": "San Francisco", "state": "CA"}
    assert resp.finish_reason == "tool_calls"
    assert resp.usage == Usage(input_tokens=48, output_tokens=19)


def test_reference_stream_chunks():
    data = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in fixture("stream_chunks.json"))
    events = decode_stream(data + b"data: [DONE]\n\n")
    assert events == [
        StreamStart(id="chatcmpl-123", model="gpt-4o-mini", created=1694268190),
        TextDelta(index=0, text="Hello"),
        ContentEnd(index=0),
        Finish(reason="stop", stop_detail=events[-1].stop_detail),
    ]


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    body["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return b"data: " + json.dumps({**body, **extra}).encode() + b"\n\n"


def test_parts_get_indexes_in_order_and_end_when_the_next_starts():
    data = b"".join(
        [
            _chunk({"role": "assistant", "content": None, "reasoning_content": "hmm"}),
            _chunk({"reasoning_content": " ok"}),
            _chunk({"content": "Checking"}),
            _chunk({"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "f"}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            _chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
            _chunk({}, "tool_calls"),
            _chunk(None, usage={"prompt_tokens": 3, "completion_tokens": 4}),
            b"data: [DONE]\n\n",
        ]
    )
    events = decode_stream(data)
    assert events[1:] == [
        ThinkingDelta(index=0, text="hmm"),
        ThinkingDelta(index=0, text=" ok"),
        ContentEnd(index=0),
        TextDelta(index=1, text="Checking"),
        ContentEnd(index=1),
        ToolCallStart(index=2, id="a", name="f"),
        ToolArgsDelta(index=2, delta='{"x":'),
        ToolArgsDelta(index=2, delta="1}"),
        ContentEnd(index=2),
        ToolCallStart(index=3, id="b", name="g"),
        ToolArgsDelta(index=3, delta="{}"),
        ContentEnd(index=3),
        Finish(reason="tool_calls", stop_detail=events[-2].stop_detail),
        UsageEvent(usage=Usage(input_tokens=3, output_tokens=4)),
    ]


def test_usage_before_finish_is_kept_in_arrival_order():
    events = decode_stream(
        _chunk({"content": "a"}) + _chunk(None, usage={"prompt_tokens": 1}) + _chunk({}, "length") + b"data: [DONE]\n\n"
    )
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["StreamStart", "TextDelta", "UsageEvent", "ContentEnd", "Finish"]


def test_error_object_in_stream_is_an_error_event():
    events = decode_stream(
        _chunk({"content": "a"}) + b'data: {"error": {"message": "boom", "type": "server_error"}}\n\n'
    )
    err = events[-1]
    assert isinstance(err, ErrorEvent) and err.code == "upstream_error" and "boom" in err.message
    assert sum(isinstance(e, ErrorEvent) for e in events) == 1


def test_stream_cut_short_is_an_error_without_a_fake_finish():
    dec = oc.StreamDecoder()
    events = [e for ev in sse_events(_chunk({"content": "partial"})) for e in dec.feed(ev)] + dec.close()
    assert not any(isinstance(e, Finish) for e in events)
    assert events[-2:] == [
        ContentEnd(index=0),
        ErrorEvent(code="upstream_error", message="upstream stream ended early"),
    ]
    assert dec.close() == []


def test_done_or_finish_is_a_proper_end():
    for tail in (b"data: [DONE]\n\n", _chunk({}, "stop")):
        events = decode_stream(_chunk({"content": "a"}) + tail)
        assert not any(isinstance(e, ErrorEvent) for e in events)


@pytest.mark.parametrize(
    "chunk",
    [
        b"data: not json\n\n",
        _chunk({"content": 5, "tool_calls": "x"}),
        _chunk(None, usage={"prompt_tokens": "many", "prompt_tokens_details": 1}),
        _chunk({"tool_calls": [{"index": 0, "function": 1}]}),
        _chunk(None, created="yesterday"),
        b'data: {"choices": [{"index": 0, "delta": 1}]}\n\n',
    ],
)
def test_malformed_chunks_never_raise(chunk):
    events = decode_stream(_chunk({"content": "a"}) + chunk + _chunk({}, "stop"))
    assert all(isinstance(e, StreamEvent.__args__) for e in events)  # type: ignore[attr-defined]


# =============================================================================================
# StreamEncoder


EVENTS: list[StreamEvent] = [
    StreamStart(id="chatcmpl-xyz", model="gpt-4o", created=1700000000),
    ThinkingDelta(index=0, text="thinking"),
    ContentEnd(index=0),
    TextDelta(index=1, text="Hello"),
    TextDelta(index=1, text=" world"),
    ContentEnd(index=1),
    ToolCallStart(index=2, id="call_a", name="f"),
    ToolArgsDelta(index=2, delta='{"x":'),
    ToolArgsDelta(index=2, delta="1}"),
    ContentEnd(index=2),
    ToolCallStart(index=3, id="call_b", name="g"),
    ToolArgsDelta(index=3, delta="{}"),
    ContentEnd(index=3),
    UsageEvent(usage=Usage(input_tokens=10, output_tokens=20, cached_tokens=4, reasoning_tokens=5)),
    Finish(reason="tool_calls"),
]


def encode_all(events: list[StreamEvent], include_usage: bool) -> bytes:
    enc = oc.StreamEncoder(PISCES, include_usage=include_usage)
    return b"".join(enc.encode(e) for e in events) + enc.close()


def test_encoder_chunks_are_exactly_openai_chunks():
    chunks = chunks_of(encode_all(EVENTS, include_usage=False))
    first = chunks[0]
    assert first["pisces"] == PISCES
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all("pisces" not in c for c in chunks[1:])
    for c in chunks:
        assert (c["id"], c["object"], c["created"], c["model"]) == (
            "chatcmpl-xyz",
            "chat.completion.chunk",
            1700000000,
            "gpt-4o",
        )
        assert c["system_fingerprint"] is None and "usage" not in c
        (choice,) = c["choices"]
        assert choice["index"] == 0 and choice["logprobs"] is None
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert {"reasoning_content": "thinking"} in deltas
    assert [d["content"] for d in deltas if d.get("content")] == ["Hello", " world"]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls == [
        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"x":'}},
        {"index": 0, "function": {"arguments": "1}"}},
        {"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": ""}},
        {"index": 1, "function": {"arguments": "{}"}},
    ]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
    assert [c["choices"][0]["finish_reason"] for c in chunks].count(None) == len(chunks) - 1


def test_encoder_include_usage_puts_usage_last_after_finish():
    chunks = chunks_of(encode_all(EVENTS, include_usage=True))
    *body, last = chunks
    assert all(c["usage"] is None for c in body)
    assert body[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert last["choices"] == [] and last["pisces"]["request_id"]  # the usage chunk repeats the pisces object
    assert last["usage"]["prompt_tokens"] == 10 and last["usage"]["completion_tokens"] == 20
    assert last["usage"]["total_tokens"] == 30
    assert last["usage"]["prompt_tokens_details"]["cached_tokens"] == 4
    assert last["usage"]["completion_tokens_details"]["reasoning_tokens"] == 5
    # usage reported after Finish (OpenAI's own order) ends up in the same place
    reordered = [*EVENTS[:-2], EVENTS[-1], EVENTS[-2]]
    assert chunks_of(encode_all(reordered, include_usage=True)) == chunks


def test_encoder_without_include_usage_sends_no_usage_chunk():
    chunks = chunks_of(encode_all(EVENTS, include_usage=False))
    assert all(c["choices"] for c in chunks) and all("usage" not in c for c in chunks)


def test_encoder_error_event():
    enc = oc.StreamEncoder(PISCES, include_usage=False)
    out = enc.encode(EVENTS[0]) + enc.encode(TextDelta(index=0, text="a"))
    out += enc.encode(ErrorEvent(code="upstream_error", message="upstream stream ended early", status=502))
    out += enc.close()
    *_, err = chunks_of(out)
    assert err == {
        "error": {
            "message": "upstream stream ended early",
            "type": "server_error",
            "param": None,
            "code": "upstream_error",
        },
        "pisces": PISCES,
    }


def test_encoder_output_decodes_back_to_the_same_response():
    for include_usage in (True, False):
        data = encode_all(EVENTS, include_usage)
        for seed in (None, 1, 2):
            back = accumulate(decode_stream(data, seed))
            expected = accumulate(EVENTS)
            if not include_usage:
                expected.usage = Usage()
            assert back.model_dump(exclude={"stop_detail"}) == expected.model_dump(exclude={"stop_detail"})


def test_encoder_chunks_validate_with_the_openai_sdk_and_reassemble():
    data = encode_all(EVENTS, include_usage=True)
    state = ChatCompletionStreamState()
    for c in chunks_of(data):
        state.handle_chunk(ChatCompletionChunk.model_validate(c))
    final = state.get_final_completion()
    msg = final.choices[0].message
    assert msg.content == "Hello world" and final.choices[0].finish_reason == "tool_calls"
    assert [(t.id, t.function.name, t.function.arguments) for t in msg.tool_calls] == [
        ("call_a", "f", '{"x":1}'),
        ("call_b", "g", "{}"),
    ]
    assert final.usage.completion_tokens == 20


def test_recorded_stream_through_the_gateway_is_what_the_sdk_expects():
    """Upstream recording -> StreamDecoder -> StreamEncoder -> the SDK's own stream accumulator."""
    events = decode_stream(recorded("openai_chat_tool_call_stream.sse"), seed=3)
    state = ChatCompletionStreamState()
    chunks = chunks_of(encode_all(events, include_usage=True))
    assert chunks[0]["pisces"] == PISCES
    for c in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(c))
    final = state.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "San Francisco", "state": "CA"}
    assert final.usage.prompt_tokens == 48 and final.usage.completion_tokens == 19


# =============================================================================================
# errors


@pytest.mark.parametrize(
    ("code", "status", "type_"),
    [
        ("invalid_json", 400, "invalid_request_error"),
        ("invalid_request", 400, "invalid_request_error"),
        ("unsupported_parameter", 400, "invalid_request_error"),
        ("missing_api_key", 401, "invalid_request_error"),
        ("invalid_api_key", 401, "invalid_request_error"),
        ("insufficient_balance", 402, "insufficient_quota"),
        ("model_not_found", 404, "invalid_request_error"),
        ("request_too_large", 413, "invalid_request_error"),
        ("idempotency_key_reused", 422, "invalid_request_error"),
        ("rate_limit_exceeded", 429, "requests"),
        ("internal_error", 500, "server_error"),
        ("upstream_error", 502, "server_error"),
        ("no_available_channel", 503, "server_error"),
        ("service_unavailable", 503, "server_error"),
        ("upstream_timeout", 504, "server_error"),
    ],
)
def test_render_error(code, status, type_):
    err = PiscesError(code, "something went wrong", param="model" if status == 404 else None)
    assert oc.render_error(err, PISCES) == {
        "error": {"message": "something went wrong", "type": type_, "param": err.param, "code": code},
        "pisces": PISCES,
    }
    assert err.status == status


def test_render_error_keeps_a_passed_on_upstream_status():
    err = PiscesError("invalid_request", "upstream: bad schema", status=422)
    assert oc.render_error(err, PISCES)["error"]["type"] == "invalid_request_error"


def test_upstream_error_message():
    assert oc.upstream_error_message(b'{"error": {"message": "Rate limit reached", "type": "requests"}}') == (
        "Rate limit reached"
    )
    assert oc.upstream_error_message(b'{"error": "plain"}') == "plain"
    assert oc.upstream_error_message(b"<html>Bad Gateway</html>") == "<html>Bad Gateway</html>"
    long = oc.upstream_error_message(b"x" * 5000)
    assert 0 < len(long) <= 500
    assert len(oc.upstream_error_message(json.dumps({"error": {"message": "y" * 5000}}).encode())) <= 500
    assert len(oc.upstream_error_message(json.dumps({"detail": "z" * 5000}).encode())) <= 500
    assert oc.upstream_error_message("héllo".encode() + b"\xff").startswith("héllo")


# =============================================================================================
# compatible servers' quirks, error types


def _chunk_event(delta: dict[str, Any], finish: str | None = None) -> SSEEvent:
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "llama3",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return SSEEvent(data=json.dumps(body))


def test_tool_calls_finishing_with_stop_are_tool_calls():
    """Ollama ends a turn of tool calls with finish_reason "stop"; clients need "tool_calls"."""
    dec = oc.StreamDecoder()
    events = dec.feed(_chunk_event({"role": "assistant"}))
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    events += dec.feed(_chunk_event({"tool_calls": [call]}))
    events += dec.feed(_chunk_event({}, "stop"))
    assert next(e for e in events if isinstance(e, Finish)).reason == "tool_calls"
    body = {"id": "c", "object": "chat.completion", "created": 1, "model": "llama3",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": None, "tool_calls": [call]}}]}  # fmt: skip
    assert oc.decode_response(body).finish_reason == "tool_calls"
    body["choices"][0]["message"] = {"role": "assistant", "content": "hi"}
    assert oc.decode_response(body).finish_reason == "stop"


@pytest.mark.parametrize(("status", "kind"), [(400, "invalid_request_error"), (429, "requests"), (502, "server_error")])
def test_stream_error_type_matches_render_error(status, kind):
    enc = oc.StreamEncoder({"gateway": "Pisces"})
    chunk = json.loads(enc.encode(ErrorEvent(code="x", message="m", status=status)).decode()[len("data: ") :])
    assert chunk["error"]["type"] == kind
    assert oc.render_error(PiscesError("upstream_error", "m", status=status), {})["error"]["type"] == kind
