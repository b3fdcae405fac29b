"""The official `openai` SDK's Responses API (``client.responses``) over real HTTP against the gateway."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}


@pytest.fixture
def client(gateway, clients):
    return clients.openai(gateway.v1, gateway.key)


def _pisces(obj) -> dict:
    extra = obj.model_extra or {}
    assert "pisces" in extra, f"no pisces object in {obj}"
    return extra["pisces"]


def _events(stream) -> list:
    return list(stream)


# --- the mock ------------------------------------------------------------------------------------


def test_plain(client):
    raw = client.responses.with_raw_response.create(model="mock-echo", input="Hello there, responses",
                                                    instructions="be brief")  # fmt: skip
    resp = raw.parse()
    assert resp.object == "response" and resp.status == "completed"
    assert resp.id.startswith("resp_")
    assert resp.output_text == "Hello there, responses"
    assert resp.instructions == "be brief"
    assert resp.output[0].type == "message" and resp.output[0].role == "assistant"
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    p = _pisces(resp)
    assert p["protocol"] == "openai-responses" and p["channel"] == "mock" and p["cost"] > 0
    assert p["request_id"] == raw.headers["x-request-id"]


def test_input_items_and_max_output_tokens(client):
    resp = client.responses.create(
        model="mock-echo",
        input=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "input_text", "text": "first"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
            {"role": "user", "content": "one two three four five six seven"},
        ],
        max_output_tokens=3,
    )
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output_text and "one two three four five six seven".startswith(resp.output_text)
    assert resp.output_text != "one two three four five six seven" and resp.usage.output_tokens == 3


def test_stream_event_sequence(client):
    with client.responses.create(model="mock-echo", input="one two three four five six seven", stream=True) as s:
        events = _events(s)
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert types.count("response.output_text.delta") >= 3
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]  # fmt: skip
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "one two three four five six seven"
    done = events[-1].response
    assert done.status == "completed" and done.output_text == text and done.usage.output_tokens > 0
    assert done.id == events[0].response.id
    assert _pisces(events[0].response)["protocol"] == "openai-responses"
    assert _pisces(done)["cost"] > 0


def test_stream_helper_accumulates(client):
    with client.responses.stream(model="mock-echo", input="streamed through the helper") as s:
        for _ in s:
            pass
        final = s.get_final_response()
    assert final.output_text == "streamed through the helper"


@pytest.mark.parametrize("stream", [False, True])
def test_function_calling_round_trip(client, stream):
    kwargs = {"model": "mock-echo", "tools": [WEATHER], "tool_choice": "required",
              "input": [{"role": "user", "content": "weather in Paris?"}]}  # fmt: skip
    if stream:
        with client.responses.stream(**kwargs) as s:
            events = list(s)
            first = s.get_final_response()
        types = [e.type for e in events]
        assert "response.function_call_arguments.delta" in types
        done = next(e for e in events if e.type == "response.function_call_arguments.done")
        assert json.loads(done.arguments) == {"city": "mock", "days": 1}
    else:
        first = client.responses.create(**kwargs)
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id
    assert json.loads(call.arguments) == {"city": "mock", "days": 1}
    second = client.responses.create(
        model="mock-echo",
        tools=[WEATHER],
        input=[
            *kwargs["input"],
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"},
        ],
    )
    assert second.output_text == "sunny, 21 C"


def test_previous_response_id_continues_the_conversation(client, gateway):
    first = client.responses.create(model="mock-echo", tools=[WEATHER], tool_choice="required",
                                    input="weather in Paris?")  # fmt: skip
    call = first.output[0]
    second = client.responses.create(model="mock-echo", previous_response_id=first.id, tools=[WEATHER],
                                     input=[{"type": "function_call_output", "call_id": call.call_id,
                                             "output": "rainy"}])  # fmt: skip
    assert second.output_text == "rainy" and second.previous_response_id == first.id
    # the history really reached the upstream: the mock answers the text of the last user turn
    third = client.responses.create(model="mock-echo", previous_response_id=second.id, tools=[WEATHER],
                                    input="and tomorrow?")  # fmt: skip
    assert third.output_text == "and tomorrow?"
    assert third.usage.input_tokens > second.usage.input_tokens > first.usage.input_tokens


def test_previous_response_id_of_another_key_is_404(client, gateway, clients):
    first = client.responses.create(model="mock-echo", input="mine")
    other = clients.openai(gateway.v1, gateway.new_key())
    with pytest.raises(openai.NotFoundError) as e:
        other.responses.create(model="mock-echo", previous_response_id=first.id, input="yours?")
    assert e.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(first.id)
    assert client.responses.retrieve(first.id).output_text == "mine"  # still there for its own key


def test_store_false_keeps_nothing(client):
    resp = client.responses.create(model="mock-echo", input="forget me", store=False)
    assert resp.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)


def test_json_schema_text_format(client):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}  # fmt: skip
    resp = client.responses.create(
        model="mock-echo", input='{"city": "Paris"}',
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )  # fmt: skip
    assert resp.text.format.type == "json_schema" and resp.text.format.name == "city"
    assert json.loads(resp.output_text) == {"city": "Paris"}


def test_retrieve_and_delete(client, gateway):
    resp = client.responses.create(model="mock-echo", input="keep me", metadata={"k": "v"})
    got = client.responses.retrieve(resp.id)
    assert got.id == resp.id and got.output_text == "keep me" and got.metadata == {"k": "v"}
    assert _pisces(got)["protocol"] == "openai-responses"
    r = httpx.post(f"{gateway.v1}/responses/{resp.id}/cancel", headers={"Authorization": f"Bearer {gateway.key}"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert client.responses.delete(resp.id) is None
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.retrieve(resp.id)
    assert e.value.body["code"] == "not_found" and "pisces" in e.value.response.json()


def test_errors_in_openai_shape(client, clients):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="mock-echo", input=[{"type": "function_call_output"}])
    assert e.value.body["param"] == "input[0].call_id"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="mock-echo", input="search", tools=[{"type": "web_search"}])
    assert e.value.code == "unsupported_parameter" and "web_search" in e.value.message
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="no-such-model", input="hi")
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        clients.openai(client.base_url, "pisces-wrong").responses.create(
            model="mock-echo", input="hi")  # fmt: skip


def test_structured_output_parse(client):
    """``client.responses.parse(text_format=Model)``: the SDK sends text.format json_schema and parses the answer."""
    from pydantic import BaseModel

    class City(BaseModel):
        city: str
        days: int

    resp = client.responses.parse(model="mock-echo", input='{"city": "Paris", "days": 3}', text_format=City)
    assert resp.output_parsed == City(city="Paris", days=3)
    assert resp.text.format.type == "json_schema" and resp.text.format.strict is True


def test_previous_response_id_carries_system_items_not_instructions(client, gateway):
    first = client.responses.create(model="gpt-resp", instructions="old instructions",
                                    input=[{"role": "developer", "content": "dev rule"},
                                           {"role": "user", "content": "one"}])  # fmt: skip
    client.responses.create(model="gpt-resp", instructions="new instructions", previous_response_id=first.id,
                            input="two")  # fmt: skip
    sent = [r for r in gateway.upstream.requests if r.get("path") == "/v1/responses"][-1]["body"]
    assert sent["instructions"] == "new instructions\n\ndev rule"
    assert [i.get("role") or i["type"] for i in sent["input"]] == ["user", "reasoning", "assistant", "user"]
