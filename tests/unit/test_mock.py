from __future__ import annotations

import json

import httpx
import pytest

from pisces.canonical import (
    ChatRequest,
    Message,
    ResponseAccumulator,
    TextPart,
    Tool,
    ToolChoice,
    ToolResultPart,
)
from pisces.config import ChannelConfig
from pisces.upstreams.mock import MockChannel, example_value


def _chan() -> MockChannel:
    return MockChannel(ChannelConfig(name="mock", kind="mock", models=["mock-echo"]), httpx.AsyncClient())


def _req(text: str = "hi there", **kw) -> ChatRequest:
    return ChatRequest(model="mock-echo", messages=[Message(role="user", content=[TextPart(text=text)])], **kw)


def test_example_values_follow_schema():
    schema = {
        "type": "object",
        "properties": {
            "s": {"type": "string"},
            "e": {"enum": ["b", "a"]},
            "d": {"type": "integer", "default": 7},
            "n": {"type": "number"},
            "b": {"type": "boolean"},
            "arr": {"type": "array", "items": {"type": "integer"}},
            "o": {"type": "object", "properties": {"x": {"type": ["null", "string"]}}},
            "u": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        },
    }
    assert example_value(schema) == {
        "s": "mock",
        "e": "b",
        "d": 7,
        "n": 1.5,
        "b": True,
        "arr": [1],
        "o": {"x": "mock"},
        "u": 1,
    }


async def test_echo_and_usage():
    resp = await _chan().complete(_req("echo me please"), "mock-echo")
    assert resp.text == "echo me please" and resp.finish_reason == "stop"
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens == 4  # echo, me, plea, se


async def test_tool_call_when_required_or_named_but_not_after_result():
    tools = [Tool(name="a", parameters={"type": "object", "properties": {"q": {"type": "string"}}}), Tool(name="b")]
    resp = await _chan().complete(_req(tools=tools, tool_choice=ToolChoice(mode="required")), "m")
    assert [(c.name, json.loads(c.arguments)) for c in resp.tool_calls] == [("a", {"q": "mock"})]
    resp = await _chan().complete(_req(tools=tools, tool_choice=ToolChoice(mode="tool", name="b")), "m")
    assert resp.tool_calls[0].name == "b" and resp.finish_reason == "tool_calls"
    resp = await _chan().complete(_req(tools=tools, tool_choice=ToolChoice(mode="auto")), "m")
    assert not resp.tool_calls
    answered = ChatRequest(
        model="m",
        tools=tools,
        tool_choice=ToolChoice(mode="required"),
        messages=[Message(role="user", content=[ToolResultPart(tool_call_id="c1", content=[TextPart(text="42")])])],
    )
    resp = await _chan().complete(answered, "m")
    assert resp.text == "42" and not resp.tool_calls


@pytest.mark.parametrize("tool_choice", [None, ToolChoice(mode="required")])
async def test_stream_folds_into_the_same_response(tool_choice):
    tools = [
        Tool(
            name="lookup",
            parameters={
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}, "tags": {"type": "array"}},
            },
        )
    ]
    req = _req("the quick brown fox jumps over the lazy dog", tools=tools, tool_choice=tool_choice)
    whole = await _chan().complete(req, "m")
    acc = ResponseAccumulator()
    events = [ev async for ev in _chan().stream(req, "m")]
    for ev in events:
        acc.add(ev)
    streamed = acc.response()
    assert streamed.content == whole.content and streamed.finish_reason == whole.finish_reason
    assert streamed.usage == whole.usage
    assert len(events) > 5, "several deltas"


BASH = Tool(name="Bash", parameters={"type": "object", "properties": {"command": {"type": "string"}}})


async def test_a_pisces_call_trigger_calls_the_named_tool_with_its_arguments():
    chan = _chan()
    asked = _req('<system-reminder>x</system-reminder> pisces:call Bash {"command": "echo hi there"} thanks',
                 tools=[BASH])  # fmt: skip
    resp = await chan.complete(asked, "mock-echo")
    assert resp.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in resp.tool_calls] == [("Bash", {"command": "echo hi there"})]
    # without JSON: arguments from the schema; an unknown tool or tool_choice none: no call, an echo
    bare = await chan.complete(_req("pisces:call Bash", tools=[BASH]), "mock-echo")
    assert json.loads(bare.tool_calls[0].arguments) == {"command": "mock"}
    for req in (_req("pisces:call Nope {}", tools=[BASH]),
                _req("pisces:call Bash {}", tools=[BASH], tool_choice=ToolChoice(mode="none")),
                _req("pisces:call Bash {}")):  # fmt: skip
        resp = await chan.complete(req, "mock-echo")
        assert resp.finish_reason == "stop" and not resp.tool_calls
    # the tool has answered: the mock says what it said
    done = asked.model_copy(deep=True)
    done.messages += [
        Message(role="assistant", content=[resp.tool_calls[0]] if resp.tool_calls else []),
        Message(role="user", content=[ToolResultPart(tool_call_id="c1", content=[TextPart(text="hi there")])]),
    ]
    answer = await chan.complete(done, "mock-echo")
    assert answer.finish_reason == "stop" and answer.text == "hi there"
