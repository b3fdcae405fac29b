"""The ``anthropic`` channel against a fake Anthropic upstream under real uvicorn on loopback.

The fake (tests/support/fake_anthropic.py) speaks the Messages wire format, replays the real
recordings in shared/fixtures/recorded/, and records what the channel sent.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pisces.canonical import (
    ChatRequest,
    ErrorEvent,
    Message,
    ResponseAccumulator,
    StreamEvent,
    TextDelta,
    TextPart,
    Tool,
    ToolArgsDelta,
    ToolCallPart,
    ToolChoice,
    Usage,
)
from pisces.config import ChannelConfig
from pisces.localaws import free_port
from pisces.protocols import anthropic_messages as am
from pisces.protocols.sse import SSEParser
from pisces.upstreams import KINDS, build_channel
from pisces.upstreams.anthropic import AnthropicChannel
from pisces.upstreams.base import HttpCodecChannel, UpstreamError
from support.fake_anthropic import UPSTREAM_SECRET, USAGE, FakeAnthropic
from support.servers import recorded, serving

KEY_ENV = "PISCES_TEST_ANTHROPIC_KEY"
FAKE_USAGE = Usage(input_tokens=14, output_tokens=7, cached_tokens=2, cache_write_tokens=3)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with serving(FakeAnthropic()) as fake:
        yield fake


@pytest.fixture(autouse=True)
def upstream_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, UPSTREAM_SECRET)


def config(fake: FakeAnthropic, **kw: Any) -> ChannelConfig:
    return ChannelConfig(
        **{
            "name": "claude",
            "kind": "anthropic",
            "base_url": f"{fake.url}/v1",  # type: ignore[attr-defined]
            "api_key_env": KEY_ENV,
            "models": ["claude-fake"],
            "read_timeout": 1.0,
            "retries": 0,
            **kw,
        }
    )


def ask(text: str = "hi", **kw: Any) -> ChatRequest:
    return ChatRequest(model="claude-fake", messages=[Message(role="user", content=[TextPart(text=text)])], **kw)


async def complete(fake: FakeAnthropic, req: ChatRequest, model: str, **cfg: Any) -> Any:
    async with httpx.AsyncClient() as http:
        return await build_channel(config(fake, **cfg), http).complete(req, model)


async def stream(fake: FakeAnthropic, req: ChatRequest, model: str, **cfg: Any) -> list[StreamEvent]:
    async with httpx.AsyncClient() as http:
        return [ev async for ev in build_channel(config(fake, **cfg), http).stream(req, model)]


def accumulate(events: list[StreamEvent]) -> Any:
    acc = ResponseAccumulator()
    for ev in events:
        acc.add(ev)
    return acc.response()


def test_kind_is_registered_and_shares_the_http_loop():
    assert KINDS["anthropic"] is AnthropicChannel and issubclass(AnthropicChannel, HttpCodecChannel)
    assert AnthropicChannel.codec is am and AnthropicChannel.path == "/messages"


async def test_complete_sends_the_messages_wire_format(fake: FakeAnthropic):
    resp = await complete(fake, ask("what is up?"), "claude-upstream")
    assert resp.text == "Hello from upstream: what is up?"
    assert resp.finish_reason == "stop" and resp.usage == FAKE_USAGE
    sent = fake.last()
    assert sent["x-api-key"] == UPSTREAM_SECRET and sent["authorization"] is None
    assert sent["anthropic-version"] == "2023-06-01" and sent["content-type"] == "application/json"
    assert sent["body"] == {
        "model": "claude-upstream",
        "max_tokens": am.DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "what is up?"}]}],
    }


async def test_stream_decodes_event_by_event(fake: FakeAnthropic):
    events = await stream(fake, ask("stream me"), "claude-upstream")
    resp = accumulate(events)
    assert resp.text == "Hello from upstream: stream me" and resp.usage == FAKE_USAGE
    assert resp.finish_reason == "stop" and not any(isinstance(e, ErrorEvent) for e in events)
    assert fake.last()["body"]["stream"] is True


@pytest.mark.parametrize("streaming", [False, True])
async def test_tool_use(fake: FakeAnthropic, streaming: bool):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    req = ask("weather?", tools=[Tool(name="weather", parameters=schema)], tool_choice=ToolChoice(mode="required"))
    if streaming:
        events = await stream(fake, req, "claude-upstream")
        assert sum(isinstance(e, ToolArgsDelta) for e in events) > 1  # fragments, as they came
        resp = accumulate(events)
    else:
        resp = await complete(fake, req, "claude-upstream")
    (call,) = resp.content
    assert isinstance(call, ToolCallPart) and (call.id, call.name) == ("toolu_fake_1", "weather")
    assert json.loads(call.arguments) == {"city": "Paris", "days": 3}
    assert resp.finish_reason == "tool_calls"
    assert fake.last()["body"]["tool_choice"] == {"type": "any"}
    assert fake.last()["body"]["tools"] == [{"name": "weather", "input_schema": schema}]


@pytest.mark.parametrize(
    ("model", "file"),
    [
        ("recorded-text", "anthropic_messages_text_stream.sse"),
        ("recorded-tool", "anthropic_messages_tool_use_stream.sse"),
    ],
)
async def test_recorded_streams_replayed(fake: FakeAnthropic, model: str, file: str):
    events = await stream(fake, ask(), model)
    parser, decoder = SSEParser(), am.StreamDecoder()
    direct = [e for s in parser.feed(recorded(file)) + parser.close() for e in decoder.feed(s)] + decoder.close()
    assert [e.model_dump(exclude={"created"}) for e in events] == [e.model_dump(exclude={"created"}) for e in direct]
    # and the non-streaming answer is the same message
    assert (await complete(fake, ask(), model)).model_dump(exclude={"created"}) == accumulate(events).model_dump(
        exclude={"created"}
    )


@pytest.mark.parametrize(
    ("model", "code", "status", "retryable"),
    [
        ("fail-400", "invalid_request", 400, False),
        ("fail-401", "upstream_error", 502, True),
        ("fail-429", "rate_limit_exceeded", 429, True),
        ("fail-500", "upstream_error", 502, True),
        ("fail-529", "upstream_error", 502, True),
    ],
)
@pytest.mark.parametrize("streaming", [False, True])
async def test_upstream_errors(
    fake: FakeAnthropic, model: str, code: str, status: int, retryable: bool, streaming: bool
):
    with pytest.raises(UpstreamError) as e:
        if streaming:
            await stream(fake, ask(), model)
        else:
            await complete(fake, ask(), model)
    err = e.value
    assert (err.code, err.status, err.retryable) == (code, status, retryable)
    assert err.message == f"upstream: upstream says {model.split('-')[1]}"
    if model == "fail-429":
        assert err.retry_after == 7 and err.headers["Retry-After"] == "7"


async def test_wrong_key_is_the_gateways_fault(fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    with pytest.raises(UpstreamError) as e:
        await complete(fake, ask(), "claude-upstream")
    assert (e.value.code, e.value.status, e.value.retryable) == ("upstream_error", 502, True)
    assert "invalid x-api-key" in e.value.message and "sk-wrong" not in e.value.message


async def test_slow_upstream_times_out(fake: FakeAnthropic):
    with pytest.raises(UpstreamError) as e:
        await complete(fake, ask(), "slow")
    assert (e.value.code, e.value.retryable) == ("upstream_timeout", False)


async def test_stream_events_come_as_the_upstream_sends_them(fake: FakeAnthropic):
    """The first delta reaches the caller while the upstream still holds the rest back: nothing buffered."""
    async with httpx.AsyncClient() as http:
        events = build_channel(config(fake, read_timeout=20.0), http).stream(ask("one two"), "gated")
        seen = []
        async for ev in events:
            seen.append(ev)
            if isinstance(ev, TextDelta):
                break
        assert not fake.gate.is_set()
        await http.post(f"{fake.url}/release")  # type: ignore[attr-defined]
        seen += [ev async for ev in events]
    assert accumulate(seen).text == "Hello from upstream: one two"


async def test_cut_stream_ends_with_an_error_event(fake: FakeAnthropic):
    events = await stream(fake, ask(), "cut")
    assert isinstance(events[-1], ErrorEvent) and events[-1].code == "upstream_error"
    assert not any(type(e).__name__ == "Finish" for e in events)


async def test_nothing_listening_is_retryable(fake: FakeAnthropic):
    with pytest.raises(UpstreamError) as e:
        await complete(
            fake, ask(), "claude-upstream", base_url=f"http://127.0.0.1:{free_port()}/v1", connect_timeout=1.0
        )
    assert (e.value.code, e.value.retryable) == ("upstream_error", True)


async def test_channel_headers_override_the_version_and_add_betas(fake: FakeAnthropic):
    headers = {"Anthropic-Version": "2099-01-01", "anthropic-beta": "context-management-2025-06-27"}
    await complete(fake, ask(), "claude-upstream", headers=headers)
    sent = fake.last()
    assert (sent["anthropic-version"], sent["anthropic-beta"]) == ("2099-01-01", "context-management-2025-06-27")


async def test_cache_control_and_provider_options_reach_the_upstream(fake: FakeAnthropic):
    client_body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 2048,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}]}
        ],
        "tools": [
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
            {"name": "f", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
        ],
        "tool_choice": {"type": "none"},
        "metadata": {"user_id": "u-42"},
        "service_tier": "standard_only",
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "stream": True,
    }
    req = am.decode_request(copy.deepcopy(client_body))
    events = await stream(fake, req, "claude-upstream")
    assert accumulate(events).text == "Hello from upstream: hello"
    assert fake.last()["body"] == {**client_body, "model": "claude-upstream"}
    await complete(fake, req, "claude-upstream")
    sent = fake.last()["body"]
    assert sent == {**{k: v for k, v in client_body.items() if k != "stream"}, "model": "claude-upstream"}


async def test_usage_always_comes_back_in_canonical_terms(fake: FakeAnthropic):
    events = await stream(fake, ask(), "claude-upstream")
    start = events[0]
    assert start.usage is not None and start.usage.input_tokens == 14 and start.usage.cached_tokens == 2  # type: ignore[union-attr]
    assert am.usage_to(accumulate(events).usage) == USAGE
