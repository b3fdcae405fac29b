"""The ``gemini`` channel against a fake Google AI Studio upstream under real uvicorn on loopback.

The fake (tests/support/fake_gemini.py) speaks the generateContent wire format, replays the real
recording in shared/fixtures/recorded/, answers errors in Google's shape, and records what the
channel sent (body, path, query and headers).
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
    ContentEnd,
    ErrorEvent,
    Finish,
    Message,
    ResponseAccumulator,
    StreamEvent,
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
    Usage,
)
from pisces.config import ChannelConfig
from pisces.localaws import free_port
from pisces.protocols import gemini as g
from pisces.protocols import openai_chat as oc
from pisces.protocols.common import GENERATED_ID_PREFIX
from pisces.protocols.sse import SSEParser
from pisces.upstreams import KINDS, build_channel
from pisces.upstreams.base import HttpCodecChannel, UpstreamError, new_http_client
from pisces.upstreams.gemini import GeminiChannel
from support.fake_gemini import SIGNATURE, THOUGHT, TOOL_ARGS, UPSTREAM_SECRET, FakeGemini
from support.servers import recorded, serving

KEY_ENV = "PISCES_TEST_GEMINI_KEY"
# the fake's USAGE: prompt 11, candidates 7, thoughts 4, cached 2
FAKE_USAGE = Usage(input_tokens=11, output_tokens=7 + 4, cached_tokens=2, reasoning_tokens=4)
SKIP = "skip_thought_signature_validator"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    with serving(FakeGemini()) as fake:
        yield fake


@pytest.fixture(autouse=True)
def upstream_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, UPSTREAM_SECRET)


def config(fake: FakeGemini, **kw: Any) -> ChannelConfig:
    return ChannelConfig(
        **{
            "name": "gemini",
            "kind": "gemini",
            "base_url": f"{fake.url}/v1beta",
            "api_key_env": KEY_ENV,
            "models": ["gemini-fake"],
            "read_timeout": 1.0,
            "retries": 0,
            **kw,
        }
    )


def ask(text: str = "hi", **kw: Any) -> ChatRequest:
    return ChatRequest(model="gemini-fake", messages=[Message(role="user", content=[TextPart(text=text)])], **kw)


class Client:
    """``new_http_client()`` with every URL it requested noted (to see what went over the wire)."""

    def __init__(self) -> None:
        self.urls: list[httpx.URL] = []
        self.http = new_http_client()
        self.http.event_hooks["request"] = [self._note]

    async def _note(self, request: httpx.Request) -> None:
        self.urls.append(request.url)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()


async def complete(fake: FakeGemini, req: ChatRequest, model: str, client: Client | None = None, **cfg: Any) -> Any:
    async with Client() as own:
        http = (client or own).http
        return await build_channel(config(fake, **cfg), http).complete(req, model)


async def stream(
    fake: FakeGemini, req: ChatRequest, model: str, client: Client | None = None, **cfg: Any
) -> list[StreamEvent]:
    async with Client() as own:
        http = (client or own).http
        return [ev async for ev in build_channel(config(fake, **cfg), http).stream(req, model)]


def accumulate(events: list[StreamEvent]) -> Any:
    acc = ResponseAccumulator()
    for ev in events:
        acc.add(ev)
    return acc.response()


def comparable(value: Any) -> Any:
    """A dump without the creation time and with made-up call ids replaced (they are random)."""
    text = json.dumps(value)
    for i, cid in enumerate(dict.fromkeys(part for part in text.split('"') if part.startswith(GENERATED_ID_PREFIX))):
        text = text.replace(cid, f"generated-{i}")
    out = json.loads(text)
    for item in out if isinstance(out, list) else [out]:
        item.pop("created", None)
    return out


WEATHER = Tool(name="get_weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}})


def test_kind_is_registered_and_shares_the_http_loop():
    assert KINDS["gemini"] is GeminiChannel and issubclass(GeminiChannel, HttpCodecChannel)
    assert GeminiChannel.codec is g and GeminiChannel.path == "/models"


def config_for(base_url: str) -> ChannelConfig:
    return ChannelConfig(name="g", kind="gemini", base_url=base_url, api_key_env=KEY_ENV)


def test_url_shape():
    channel = GeminiChannel(config_for("https://generativelanguage.googleapis.com/v1beta/"), httpx.AsyncClient())
    base = "https://generativelanguage.googleapis.com/v1beta/models"
    assert channel.url_for("gemini-2.5-flash", False) == f"{base}/gemini-2.5-flash:generateContent"
    assert channel.url_for("models/gemini-2.5-flash", True) == f"{base}/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert channel.url_for("tunedModels/my model", False) == f"{base}/tunedModels%2Fmy%20model:generateContent"


async def test_complete_sends_generate_content_with_the_key_in_a_header(fake: FakeGemini):
    async with Client() as client:
        resp = await complete(fake, ask("what is up?", max_tokens=50), "gemini-up", client)
    assert resp.text == "Hello from upstream: what is up?"
    assert (resp.finish_reason, resp.usage, resp.id, resp.model) == ("stop", FAKE_USAGE, "fake-resp-1", "gemini-up")
    sent = fake.last()
    assert (sent["path"], sent["model"], sent["action"], sent["query"]) == (
        "/v1beta/models/gemini-up:generateContent", "gemini-up", "generateContent", {})  # fmt: skip
    assert sent["x-goog-api-key"] == UPSTREAM_SECRET and sent["authorization"] is None
    assert sent["content-type"] == "application/json"
    assert sent["body"] == {
        "contents": [{"role": "user", "parts": [{"text": "what is up?"}]}],
        "generationConfig": {"maxOutputTokens": 50},
    }
    (url,) = client.urls
    assert UPSTREAM_SECRET not in str(url) and "key" not in url.params  # never in the URL: logs would see it


async def test_stream_asks_for_sse_and_decodes_event_by_event(fake: FakeGemini):
    async with Client() as client:
        events = await stream(fake, ask("stream me"), "gemini-up", client)
    sent = fake.last()
    assert (sent["path"], sent["query"]) == ("/v1beta/models/gemini-up:streamGenerateContent", {"alt": "sse"})
    assert sent["x-goog-api-key"] == UPSTREAM_SECRET and "stream" not in sent["body"]
    (url,) = client.urls
    assert dict(url.params) == {"alt": "sse"}
    assert sum(isinstance(e, TextDelta) for e in events) == 5  # one chunk per word, as they came
    resp = accumulate(events)
    assert resp.text == "Hello from upstream: stream me" and resp.usage == FAKE_USAGE
    assert resp.finish_reason == "stop" and not any(isinstance(e, ErrorEvent) for e in events)


@pytest.mark.parametrize("streaming", [False, True])
async def test_thoughts_when_the_request_thinks(fake: FakeGemini, streaming: bool):
    req = ask("think first", thinking=ThinkingConfig(budget_tokens=512))
    if streaming:
        events = await stream(fake, req, "gemini-up")
        assert isinstance(events[1], ThinkingDelta)  # the thought streams first, as it came
        resp = accumulate(events)
    else:
        resp = await complete(fake, req, "gemini-up")
    thought, text = resp.content
    assert thought == ThinkingPart(text=THOUGHT) and text == TextPart(text="Hello from upstream: think first")
    assert fake.last()["body"]["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 512,
                                                                          "includeThoughts": True}}  # fmt: skip


@pytest.mark.parametrize("streaming", [False, True])
async def test_function_call(fake: FakeGemini, streaming: bool):
    req = ask(
        "weather?", tools=[Tool(name="get_time"), WEATHER], tool_choice=ToolChoice(mode="tool", name="get_weather")
    )
    if streaming:
        events = await stream(fake, req, "gemini-up")
        assert [type(e) for e in events[1:4]] == [ToolCallStart, ToolArgsDelta, ContentEnd]  # whole, at once
        resp = accumulate(events)
    else:
        resp = await complete(fake, req, "gemini-up")
    (call,) = resp.content
    assert isinstance(call, ToolCallPart) and call.name == "get_weather" and call.signature == SIGNATURE
    assert json.loads(call.arguments) == TOOL_ARGS and call.id.startswith(GENERATED_ID_PREFIX)
    assert resp.finish_reason == "tool_calls"
    body = fake.last()["body"]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "get_time", "parametersJsonSchema": {"type": "object", "properties": {}}},
        {"name": "get_weather", "parametersJsonSchema": WEATHER.parameters},
    ]}]  # fmt: skip


async def test_recorded_stream_replayed(fake: FakeGemini):
    events = await stream(fake, ask(), "recorded-call")
    parser, decoder = SSEParser(), g.StreamDecoder()
    data = recorded("gemini_stream_function_call.sse")
    direct = [e for s in parser.feed(data) + parser.close() for e in decoder.feed(s)] + decoder.close()
    assert comparable([e.model_dump() for e in events]) == comparable([e.model_dump() for e in direct])
    resp = accumulate(events)
    (call,) = resp.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("getWeather", {"location": "Tokyo"})
    assert resp.usage == Usage(input_tokens=83, output_tokens=118, reasoning_tokens=104)
    # and the non-streaming answer is the same message
    assert comparable((await complete(fake, ask(), "recorded-call")).model_dump()) == comparable(resp.model_dump())


@pytest.mark.parametrize(
    ("model", "code", "status", "retryable"),
    [
        ("fail-400", "invalid_request", 400, False),
        ("fail-403", "upstream_error", 502, True),
        ("fail-404", "model_not_found", 404, False),
        ("fail-429", "rate_limit_exceeded", 429, True),
        ("fail-500", "upstream_error", 502, True),
        ("fail-503", "upstream_error", 502, True),
    ],
)
@pytest.mark.parametrize("streaming", [False, True])
async def test_upstream_errors(fake: FakeGemini, model: str, code: str, status: int, retryable: bool, streaming: bool):
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


async def test_wrong_key_is_the_gateways_fault(fake: FakeGemini, monkeypatch: pytest.MonkeyPatch):
    """Gemini says 400 INVALID_ARGUMENT (API_KEY_INVALID) for a bad key: not the client's request."""
    monkeypatch.setenv(KEY_ENV, "AIza-wrong")
    with pytest.raises(UpstreamError) as e:
        await complete(fake, ask(), "gemini-up")
    assert (e.value.code, e.value.status, e.value.retryable) == ("upstream_error", 502, True)
    assert "API key not valid" in e.value.message and "AIza-wrong" not in e.value.message
    assert fake.last()["x-goog-api-key"] == "AIza-wrong"


