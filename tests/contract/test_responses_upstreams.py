"""The Responses door over every upstream kind (the fake OpenAI chat, Anthropic and Gemini upstreams, and
the fake OpenAI Responses API behind an ``openai-responses`` channel), and that channel from other doors."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from support.fake_openai_responses import ENCRYPTED, SUMMARY

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                          "required": ["city"]}}  # fmt: skip


@pytest.fixture
def client(gateway, clients):
    return clients.openai(gateway.v1, gateway.key)


def _last_body(gateway, path: str | None = None) -> dict:
    reqs = [r for r in gateway.upstream.requests if path is None or r.get("path") == path]
    return reqs[-1]["body"]


@pytest.mark.parametrize("model,said", [("gpt-fake", "Hello from upstream: hi there"),
                                        ("claude-fake", "Hello from upstream: hi there"),
                                        ("gemini-fake", "Hello from upstream: hi there"),
                                        ("gpt-resp", "Hello from responses: hi there")])  # fmt: skip
@pytest.mark.parametrize("stream", [False, True])
def test_text_from_every_upstream_kind(client, model, said, stream):
    if stream:
        with client.responses.stream(model=model, input="hi there", instructions="be kind") as s:
            types = [e.type for e in s]
            resp = s.get_final_response()
        assert types[0] == "response.created" and types[-1] == "response.completed"
    else:
        resp = client.responses.create(model=model, input="hi there", instructions="be kind")
    assert resp.output_text == said
    assert resp.status == "completed" and resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert (resp.model_extra or {})["pisces"]["cost"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_from_the_chat_upstream(client, gateway, stream):
    kwargs = {"model": "gpt-fake", "input": "weather?", "tools": [WEATHER]}
    if stream:
        with client.responses.stream(**kwargs) as s:
            resp = s.get_final_response()
    else:
        resp = client.responses.create(**kwargs)
    call = resp.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id == "call_fake_1"
    assert json.loads(call.arguments) == {"city": "Paris", "days": 3}
    sent = gateway.upstream.last()["body"]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["messages"][0] == {"role": "user", "content": "weather?"}


def test_the_responses_upstream_gets_the_request_in_its_own_shape(client, gateway):
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    client.responses.create(model="gpt-resp", input="hi", instructions="sys", max_output_tokens=50,
                            temperature=0.5, reasoning={"effort": "low", "summary": "auto"},
                            text={"format": {"type": "json_schema", "name": "x", "schema": schema}},
                            store=True, previous_response_id=None)  # fmt: skip
    sent = _last_body(gateway, "/v1/responses")
    assert sent["model"] == "gpt-resp"
    assert sent["instructions"] == "sys" and sent["max_output_tokens"] == 50 and sent["temperature"] == 0.5
    assert sent["store"] is False  # the gateway keeps the state; the upstream keeps nothing
    assert sent["reasoning"] == {"summary": "auto", "effort": "low"}
    assert "reasoning.encrypted_content" in sent["include"]
    assert sent["text"]["format"] == {"type": "json_schema", "name": "x", "schema": schema}
    assert sent["input"] == [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]


@pytest.mark.parametrize("stream", [False, True])
def test_encrypted_reasoning_passes_through_to_openai_and_back(client, gateway, stream):
    kwargs = {"model": "gpt-resp", "input": "run it", "tools": [WEATHER], "include": ["reasoning.encrypted_content"]}
    if stream:
        with client.responses.stream(**kwargs) as s:
            events = list(s)
            first = s.get_final_response()
        assert "response.reasoning_summary_text.delta" in [e.type for e in events]
    else:
        first = client.responses.create(**kwargs)
    reasoning, call = first.output
    assert reasoning.type == "reasoning" and reasoning.encrypted_content == ENCRYPTED
    assert reasoning.summary[0].text.strip() == SUMMARY
    assert call.type == "function_call" and call.call_id == "call_resp_fake_1"
    second = client.responses.create(model="gpt-resp", tools=[WEATHER], store=False, input=[
        {"role": "user", "content": "run it"}, reasoning.model_dump(exclude_none=True),
        call.model_dump(exclude_none=True), {"type": "function_call_output", "call_id": call.call_id, "output": "21C"},
    ])  # fmt: skip
    assert second.output_text == "Hello from responses: 21C"
    sent = _last_body(gateway, "/v1/responses")["input"]
    assert sent[1] == {"type": "reasoning", "summary": [{"type": "summary_text", "text": reasoning.summary[0].text}],
                       "encrypted_content": ENCRYPTED}  # fmt: skip
    assert sent[2] == {"type": "function_call", "call_id": "call_resp_fake_1", "name": "get_weather",
                       "arguments": call.arguments}  # fmt: skip
    assert sent[3] == {"type": "function_call_output", "call_id": "call_resp_fake_1", "output": "21C"}


def test_builtin_tools_reach_an_openai_responses_upstream_only(client, gateway):
    client.responses.create(model="gpt-resp", input="news?", tools=[{"type": "web_search"}],
                            tool_choice={"type": "web_search"})  # fmt: skip
    sent = _last_body(gateway, "/v1/responses")
    assert sent["tools"] == [{"type": "web_search"}] and sent["tool_choice"] == {"type": "web_search"}
    for model in ("gpt-fake", "claude-fake", "mock-echo"):
        with pytest.raises(openai.BadRequestError) as e:
            client.responses.create(model=model, input="news?", tools=[{"type": "web_search"}])
        assert e.value.code == "unsupported_parameter" and e.value.param == "tools"


def test_upstream_errors_in_openai_shape(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="gpt-resp-fail-400", input="hi")
    assert "responses upstream says 400" in e.value.message
    with pytest.raises(openai.APIStatusError) as e5:
        client.responses.create(model="gpt-resp-fail-500", input="hi")
    assert e5.value.status_code == 502 and e5.value.body["code"] == "upstream_error"


def test_a_failure_mid_stream_is_response_failed(client):
    with client.responses.create(model="gpt-resp-fail-mid", input="hi", stream=True) as s:
        events = list(s)
    types = [e.type for e in events]
    assert types[-2:] == ["error", "response.failed"]
    assert "The model failed mid-response." in events[-2].message
    assert events[-1].response.status == "failed" and events[-1].response.error.code == "server_error"
    assert events[-2].code == "upstream_error"


@pytest.mark.parametrize("stream", [False, True])
def test_other_doors_reach_the_responses_upstream(gateway, stream, clients):
    chat = clients.openai(gateway.v1, gateway.key)
    msgs = [{"role": "user", "content": "from chat"}]
    if stream:
        chunks = list(chat.chat.completions.create(model="gpt-resp", messages=msgs, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = chat.chat.completions.create(model="gpt-resp", messages=msgs).choices[0].message.content
    assert text == "Hello from responses: from chat"
    claude = clients.anthropic(gateway.url, gateway.key)
    msg = claude.messages.create(model="gpt-resp", max_tokens=100, messages=[{"role": "user", "content": "hey"}])
    assert [b.text for b in msg.content if b.type == "text"] == ["Hello from responses: hey"]
    # Anthropic counts cached input apart: 21 input tokens, 4 of them read from the cache
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens, msg.usage.output_tokens) == (17, 4, 9)


def test_signed_thinking_from_anthropic_returns_to_it(client, gateway):
    """Anthropic's signed thinking leaves as a reasoning item marked as such, and comes back signed."""
    first = client.responses.create(model="claude-fake", input="think", reasoning={"effort": "high"},
                                    max_output_tokens=4000)  # fmt: skip
    items = [o for o in first.output if o.type == "reasoning"]
    if not items:
        pytest.skip("the fake Anthropic upstream thinks only with thinking enabled by budget")
    assert items[0].encrypted_content.startswith("pisces-signed:")
    client.responses.create(model="claude-fake", max_output_tokens=4000, reasoning={"effort": "high"}, input=[
        {"role": "user", "content": "think"}, items[0].model_dump(exclude_none=True),
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": first.output_text}]},
        {"role": "user", "content": "again"}])  # fmt: skip
    sent = gateway.anthropic.last()["body"]["messages"][1]["content"]
    assert sent[0]["type"] == "thinking" and sent[0]["signature"] == items[0].encrypted_content[len("pisces-signed:") :]


