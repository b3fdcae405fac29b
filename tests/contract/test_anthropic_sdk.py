"""The official `anthropic` SDK over real HTTP against the gateway (and the `openai` SDK against an
Anthropic upstream): the mock channel, a fake OpenAI-compatible upstream, a fake Anthropic upstream."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from pisces.protocols.sse import SSEParser
from support.config import in_one_rate_window
from support.fake_anthropic import THOUGHT, THOUGHT_SIGNATURE, TOOL_INPUT

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}


@pytest.fixture
def client(gateway, clients) -> anthropic.Anthropic:
    return clients.anthropic(gateway.url, gateway.key)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def raw_events(gateway, body: dict, headers: dict | None = None) -> list[tuple[str, dict]]:
    """The SSE events of a streamed /v1/messages as (event line, data) pairs, read with our own parser."""
    parser, out = SSEParser(), []
    headers = {"x-api-key": gateway.key, "anthropic-version": "2023-06-01", **(headers or {})}
    with httpx.stream("POST", f"{gateway.url}/v1/messages", json={**body, "stream": True}, headers=headers,
                      timeout=15) as r:  # fmt: skip
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for chunk in r.iter_raw():
            out += [(ev.event, json.loads(ev.data)) for ev in parser.feed(chunk)]
    return out


# --- mock channel ---------------------------------------------------------------------------------


def test_create_against_the_mock(client):
    raw = client.messages.with_raw_response.create(model="mock-echo", max_tokens=100, messages=user("hello there"))
    msg = raw.parse()
    assert msg.id.startswith("msg_") and msg.type == "message" and msg.role == "assistant"
    assert msg.content[0].text == "hello there" and msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    p = msg.model_extra["pisces"]
    assert (p["gateway"], p["protocol"], p["channel"]) == ("Pisces", "anthropic", "mock")
    assert p["request_id"] == raw.headers["x-request-id"] and isinstance(p["cost"], int)


def test_bearer_auth_and_x_api_key_both_work(gateway, clients):
    for c in (clients.anthropic(gateway.url, auth_token=gateway.key), clients.anthropic(gateway.url, gateway.key)):
        assert c.messages.create(model="mock", max_tokens=10, messages=user("hi")).content[0].text == "hi"


def test_max_tokens_stop(client):
    msg = client.messages.create(model="mock-echo", max_tokens=2, messages=user("one two three four"))
    assert msg.content[0].text == "one two" and msg.stop_reason == "max_tokens"


def test_stream_helpers_against_the_mock(client):
    with client.messages.stream(model="mock-echo", max_tokens=100, messages=user("alpha beta gamma delta")) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert len(pieces) >= 2 and "".join(pieces) == "alpha beta gamma delta"
    assert final.content[0].text == "alpha beta gamma delta" and final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0 and final.model_extra["pisces"]["protocol"] == "anthropic"


def test_stream_wire_format(gateway):
    events = raw_events(gateway, {"model": "mock-echo", "max_tokens": 50, "messages": user("a b c")})
    names = [e for e, _ in events]
    assert names[0] == "message_start" and names[1] == "ping" and names[-1] == "message_stop"
    assert all(e == d["type"] for e, d in events), "every event: line names its data's type"
    assert names.count("content_block_start") == names.count("content_block_stop") == 1
    delta = next(d for e, d in events if e == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] > 0
    assert events[0][1]["message"]["pisces"]["request_id"]


@pytest.mark.parametrize("model", ["mock-echo", "gpt-fake", "claude-fake"])
def test_tool_round_trip(client, gateway, model):
    """tool_use, then tool_result, through the mock, an OpenAI-compatible and an Anthropic upstream."""
    tools = [WEATHER]
    first = client.messages.create(model=model, max_tokens=100, tools=tools, tool_choice={"type": "any"},
                                   messages=user("weather in Paris?"))  # fmt: skip
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.id and isinstance(call.input, dict)
    second = client.messages.create(
        model=model,
        max_tokens=100,
        tools=tools,
        tool_choice={"type": "none"},
        messages=[
            *user("weather in Paris?"),
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}]},
        ],
    )
    assert second.stop_reason == "end_turn"
    if model == "mock-echo":
        assert "sunny, 21 C" in second.content[0].text
    elif model == "gpt-fake":  # the OpenAI upstream got an assistant tool call and a tool message
        msgs = gateway.upstream.last()["body"]["messages"]
        assert (
            msgs[1]["tool_calls"][0]["id"] == call.id
            and msgs[1]["tool_calls"][0]["function"]["name"] == WEATHER["name"]
        )
        assert msgs[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}
    else:  # the Anthropic upstream got the tool_use block and the tool_result as sent
        msgs = gateway.anthropic.last()["body"]["messages"]
        assert msgs[1]["content"][0] == {"type": "tool_use", "id": call.id, "name": "get_weather", "input": call.input}
        assert msgs[2]["content"][0] == {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}


def test_cache_control_is_dropped_for_an_openai_upstream(client, gateway):
    marked = {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
    client.messages.create(model="gpt-fake", max_tokens=20, system=[marked],
                           messages=[{"role": "user", "content": [{**marked, "text": "hi"}]}])  # fmt: skip
    sent = json.dumps(gateway.upstream.last()["body"])
    assert "cache_control" not in sent and "Be brief." in sent


def test_count_tokens_and_models(client, gateway):
    n = client.messages.count_tokens(model="mock-echo", messages=user("count these few words please"))
    assert n.input_tokens > 0
    ids = [m.id for m in client.models.list()]
    assert "mock-echo" in ids and "claude-fake" in ids
    assert client.models.retrieve("claude-fake").type == "model"
    # without anthropic-version, the same route answers in OpenAI's shape
    body = httpx.get(f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {gateway.key}"}).json()
    assert body["object"] == "list" and body["data"][0]["object"] == "model"


# --- errors -------------------------------------------------------------------------------------


def test_errors_are_the_sdks_exception_classes(gateway, client, clients):
    bad = clients.anthropic(gateway.url, "pisces-not-a-real-key-0123456789")
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="mock-echo", max_tokens=5, messages=user("x"))
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "authentication_error"
    assert "pisces-not-a-real-key" not in json.dumps(e.value.body)
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="no-such-model", max_tokens=5, messages=user("x"))
    assert e.value.body["error"]["type"] == "not_found_error" and e.value.body["pisces"]["protocol"] == "anthropic"
    limited = clients.anthropic(gateway.url, gateway.new_key(["mock-*"]))
    with pytest.raises(anthropic.PermissionDeniedError):
        limited.messages.create(model="claude-fake", max_tokens=5, messages=user("x"))
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="mock-echo", max_tokens=5, messages=[{"role": "user", "content": 42}])
    assert e.value.body["error"]["type"] == "invalid_request_error" and "messages.0.content" in e.value.message
    with pytest.raises(anthropic.RateLimitError) as e:
        client.messages.create(model="claude-fail-429", max_tokens=5, messages=user("x"))
    assert e.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(model="claude-fail-529", max_tokens=5, messages=user("x"))
    broke = clients.anthropic(gateway.url, gateway.new_key(balance=0))
    with pytest.raises(anthropic.APIStatusError) as e:
        broke.messages.create(model="mock-echo", max_tokens=5, messages=user("x"))
    assert e.value.status_code == 402 and e.value.body["error"]["type"] == "billing_error"


def test_missing_max_tokens_is_a_400_naming_it(gateway):
    r = httpx.post(f"{gateway.url}/v1/messages", json={"model": "mock-echo", "messages": user("x")},
                   headers={"x-api-key": gateway.key})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in r.json()["error"]["message"]


def test_unrouted_messages_path_is_an_anthropic_404(gateway):
    r = httpx.post(f"{gateway.url}/v1/messages/nope", json={}, headers={"x-api-key": gateway.key})
    assert r.status_code == 404 and r.json()["type"] == "error"


def test_rate_limit_is_the_sdks_rate_limit_error(gateway, clients):
    c = clients.anthropic(gateway.url, gateway.new_key(rpm=1))
    in_one_rate_window()
    c.messages.create(model="mock-echo", max_tokens=5, messages=user("x"))
    with pytest.raises(anthropic.RateLimitError) as e:
        c.messages.create(model="mock-echo", max_tokens=5, messages=user("x"))
    assert e.value.body["error"]["type"] == "rate_limit_error" and int(e.value.response.headers["retry-after"]) >= 1


def test_an_upstream_cut_mid_stream_is_an_error_event(client):
    stream = client.messages.stream(model="cut", max_tokens=50, messages=user("one two three four"))
    with pytest.raises(anthropic.APIStatusError) as e, stream as s:
        list(s.text_stream)
    assert e.value.body["error"]["type"] == "api_error"


# --- a fake OpenAI-compatible upstream ------------------------------------------------------------


def test_openai_upstream_through_the_anthropic_door(client):
    msg = client.messages.create(model="gpt-fake", max_tokens=50, messages=user("hi"))
    assert msg.content[0].text == "Hello from upstream: hi" and msg.model_extra["pisces"]["channel"] == "fake"
    # OpenAI's 11 prompt tokens include 2 cached: Anthropic counts them apart
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens, msg.usage.output_tokens) == (9, 2, 7)


def test_openai_tool_call_fragments_stream_as_input_json_deltas(gateway, client):
    body = {"model": "gpt-fake", "max_tokens": 50, "tools": [WEATHER], "messages": user("weather?")}
    events = raw_events(gateway, body)
    fragments = [d["delta"]["partial_json"] for e, d in events
                 if e == "content_block_delta" and d["delta"]["type"] == "input_json_delta"]  # fmt: skip
    assert len(fragments) > 3, "argument fragments are passed on as they come, not buffered"
    assert json.loads("".join(fragments)) == {"city": "Paris", "days": 3}
    with client.messages.stream(**body) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[-1].input == {"city": "Paris", "days": 3}
    assert final.usage.output_tokens == 7


# --- a fake Anthropic upstream --------------------------------------------------------------------


def test_recorded_anthropic_stream_passes_through(client, gateway):
    with client.messages.stream(model="claude-recorded-text", max_tokens=50, messages=user("hi")) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "".join(b.text for b in final.content if b.type == "text") and text.startswith("Hello")
    assert gateway.anthropic.last()["x-api-key"] == "sk-fake-upstream-secret-0123456789"
    assert gateway.anthropic.last()["anthropic-version"] == "2023-06-01"


def test_recorded_tool_use_stream(client):
    with client.messages.stream(model="claude-recorded-tool", max_tokens=200, tools=[WEATHER],
                                messages=user("weather in Paris?")) as s:  # fmt: skip
        final = s.get_final_message()
    tool = next(b for b in final.content if b.type == "tool_use")
    assert final.stop_reason == "tool_use" and tool.name == "get_weather" and "location" in json.dumps(tool.input)


def test_anthropic_upstream_usage_and_cost(client):
    msg = client.messages.create(model="claude-fake", max_tokens=50, messages=user("hi"))
    u = msg.usage
    assert (u.input_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens, u.output_tokens) == (9, 3, 2, 7)
    # $3 in, $3.75 cache write, $0.30 cache read, $15 out per million: 27 + 11.25 + 0.6 + 105 -> 144 (rounded up)
    assert msg.model_extra["pisces"]["cost"] == 144


def test_thinking_blocks_with_signatures_both_ways(client, gateway):
    thinking = {"type": "enabled", "budget_tokens": 2048}
    with client.messages.stream(model="claude-fake", max_tokens=4096, thinking=thinking, messages=user("hi")) as s:
        final = s.get_final_message()
    block = final.content[0]
    assert block.type == "thinking" and block.thinking.strip() == THOUGHT and block.signature == THOUGHT_SIGNATURE
    created = client.messages.create(model="claude-fake", max_tokens=4096, thinking=thinking, messages=user("hi"))
    assert created.content[0].type == "thinking" and created.content[0].signature == THOUGHT_SIGNATURE
    # the next turn sends the signed thinking back: the upstream receives it untouched
    client.messages.create(
        model="claude-fake",
        max_tokens=4096,
        thinking=thinking,
        messages=[
            *user("hi"),
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in created.content]},
            *user("and again"),
        ],
    )
    sent = gateway.anthropic.last()["body"]["messages"][1]["content"][0]
    assert sent == {"type": "thinking", "thinking": THOUGHT, "signature": THOUGHT_SIGNATURE}


def test_claude_code_shaped_request_round_trips(gateway):
    """System blocks with cache_control, many tools, metadata, thinking, betas, stream: nothing lost."""
    tools = [
        {"name": f"tool_{i}", "description": f"Tool number {i}",
         "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"],
                          "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"}}
        for i in range(24)
    ]  # fmt: skip
    tools[-1]["cache_control"] = {"type": "ephemeral"}
    body = {
        "model": "claude-fake",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": "Work in /repo. Be brief.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>context</system-reminder>"},
                    {"type": "text", "text": "Fix the failing test", "cache_control": {"type": "ephemeral"}},
                ],
            },
        ],
        "tools": tools,
        "tool_choice": {"type": "auto"},
        "metadata": {"user_id": "user_abc_account_def_session_123"},
        "temperature": 1,
        "thinking": {"type": "enabled", "budget_tokens": 31999},
    }
    beta = "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
    events = raw_events(gateway, body, {"anthropic-beta": beta})
    assert events[-1][0] == "message_stop"
    received = gateway.anthropic.last()
    assert received["body"] == body, "the upstream got exactly what the client sent"
    assert received["anthropic-beta"] == beta


def test_anthropic_upstream_heartbeat_while_silent(gateway):
    """The fake holds its stream after the first word and is released only once the client has
    seen a ping after it: causal, no timer (its channel would wait 60 s)."""
    parser, names = SSEParser(), []
    headers = {"x-api-key": gateway.key, "anthropic-version": "2023-06-01"}
    body = {"model": "claude-gated", "max_tokens": 50, "messages": user("wait for it"), "stream": True}
    with httpx.stream("POST", f"{gateway.url}/v1/messages", json=body, headers=headers, timeout=60) as r:
        for chunk in r.iter_raw():
            for ev in parser.feed(chunk):
                names.append(ev.event)
                if ev.event == "ping" and "content_block_delta" in names and "released" not in names:
                    names.append("released")
                    httpx.post(f"{gateway.anthropic.url}/release")
    first_delta = names.index("content_block_delta")
    assert names.index("released") > first_delta and names[names.index("released") - 1] == "ping"
    assert names[-1] == "message_stop"


# --- the openai SDK against the Anthropic upstream ------------------------------------------------


def test_openai_sdk_streams_tool_calls_from_an_anthropic_upstream(gateway, clients):
    c = clients.openai(gateway.v1, gateway.key)
    tool = {"type": "function", "function": {"name": WEATHER["name"], "parameters": WEATHER["input_schema"]}}
    chunks = list(
        c.chat.completions.create(
            model="claude-fake",
            messages=user("weather?"),
            tools=[tool],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert deltas[0].id == "toolu_fake_1" and deltas[0].function.name == "get_weather"
    args = [d.function.arguments for d in deltas if d.function and d.function.arguments]
    assert len(args) > 3 and json.loads("".join(args)) == TOOL_INPUT
    finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finish == ["tool_calls"]
    u = chunks[-1].usage
    # Anthropic: 9 uncached + 3 written + 2 read = 14 prompt tokens, 2 of them cached
    assert (u.prompt_tokens, u.prompt_tokens_details.cached_tokens, u.completion_tokens) == (14, 2, 7)


def test_openai_sdk_non_stream_from_an_anthropic_upstream(gateway, clients):
    c = clients.openai(gateway.v1, gateway.key)
    resp = c.chat.completions.create(model="claude-fake", messages=[{"role": "system", "content": "Be brief."},
                                                                    *user("hello")])  # fmt: skip
    assert resp.choices[0].message.content == "Hello from upstream: hello"
    assert resp.choices[0].finish_reason == "stop" and resp.usage.prompt_tokens == 14
    sent = gateway.anthropic.last()["body"]
    assert sent["system"] == "Be brief." and sent["max_tokens"] > 0
