"""The OpenAI Responses codec against the API reference's examples and openai-python's own types
(``openai.types.responses``: every response and stream event the gateway writes validates as one)."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter

from pisces.canonical import (
    ChatResponse,
    ContentEnd,
    ErrorEvent,
    Finish,
    StreamStart,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolArgsDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from pisces.errors import PiscesError
from pisces.protocols import CODECS, openai_responses
from pisces.protocols.openai_responses_request import REDACTED, SIGNED, decode_request
from pisces.protocols.sse import SSEParser

PISCES = {"gateway": "Pisces", "protocol": "openai-responses", "request_id": "req_1", "channel": "x",
          "timestamp": "2025-01-01T00:00:00.000Z"}  # fmt: skip

# The API reference's "Create a model response" example answer (platform.openai.com/docs/api-reference/responses/create)
REFERENCE_RESPONSE = {
    "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
    "object": "response",
    "created_at": 1741476542,
    "status": "completed",
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "model": "gpt-4.1-2025-04-14",
    "output": [
        {
            "type": "message",
            "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "In a peaceful grove beneath a silver moon...", "annotations": []}
            ],
        }
    ],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "usage": {
        "input_tokens": 36,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 87,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 123,
    },
    "user": None,
    "metadata": {},
}

# The function-calling guide's answer: a function_call output item
REFERENCE_CALL = {**REFERENCE_RESPONSE, "output": [{
    "type": "function_call", "id": "fc_12345xyz", "call_id": "call_12345xyz", "name": "get_weather",
    "arguments": "{\"location\":\"Paris, France\"}"}]}  # fmt: skip


def test_registered_under_its_protocol_name():
    assert CODECS["openai-responses"] is openai_responses


def test_decode_the_reference_response():
    resp = openai_responses.decode_response(REFERENCE_RESPONSE)
    assert resp.text == "In a peaceful grove beneath a silver moon..."
    assert resp.finish_reason == "stop" and resp.model == "gpt-4.1-2025-04-14"
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (36, 87)


def test_decode_a_function_call_and_an_incomplete_response():
    resp = openai_responses.decode_response(REFERENCE_CALL)
    assert resp.finish_reason == "tool_calls"
    assert resp.tool_calls == [ToolCallPart(id="call_12345xyz", name="get_weather",
                                            arguments='{"location":"Paris, France"}')]  # fmt: skip
    cut = {**REFERENCE_RESPONSE, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    assert openai_responses.decode_response(cut).finish_reason == "length"


def test_decode_request_items():
    # the function-calling guide's second request: the call and its output after the user's question
    req = decode_request({
        "model": "gpt-4.1", "instructions": "be brief",
        "input": [
            {"role": "user", "content": "What's the weather like in Paris today?"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "check"}],
             "encrypted_content": "gAAAA-opaque"},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
             "arguments": "{\"location\":\"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "14"},
            {"role": "user", "content": [{"type": "input_text", "text": "and "},
                                         {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
        ],
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": True}],
        "tool_choice": {"type": "function", "name": "get_weather"}, "parallel_tool_calls": False,
        "max_output_tokens": 100, "text": {"format": {"type": "json_schema", "name": "w", "schema": {}},
                                           "verbosity": "low"},
        "reasoning": {"effort": "low", "summary": "auto"}, "store": False, "include": ["reasoning.encrypted_content"],
    })  # fmt: skip
    assert [p.text for p in req.system] == ["be brief"]
    user, assistant, results = req.messages
    assert user.content == [TextPart(text="What's the weather like in Paris today?")]
    assert assistant.content == [
        ThinkingPart(text="check", data="gAAAA-opaque"),
        ToolCallPart(id="call_1", name="get_weather", arguments='{"location":"Paris"}'),
    ]
    assert isinstance(results.content[0], ToolResultPart) and results.content[0].content == [TextPart(text="14")]
    assert results.content[1] == TextPart(text="and ") and results.content[2].media_type == "image/png"
    assert req.tools[0].strict is True and req.tool_choice.mode == "tool" and req.tool_choice.parallel is False
    assert req.max_tokens == 100 and req.response_format.type == "json_schema" and req.thinking.effort == "low"
    opts = req.provider_options["openai-responses"]
    assert opts["text"] == {"verbosity": "low"} and opts["reasoning"] == {"summary": "auto"}
    assert opts["include"] == ["reasoning.encrypted_content"] and "store" not in opts


def test_reasoning_of_other_providers_keeps_its_kind():
    signed = decode_request({"model": "m", "input": [{"type": "reasoning", "summary": [], "encrypted_content":
                                                       SIGNED + "sig"}]}).messages[0].content[0]  # fmt: skip
    assert signed == ThinkingPart(text="", signature="sig")
    red = (
        decode_request(
            {"model": "m", "input": [{"type": "reasoning", "summary": [], "encrypted_content": REDACTED + "blob"}]}
        )
        .messages[0]
        .content[0]
    )
    assert red == ThinkingPart(redacted=True, data="blob")


@pytest.mark.parametrize("body,param", [
    ({"input": "x"}, "model"),
    ({"model": "m"}, "input"),
    ({"model": "m", "input": 3}, "input"),
    ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"model": "m", "input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
    ({"model": "m", "input": "x", "temperature": 3}, "temperature"),
    ({"model": "m", "input": "x", "background": True}, "background"),
    ({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
    ({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
])  # fmt: skip
def test_invalid_requests_name_the_parameter(body, param):
    with pytest.raises(PiscesError) as e:
        decode_request(body)
    assert e.value.param == param and e.value.status == 400


def test_encode_request_for_an_openai_responses_upstream():
    req = decode_request({"model": "c", "instructions": "sys", "input": [
        {"role": "user", "content": "q"},
        {"type": "reasoning", "summary": [], "encrypted_content": "enc"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "r"}],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}, {"type": "web_search"}],
        "stream": True, "store": True, "prompt_cache_key": "k"})  # fmt: skip
    body = openai_responses.encode_request(req, "gpt-5")
    assert body["model"] == "gpt-5" and body["instructions"] == "sys" and body["store"] is False
    assert body["input"] == [
        {"role": "user", "content": [{"type": "input_text", "text": "q"}]},
        {"type": "reasoning", "summary": [], "encrypted_content": "enc"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "r"},
    ]
    assert body["tools"][1] == {"type": "web_search"} and body["stream"] is True and body["prompt_cache_key"] == "k"
    assert body["include"] == ["reasoning.encrypted_content"]
    assert not any(k.startswith("_") for k in body)


def _sdk_response(obj: dict):
    from openai.types.responses import Response

    return Response.model_validate(obj)


def test_encode_response_validates_as_the_sdk_type():
    resp = ChatResponse(id="x", model="m", created=1, finish_reason="tool_calls", usage=Usage(input_tokens=3,
                        output_tokens=2, cached_tokens=1, reasoning_tokens=1), content=[
        ThinkingPart(text="hmm", signature="anthropic-sig"), TextPart(text="a"), TextPart(text="b"),
        ToolCallPart(id="call_1", name="crm__find", arguments='{"q":1}')])  # fmt: skip
    out = openai_responses.encode_response(resp, PISCES, namespaces=["crm"])
    sdk = _sdk_response(out)
    assert sdk.output_text == "ab" and sdk.usage.input_tokens_details.cached_tokens == 1
    reasoning, message, call = out["output"]
    assert reasoning["encrypted_content"] == SIGNED + "anthropic-sig"
    assert [c["text"] for c in message["content"]] == ["a", "b"]
    assert (call["namespace"], call["name"], call["call_id"]) == ("crm", "find", "call_1")
    assert out["pisces"] == PISCES and out["status"] == "completed"


def _events(raw: bytes) -> list:
    from openai.types.responses import ResponseStreamEvent

    adapter = TypeAdapter(ResponseStreamEvent)
    parsed = SSEParser().feed(raw)
    for e in parsed:
        assert e.event == json.loads(e.data)["type"], "the SSE event name is the event's type"
    return [adapter.validate_python(json.loads(e.data)) for e in parsed]


def test_stream_encoder_events_validate_as_the_sdk_types():
    enc = openai_responses.StreamEncoder(PISCES, rid="resp_1")
    raw = b"".join(enc.encode(ev) for ev in [
        StreamStart(id="u", model="m", created=5),
        ThinkingDelta(index=0, text="let me "), ThinkingDelta(index=0, text="think"),
        ThinkingDelta(index=0, signature="sig"), ContentEnd(index=0),
        TextDelta(index=1, text="Hel"), TextDelta(index=1, text="lo"), ContentEnd(index=1),
        ToolCallStart(index=2, id="call_9", name="f"), ToolArgsDelta(index=2, delta='{"a"'),
        ToolArgsDelta(index=2, delta=":1}"), ContentEnd(index=2),
        Finish(reason="tool_calls"), UsageEvent(usage=Usage(input_tokens=4, output_tokens=6)),
    ]) + enc.close()  # fmt: skip
    events = _events(raw)
    assert [e.type for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed",
    ]  # fmt: skip
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.output_index for e in events if e.type == "response.output_item.added"] == [0, 1, 2]
    done = events[-1].response
    assert done.id == "resp_1" and done.output_text == "Hello" and done.usage.total_tokens == 10
    assert done.output[0].encrypted_content == SIGNED + "sig" and done.output[2].arguments == '{"a":1}'
    assert events[0].response.model_extra["pisces"] == PISCES


def test_stream_encoder_failure_and_incomplete():
    enc = openai_responses.StreamEncoder(PISCES)
    raw = enc.encode(StreamStart(id="u", model="m")) + enc.encode(TextDelta(index=0, text="x"))
    raw += enc.encode(ErrorEvent(code="upstream_error", message="boom")) + enc.close()
    events = _events(raw)
    assert [e.type for e in events][-5:] == ["response.output_text.done", "response.content_part.done",
                                              "response.output_item.done", "error", "response.failed"]  # fmt: skip
    assert events[-1].response.error.message == "boom" and enc.close() == b""
    enc = openai_responses.StreamEncoder(PISCES)
    raw = enc.encode(StreamStart(id="u", model="m")) + enc.encode(TextDelta(index=0, text="x"))
    raw += enc.encode(Finish(reason="length")) + enc.close()
    last = _events(raw)[-1]
    assert last.type == "response.incomplete" and last.response.incomplete_details.reason == "max_output_tokens"


def test_stream_decoder_reads_an_upstream_stream():
    """The fake upstream's stream (built from the streaming reference) decoded to canonical events."""
    import asyncio

    from support.fake_openai_responses import ENCRYPTED, _output, _stream

    body = {"model": "gpt-5", "input": "hi", "tools": [{"type": "function", "name": "f"}]}

    async def collect() -> bytes:
        return b"".join([c async for c in _stream(body, _output(body), False)])

    parser, dec = SSEParser(), openai_responses.StreamDecoder()
    events = [ev for sse in parser.feed(asyncio.run(collect())) for ev in dec.feed(sse)] + dec.close()
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "StreamStart" and kinds[-2:] == ["UsageEvent", "Finish"]
    thinking = [e for e in events if isinstance(e, ThinkingDelta)]
    assert "".join(e.text for e in thinking).strip() == "Thinking about the request."
    assert thinking[-1].redacted_data == ENCRYPTED
    start = next(e for e in events if isinstance(e, ToolCallStart))
    assert (start.id, start.name) == ("call_resp_fake_1", "f")
    assert "".join(e.delta for e in events if isinstance(e, ToolArgsDelta)) == '{"city":"Paris","days":3}'
    assert events[-1].reason == "tool_calls" and events[-2].usage.reasoning_tokens == 3


def test_a_stream_that_ends_early_is_an_error():
    dec = openai_responses.StreamDecoder()
    assert isinstance(dec.close()[-1], ErrorEvent)


def test_errors_are_openai_shaped():
    body = openai_responses.render_error(PiscesError("not_found", "Response with id 'x' not found."), PISCES)
    assert body == {"error": {"message": "Response with id 'x' not found.", "type": "invalid_request_error",
                              "param": None, "code": "not_found"}, "pisces": PISCES}  # fmt: skip