async def test_missing_key_is_the_gateways_fault(fake: FakeGemini, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(UpstreamError) as e:
        await stream(fake, ask(), "gemini-up")
    assert (e.value.code, e.value.status, e.value.retryable) == ("upstream_error", 502, True)
    assert fake.last()["x-goog-api-key"] is None


async def test_cut_stream_ends_with_an_error_event(fake: FakeGemini):
    events = await stream(fake, ask("one two three"), "cut")
    assert isinstance(events[-1], ErrorEvent) and events[-1].code == "upstream_error"
    assert sum(isinstance(e, ErrorEvent) for e in events) == 1
    assert not any(isinstance(e, Finish) for e in events)
    assert accumulate(events).text == "Hello"  # what came before the cut


async def test_slow_upstream_times_out(fake: FakeGemini):
    with pytest.raises(UpstreamError) as e:
        await complete(fake, ask(), "slow")
    assert (e.value.code, e.value.retryable) == ("upstream_timeout", False)


async def test_stream_events_come_as_the_upstream_sends_them(fake: FakeGemini):
    """The first delta reaches the caller while the upstream still holds the rest back: nothing buffered."""
    async with Client() as client:
        events = build_channel(config(fake, read_timeout=20.0), client.http).stream(ask("one two"), "gated")
        seen = []
        async for ev in events:
            seen.append(ev)
            if isinstance(ev, TextDelta):
                break
        assert not fake.gate.is_set()
        await client.http.post(f"{fake.url}/release")
        seen += [ev async for ev in events]
    assert accumulate(seen).text == "Hello from upstream: one two"


async def test_ready_hands_over_what_was_read_already_and_none_while_the_upstream_holds_back(fake: FakeGemini):
    """Gemini's first chunk is a start and the first words, read together: ``ready`` gives the words
    after the start without a read, then None while the upstream still holds the rest back."""
    async with Client() as client:
        events = build_channel(config(fake, read_timeout=20.0), client.http).stream(ask("one two"), "gated")
        seen = [await anext(events)]
        while (ev := events.ready()) is not None:
            seen.append(ev)
        assert [type(e) for e in seen][-1] is TextDelta and len(seen) >= 2
        assert events.ready() is None and not fake.gate.is_set()
        await client.http.post(f"{fake.url}/release")
        seen += [ev async for ev in events]
    assert accumulate(seen).text == "Hello from upstream: one two"


async def test_events_taken_ready_or_read_are_the_stream_once_and_in_order(fake: FakeGemini):
    async with Client() as client:
        events = build_channel(config(fake), client.http).stream(ask(), "recorded-call")
        seen, held = [], 0
        async for ev in events:
            seen.append(ev)
            while (ev := events.ready()) is not None:
                seen.append(ev)
                held += 1
    assert held > 0, "some were read together"
    read = await stream(fake, ask(), "recorded-call")
    assert comparable([e.model_dump() for e in seen]) == comparable([e.model_dump() for e in read])


async def test_a_model_name_with_a_slash_is_quoted(fake: FakeGemini):
    async with Client() as client:
        resp = await complete(fake, ask("tuned?"), "tunedModels/my-model", client)
    assert resp.text == "Hello from upstream: tuned?"
    (url,) = client.urls
    assert url.raw_path == b"/v1beta/models/tunedModels%2Fmy-model:generateContent"
    assert fake.last()["model"] == "tunedModels/my-model"
    await complete(fake, ask(), "models/gemini-up")
    assert fake.last()["model"] == "gemini-up"  # the resource prefix is not doubled


async def test_nothing_listening_is_retryable(fake: FakeGemini):
    with pytest.raises(UpstreamError) as e:
        await complete(fake, ask(), "gemini-up", base_url=f"http://127.0.0.1:{free_port()}/v1beta", connect_timeout=1.0)
    assert (e.value.code, e.value.retryable) == ("upstream_error", True)


async def test_a_configured_header_never_replaces_the_key(fake: FakeGemini):
    headers = {"x-goog-api-client": "pisces-test", "X-Goog-Api-Key": "from-config"}
    await complete(fake, ask(), "gemini-up", headers=headers)
    assert fake.last()["x-goog-api-key"] == UPSTREAM_SECRET


async def test_an_openai_conversation_reaches_gemini_with_matching_ids(fake: FakeGemini):
    """OpenAI ids and a tool result without a name become a functionCall/functionResponse pair Gemini 3
    accepts: the call keeps its id and carries the skip signature, the response takes the call's name."""
    client_body = {
        "model": "gemini-fake",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_abc", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_abc", "content": '{"temp": 21}'},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER.parameters}}],
    }  # fmt: skip
    req = oc.decode_request(client_body)
    resp = await complete(fake, req, "gemini-up")
    assert resp.text == 'Hello from upstream: {"temp": 21}'  # the fake saw the function's answer
    assert fake.last()["body"]["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"},
                                                      "id": "call_abc"}, "thoughtSignature": SKIP}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 21},
                                                         "id": "call_abc"}}]},
    ]  # fmt: skip


async def test_a_gemini_clients_own_settings_reach_the_upstream(fake: FakeGemini):
    client_body = {
        "contents": [{"role": "user", "parts": [{"text": "hello"}]}],
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "tools": [{"googleSearch": {}}],
        "generationConfig": {"temperature": 0.2, "responseModalities": ["TEXT"],
                             "thinkingConfig": {"thinkingLevel": "low", "includeThoughts": True}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}],
    }  # fmt: skip
    req = g.decode_request(copy.deepcopy(client_body), "gemini-fake", True)
    events = await stream(fake, req, "gemini-up")
    resp = accumulate(events)
    assert resp.content == [ThinkingPart(text=THOUGHT), TextPart(text="Hello from upstream: hello")]
    sent = fake.last()["body"]
    expected = {**client_body, "systemInstruction": client_body["system_instruction"]}
    del expected["system_instruction"]
    assert sent == expected
