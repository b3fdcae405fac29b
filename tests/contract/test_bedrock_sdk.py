"""Bedrock channels (Converse / ConverseStream through botocore, SigV4 with fake credentials) behind
every client door: the official `openai`, `anthropic` and `google-genai` SDKs over real HTTP against
the gateway, the fake Bedrock runtime (tests/support/fake_bedrock.py) on loopback behind it."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from types import SimpleNamespace

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors, types

from pisces.config import parse_config
from support.config import TEST_BALANCE
from support.fake_bedrock import GATE_SECONDS, THOUGHT, THOUGHT_SIGNATURE, TOOL_INPUT, FakeBedrock
from support.servers import GATEWAY_HTTP, ServerThread, serving

CLAUDE = "us.anthropic.claude-sonnet-fake-v1:0"  # a cross-region inference profile id
GLOBAL_CLAUDE = "global.anthropic.claude-fake-v1:0"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                          "required": ["city"]}}}  # fmt: skip


def bedrock_config(url: str) -> dict:
    return {
        "channels": [
            {"name": "bedrock-west", "kind": "bedrock", "base_url": url, "region": "us-west-2", "read_timeout": 120,
             "models": {"claude-bedrock": CLAUDE, "nova-bedrock": "amazon.nova-fake-v1:0",
                        "bedrock-denied": "fake.denied", "bedrock-invalid": "fake.invalid",
                        "bedrock-stream-fails": "fake.stream-fails", "bedrock-gated": "fake.gated",
                        "bedrock-throttled": "fake.throttled"}},
            {"name": "bedrock-throttled", "kind": "bedrock", "base_url": url, "region": "us-east-1",
             "models": {"claude-fallback": "fake.throttled", "claude-stream-fallback": "fake.stream-throttled"}},
            {"name": "bedrock-backup", "kind": "bedrock", "base_url": url, "region": "eu-west-1", "priority": 1,
             "models": {"claude-fallback": GLOBAL_CLAUDE, "claude-stream-fallback": GLOBAL_CLAUDE}},
        ],
        "models": {"claude-bedrock": {"price": {"input": 3, "output": 15, "cached_input": 0.3, "cache_write": 3.75}}},
        "limits": {"key_cache_seconds": 0.5},
    }  # fmt: skip


@pytest.fixture(scope="module")
def bedrock(key_store) -> Iterator[SimpleNamespace]:
    from pisces_gateway.app import create_app

    # SigV4 signs with whatever credentials botocore finds: fake ones (moto's, set by local_dynamo)
    assert os.environ["AWS_ACCESS_KEY_ID"]
    with serving(FakeBedrock()) as fake:
        server = ServerThread(create_app(parse_config(bedrock_config(fake.url)), key_store), http=GATEWAY_HTTP).start()
        key = key_store.create(name="bedrock", balance=TEST_BALANCE)[0]
        try:
            yield SimpleNamespace(url=server.url, key=key, fake=fake)
        finally:
            server.stop()


@pytest.fixture
def oai(bedrock, clients) -> openai.OpenAI:
    return clients.openai(f"{bedrock.url}/v1", bedrock.key)


@pytest.fixture
def claude(bedrock, clients) -> anthropic.Anthropic:
    return clients.anthropic(bedrock.url, bedrock.key)


@pytest.fixture
def gem(bedrock, clients) -> genai.Client:
    return clients.gemini(bedrock.url, bedrock.key, retry_options=types.HttpRetryOptions(attempts=1))


def signed_region(request: dict) -> str:
    """The region of a SigV4 Authorization header (Credential=<key id>/<date>/<region>/bedrock/aws4_request)."""
    auth = request["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential="), auth
    scope = auth.split("Credential=")[1].split(",")[0].split("/")
    assert scope[3:] == ["bedrock", "aws4_request"]
    return scope[2]


# --- the OpenAI door ------------------------------------------------------------------------------


def test_openai_text_signed_for_the_channels_region(oai, bedrock):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    raw = oai.chat.completions.with_raw_response.create(model="claude-bedrock", messages=msgs, max_tokens=64,
                                                        temperature=0.2)  # fmt: skip
    r = raw.parse()
    assert r.choices[0].message.content == "Hello from Bedrock: hi" and r.choices[0].finish_reason == "stop"
    # Bedrock's inputTokens (11) leave out cache reads (5) and writes (3): the client sees every prompt token
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (19, 7)
    assert r.usage.prompt_tokens_details.cached_tokens == 5
    p = r.model_extra["pisces"]
    assert p["channel"] == "bedrock-west" and p["request_id"] == raw.headers["x-request-id"]
    # $3 in, $0.30 cache read, $3.75 cache write, $15 out per million: 33 + 1.5 + 11.25 + 105 -> 151 (rounded up)
    assert p["cost"] == 151
    sent = bedrock.fake.last()
    assert sent["model"] == CLAUDE and not sent["stream"] and signed_region(sent) == "us-west-2"
    assert sent["body"]["system"] == [{"text": "Be brief."}]
    assert sent["body"]["messages"] == [{"role": "user", "content": [{"text": "hi"}]}]
    assert sent["body"]["inferenceConfig"] == {"maxTokens": 64, "temperature": 0.2}


def test_openai_stream_with_usage(oai, bedrock):
    stream = oai.chat.completions.create(model="nova-bedrock", messages=[{"role": "user", "content": "one two three"}],
                                         stream=True, stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from Bedrock: one two three"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 3  # real deltas, not one piece
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage.prompt_tokens == 19 and chunks[-1].usage.completion_tokens == 7
    sent = bedrock.fake.last()
    assert sent["stream"] and sent["model"] == "amazon.nova-fake-v1:0"
    assert "additionalModelRequestFields" not in sent["body"]  # no Anthropic-only fields for Nova


@pytest.mark.parametrize("stream", [False, True], ids=["converse", "converse-stream"])
def test_openai_tool_round_trip(oai, bedrock, stream):
    msgs = [{"role": "user", "content": "weather in Paris?"}]
    kw = {"model": "claude-bedrock", "tools": [WEATHER], "tool_choice": "required"}
    if stream:
        chunks = list(oai.chat.completions.create(messages=msgs, stream=True, **kw))
        calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
        call_id, name = calls[0].id, calls[0].function.name
        args = "".join(tc.function.arguments or "" for tc in calls)
        assert len(calls) > 2  # the arguments arrive in fragments
        reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert reasons == ["tool_calls"]
    else:
        r = oai.chat.completions.create(messages=msgs, **kw)
        assert r.choices[0].finish_reason == "tool_calls"
        tc = r.choices[0].message.tool_calls[0]
        call_id, name, args = tc.id, tc.function.name, tc.function.arguments
    assert (call_id, name, json.loads(args)) == ("tooluse_fake0001", "get_weather", TOOL_INPUT)
    tool_config = bedrock.fake.last()["body"]["toolConfig"]
    assert tool_config["toolChoice"] == {"any": {}}
    assert tool_config["tools"][0]["toolSpec"]["inputSchema"]["json"] == WEATHER["function"]["parameters"]
    msgs += [{"role": "assistant", "tool_calls": [{"id": call_id, "type": "function",
                                                    "function": {"name": name, "arguments": args}}]},
             {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 C"}]  # fmt: skip
    final = oai.chat.completions.create(messages=msgs, model="claude-bedrock", tools=[WEATHER])
    assert final.choices[0].message.content == "Tool said: sunny, 21 C"
    turns = bedrock.fake.last()["body"]["messages"]
    assert turns[1] == {"role": "assistant", "content": [{"toolUse": {"toolUseId": call_id, "name": name,
                                                                      "input": TOOL_INPUT}}]}  # fmt: skip
    result = {"toolUseId": call_id, "content": [{"text": "sunny, 21 C"}]}
    assert turns[2] == {"role": "user", "content": [{"toolResult": result}]}


def test_openai_image_goes_inline(oai, bedrock):
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    content = [{"type": "text", "text": "what is it?"}, {"type": "image_url", "image_url": {"url": url}}]
    r = oai.chat.completions.create(model="claude-bedrock", messages=[{"role": "user", "content": content}])
    assert r.choices[0].message.content == "Hello from Bedrock: what is it? [1 image(s)]"
    image = bedrock.fake.last()["body"]["messages"][0]["content"][1]["image"]
    assert image["format"] == "png" and base64.b64decode(image["source"]["bytes"]) == PNG  # botocore base64s bytes


@pytest.mark.parametrize("stream", [False, True], ids=["converse", "converse-stream"])
def test_throttling_falls_back_to_the_next_channel(oai, bedrock, stream):
    model = "claude-stream-fallback" if stream else "claude-fallback"
    before = len(bedrock.fake.requests)
    raw = oai.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                        stream=stream)  # fmt: skip
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        r = raw.parse()
        text = r.choices[0].message.content
        assert r.model_extra["pisces"]["channel"] == "bedrock-backup"
    assert text == "Hello from Bedrock: hi"
    tried = bedrock.fake.requests[before:]
    assert [t["model"] for t in tried] == ["fake.stream-throttled" if stream else "fake.throttled", GLOBAL_CLAUDE]
    assert [signed_region(t) for t in tried] == ["us-east-1", "eu-west-1"]


def test_throttled_everywhere_is_the_clients_429(oai, claude):
    with pytest.raises(openai.RateLimitError) as e:
        oai.chat.completions.create(model="bedrock-throttled", messages=[{"role": "user", "content": "hi"}])
    assert "Too many requests" in e.value.body["message"]
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(model="bedrock-throttled", max_tokens=10, messages=[{"role": "user", "content": "hi"}])


def test_access_denied_is_a_502_that_says_enable_model_access(oai):
    with pytest.raises(openai.APIStatusError) as e:
        oai.chat.completions.create(model="bedrock-denied", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502
    message = e.value.body["message"]
    assert "model access" in message.lower() and "fake.denied" in message and "us-west-2" in message


def test_validation_is_a_400(oai):
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="bedrock-invalid", messages=[{"role": "user", "content": "hi"}])
    assert "model identifier is invalid" in e.value.body["message"]


# --- the Anthropic door ---------------------------------------------------------------------------


def test_anthropic_usage_with_cache_counters(claude):
    msg = claude.messages.create(model="claude-bedrock", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "Hello from Bedrock: hi" and msg.stop_reason == "end_turn"
    u = msg.usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens, u.output_tokens) == (11, 5, 3, 7)


def test_anthropic_reasoning_with_signature_both_ways(claude, bedrock):
    thinking = {"type": "enabled", "budget_tokens": 2048}
    ask = [{"role": "user", "content": "hi"}]
    with claude.messages.stream(model="claude-bedrock", max_tokens=4096, thinking=thinking, messages=ask) as s:
        final = s.get_final_message()
    block = final.content[0]
    assert block.type == "thinking" and block.thinking == THOUGHT and block.signature == THOUGHT_SIGNATURE
    assert final.content[1].text == "Hello from Bedrock: hi"
    assert bedrock.fake.last()["body"]["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048}
    }
    created = claude.messages.create(model="claude-bedrock", max_tokens=4096, thinking=thinking, messages=ask)
    assert created.content[0].type == "thinking" and created.content[0].signature == THOUGHT_SIGNATURE
    # the next turn sends the signed reasoning back, untouched
    history = [*ask, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in created.content]},
               {"role": "user", "content": "again"}]  # fmt: skip
    claude.messages.create(model="claude-bedrock", max_tokens=4096, thinking=thinking, messages=history)
    sent = bedrock.fake.last()["body"]["messages"][1]["content"][0]
    assert sent == {"reasoningContent": {"reasoningText": {"text": THOUGHT, "signature": THOUGHT_SIGNATURE}}}


def test_anthropic_stream_cut_by_a_model_error_is_an_error_event(claude):
    stream = claude.messages.stream(
        model="bedrock-stream-fails", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    with pytest.raises(anthropic.APIStatusError) as e, stream as s:
        list(s.text_stream)
    assert e.value.body["error"]["type"] == "api_error"


def test_anthropic_access_denied(claude):
    with pytest.raises(anthropic.APIStatusError) as e:
        claude.messages.create(model="bedrock-denied", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502 and "model access" in e.value.body["error"]["message"].lower()


# --- the Gemini door ------------------------------------------------------------------------------


def test_gemini_text_and_stream(gem):
    r = gem.models.generate_content(model="claude-bedrock", contents="hello")
    assert r.text == "Hello from Bedrock: hello"
    assert r.usage_metadata.prompt_token_count == 19 and r.usage_metadata.cached_content_token_count == 5
    chunks = list(gem.models.generate_content_stream(model="nova-bedrock", contents="one two three"))
    assert len(chunks) >= 2 and "".join(c.text or "" for c in chunks) == "Hello from Bedrock: one two three"


def test_gemini_function_call_round_trip(gem, bedrock):
    decl = types.FunctionDeclaration(name="get_weather", parameters_json_schema=WEATHER["function"]["parameters"])
    mode = types.FunctionCallingConfigMode.ANY
    any_ = types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode=mode))
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[decl])],
        tool_config=any_,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    question = types.Content(role="user", parts=[types.Part(text="weather in Paris?")])
    first = gem.models.generate_content(model="claude-bedrock", contents=[question], config=config)
    call = first.function_calls[0]
    assert call.name == "get_weather" and call.args == TOOL_INPUT
    answer = types.Content(
        role="user", parts=[types.Part.from_function_response(name="get_weather", response={"forecast": "sunny"})]
    )
    final = gem.models.generate_content(model="claude-bedrock", contents=[question, first.candidates[0].content,
                                                                           answer], config=config)  # fmt: skip
    assert final.text.startswith("Tool said: ") and "sunny" in final.text
    result = bedrock.fake.last()["body"]["messages"][2]["content"][0]["toolResult"]
    assert result["toolUseId"] == call.id == "tooluse_fake0001"  # fmt: skip


def test_gemini_access_denied(gem):
    with pytest.raises(errors.ServerError) as e:
        gem.models.generate_content(model="bedrock-denied", contents="hi")
    assert e.value.code == 502 and "model access" in str(e.value).lower()


# --- many streams at once ---------------------------------------------------------------------------

# more than the loop's default thread pool on this machine (min(32, cores + 4) = 6); the channel waits
# 120 s between bytes, so only the fake's gate holds a stream
CONCURRENT = 12


async def test_concurrent_streams_each_flow_while_the_others_wait(bedrock):
    """Twelve Bedrock streams open at once, each held by the fake after its first delta: every one
    of them reaches its client before any is released (a reader blocking the loop, or a pool too
    small for them, would hold some back), then all finish."""
    import asyncio

    import httpx

    first, all_started = 0, asyncio.Event()
    async with openai.AsyncOpenAI(base_url=f"{bedrock.url}/v1", api_key=bedrock.key, max_retries=0) as client:

        async def one(i: int) -> str:
            nonlocal first
            text, seen = "", False
            stream = await client.chat.completions.create(
                model="bedrock-gated", messages=[{"role": "user", "content": f"stream {i} of many"}], stream=True
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                    if not seen:
                        seen, first = True, first + 1
                        if first == CONCURRENT:
                            all_started.set()
            return text

        tasks = [asyncio.create_task(one(i)) for i in range(CONCURRENT)]
        try:
            # causal: all start in milliseconds; the bound (a third of the fake's own cap) only fails a broken gateway
            await asyncio.wait_for(all_started.wait(), GATE_SECONDS / 3)
            assert not any(t.done() for t in tasks)  # none finished: the fake still holds them all
        finally:
            async with httpx.AsyncClient() as h:
                await h.post(f"{bedrock.fake.url}/release")
        texts = await asyncio.gather(*tasks)
    assert texts == [f"Hello from Bedrock: stream {i} of many" for i in range(CONCURRENT)]