def test_no_route_for_unknown_response_ids(gateway):
    h = {"Authorization": f"Bearer {gateway.key}"}
    r = httpx.get(f"{gateway.v1}/responses/resp_nope", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found" and "pisces" in r.json()
    assert r.headers["x-request-id"] == r.json()["pisces"]["request_id"]
    assert httpx.delete(f"{gateway.v1}/responses/resp_nope", headers=h).status_code == 404
    assert httpx.get(f"{gateway.v1}/responses/resp_nope").status_code == 401


def test_the_spec_lists_the_responses_routes(gateway):
    routes = {(r["method"], r["path"]): r for r in httpx.get(f"{gateway.url}/api/public/spec").json()["routes"]}
    assert routes[("POST", "/v1/responses")]["protocol"] == "openai-responses"
    assert routes[("POST", "/v1/responses")]["streaming"] is True
    for method, path in [("GET", "/v1/responses/{response_id}"), ("DELETE", "/v1/responses/{response_id}"),
                         ("POST", "/v1/responses/{response_id}/cancel")]:  # fmt: skip
        assert routes[(method, path)]["auth"] is True


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake", "gemini-fake", "gpt-resp"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_function_call_round_trip_over_every_upstream_kind(client, gateway, model, stream):
    kwargs = {"model": model, "input": "weather in Paris?", "tools": [WEATHER]}
    if stream:
        with client.responses.stream(**kwargs) as s:
            first = s.get_final_response()
    else:
        first = client.responses.create(**kwargs)
    call = next(o for o in first.output if o.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments)["city"] and call.call_id
    # the call's output goes back as the upstream's own tool result
    client.responses.create(
        model=model,
        previous_response_id=first.id,
        tool_choice="none",
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    if model.startswith("claude"):
        last = gateway.anthropic.last()["body"]["messages"][-1]["content"][0]
        assert (last["type"], last["tool_use_id"]) == ("tool_result", call.call_id)
    elif model.startswith("gemini"):
        part = gateway.gemini.last()["body"]["contents"][-1]["parts"][0]
        assert part["functionResponse"]["name"] == "get_weather"
    elif model == "gpt-fake":
        last = gateway.upstream.last()["body"]["messages"][-1]
        assert (last["role"], last["tool_call_id"], last["content"]) == ("tool", call.call_id, "sunny")
    else:
        sent = _last_body(gateway, "/v1/responses")["input"]
        assert sent[-1] == {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
        # the stored conversation kept OpenAI's encrypted reasoning, which goes back to it
        assert [i["encrypted_content"] for i in sent if i.get("type") == "reasoning"] == [ENCRYPTED]
