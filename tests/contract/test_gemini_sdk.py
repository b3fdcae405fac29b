"""The official `google-genai` SDK over real HTTP against the gateway's Gemini door (and the `openai` and
`anthropic` SDKs against a Gemini upstream): the mock channel, a fake OpenAI-compatible upstream, a fake
Anthropic upstream and a fake Gemini upstream."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid

import httpx
import pydantic
import pytest
from google import genai
from google.genai import errors, types

from pisces.pipeline.logs import logger
from pisces.store.keys import hash_key
from support.clients import Clients
from support.config import TEST_BALANCE, in_one_rate_window
from support.fake_gemini import RECORDED_CALL, SIGNATURE, THOUGHT, TOOL_ARGS, UPSTREAM_SECRET

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Weather for a city",
    parameters_json_schema={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
)
NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)
ANY = types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY))
NONE = types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.NONE))
# a 1x1 transparent PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def signature_bytes(sig: str) -> bytes:
    """A thought signature's bytes: the SDK sends bytes fields in URL-safe base64, Gemini in the standard
    alphabet; the API takes both."""
    return base64.urlsafe_b64decode(sig.replace("+", "-").replace("/", "_"))


def weather_report(city: str, days: int = 1) -> dict:
    """Weather for a city, for some days."""
    return {"forecast": f"sunny in {city} for {days} days"}


def make_client(
    clients: Clients,
    gateway,
    key: str | None = None,
    api_version: str | None = None,
    seen: list[httpx.Request] | None = None,
) -> genai.Client:
    """A google-genai client of the gateway that never retries, closed when the test ends; ``seen``
    collects the requests it sends."""
    hooks = {"event_hooks": {"request": [seen.append]}} if seen is not None else None
    return clients.gemini(gateway.url, key or gateway.key, api_version=api_version, client_args=hooks,
                          retry_options=types.HttpRetryOptions(attempts=1))  # fmt: skip


@pytest.fixture
def client(gateway, clients) -> genai.Client:
    return make_client(clients, gateway)


def raw_post(gateway, path: str, body: dict, key: str | None = None, **params: str) -> httpx.Response:
    headers = {"x-goog-api-key": key or gateway.key}
    return httpx.post(f"{gateway.url}{path}", json=body, headers=headers, params=params, timeout=15)


def user_text(text: str) -> dict:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


# --- the mock channel -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, "v1", "v1beta"])
def test_generate_content_against_the_mock(gateway, version, clients):
    seen: list[httpx.Request] = []
    client = make_client(clients, gateway, api_version=version, seen=seen)
    resp = client.models.generate_content(model="mock-echo", contents="hello there")
    assert seen[-1].url.path == f"/{version or 'v1'}/models/mock-echo:generateContent"  # google-genai: v1 by default
    assert seen[-1].headers["x-goog-api-key"] == gateway.key
    assert resp.text == "hello there"
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    u = resp.usage_metadata
    assert u.prompt_token_count > 0 and u.candidates_token_count > 0
    assert u.total_token_count == u.prompt_token_count + u.candidates_token_count
    headers = {k.lower(): v for k, v in resp.sdk_http_response.headers.items()}
    assert headers["x-request-id"]
    # the SDK drops what it does not know: the raw body has the pisces object, its id the header's
    r = raw_post(gateway, f"/{version or 'v1'}/models/mock-echo:generateContent", user_text("hello there"))
    assert r.status_code == 200
    p = r.json()["pisces"]
    assert (p["gateway"], p["protocol"], p["channel"]) == ("Pisces", "gemini", "mock")
    assert p["request_id"] == r.headers["x-request-id"] and isinstance(p["cost"], int)
    assert r.json()["candidates"][0]["content"] == {"parts": [{"text": "hello there"}], "role": "model"}


@pytest.mark.parametrize("version", ["v1", "v1beta"])
def test_stream_against_the_mock(gateway, version, clients):
    seen: list[httpx.Request] = []
    client = make_client(clients, gateway, api_version=version, seen=seen)
    text = "alpha beta gamma delta epsilon zeta eta theta"
    chunks = list(client.models.generate_content_stream(model="mock-echo", contents=text))
    assert seen[-1].url.path == f"/{version}/models/mock-echo:streamGenerateContent"
    assert seen[-1].url.params["alt"] == "sse"
    assert len(chunks) >= 2
    assert "".join(c.text or "" for c in chunks) == text
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata.prompt_token_count > 0 and last.usage_metadata.candidates_token_count > 0
    assert all(c.candidates[0].finish_reason is None for c in chunks[:-1])


def test_stream_pisces_on_first_and_last_chunk(gateway):
    r = raw_post(gateway, "/v1beta/models/mock-echo:streamGenerateContent", user_text("a b c d e f g"), alt="sse")
    events = [json.loads(line[len("data: ") :]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert len(events) >= 3 and "pisces" in events[0] and "pisces" in events[-1]
    assert events[-1]["pisces"]["request_id"] == r.headers["x-request-id"]
    assert isinstance(events[-1]["pisces"]["cost"], int) and "cost" not in events[0]["pisces"]


def test_system_instruction_is_honoured(client, gateway):
    plain = client.models.generate_content(model="mock-echo", contents="hi")
    config = types.GenerateContentConfig(system_instruction="Answer in exactly three words, all of them in capitals.")
    told = client.models.generate_content(model="mock-echo", contents="hi", config=config)
    assert told.text == "hi" and told.usage_metadata.prompt_token_count > plain.usage_metadata.prompt_token_count
    client.models.generate_content(model="gpt-fake", contents="hi", config=config)
    assert gateway.upstream.last()["body"]["messages"][0] == {"role": "system", "content": config.system_instruction}


def test_max_output_tokens_cuts(client):
    config = types.GenerateContentConfig(max_output_tokens=2)
    resp = client.models.generate_content(model="mock-echo", contents="one two three four", config=config)
    assert resp.text == "one two" and resp.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    chunks = list(client.models.generate_content_stream(model="mock-echo", contents="one two three four",
                                                        config=config))  # fmt: skip
    assert "".join(c.text or "" for c in chunks) == "one two"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


def test_chat_session_keeps_the_history(client):
    chat = client.chats.create(model="mock-echo")
    assert chat.send_message("first").text == "first"
    assert chat.send_message("second").text == "second"
    assert [(c.role, c.parts[0].text) for c in chat.get_history()] == [
        ("user", "first"), ("model", "first"), ("user", "second"), ("model", "second")
    ]  # fmt: skip


async def test_async_client(client):
    async with client.aio as aio:  # its connections are this test's event loop's: closed on it
        resp = await aio.models.generate_content(model="mock-echo", contents="async hello")
        assert resp.text == "async hello" and resp.candidates[0].finish_reason == types.FinishReason.STOP
        chunks = [c async for c in await aio.models.generate_content_stream(model="mock-echo",
                                                                             contents="a b c d e f g")]  # fmt: skip
        assert len(chunks) >= 2 and "".join(c.text or "" for c in chunks) == "a b c d e f g"
        with pytest.raises(errors.ClientError) as e:
            await aio.models.generate_content(model="no-such-model", contents="x")
    assert (e.value.code, e.value.status) == (404, "NOT_FOUND")


def test_structured_output_reaches_openai_as_a_json_schema(client, gateway):
    class City(pydantic.BaseModel):
        name: str
        population: int | None = None

    config = types.GenerateContentConfig(response_mime_type="application/json", response_schema=City)
    client.models.generate_content(model="gpt-fake", contents="Paris", config=config)
    fmt = gateway.upstream.last()["body"]["response_format"]
    assert fmt["type"] == "json_schema"
    schema = fmt["json_schema"]["schema"]
    assert schema["type"] == "object" and schema["required"] == ["name"]
    assert schema["properties"]["name"]["type"] == "string"
    assert schema["properties"]["population"]["type"] == ["integer", "null"]  # Gemini's nullable, as JSON Schema


def test_thoughts_from_gemini(client, gateway):
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True))
    resp = client.models.generate_content(model="gemini-fake", contents="hi", config=config)
    thought, answer = resp.candidates[0].content.parts
    assert thought.thought is True and thought.text == THOUGHT and not answer.thought
    assert resp.text == "Hello from upstream: hi", "the SDK's .text leaves thoughts out"
    u = resp.usage_metadata
    assert (u.prompt_token_count, u.candidates_token_count, u.thoughts_token_count) == (11, 7, 4)
    assert (u.cached_content_token_count, u.total_token_count) == (2, 22)
    assert gateway.gemini.last()["body"]["generationConfig"] == {"thinkingConfig": {"includeThoughts": True}}
    chunks = list(client.models.generate_content_stream(model="gemini-fake", contents="hi", config=config))
    first = chunks[0].candidates[0].content.parts[0]
    assert first.thought is True and first.text == THOUGHT
    assert "".join(c.text or "" for c in chunks[1:]) == "Hello from upstream: hi"
    assert chunks[-1].usage_metadata.thoughts_token_count == 4


# --- function calling, the SDK's automatic function calling off ------------------------------------


def _call_config(tool: object, config: types.ToolConfig = ANY) -> types.GenerateContentConfig:
    tools = [types.Tool(function_declarations=[tool])] if isinstance(tool, types.FunctionDeclaration) else [tool]
    return types.GenerateContentConfig(tools=tools, tool_config=config, automatic_function_calling=NO_AFC)


@pytest.mark.parametrize("tool", [WEATHER, weather_report], ids=["declaration", "python-function"])
@pytest.mark.parametrize("model", ["mock-echo", "gpt-fake", "claude-fake", "gemini-fake"])
def test_function_call_round_trip(client, gateway, model, tool):
    name = tool.name if isinstance(tool, types.FunctionDeclaration) else tool.__name__
    question = types.Content(role="user", parts=[types.Part(text="weather in Paris?")])
    first = client.models.generate_content(model=model, contents=[question], config=_call_config(tool))
    assert first.function_calls and len(first.function_calls) == 1
    call = first.function_calls[0]
    assert call.name == name
    if model == "mock-echo":  # the mock fills the arguments from the schema
        assert call.args == {"city": "mock", "days": 1}
    else:
        assert call.args == TOOL_ARGS
    assert first.candidates[0].finish_reason == types.FinishReason.STOP
    answer = types.Content(
        role="user", parts=[types.Part.from_function_response(name=name, response={"forecast": "sunny, 21 C"})]
    )
    history = [question, first.candidates[0].content, answer]
    final = client.models.generate_content(model=model, contents=history, config=_call_config(tool, NONE))
    assert not final.function_calls and final.text
    assert final.candidates[0].finish_reason == types.FinishReason.STOP
    if model == "mock-echo":  # the mock answers with the tool's result
        assert "sunny, 21 C" in final.text
    elif model == "gpt-fake":  # an assistant tool call, then the tool message answering it by id
        msgs = gateway.upstream.last()["body"]["messages"]
        assert msgs[1]["role"] == "assistant" and msgs[1]["tool_calls"][0]["function"]["name"] == name
        assert msgs[1]["tool_calls"][0]["id"] == call.id == "call_fake_1"
        assert json.loads(msgs[1]["tool_calls"][0]["function"]["arguments"]) == TOOL_ARGS
        assert msgs[2]["role"] == "tool" and msgs[2]["tool_call_id"] == msgs[1]["tool_calls"][0]["id"]
        assert json.loads(msgs[2]["content"]) == {"forecast": "sunny, 21 C"}
    elif model == "claude-fake":  # a tool_use block, then the tool_result answering it by id
        msgs = gateway.anthropic.last()["body"]["messages"]
        use, result = msgs[1]["content"][0], msgs[2]["content"][0]
        assert use == {"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": TOOL_ARGS}
        assert result["type"] == "tool_result" and result["tool_use_id"] == use["id"] == call.id
        assert "sunny, 21 C" in json.dumps(result["content"])
    else:  # Gemini got its own call back, thought signature included, and the response by name
        assert final.text.startswith("Hello from upstream: ") and "sunny, 21 C" in final.text
        contents = gateway.gemini.last()["body"]["contents"]
        assert contents[1]["role"] == "model" and len(contents[1]["parts"]) == 1
        part = contents[1]["parts"][0]
        assert set(part) == {"functionCall", "thoughtSignature"}
        assert part["functionCall"] == {"name": name, "args": TOOL_ARGS}  # no id: Gemini made none
        assert signature_bytes(part["thoughtSignature"]) == signature_bytes(SIGNATURE)
        fr = contents[2]["parts"][0]["functionResponse"]
        assert fr["name"] == name and fr["response"] == {"forecast": "sunny, 21 C"}


def test_streamed_function_call_from_a_recorded_gemini_stream(client, gateway):
    tool = types.FunctionDeclaration(
        name="getWeather", parameters_json_schema={"type": "object", "properties": {"location": {"type": "string"}}}
    )
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[tool])],
                                         automatic_function_calling=NO_AFC)  # fmt: skip
    chunks = list(client.models.generate_content_stream(model="gemini-recorded-call", contents="weather in Tokyo?",
                                                        config=config))  # fmt: skip
    calls = [fc for c in chunks for fc in c.function_calls or []]
    assert [(fc.name, fc.args) for fc in calls] == [("getWeather", {"location": "Tokyo"})]
    recorded_part = RECORDED_CALL["candidates"][0]["content"]["parts"][0]
    part = next(p for c in chunks for p in c.candidates[0].content.parts or [] if p.function_call)
    assert part.thought_signature == signature_bytes(recorded_part["thoughtSignature"])
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.prompt_token_count > 0
    assert gateway.gemini.last()["query"] == {"alt": "sse"}


@pytest.mark.parametrize(
    ("model", "args", "call_id"),
    [("mock-echo", {"city": "mock", "days": 1}, None), ("gpt-fake", TOOL_ARGS, "call_fake_1"),
     ("claude-fake", TOOL_ARGS, "toolu_fake_1")],
)  # fmt: skip
def test_streamed_argument_fragments_come_as_one_whole_function_call(client, gateway, model, args, call_id):
    """The mock, the fake OpenAI and the fake Anthropic stream a call's arguments in fragments: a Gemini
    client gets one functionCall part with all of them (Gemini never splits arguments)."""
    chunks = list(client.models.generate_content_stream(model=model, contents="weather?",
                                                        config=_call_config(WEATHER)))  # fmt: skip
    calls = [fc for c in chunks for fc in c.function_calls or []]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].args == args
    if call_id is None:  # the mock's own id
        assert calls[0].id.startswith("call_")
    else:  # the upstream's id, passed on
        assert calls[0].id == call_id
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count > 0
    if model == "gpt-fake":
        assert gateway.upstream.last()["body"]["tool_choice"] == "required"


# --- function calling, the SDK's automatic function calling on -------------------------------------


def test_automatic_function_calling_against_gemini(client, gateway):
    ran: list[dict] = []

    def get_weather(city: str, days: int) -> str:
        """Weather for a city, for some days."""
        ran.append({"city": city, "days": days})
        return f"rain in {city} for {days} days"

    resp = client.models.generate_content(model="gemini-fake", contents="weather in Paris?",
                                          config=types.GenerateContentConfig(tools=[get_weather]))  # fmt: skip
    assert ran == [TOOL_ARGS]
    assert resp.text.startswith("Hello from upstream: ") and "rain in Paris for 3 days" in resp.text
    history = resp.automatic_function_calling_history
    assert [c.role for c in history] == ["user", "model", "user"]
    assert history[1].parts[0].function_call.name == "get_weather"
    sent = gateway.gemini.last()["body"]["contents"]
    assert signature_bytes(sent[1]["parts"][0]["thoughtSignature"]) == signature_bytes(SIGNATURE)
    assert sent[2]["parts"][0]["functionResponse"]["name"] == "get_weather"
    assert sent[2]["parts"][0]["functionResponse"]["response"] == {"result": "rain in Paris for 3 days"}


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_automatic_function_calling_against_upstreams_that_always_call(client, gateway, model):
    """The fakes call the tool again after each result: the SDK stops at maximum_remote_calls."""
    ran: list[dict] = []

    def get_weather(city: str, days: int) -> str:
        """Weather for a city, for some days."""
        ran.append({"city": city, "days": days})
        return f"rain in {city}"

    afc = types.AutomaticFunctionCallingConfig(maximum_remote_calls=3)
    config = types.GenerateContentConfig(tools=[get_weather], automatic_function_calling=afc)
    resp = client.models.generate_content(model=model, contents="weather in Paris?", config=config)
    # three requests: the last one's call is handed back to the caller, not run
    assert ran == [TOOL_ARGS, TOOL_ARGS]
    assert resp.function_calls and resp.function_calls[0].name == "get_weather"
    history = resp.automatic_function_calling_history
    assert [c.role for c in history] == ["user", "model", "user", "model", "user"]
    assert history[2].parts[0].function_response.response == {"result": "rain in Paris"}
    if model == "gpt-fake":
        msgs = gateway.upstream.last()["body"]["messages"]
        calls = [m for m in msgs if m["role"] == "assistant"]
        results = [m for m in msgs if m["role"] == "tool"]
        assert len(calls) == len(results) == 2
        assert [m["tool_call_id"] for m in results] == [m["tool_calls"][0]["id"] for m in calls]
    else:
        msgs = gateway.anthropic.last()["body"]["messages"]
        uses = [b for m in msgs for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_use"]
        results = [b for m in msgs for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]
        assert len(uses) == len(results) == 2
        assert [r["tool_use_id"] for r in results] == [u["id"] for u in uses]


def test_automatic_function_calling_in_a_stream(client, gateway):
    def get_weather(city: str, days: int) -> str:
        """Weather for a city, for some days."""
        return f"rain in {city}"

    config = types.GenerateContentConfig(tools=[get_weather])
    chunks = list(
        client.models.generate_content_stream(model="gemini-fake", contents="weather in Paris?", config=config)
    )
    assert "".join(c.text or "" for c in chunks) == 'Hello from upstream: {"result": "rain in Paris"}'
    sent = gateway.gemini.last()
    assert sent["action"] == "streamGenerateContent"
    assert [c["role"] for c in sent["body"]["contents"]] == ["user", "model", "user"]
    assert sent["body"]["contents"][2]["parts"][0]["functionResponse"]["response"] == {"result": "rain in Paris"}


def test_a_thinking_signature_goes_back_to_anthropic_as_anthropic_wrote_it(client, gateway):
    """google-genai holds thoughtSignature as bytes and sends it URL-safe: the door turns it back into
    the standard alphabet Anthropic issued it in."""
    issued = bytes(range(240, 256)) * 4  # its standard base64 has '+' and '/'
    history = [
        types.Content(role="user", parts=[types.Part(text="weather?")]),
        types.Content(role="model", parts=[types.Part(text="pondering", thought=True, thought_signature=issued),
                                           types.Part.from_function_call(name="get_weather", args={"city": "Paris"})]),
        types.Content(role="user", parts=[types.Part.from_function_response(name="get_weather",
                                                                            response={"forecast": "sunny"})]),
    ]  # fmt: skip
    client.models.generate_content(model="claude-fake", contents=history, config=_call_config(WEATHER, NONE))
    thinking = gateway.anthropic.last()["body"]["messages"][1]["content"][0]
    assert thinking["type"] == "thinking" and thinking["thinking"] == "pondering"
    assert thinking["signature"] == base64.b64encode(issued).decode()


# --- auth ---------------------------------------------------------------------------------------


def test_three_ways_to_send_the_key(gateway):
    url = f"{gateway.url}/v1beta/models/mock-echo:generateContent"
    body = user_text("hi")
    for kwargs in ({"params": {"key": gateway.key}}, {"headers": {"x-goog-api-key": gateway.key}},
                   {"headers": {"Authorization": f"Bearer {gateway.key}"}}):  # fmt: skip
        r = httpx.post(url, json=body, timeout=15, **kwargs)
        assert r.status_code == 200, (kwargs, r.text)
        assert r.json()["candidates"][0]["content"]["parts"][0]["text"] == "hi"


@pytest.mark.parametrize("key", ["pisces-not-a-real-key-0123456789", None])
def test_wrong_or_missing_key_is_unauthenticated(gateway, key, clients):
    headers = {"x-goog-api-key": key} if key else {}
    r = httpx.post(f"{gateway.url}/v1beta/models/mock-echo:generateContent", json=user_text("hi"), headers=headers)
    assert r.status_code == 401
    body = r.json()
    assert body["error"]["code"] == 401 and body["error"]["status"] == "UNAUTHENTICATED" and body["error"]["message"]
    assert body["pisces"]["protocol"] == "gemini" and body["pisces"]["request_id"] == r.headers["x-request-id"]
    if key:
        assert key not in r.text, "the key is never echoed"
        bad = make_client(clients, gateway, key=key)
        with pytest.raises(errors.ClientError) as e:
            bad.models.generate_content(model="mock-echo", contents="hi")
        assert (e.value.code, e.value.status) == (401, "UNAUTHENTICATED")


def test_query_key_never_reaches_the_logs(gateway, caplog):
    caplog.set_level(logging.INFO)
    key = gateway.new_key()
    ids = set()
    for action, params in (("generateContent", {"key": key}), ("streamGenerateContent", {"key": key, "alt": "sse"})):
        r = httpx.post(f"{gateway.url}/v1beta/models/gemini-fake:{action}", params=params, json=user_text("hi"),
                       timeout=15)  # fmt: skip
        assert r.status_code == 200
        ids.add(r.headers["x-request-id"])
    assert gateway.gemini.last()["query"] == {"alt": "sse"}, "the client's ?key= is not passed upstream"
    formatter = logger.registered_formatter

    def lines() -> list[dict]:
        return [json.loads(formatter.format(rec)) for rec in caplog.records if rec.name.startswith("pisces")]

    def ours() -> list[dict]:
        return [x for x in lines() if x.get("message") == "request" and x.get("request_id") in ids]

    # a stream's log line is written once the response is done, which may be just after the client has it all
    for _ in range(100):
        if len(ours()) == 2:
            break
        time.sleep(0.05)
    requests = ours()
    assert len(requests) == 2 and {r["stream"] for r in requests} == {True, False}
    assert all(r["status"] == 200 and "key=" not in r["path"] for r in requests)
    # everything logged on the gateway's side (httpx's own lines are this test's client, which sent the URL)
    theirs = [rec for rec in caplog.records if rec.name.split(".")[0] not in ("httpx", "httpcore")]
    everything = "\n".join(json.dumps(x) for x in lines()) + "\n".join(rec.getMessage() for rec in theirs)
    assert key not in everything and UPSTREAM_SECRET not in everything


# --- streams without alt=sse, and with -----------------------------------------------------------


@pytest.mark.parametrize("model", ["mock-echo", "gemini-fake"])
def test_stream_without_alt_sse_is_one_json_array(gateway, model):
    r = raw_post(gateway, f"/v1beta/models/{model}:streamGenerateContent", user_text("one two three four five six"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    chunks = json.loads(r.text)
    assert isinstance(chunks, list) and len(chunks) >= 2
    text = "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"])
    expected = "one two three four five six"
    assert text == (expected if model == "mock-echo" else f"Hello from upstream: {expected}")
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP" and chunks[-1]["usageMetadata"]["totalTokenCount"]
    assert chunks[-1]["pisces"]["request_id"] == r.headers["x-request-id"]


@pytest.mark.parametrize("alt", [{}, {"alt": "sse"}])
def test_idempotency_key_replays_a_gemini_stream_without_charging(gateway, alt):
    key = gateway.new_key()
    headers = {"x-goog-api-key": key, "Idempotency-Key": f"gem-{uuid.uuid4()}"}
    url = f"{gateway.url}/v1beta/models/gpt-fake:streamGenerateContent"

    def post() -> httpx.Response:
        return httpx.post(url, json=user_text("one two three"), headers=headers, params=alt, timeout=15)

    def balance() -> int:
        return gateway.store.get_by_hash(hash_key(key)).balance

    first = post()
    charged = balance()  # settled before the last chunk was sent
    assert charged < TEST_BALANCE, "the first request was charged"
    again = post()
    assert first.status_code == again.status_code == 200 and again.content == first.content
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert again.headers["content-type"].split(";")[0] == first.headers["content-type"].split(";")[0]
    assert balance() == charged  # the replay charged nothing (a settlement would be done by its last byte)


def test_stream_with_alt_sse_is_data_lines(gateway):
    r = raw_post(gateway, "/v1/models/mock-echo:streamGenerateContent", user_text("one two three four five six"),
                 alt="sse")  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [e for e in r.text.split("\r\n\r\n") if e.strip()]
    assert len(events) >= 2 and all(e.startswith("data: ") for e in events)
    chunks = [json.loads(e[len("data: ") :]) for e in events]
    assert "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"]) == (
        "one two three four five six"
    )


# --- errors as the SDK raises them ----------------------------------------------------------------


def _raises(call, cls: type[errors.APIError], code: int, status: str, reason: str | None = None) -> errors.APIError:
    """The SDK's exception for ``call``, with Gemini's code and status (and ErrorInfo reason, if given)."""
    with pytest.raises(cls) as e:
        call()
    assert (e.value.code, e.value.status) == (code, status), e.value.details
    assert e.value.message and e.value.details["pisces"]["protocol"] == "gemini"
    assert e.value.details["error"]["code"] == code
    if reason is not None:
        reasons = [d.get("reason") for d in e.value.details["error"].get("details", [])]
        assert reason in reasons, e.value.details
    return e.value


def test_unknown_model_is_not_found(client):
    _raises(lambda: client.models.generate_content(model="no-such-model", contents="x"),
            errors.ClientError, 404, "NOT_FOUND", "MODEL_NOT_FOUND")  # fmt: skip
    _raises(lambda: list(client.models.generate_content_stream(model="no-such-model", contents="x")),
            errors.ClientError, 404, "NOT_FOUND", "MODEL_NOT_FOUND")  # fmt: skip


def test_bad_request_is_invalid_argument(client, gateway):
    e = _raises(
        lambda: client.models.generate_content(
            model="mock-echo", contents="x", config=types.GenerateContentConfig(candidate_count=2)
        ),
        errors.ClientError,
        400,
        "INVALID_ARGUMENT",
        "UNSUPPORTED_PARAMETER",
    )
    assert "candidateCount" in e.message
    r = raw_post(gateway, "/v1beta/models/mock-echo:generateContent", {"contents": [{"role": "robot", "parts": []}]})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "contents[0].role" in r.json()["error"]["message"]


def test_model_not_allowed_for_the_key_is_permission_denied(gateway, clients):
    limited = make_client(clients, gateway, key=gateway.new_key(models=["mock-echo"]))
    assert limited.models.generate_content(model="mock-echo", contents="ok").text == "ok"
    _raises(lambda: limited.models.generate_content(model="gpt-fake", contents="x"),
            errors.ClientError, 403, "PERMISSION_DENIED", "MODEL_NOT_ALLOWED")  # fmt: skip


def test_rate_limit_is_resource_exhausted(gateway, clients):
    key = gateway.new_key(rpm=1)
    limited = make_client(clients, gateway, key=key)
    in_one_rate_window()
    limited.models.generate_content(model="mock-echo", contents="x")
    e = _raises(lambda: limited.models.generate_content(model="mock-echo", contents="x"),
                errors.ClientError, 429, "RESOURCE_EXHAUSTED", "RATE_LIMIT_EXCEEDED")  # fmt: skip
    assert int(e.response.headers["retry-after"]) >= 1
    retry = [d for d in e.details["error"]["details"] if d["@type"].endswith("RetryInfo")]
    assert retry and retry[0]["retryDelay"].endswith("s")


def test_spent_balance_is_402(gateway, clients):
    broke = make_client(clients, gateway, key=gateway.new_key(balance=0))
    e = _raises(lambda: broke.models.generate_content(model="mock-echo", contents="x"),
                errors.ClientError, 402, "RESOURCE_EXHAUSTED", "INSUFFICIENT_BALANCE")  # fmt: skip
    assert "balance" in e.message.lower()


def test_upstream_errors(client):
    _raises(lambda: client.models.generate_content(model="gemini-fail-400", contents="x"),
            errors.ClientError, 400, "INVALID_ARGUMENT")  # fmt: skip
    e = _raises(lambda: client.models.generate_content(model="gemini-fail-429", contents="x"),
                errors.ClientError, 429, "RESOURCE_EXHAUSTED")  # fmt: skip
    assert e.response.headers["retry-after"] == "7"
    # an upstream's 5xx is the gateway's 502 (bad gateway), whatever the upstream said
    e = _raises(lambda: client.models.generate_content(model="gemini-fail-503", contents="x"),
                errors.ServerError, 502, "INTERNAL")  # fmt: skip
    assert e.details["pisces"]["channel"] == "fake-gemini" and "upstream says 503" in e.message


@pytest.mark.parametrize(
    ("model", "cls", "code", "status"),
    [
        ("fail-400", errors.ClientError, 400, "INVALID_ARGUMENT"),  # the fake OpenAI-compatible upstream
        ("fail-429", errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
        ("fail-500", errors.ServerError, 502, "INTERNAL"),
        ("claude-fail-400", errors.ClientError, 400, "INVALID_ARGUMENT"),  # the fake Anthropic upstream
        ("claude-fail-529", errors.ServerError, 502, "INTERNAL"),
    ],
)
def test_other_upstreams_errors_in_geminis_shape(client, model, cls, code, status):
    e = _raises(lambda: client.models.generate_content(model=model, contents="x"), cls, code, status)
    assert e.message.startswith("upstream"), e.message  # the upstream's own words, passed on


def test_upstream_cut_mid_stream_is_an_api_error(client):
    got: list[str] = []
    with pytest.raises(errors.APIError) as e:
        for chunk in client.models.generate_content_stream(model="gemini-cut", contents="one two three four"):
            got.append(chunk.text or "")
    assert got == ["Hello"], "the chunk sent before the cut reached the client"
    # the gateway's error chunk: 502, as for every upstream failure, and the SDK raises it
    assert (e.value.code, e.value.status) == (502, "INTERNAL"), e.value.details
    assert e.value.details["pisces"]["protocol"] == "gemini" and e.value.details["pisces"]["channel"] == "fake-gemini"


def test_upstream_cut_in_an_array_stream_ends_with_an_error_element(gateway):
    r = raw_post(gateway, "/v1beta/models/gemini-cut:streamGenerateContent", user_text("one two three"))
    assert r.status_code == 200  # the stream had started
    chunks = json.loads(r.text)  # still one well-formed array
    assert chunks[0]["candidates"][0]["content"]["parts"] == [{"text": "Hello"}]
    assert "finishReason" not in chunks[0]["candidates"][0], "a cut stream does not claim it finished"
    assert chunks[-1]["error"]["code"] == 502 and chunks[-1]["error"]["status"] == "INTERNAL"
    assert chunks[-1]["pisces"]["request_id"] == r.headers["x-request-id"]


# --- models, token counts ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1beta"])
def test_models_list_and_get(gateway, version, clients):
    client = make_client(clients, gateway, api_version=version)
    models = {m.name: m for m in client.models.list()}
    for name in ("models/mock-echo", "models/gpt-fake", "models/claude-fake", "models/gemini-fake"):
        assert name in models
        assert {"generateContent", "streamGenerateContent", "countTokens"} <= set(models[name].supported_actions)
    got = client.models.get(model="mock-echo")
    assert got.name == "models/mock-echo" and "generateContent" in got.supported_actions
    assert client.models.get(model="models/gemini-fake").name == "models/gemini-fake"
    _raises(lambda: client.models.get(model="no-such-model"), errors.ClientError, 404, "NOT_FOUND")


def test_v1_models_is_in_geminis_shape_for_gemini_clients(gateway):
    url = f"{gateway.url}/v1/models"
    for kwargs in ({"params": {"key": gateway.key}}, {"headers": {"x-goog-api-key": gateway.key}}):
        body = httpx.get(url, timeout=15, **kwargs).json()
        assert "models/mock-echo" in [m["name"] for m in body["models"]] and body["pisces"]["protocol"] == "gemini"
    body = httpx.get(url, headers={"Authorization": f"Bearer {gateway.key}"}, timeout=15).json()
    assert body["object"] == "list" and "mock-echo" in [m["id"] for m in body["data"]]


def test_models_list_respects_the_keys_allowed_models(gateway, clients):
    limited = make_client(clients, gateway, key=gateway.new_key(models=["mock-echo"]))
    assert [m.name for m in limited.models.list()] == ["models/mock-echo"]
    _raises(lambda: limited.models.get(model="gpt-fake"), errors.ClientError, 404, "NOT_FOUND")


def test_count_tokens(client):
    short = client.models.count_tokens(model="mock-echo", contents="count these")
    long = client.models.count_tokens(model="mock-echo", contents="count these and a good many more words after them")
    assert 0 < short.total_tokens < long.total_tokens
    _raises(lambda: client.models.count_tokens(model="no-such-model", contents="x"), errors.ClientError, 404,
            "NOT_FOUND")  # fmt: skip


# --- the openai and anthropic SDKs against the Gemini upstream ------------------------------------


def test_openai_sdk_streams_text_from_gemini(gateway, clients):
    c = clients.openai(gateway.v1, gateway.key)
    chunks = list(c.chat.completions.create(model="gemini-fake", messages=[{"role": "user", "content": "hi there"}],
                                            stream=True, stream_options={"include_usage": True}))  # fmt: skip
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Hello from upstream: hi there"
    finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finish == ["stop"]
    u = chunks[-1].usage
    # Gemini: 11 prompt tokens (2 of them cached), 7 candidates + 4 thoughts
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (11, 11, 22)
    assert u.prompt_tokens_details.cached_tokens == 2 and u.completion_tokens_details.reasoning_tokens == 4
    sent = gateway.gemini.last()
    assert sent["action"] == "streamGenerateContent" and sent["query"] == {"alt": "sse"}
    assert sent["x-goog-api-key"] == UPSTREAM_SECRET and sent["body"]["contents"][0]["parts"] == [{"text": "hi there"}]


def test_openai_sdk_tool_round_trip_with_gemini(gateway, clients):
    c = clients.openai(gateway.v1, gateway.key)
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER.parameters_json_schema}}
    messages: list[dict] = [{"role": "user", "content": "weather in Paris?"}]
    first = c.chat.completions.create(model="gemini-fake", messages=messages, tools=[tool])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id and call.function.name == "get_weather" and json.loads(call.function.arguments) == TOOL_ARGS
    # the same over a stream
    chunks = list(c.chat.completions.create(model="gemini-fake", messages=messages, tools=[tool], stream=True))
    deltas = [tc for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == TOOL_ARGS
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason] == [
        "tool_calls"
    ]
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"forecast": "sunny"}'},
    ]
    final = c.chat.completions.create(model="gemini-fake", messages=messages, tools=[tool])
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == 'Hello from upstream: {"forecast": "sunny"}'
    contents = gateway.gemini.last()["body"]["contents"]
    assert contents[1]["parts"][0]["functionCall"] == {"name": "get_weather", "args": TOOL_ARGS}
    # an OpenAI client cannot carry Gemini's signature: the call goes back with the documented placeholder
    assert contents[1]["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"
    assert contents[2]["parts"][0]["functionResponse"] == {"name": "get_weather", "response": {"forecast": "sunny"}}


def test_anthropic_sdk_streams_text_from_gemini(gateway, clients):
    c = clients.anthropic(gateway.url, gateway.key)
    with c.messages.stream(model="gemini-fake", max_tokens=100,
                           messages=[{"role": "user", "content": "hi there"}]) as s:  # fmt: skip
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert len(pieces) >= 2 and "".join(pieces) == "Hello from upstream: hi there"
    assert final.stop_reason == "end_turn"
    u = final.usage
    # Anthropic counts cache reads apart from input: 11 - 2 = 9; output includes the 4 thought tokens
    assert (u.input_tokens, u.cache_read_input_tokens, u.output_tokens) == (9, 2, 11)
    assert gateway.gemini.last()["body"]["generationConfig"]["maxOutputTokens"] == 100


def test_anthropic_sdk_tool_round_trip_with_gemini(gateway, clients):
    c = clients.anthropic(gateway.url, gateway.key)
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER.parameters_json_schema}]
    messages: list[dict] = [{"role": "user", "content": "weather in Paris?"}]
    first = c.messages.create(model="gemini-fake", max_tokens=100, tools=tools, messages=messages)
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.id and use.name == "get_weather" and use.input == TOOL_ARGS
    u = first.usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.output_tokens) == (9, 2, 11)
    with c.messages.stream(model="gemini-fake", max_tokens=100, tools=tools, messages=messages) as s:
        streamed = s.get_final_message()
    assert streamed.stop_reason == "tool_use" and streamed.content[-1].input == TOOL_ARGS
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    final = c.messages.create(model="gemini-fake", max_tokens=100, tools=tools, messages=messages)
    assert final.stop_reason == "end_turn" and final.content[-1].text == 'Hello from upstream: {"result": "sunny"}'
    contents = gateway.gemini.last()["body"]["contents"]
    call = next(p for p in contents[1]["parts"] if "functionCall" in p)
    assert call["functionCall"] == {"name": "get_weather", "args": TOOL_ARGS}
    assert call["thoughtSignature"] == "skip_thought_signature_validator"
    assert contents[2]["parts"][0]["functionResponse"] == {"name": "get_weather", "response": {"result": "sunny"}}


# --- images --------------------------------------------------------------------------------------------


def test_inline_image_reaches_openai_as_a_data_url(client, gateway):
    parts = [types.Part.from_bytes(data=PNG, mime_type="image/png"), types.Part(text="what is this?")]
    resp = client.models.generate_content(model="gpt-fake", contents=[types.Content(role="user", parts=parts)])
    assert resp.text == "Hello from upstream: what is this?"
    content = gateway.upstream.last()["body"]["messages"][0]["content"]
    image = next(b for b in content if b["type"] == "image_url")
    assert image["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert {"type": "text", "text": "what is this?"} in content


def test_keep_alive_while_the_upstream_is_silent_is_skipped_by_the_sdk(gateway, clients):
    """Gemini has no keep-alive event and google-genai reads any non-``data:`` line as JSON, so the
    door sends an empty SSE event (blank lines) while the upstream is silent. The fake holds its
    stream after the first text and is released once one has reached the client (causal)."""
    from support.servers import Watching

    release = lambda: httpx.post(f"{gateway.gemini.url}/release")  # noqa: E731
    watch = Watching(lambda chunk: chunk.strip() == b"" and chunk != b"", release)
    client = clients.gemini(gateway.url, gateway.key, client_args={"transport": watch}, timeout=60_000,
                            retry_options=types.HttpRetryOptions(attempts=1))  # fmt: skip
    chunks = list(client.models.generate_content_stream(model="gemini-gated", contents="one two three"))
    assert watch.fired, "a keep-alive came while the upstream was silent"
    assert "".join(c.text or "" for c in chunks) and chunks[-1].candidates[0].finish_reason == "STOP"


def test_keep_alive_in_a_json_array_stream_is_whitespace(gateway):
    """Without ?alt=sse the stream is one JSON array: the keep-alive is whitespace between elements."""
    seen: list[bytes] = []
    body = user_text("one two three")
    with httpx.stream("POST", f"{gateway.url}/v1beta/models/gemini-gated:streamGenerateContent", json=body,
                      headers={"x-goog-api-key": gateway.key}, timeout=60) as r:  # fmt: skip
        for chunk in r.iter_raw():
            seen.append(chunk)
            if chunk == b"\n" and seen.count(b"\n") == 1:
                httpx.post(f"{gateway.gemini.url}/release")
    assert b"\n" in seen
    array = json.loads(b"".join(seen))
    assert isinstance(array, list) and array[-1]["candidates"][0]["finishReason"] == "STOP"
