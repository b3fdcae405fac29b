"""The Gemini generateContent codec against the Gemini API documentation's own examples and a real recording.

Fixtures: tests/unit/fixtures/gemini/ (see its README for the documentation pages they are copied
from) and shared/fixtures/recorded/gemini_stream_function_call.sse (PISCES_SHARED_DIR overrides
shared/). Every response, stream chunk, error, model and token count the encoders write is read back
the way the google-genai SDK reads the wire: through its own ``_*_from_mldev`` converters and its own
pydantic types' ``_from_response``.
"""

from __future__ import annotations

import ast
import base64
import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
from google.genai import errors as sdk_errors
from google.genai import types
from google.genai.models import (
    _CountTokensResponse_from_mldev,
    _GenerateContentResponse_from_mldev,
    _ListModelsResponse_from_mldev,
    _Model_from_mldev,
)

from pisces.canonical import (
    ChatRequest,
    ChatResponse,
    ContentEnd,
    ErrorEvent,
    FilePart,
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
from pisces.errors import ERRORS, PiscesError
from pisces.protocols import CODECS
from pisces.protocols import gemini as g
from pisces.protocols.common import GENERATED_ID_PREFIX
from pisces.protocols.sse import SSEEvent, SSEParser
from support.fake_gemini import RECORDED_CALL
from support.servers import recorded

FIXTURES = Path(__file__).parent / "fixtures" / "gemini"
PISCES = {"gateway": "Pisces", "protocol": "gemini", "request_id": "req_test", "channel": "c", "timestamp": "T"}
RECORDED = "gemini_stream_function_call.sse"
SKIP = "skip_thought_signature_validator"
SIG1 = base64.b64encode(b"signature one").decode()
SIG2 = base64.b64encode(b"signature two").decode()


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


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
    dec = g.StreamDecoder()
    out: list[StreamEvent] = []
    for ev in sse_events(data, seed):
        out += dec.feed(ev)
    return out + dec.close()


def decode_chunks(chunks: list[Any]) -> list[StreamEvent]:
    dec = g.StreamDecoder()
    return [e for c in chunks for e in dec.feed(SSEEvent(data=json.dumps(c)))] + dec.close()


def accumulate(events: list[StreamEvent]) -> ChatResponse:
    acc = ResponseAccumulator()
    for ev in events:
        acc.add(ev)
    return acc.response()


def sdk_response(body: dict[str, Any]) -> types.GenerateContentResponse:
    """A GenerateContentResponse read exactly as google-genai reads one off the wire (Gemini API mode)."""
    return types.GenerateContentResponse._from_response(
        response=_GenerateContentResponse_from_mldev(copy.deepcopy(body)), kwargs={}
    )


def sdk_read(cls: Any, converter: Any, body: dict[str, Any]) -> Any:
    """Any other answer the same way (the SDK's converters may alias, and its reader then trims, the body)."""
    return cls._from_response(response=converter(copy.deepcopy(body)), kwargs={})


def sse_chunks(data: bytes) -> list[dict[str, Any]]:
    """The chunks an encoder wrote with ``sse=True``, checking the framing (``data: <json>`` CRLF CRLF)."""
    assert data.endswith(b"\r\n\r\n")
    out = []
    for raw in data.decode().split("\r\n\r\n")[:-1]:
        assert raw.startswith("data: {") and "\n" not in raw, raw
        out.append(json.loads(raw[len("data: ") :]))
    return out


def encode_all(events: list[StreamEvent], sse: bool = True) -> bytes:
    enc = g.StreamEncoder(PISCES, sse=sse)
    return b"".join(enc.encode(e) for e in events) + enc.close()


def bad(body: Any, decode: Any = g.decode_request) -> PiscesError:
    with pytest.raises(PiscesError) as e:
        decode(body)
    return e.value


def ask(*parts: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": list(parts) or [{"text": "hi"}]}], **kw}


def generated(cid: str) -> bool:
    return cid.startswith(GENERATED_ID_PREFIX)


def without_generated_ids(value: Any) -> Any:
    """A dump with the ids the gateway made up replaced by their order of appearance (they are random)."""
    seen: dict[str, str] = {}

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str) and generated(v):
            return seen.setdefault(v, f"generated-{len(seen)}")
        return v

    return walk(value)


def meaning(req: ChatRequest) -> Any:
    return without_generated_ids(req.model_dump())


# =============================================================================================
# the registry and the codec's boundaries


def test_registered_under_its_name():
    assert g.NAME == "gemini" and CODECS["gemini"] is g


@pytest.mark.parametrize("module", ["gemini", "gemini_request", "gemini_request_config", "gemini_stream"])
def test_imports_no_other_codec(module):
    path = Path(g.__file__).parent / f"{module}.py"
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    pisces = {m for m in imported if m.startswith("pisces")}
    shared = {"pisces.protocols.sse", "pisces.protocols.common", "pisces.jsonwire"}
    allowed = {"pisces.canonical", "pisces.errors", *shared}
    own = {f"pisces.protocols.{m}" for m in ("gemini_request", "gemini_request_config", "gemini_stream")}
    assert pisces <= allowed | own


# =============================================================================================
# decode_request: the documentation's examples


def test_decode_text_request_model_and_stream_from_the_url():
    req = g.decode_request(fixture("request_text.json"), "gemini-2.5-flash", True)
    assert req.model == "gemini-2.5-flash" and req.stream is True
    assert req.messages == [Message(role="user", content=[TextPart(text="How does AI work?")])]
    assert req.system == [] and req.tools == [] and req.tool_choice is None and req.provider_options == {}
    assert g.decode_request(fixture("request_text.json")).stream is False


def test_decode_system_instruction_in_snake_case():
    req = g.decode_request(fixture("request_system_instruction.json"), "m")
    assert req.system == [TextPart(text="You are a cat. Your name is Neko.")]
    assert req.messages == [Message(role="user", content=[TextPart(text="Hello there")])]


def test_decode_single_objects_where_lists_are_expected():
    """The reference's own sample: contents, parts and systemInstruction.parts as single objects."""
    singular = g.decode_request(fixture("request_system_instruction_singular.json"), "m")
    assert singular == g.decode_request(fixture("request_system_instruction.json"), "m")


def test_decode_multiturn_roles():
    req = g.decode_request(fixture("request_multiturn.json"), "m")
    assert [m.role for m in req.messages] == ["user", "assistant", "user"]
    assert req.messages[1].content == [TextPart(text="Great to meet you. What would you like to know?")]


def test_decode_inline_image():
    (msg,) = g.decode_request(fixture("request_inline_image.json"), "m").messages
    assert msg.content == [
        ImagePart(data="/9j/4AAQSkZJRgABAQ==", media_type="image/jpeg"),
        TextPart(text="What is in this picture?"),
    ]


def test_decode_file_data():
    (msg,) = g.decode_request(fixture("request_file_data.json"), "m").messages
    assert msg.content == [
        TextPart(text="Please describe this file."),
        FilePart(uri="https://generativelanguage.googleapis.com/v1beta/files/8a1jvo6chyqz", media_type="audio/mpeg"),
    ]


def test_decode_function_declarations_as_json_schema():
    (tool,) = g.decode_request(fixture("request_function_declarations.json"), "m").tools
    raw = fixture("request_function_declarations.json")["tools"][0]["functionDeclarations"][0]
    assert tool.name == "schedule_meeting" and tool.description == raw["description"]
    assert tool.parameters == raw["parameters"]  # already JSON Schema in lower case: as it came
    assert tool.parameters["properties"]["attendees"] == {
        "type": "array",
        "items": {"type": "string"},
        "description": "List of people attending the meeting.",
    }


def test_decode_parameters_json_schema_as_sent():
    body = fixture("request_parameters_json_schema.json")
    (tool,) = g.decode_request(copy.deepcopy(body), "m").tools
    assert tool.parameters == body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]


def test_decode_function_calling_config_any_with_one_name_is_that_tool():
    req = g.decode_request(fixture("request_function_calling_config.json"), "m")
    assert req.tool_choice == ToolChoice(mode="tool", name="get_current_temperature")
    assert [t.name for t in req.tools] == ["get_current_temperature"]


def test_decode_function_calling_mode_none_in_snake_case_and_single_objects():
    req = g.decode_request(fixture("request_function_calling_mode_none.json"), "m")
    assert req.tool_choice == ToolChoice(mode="none")
    assert [t.name for t in req.tools] == ["enable_lights", "set_light_color", "stop_lights"]
    assert req.tools[0].parameters == {"type": "object"}
    assert req.tools[1].parameters["required"] == ["rgb_hex"]
    assert req.system[0].text.startswith("You are a helpful lighting system bot.")
    assert req.messages == [Message(role="user", content=[TextPart(text="What can you do?")])]


def test_decode_function_response_gets_the_id_made_for_its_call():
    req = g.decode_request(fixture("request_function_response.json"), "m")
    _, model, answer = req.messages
    (call,) = model.content
    (result,) = answer.content
    assert isinstance(call, ToolCallPart) and isinstance(result, ToolResultPart)
    assert (call.name, json.loads(call.arguments), call.signature) == ("check_flight", {"flight": "AA100"},
                                                                       "<Signature A>")  # fmt: skip
    assert generated(call.id) and result.tool_call_id == call.id
    assert result.name == "check_flight" and not result.is_error
    assert json.loads(result.content[0].text) == {"status": "delayed", "departure_time": "12 PM"}
    assert [t.name for t in req.tools] == ["check_flight", "book_taxi"]


def test_decode_parallel_calls_are_answered_in_order():
    req = g.decode_request(fixture("request_parallel_function_response.json"), "m")
    paris, london = req.messages[1].content
    first, second = req.messages[2].content
    assert paris.signature == "<Signature_A>" and london.signature is None  # snake_case thought_signature read
    assert json.loads(paris.arguments) == {"city": "Paris"} and json.loads(london.arguments) == {"city": "London"}
    assert paris.id != london.id
    assert (first.tool_call_id, second.tool_call_id) == (paris.id, london.id)
    assert [json.loads(r.content[0].text) for r in (first, second)] == [{"temp": "15C"}, {"temp": "12C"}]


def test_decode_generation_config():
    req = g.decode_request(fixture("request_generation_config.json"), "m")
    assert (req.max_tokens, req.temperature, req.top_p, req.top_k, req.seed) == (800, 1.0, 0.8, 10, 42)
    assert req.stop == ["Title"]
    assert req.response_format == ResponseFormat(
        type="json_schema",
        json_schema={"type": "array", "items": {"type": "object", "properties": {"recipe_name": {"type": "string"}}}},
    )
    assert req.provider_options == {}  # candidateCount 1 is the default: nothing kept


def test_decode_response_schema_in_snake_case_is_lower_cased():
    req = g.decode_request(fixture("request_response_schema.json"), "m")
    assert req.response_format is not None and req.response_format.type == "json_schema"
    assert req.response_format.json_schema == {
        "type": "array",
        "items": {"type": "object", "properties": {"recipe_name": {"type": "string"}}},
    }


def test_decode_response_json_schema_as_sent():
    body = fixture("request_json_schema.json")
    req = g.decode_request(copy.deepcopy(body), "m")
    assert req.response_format == ResponseFormat(
        type="json_schema", json_schema=body["generationConfig"]["responseJsonSchema"]
    )


def test_decode_thinking_budget_with_thoughts():
    req = g.decode_request(fixture("request_thinking.json"), "m")
    assert req.thinking == ThinkingConfig(enabled=True, budget_tokens=1024)
    assert req.provider_options["gemini"]["_thinking"] == {"thinkingBudget": 1024, "includeThoughts": True}


def test_decode_thinking_level_is_effort():
    req = g.decode_request(fixture("request_thinking_level.json"), "m")
    assert req.thinking == ThinkingConfig(enabled=True, effort="low")


def test_decode_safety_settings_kept_for_gemini():
    body = fixture("request_safety_settings.json")
    req = g.decode_request(copy.deepcopy(body), "m")
    assert req.provider_options == {"gemini": {"safetySettings": body["safetySettings"]}}


# =============================================================================================
# decode_request: each parameter


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"mode": "AUTO"}, ToolChoice(mode="auto")),
        ({"mode": "auto"}, ToolChoice(mode="auto")),
        ({}, ToolChoice(mode="auto")),
        ({"mode": "AUTO", "allowedFunctionNames": ["f", "g"]}, ToolChoice(mode="auto", allowed=["f", "g"])),
        ({"mode": "VALIDATED"}, ToolChoice(mode="auto")),
        ({"mode": "ANY"}, ToolChoice(mode="required")),
        ({"mode": "ANY", "allowedFunctionNames": ["f", "g"]}, ToolChoice(mode="required", allowed=["f", "g"])),
        ({"mode": "any", "allowed_function_names": ["g"]}, ToolChoice(mode="tool", name="g")),
        ({"mode": "NONE"}, ToolChoice(mode="none")),
    ],
)
def test_tool_config_modes(config, expected):
    tools = [{"functionDeclarations": [{"name": "f"}, {"name": "g"}]}]
    req = g.decode_request(ask(tools=tools, toolConfig={"functionCallingConfig": config}), "m")
    assert req.tool_choice == expected


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"thinkingBudget": 0}, ThinkingConfig(enabled=False)),
        ({"thinkingBudget": -1}, ThinkingConfig(enabled=True)),
        ({"thinkingBudget": 2048}, ThinkingConfig(enabled=True, budget_tokens=2048)),
        ({"thinkingBudget": "512"}, ThinkingConfig(enabled=True, budget_tokens=512)),  # proto JSON int64
        ({"thinkingLevel": "HIGH"}, ThinkingConfig(enabled=True, effort="high")),
        ({"thinkingLevel": "minimal", "includeThoughts": True}, ThinkingConfig(enabled=True, effort="minimal")),
        ({"includeThoughts": True}, ThinkingConfig(enabled=True)),
        ({"includeThoughts": False}, None),
    ],
)
def test_thinking_configs(config, expected):
    req = g.decode_request(ask(generationConfig={"thinkingConfig": config}), "m")
    assert req.thinking == expected
    assert req.provider_options["gemini"]["_thinking"] == config  # kept whole for a Gemini upstream
    snake = {"thinking_budget": config.get("thinkingBudget"), "thinking_level": config.get("thinkingLevel"),
             "include_thoughts": config.get("includeThoughts")}  # fmt: skip
    snake = {k: v for k, v in snake.items() if v is not None}
    assert g.decode_request(ask(generation_config={"thinking_config": snake}), "m").thinking == expected


def test_gemini_schema_becomes_json_schema():
    schema = {
        "type": "OBJECT",
        "properties": {
            "name": {"type": "STRING", "description": "who", "nullable": True},
            "tags": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["a", "b"]}, "max_items": 3},
            "when": {"type": "STRING", "format": "date-time"},
            "either": {"anyOf": [{"type": "INTEGER"}, {"type": "NUMBER", "minimum": 0}]},
            "snake_case_name": {"type": "BOOLEAN"},
        },
        "required": ["name"],
        "propertyOrdering": ["name", "tags"],
    }
    (tool,) = g.decode_request(ask(tools=[{"functionDeclarations": [{"name": "f", "parameters": schema}]}]), "m").tools
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "name": {"type": ["string", "null"], "description": "who"},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "maxItems": 3},
            "when": {"type": "string", "format": "date-time"},
            "either": {"anyOf": [{"type": "integer"}, {"type": "number", "minimum": 0}]},
            "snake_case_name": {"type": "boolean"},  # property names are the user's: never camelCased
        },
        "required": ["name"],
    }


@pytest.mark.parametrize(
    ("config", "response_format", "kept"),
    [
        ({"responseMimeType": "application/json"}, ResponseFormat(type="json_object"), None),
        ({"responseMimeType": "text/plain"}, None, None),
        ({"responseMimeType": "text/x.enum", "responseSchema": {"type": "STRING", "enum": ["A", "B"]}},
         ResponseFormat(type="json_schema", json_schema={"type": "string", "enum": ["A", "B"]}),
         {"responseMimeType": "text/x.enum"}),
        ({"presencePenalty": 0.5, "responseModalities": ["TEXT"], "response_logprobs": True}, None,
         {"presencePenalty": 0.5, "responseModalities": ["TEXT"], "responseLogprobs": True}),
    ],
)  # fmt: skip
def test_response_mime_types_and_generation_extras(config, response_format, kept):
    req = g.decode_request(ask(generationConfig=config), "m")
    assert req.response_format == response_format
    assert req.provider_options.get("gemini", {}).get("_generation") == kept


def test_builtin_tools_are_kept_for_gemini_only():
    tools = [
        {"functionDeclarations": [{"name": "f"}], "googleSearch": {}},
        {"code_execution": {}},
        {"urlContext": {}},
    ]
    req = g.decode_request(ask(tools=copy.deepcopy(tools)), "m")
    assert [t.name for t in req.tools] == ["f"]
    assert req.provider_options["gemini"]["_tools"] == [{"googleSearch": {}}, *tools[1:]]


def test_unknown_top_level_fields_and_cached_content_kept():
    req = g.decode_request(ask(cachedContent="cachedContents/abc", labels={"team": "a"}, model="models/x"), "m")
    assert req.provider_options == {"gemini": {"cachedContent": "cachedContents/abc", "labels": {"team": "a"}}}
    assert req.model == "m"  # the URL's model, not the body's


CAMEL_BODY: dict[str, Any] = {
    "systemInstruction": {"parts": [{"text": "s"}]},
    "contents": [
        {"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                                   {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://b/f.pdf"}}]},
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"snake_arg": 1}},
                                     "thoughtSignature": SIG1}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"some_key": "v"}}}]},
    ],
    "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object"}}]}],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f", "g"]}},
    "generationConfig": {"maxOutputTokens": 5, "topP": 0.5, "topK": 3, "stopSequences": ["x"],
                         "responseMimeType": "application/json", "thinkingConfig": {"thinkingBudget": 9}},
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
}  # fmt: skip
SNAKE_BODY: dict[str, Any] = {
    "system_instruction": {"parts": [{"text": "s"}]},
    "contents": [
        {"role": "user", "parts": [{"inline_data": {"mime_type": "image/png", "data": "AAAA"}},
                                   {"file_data": {"mime_type": "application/pdf", "file_uri": "gs://b/f.pdf"}}]},
        {"role": "model", "parts": [{"function_call": {"name": "f", "args": {"snake_arg": 1}},
                                     "thought_signature": SIG1}]},
        {"role": "user", "parts": [{"function_response": {"name": "f", "response": {"some_key": "v"}}}]},
    ],
    "tools": [{"function_declarations": [{"name": "f", "parameters_json_schema": {"type": "object"}}]}],
    "tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["f", "g"]}},
    "generation_config": {"max_output_tokens": 5, "top_p": 0.5, "top_k": 3, "stop_sequences": ["x"],
                          "response_mime_type": "application/json", "thinking_config": {"thinking_budget": 9}},
    "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
}  # fmt: skip


def test_snake_case_and_camel_case_mean_the_same():
    camel = g.decode_request(copy.deepcopy(CAMEL_BODY), "m")
    snake = g.decode_request(copy.deepcopy(SNAKE_BODY), "m")
    assert meaning(camel) == meaning(snake)
    call = camel.messages[1].content[0]
    assert isinstance(call, ToolCallPart) and json.loads(call.arguments) == {"snake_arg": 1}  # user data untouched
    assert camel.tool_choice == ToolChoice(mode="required", allowed=["f", "g"])
    assert (camel.max_tokens, camel.top_p, camel.top_k, camel.stop) == (5, 0.5, 3, ["x"])
    assert camel.thinking == ThinkingConfig(enabled=True, budget_tokens=9)


def test_single_objects_for_repeated_fields_everywhere():
    body = {
        "contents": {"role": "user", "parts": {"text": "hi"}},
        "tools": {"functionDeclarations": {"name": "f"}},
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": "f"}},
    }
    with pytest.raises(PiscesError):  # a string is not an object: only objects stand for a list of one
        g.decode_request(copy.deepcopy(body), "m")
    body["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"] = ["f"]
    req = g.decode_request(body, "m")
    assert req.messages == [Message(role="user", content=[TextPart(text="hi")])]
    assert req.tools == [Tool(name="f")] and req.tool_choice == ToolChoice(mode="tool", name="f")


def test_integers_may_be_strings_as_in_proto_json():
    req = g.decode_request(ask(generationConfig={"maxOutputTokens": "800", "topK": "4", "seed": "-3"}), "m")
    assert (req.max_tokens, req.top_k, req.seed) == (800, 4, -3)


def test_url_safe_base64_is_passed_on_in_the_standard_alphabet():
    raw = bytes(range(250, 256)) * 3
    (img,) = g.decode_request(ask({"inlineData": {"mimeType": "image/png", "data": base64.urlsafe_b64encode(raw)
                                                 .decode().rstrip("=")}}), "m").messages[0].content  # fmt: skip
    assert isinstance(img, ImagePart) and img.data == base64.b64encode(raw).decode()


def test_media_kinds():
    parts = [
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://x.test/a.png"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/a.png", "displayName": "a"}},
        {"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
    ]
    content = g.decode_request(ask(*parts), "m").messages[0].content
    assert content == [
        FilePart(data="JVBERi0=", media_type="application/pdf"),
        ImagePart(url="https://x.test/a.png", media_type="image/png"),
        FilePart(uri="gs://bucket/a.png", media_type="image/png", name="a"),
        FilePart(uri="https://generativelanguage.googleapis.com/v1beta/files/abc"),
    ]


def test_thoughts_and_signatures_in_history():
    model = [
        {"text": "pondering", "thought": True, "thoughtSignature": SIG1},
        {"text": "answer", "thoughtSignature": SIG2},
        {"thoughtSignature": SIG1},
        {"text": ""},
    ]
    req = g.decode_request({"contents": [{"role": "user", "parts": [{"text": "q"}]},
                                         {"role": "model", "parts": model}]}, "m")  # fmt: skip
    assert req.messages[1].content == [
        ThinkingPart(text="pondering", signature=SIG1),
        ThinkingPart(signature=SIG2),
        TextPart(text="answer"),
        ThinkingPart(signature=SIG1),
    ]


def test_signatures_the_sdk_sends_url_safe_come_back_in_the_standard_alphabet():
    raw = bytes(range(240, 256)) * 2  # bytes whose base64 differs between the two alphabets
    sdk_part = types.Part(text="t", thought=True, thought_signature=raw).model_dump(mode="json", exclude_none=True)
    assert "_" in sdk_part["thought_signature"]  # google-genai sends signatures URL-safe
    model = [sdk_part, {"functionCall": {"name": "f"}, "thoughtSignature": "<Signature_A>"},
             {"text": "x", "thoughtSignature": SKIP}]  # fmt: skip
    req = g.decode_request(_history([{"text": "q"}], model), "m")
    think, call, skip, _ = req.messages[1].content
    assert think.signature == base64.b64encode(raw).decode()
    assert (call.signature, skip.signature) == ("<Signature_A>", SKIP)  # not base64: passed on as they came


@pytest.mark.parametrize("role", ["function", "tool"])
def test_function_and_tool_roles_are_the_user(role):
    body = _history([{"text": "q"}], [_call("f")])
    body["contents"].append({"role": role, "parts": [_answer("f", ok=True)]})
    req = g.decode_request(body, "m")
    assert [m.role for m in req.messages] == ["user", "assistant", "user"]
    assert req.messages[2].content[0].tool_call_id == req.messages[1].content[0].id


def test_system_instruction_as_a_bare_string():
    assert g.decode_request(ask(systemInstruction="be brief"), "m").system == [TextPart(text="be brief")]


def test_error_only_response_is_an_error_result():
    req = g.decode_request(ask({"functionResponse": {"name": "f", "response": {"error": "boom"}}}), "m")
    (result,) = req.messages[0].content
    assert isinstance(result, ToolResultPart) and result.is_error


# =============================================================================================
# decode_request: function call ids


def _call(name: str, cid: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"name": name, "args": {}}
    if cid:
        call["id"] = cid
    return {"functionCall": call}


def _answer(name: str, cid: str | None = None, **response: Any) -> dict[str, Any]:
    resp: dict[str, Any] = {"name": name, "response": response}
    if cid:
        resp["id"] = cid
    return {"functionResponse": resp}


def _history(*turns: list[dict[str, Any]]) -> dict[str, Any]:
    roles = ["user", "model"]
    return {"contents": [{"role": roles[i % 2], "parts": parts} for i, parts in enumerate(turns)]}


def test_same_name_calls_are_answered_in_order_across_turns():
    req = g.decode_request(
        _history(
            [{"text": "go"}],
            [_call("f"), _call("g"), _call("f")],
            [_answer("f", n=1), _answer("f", n=2), _answer("g")],
            [_call("f")],
            [_answer("f", n=3)],
        ),
        "m",
    )
    f1, g1, f2 = req.messages[1].content
    a1, a2, ag = req.messages[2].content
    (f3,) = req.messages[3].content
    (a3,) = req.messages[4].content
    assert len({f1.id, g1.id, f2.id, f3.id}) == 4 and all(generated(c.id) for c in (f1, g1, f2, f3))
    assert [a1.tool_call_id, a2.tool_call_id, ag.tool_call_id, a3.tool_call_id] == [f1.id, f2.id, g1.id, f3.id]


def test_explicit_ids_are_kept_and_answer_their_own_call():
    req = g.decode_request(
        _history(
            [{"text": "go"}],
            [_call("f", "c-1"), _call("f", "c-2"), _call("f")],
            [_answer("f", "c-2"), _answer("f"), _answer("f")],
        ),
        "m",
    )
    c1, c2, c3 = req.messages[1].content
    a2, a1, a3 = req.messages[2].content
    assert (c1.id, c2.id) == ("c-1", "c-2") and generated(c3.id)
    assert (a2.tool_call_id, a1.tool_call_id, a3.tool_call_id) == ("c-2", "c-1", c3.id)


def test_a_response_without_a_call_gets_a_fresh_id():
    (result,) = g.decode_request(ask(_answer("lonely", ok=True)), "m").messages[0].content
    assert generated(result.tool_call_id) and result.name == "lonely"


# =============================================================================================
# decode_request: validation errors (status 400, a param naming the path)


def _parts(*parts: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": list(parts)}]}


def _gen(**config: Any) -> dict[str, Any]:
    return ask(generationConfig=config)


def _decl(**decl: Any) -> dict[str, Any]:
    return ask(tools=[{"functionDeclarations": [decl]}])


INVALID = "invalid_request"
UNSUPPORTED = "unsupported_parameter"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({}, "contents", INVALID),
        ({"contents": []}, "contents", INVALID),
        ({"contents": "hello"}, "contents", INVALID),
        ({"contents": [5]}, "contents[0]", INVALID),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "contents[0].role", INVALID),
        ({"contents": [{"role": 1, "parts": [{"text": "x"}]}]}, "contents[0].role", INVALID),
        ({"contents": [{"role": "user"}]}, "contents[0].parts", INVALID),
        ({"contents": [{"role": "user", "parts": []}]}, "contents[0].parts", INVALID),
        (_parts({}), "contents[0].parts[0].data", INVALID),
        (_parts({"text": 5}), "contents[0].parts[0].text", INVALID),
        (_parts({"text": "a", "inlineData": {"mimeType": "image/png", "data": "AAAA"}}), "contents[0].parts[0]",
         INVALID),
        (_parts({"text": "a"}, {"inlineData": {"mimeType": "image/png", "data": "not base64!"}}),
         "contents[0].parts[1].inlineData.data", INVALID),
        (_parts({"inline_data": {"data": "AAAA"}}), "contents[0].parts[0].inlineData.mimeType", INVALID),
        (_parts({"inlineData": "AAAA"}), "contents[0].parts[0].inlineData", INVALID),
        (_parts({"fileData": {"mimeType": "image/png"}}), "contents[0].parts[0].fileData.fileUri", INVALID),
        (_parts({"functionCall": {"args": {}}}), "contents[0].parts[0].functionCall.name", INVALID),
        (_parts({"functionCall": {"name": "f", "args": [1]}}), "contents[0].parts[0].functionCall.args", INVALID),
        (_parts({"functionCall": {"name": "f", "args": "{}"}}), "contents[0].parts[0].functionCall.args", INVALID),
        (_parts({"functionResponse": {"name": "f", "response": "ok"}}),
         "contents[0].parts[0].functionResponse.response", INVALID),
        (_parts({"functionResponse": {"name": "f", "id": 7, "response": {}}}),
         "contents[0].parts[0].functionResponse.id", INVALID),
        (_parts({"executableCode": {"language": "PYTHON", "code": "print(1)"}}),
         "contents[0].parts[0].executableCode", UNSUPPORTED),
        (_parts({"codeExecutionResult": {"outcome": "OUTCOME_OK"}}), "contents[0].parts[0].codeExecutionResult",
         UNSUPPORTED),
        (_parts({"text": "a", "thoughtSignature": 5}), "contents[0].parts[0].thoughtSignature", INVALID),
        (ask(systemInstruction=5), "systemInstruction", INVALID),
        (ask(systemInstruction={"parts": [{"text": 5}]}), "systemInstruction.parts[0].text", INVALID),
        (ask(tools="search"), "tools", INVALID),
        (ask(tools=[5]), "tools[0]", INVALID),
        (_decl(description="no name"), "tools[0].functionDeclarations[0].name", INVALID),
        (_decl(name="1 bad name"), "tools[0].functionDeclarations[0].name", INVALID),
        (_decl(name="f" * 129), "tools[0].functionDeclarations[0].name", INVALID),
        (_decl(name="f", parameters="object"), "tools[0].functionDeclarations[0].parameters", INVALID),
        (_decl(name="f", parametersJsonSchema=[]), "tools[0].functionDeclarations[0].parametersJsonSchema", INVALID),
        (ask(toolConfig="ANY"), "toolConfig", INVALID),
        (ask(toolConfig={"functionCallingConfig": {"mode": "SOMETIMES"}}), "toolConfig.functionCallingConfig.mode",
         INVALID),
        (ask(toolConfig={"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [5]}}),
         "toolConfig.functionCallingConfig.allowedFunctionNames[0]", INVALID),
        (ask(toolConfig={"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f", None]}}),
         "toolConfig.functionCallingConfig.allowedFunctionNames[1]", INVALID),
        (ask(generationConfig="hot"), "generationConfig", INVALID),
        (_gen(candidateCount=2), "generationConfig.candidateCount", UNSUPPORTED),
        (_gen(candidateCount=0), "generationConfig.candidateCount", INVALID),
        (_gen(temperature=3), "generationConfig.temperature", INVALID),
        (_gen(temperature=-0.1), "generationConfig.temperature", INVALID),
        (_gen(temperature="hot"), "generationConfig.temperature", INVALID),
        (_gen(temperature=True), "generationConfig.temperature", INVALID),
        (_gen(topP=1.5), "generationConfig.topP", INVALID),
        (_gen(topK=0), "generationConfig.topK", INVALID),
        (_gen(maxOutputTokens=0), "generationConfig.maxOutputTokens", INVALID),
        (_gen(maxOutputTokens=1.5), "generationConfig.maxOutputTokens", INVALID),
        (_gen(seed="x"), "generationConfig.seed", INVALID),
        (_gen(stopSequences=["a", "b", "c", "d", "e", "f"]), "generationConfig.stopSequences", INVALID),
        (_gen(stopSequences=[1]), "generationConfig.stopSequences", INVALID),
        (_gen(stopSequences="END"), "generationConfig.stopSequences", INVALID),
        (_gen(responseSchema="object"), "generationConfig.responseSchema", INVALID),
        (_gen(responseJsonSchema=[]), "generationConfig.responseJsonSchema", INVALID),
        (_gen(responseJsonSchema=True), "generationConfig.responseJsonSchema", INVALID),
        (_gen(responseMimeType=5), "generationConfig.responseMimeType", INVALID),
        (_gen(thinkingConfig="on"), "generationConfig.thinkingConfig", INVALID),
        (_gen(thinkingConfig={"thinkingBudget": -2}), "generationConfig.thinkingConfig.thinkingBudget", INVALID),
        (_gen(thinkingConfig={"thinkingLevel": "EXTREME"}), "generationConfig.thinkingConfig.thinkingLevel",
         INVALID),
        (ask(generation_config={"max_output_tokens": 0}), "generationConfig.maxOutputTokens", INVALID),
    ],
)  # fmt: skip
def test_validation_errors_name_the_path(body, param, code):
    err = bad(body)
    assert (err.status, err.code, err.param) == (400, code, param)
    assert param in err.message


def test_a_body_that_is_not_an_object():
    for body in ([], "x", None, 5):
        err = bad(body)
        assert (err.status, err.code) == (400, "invalid_request") and "JSON object" in err.message


def _paths(obj: Any, path: tuple = ()) -> Any:
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*path, i))


def _set(body: Any, path: tuple, value: Any) -> None:
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


FULL_REQUEST: dict[str, Any] = {
    "systemInstruction": {"parts": [{"text": "s"}]},
    "contents": [
        {"role": "user", "parts": [{"text": "t"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                                   {"fileData": {"mimeType": "application/pdf", "fileUri": "https://x.test/f"}}]},
        {"role": "model", "parts": [{"text": "th", "thought": True, "thoughtSignature": SIG1},
                                    {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": SIG2},
                                    {"functionCall": {"id": "c2", "name": "f", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"r": 1}}},
                                   {"functionResponse": {"id": "c2", "name": "f", "response": {"error": "x"}}}]},
    ],
    "tools": [
        {"functionDeclarations": [
            {"name": "f", "description": "d",
             "parameters": {"type": "OBJECT", "properties": {"a": {"type": "INTEGER", "nullable": True}}}},
            {"name": "g", "parametersJsonSchema": {"type": "object"}}]},
        {"googleSearch": {}},
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f", "g"]}},
    "generationConfig": {
        "maxOutputTokens": 5, "temperature": 0.5, "topP": 0.5, "topK": 3, "seed": 1, "candidateCount": 1,
        "stopSequences": ["x"], "responseMimeType": "application/json", "responseSchema": {"type": "OBJECT"},
        "responseJsonSchema": {"type": "object"}, "presencePenalty": 0.1,
        "thinkingConfig": {"thinkingBudget": 100, "includeThoughts": True, "thinkingLevel": "LOW"},
    },
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}],
    "cachedContent": "cachedContents/x",
}  # fmt: skip
VALUES = (None, 0, 1, -1, 1.5, True, "x", "", "AAAA", "ANY", [], {}, [1], {"a": 1}, [{"a": 1}], {"text": "x"})


def _decodes_or_400(body: Any) -> str | None:
    """None if ``body`` decodes (and the result encodes) or is refused with a 400; else what went wrong."""
    try:
        g.encode_request(g.decode_request(body, "m"), "m")  # whatever decodes also encodes
    except PiscesError as e:
        return None if e.status == 400 else f"PiscesError {e.status}"
    except Exception as e:  # the point of the test: nothing but PiscesError
        return f"{type(e).__name__}: {e}"
    return None


def test_every_value_anywhere_is_decoded_or_refused_with_a_400():
    crashes = {}
    for path in list(_paths(FULL_REQUEST))[1:]:
        for value in VALUES:
            body = copy.deepcopy(FULL_REQUEST)
            _set(body, path, value)
            if (problem := _decodes_or_400(body)) is not None:
                crashes[(path, repr(value))] = problem
    assert crashes == {}


KEYS = ["contents", "parts", "role", "text", "inlineData", "inline_data", "data", "mimeType", "fileData", "fileUri",
        "functionCall", "function_call", "functionResponse", "name", "args", "id", "response", "thought",
        "thoughtSignature", "tools", "functionDeclarations", "parameters", "parametersJsonSchema", "type",
        "properties", "items", "anyOf", "nullable", "toolConfig", "functionCallingConfig", "mode",
        "allowedFunctionNames", "generationConfig", "thinkingConfig", "thinkingBudget", "thinkingLevel",
        "responseSchema", "responseJsonSchema", "stopSequences", "systemInstruction", "_tools",
        "_thinking"]  # fmt: skip


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, 1, -1, 2, 5, 129, -(2**40), 2**63, "7"])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e300, 2.5, float("nan")])
    if kind in (4, 5, 6):
        return rng.choice(["", "x", "AUTO", "ANY", "NONE", "model", "user", "OBJECT", "image/png", "AAAA", "=", "é",
                           "application/json", "HIGH", "-1", "call_gm1", SKIP])  # fmt: skip
    if kind in (7, 8):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {rng.choice(KEYS): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


@pytest.mark.parametrize("seed", range(4))
def test_random_garbage_in_random_places_is_only_ever_a_400(seed):
    rng = random.Random(seed)
    crashes = {}
    for case in range(100):
        body = copy.deepcopy(FULL_REQUEST)
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(list(_paths(body))[1:])
            target = body
            for key in path[:-1]:
                target = target[key]
            if isinstance(target[path[-1]], dict) and rng.random() < 0.3:
                target[path[-1]][rng.choice(KEYS)] = _random_value(rng)  # a field added
            else:
                _set(body, path, _random_value(rng))
        if (problem := _decodes_or_400(body)) is not None:
            crashes[case] = (json.dumps(body)[:300], problem)
    assert crashes == {}


# =============================================================================================
# encode_request: canonical -> a Gemini upstream's body

REQUEST_FIXTURES = sorted(p.name for p in FIXTURES.glob("request_*.json"))


@pytest.mark.parametrize("name", REQUEST_FIXTURES)
def test_reference_requests_keep_their_meaning_through_the_upstream_body(name):
    req = g.decode_request(fixture(name), "gemini-2.5-flash")
    body = g.encode_request(req, "gemini-2.5-flash")
    json.dumps(body)  # plain JSON
    assert "model" not in body and "stream" not in body  # both go in the URL
    again = g.decode_request(copy.deepcopy(body), "gemini-2.5-flash")
    assert meaning(again) == meaning(req)
    assert g.encode_request(again, "gemini-2.5-flash") == body  # and it is a fixed point


def test_reference_function_response_goes_out_as_gemini_sent_it():
    body = fixture("request_function_response.json")
    out = g.encode_request(g.decode_request(copy.deepcopy(body), "m"), "m")
    assert out["contents"] == body["contents"]  # no made-up ids, the signature as it came
    for decl in out["tools"][0]["functionDeclarations"]:
        assert "parameters" not in decl and decl["parametersJsonSchema"]["type"] == "object"


def test_reference_parallel_calls_go_out_as_gemini_sent_them():
    body = fixture("request_parallel_function_response.json")
    out = g.encode_request(g.decode_request(copy.deepcopy(body), "m"), "m")
    model = out["contents"][1]["parts"]
    assert model[0] == {"functionCall": {"name": "get_current_temperature", "args": {"city": "Paris"}},
                        "thoughtSignature": "<Signature_A>"}  # fmt: skip
    assert model[1] == {"functionCall": {"name": "get_current_temperature", "args": {"city": "London"}}}
    assert out["contents"][2] == body["contents"][2]


def test_tool_schemas_go_out_as_parameters_json_schema():
    schema = {"type": "object", "properties": {"q": {"type": ["string", "null"]}}, "additionalProperties": False}
    req = ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="x")])],
                      tools=[Tool(name="search", description="d", parameters=schema), Tool(name="bare")])  # fmt: skip
    assert g.encode_request(req, "m")["tools"] == [{"functionDeclarations": [
        {"name": "search", "description": "d", "parametersJsonSchema": schema},
        {"name": "bare", "parametersJsonSchema": {"type": "object", "properties": {}}},
    ]}]  # fmt: skip


def _conversation(*assistant: Any, results: list[Any] | None = None) -> ChatRequest:
    messages = [Message(role="user", content=[TextPart(text="q")]), Message(role="assistant", content=list(assistant))]
    if results:
        messages.append(Message(role="user", content=results))
    return ChatRequest(model="m", messages=messages)


def test_generated_ids_stay_home_real_ids_go_out():
    made_up = f"{GENERATED_ID_PREFIX}0123456789abcdef01234567"
    req = _conversation(
        ToolCallPart(id=made_up, name="f", arguments='{"a": 1}', signature=SIG1),
        ToolCallPart(id="toolu_01A", name="g", arguments="{}"),
        results=[ToolResultPart(tool_call_id=made_up, name="f", content=[TextPart(text='{"ok": true}')]),
                 ToolResultPart(tool_call_id="toolu_01A", name="g", content=[TextPart(text="done")])],
    )  # fmt: skip
    _, model, user = g.encode_request(req, "m")["contents"]
    assert model["parts"] == [
        {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": SIG1},
        {"functionCall": {"name": "g", "args": {}, "id": "toolu_01A"}},
    ]
    assert user["parts"] == [
        {"functionResponse": {"name": "f", "response": {"ok": True}}},
        {"functionResponse": {"name": "g", "response": {"result": "done"}, "id": "toolu_01A"}},
    ]


def test_first_unsigned_call_of_each_model_turn_carries_the_skip_signature():
    req = ChatRequest(model="m", messages=[
        Message(role="user", content=[TextPart(text="q")]),
        Message(role="assistant", content=[TextPart(text="let me look"), ToolCallPart(id="call_1", name="f"),
                                           ToolCallPart(id="call_2", name="f")]),
        Message(role="user", content=[ToolResultPart(tool_call_id="call_1", content=[TextPart(text="1")]),
                                      ToolResultPart(tool_call_id="call_2", content=[TextPart(text="2")])]),
        Message(role="assistant", content=[ToolCallPart(id="call_3", name="g", arguments='{"x": [1]}')]),
    ])  # fmt: skip
    contents = g.encode_request(req, "m")["contents"]
    first, second = contents[1]["parts"][1:]
    assert first == {"functionCall": {"name": "f", "args": {}, "id": "call_1"}, "thoughtSignature": SKIP}
    assert second == {"functionCall": {"name": "f", "args": {}, "id": "call_2"}}
    assert contents[3]["parts"] == [{"functionCall": {"name": "g", "args": {"x": [1]}, "id": "call_3"},
                                     "thoughtSignature": SKIP}]  # fmt: skip
    assert "thoughtSignature" not in contents[1]["parts"][0]


def test_a_real_signature_is_kept_and_no_placeholder_added():
    req = _conversation(ToolCallPart(id="c1", name="f", signature=SIG1), ToolCallPart(id="c2", name="f"))
    parts = g.encode_request(req, "m")["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == SIG1 and "thoughtSignature" not in parts[1]
    assert SKIP not in json.dumps(parts)


def test_tool_results_from_an_openai_client_take_the_calls_name():
    """OpenAI's tool role has no function name: the call before it says which function answered."""
    req = _conversation(
        ToolCallPart(id="call_abc", name="get_weather", arguments='{"city": "Paris"}'),
        ToolCallPart(id="call_def", name="get_time"),
        ToolCallPart(id="call_ghi", name="lookup"),
        ToolCallPart(id="call_jkl", name="fail"),
        results=[
            ToolResultPart(tool_call_id="call_abc", content=[TextPart(text='{"temp": 21, "unit": "C"}')]),
            ToolResultPart(tool_call_id="call_def", content=[TextPart(text="12:00")]),
            ToolResultPart(tool_call_id="call_ghi", content=[TextPart(text="[1, 2]")]),
            ToolResultPart(tool_call_id="call_jkl", content=[TextPart(text="no such city")], is_error=True),
        ],
    )
    parts = g.encode_request(req, "m")["contents"][2]["parts"]
    assert [p["functionResponse"] for p in parts] == [
        {"name": "get_weather", "response": {"temp": 21, "unit": "C"}, "id": "call_abc"},
        {"name": "get_time", "response": {"result": "12:00"}, "id": "call_def"},
        {"name": "lookup", "response": {"result": [1, 2]}, "id": "call_ghi"},
        {"name": "fail", "response": {"error": "no such city"}, "id": "call_jkl"},
    ]


def test_image_in_a_tool_result_follows_the_function_response():
    screen = [TextPart(text="screen:"), ImagePart(data="iVBORw0KGgo=", media_type="image/png")]
    req = _conversation(ToolCallPart(id="c1", name="shot"), results=[ToolResultPart(tool_call_id="c1", content=screen)])
    assert g.encode_request(req, "m")["contents"][2]["parts"] == [
        {"functionResponse": {"name": "shot", "response": {"result": "screen:"}, "id": "c1"}},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
    ]


def test_thinking_goes_out_only_with_a_signature():
    req = _conversation(
        ThinkingPart(text="another provider's reasoning"),
        ThinkingPart(redacted=True, data="opaque", signature="x"),
        ThinkingPart(text="gemini's", signature=SIG1),
        ThinkingPart(signature=SIG2),
        TextPart(text=""),
        TextPart(text="answer"),
    )
    assert g.encode_request(req, "m")["contents"][1]["parts"] == [
        {"text": "gemini's", "thought": True, "thoughtSignature": SIG1},
        {"text": "", "thoughtSignature": SIG2},
        {"text": "answer"},
    ]


def test_media_go_out_as_inline_data_or_file_data():
    req = ChatRequest(model="m", messages=[Message(role="user", content=[
        ImagePart(data="/9j/AAA", media_type="image/jpeg"),
        ImagePart(url="data:image/gif;base64,R0lG"),
        ImagePart(url="https://x.test/cat.png"),
        ImagePart(url="https://x.test/cat"),
        FilePart(uri="gs://bucket/doc.pdf"),
        FilePart(data="JVBERi0=", media_type="application/pdf"),
    ])])  # fmt: skip
    assert g.encode_request(req, "m")["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/AAA"}},
        {"inlineData": {"mimeType": "image/gif", "data": "R0lG"}},
        {"fileData": {"fileUri": "https://x.test/cat.png", "mimeType": "image/png"}},
        {"fileData": {"fileUri": "https://x.test/cat", "mimeType": "image/jpeg"}},
        {"fileData": {"fileUri": "gs://bucket/doc.pdf", "mimeType": "application/pdf"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice(mode="auto"), {"mode": "AUTO"}),
        (ToolChoice(mode="auto", allowed=["f"]), {"mode": "AUTO", "allowedFunctionNames": ["f"]}),
        (ToolChoice(mode="none", allowed=["f"]), {"mode": "NONE"}),
        (ToolChoice(mode="required"), {"mode": "ANY"}),
        (ToolChoice(mode="required", allowed=["f", "g"]), {"mode": "ANY", "allowedFunctionNames": ["f", "g"]}),
        (ToolChoice(mode="tool", name="g"), {"mode": "ANY", "allowedFunctionNames": ["g"]}),
        (ToolChoice(mode="required", parallel=False), {"mode": "ANY"}),
    ],
)
def test_tool_choice_goes_out_as_function_calling_config(choice, expected):
    req = ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="x")])],
                      tools=[Tool(name="f"), Tool(name="g")], tool_choice=choice)  # fmt: skip
    assert g.encode_request(req, "m")["toolConfig"] == {"functionCallingConfig": expected}
    assert "toolConfig" not in g.encode_request(req.model_copy(update={"tools": []}), "m")


@pytest.mark.parametrize(
    ("thinking", "expected"),
    [
        (ThinkingConfig(enabled=False), {"thinkingBudget": 0}),
        (ThinkingConfig(budget_tokens=3000), {"thinkingBudget": 3000, "includeThoughts": True}),
        (ThinkingConfig(), {"thinkingBudget": -1, "includeThoughts": True}),
        (ThinkingConfig(effort="low"), {"thinkingBudget": g.EFFORT_BUDGET["low"], "includeThoughts": True}),
        (ThinkingConfig(effort="high"), {"thinkingBudget": g.EFFORT_BUDGET["high"], "includeThoughts": True}),
    ],
)
def test_thinking_config_goes_out_as_thinking_config(thinking, expected):
    req = ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="x")])], thinking=thinking)
    assert g.encode_request(req, "m")["generationConfig"] == {"thinkingConfig": expected}


def test_effort_budgets_grow_with_the_effort():
    budgets = [g.EFFORT_BUDGET[e] for e in ("minimal", "low", "medium", "high")]
    assert budgets == sorted(budgets) and len(set(budgets)) == 4


def test_generation_config_from_another_protocols_request():
    req = ChatRequest(
        model="m", system=[TextPart(text="one"), TextPart(text=""), TextPart(text="two")],
        messages=[Message(role="user", content=[TextPart(text="hi")]), Message(role="assistant", content=[])],
        max_tokens=100, temperature=0.2, top_p=0.9, top_k=5, seed=7, stop=["a", "b", "c", "d", "e", "f"],
        response_format=ResponseFormat(type="json_object"), user="user-1", metadata={"team": "a"},
    )  # fmt: skip
    body = g.encode_request(req, "m")
    assert body == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],  # the empty assistant turn is left out
        "systemInstruction": {"parts": [{"text": "one"}, {"text": "two"}]},
        "generationConfig": {"maxOutputTokens": 100, "temperature": 0.2, "topP": 0.9, "topK": 5, "seed": 7,
                             "stopSequences": ["a", "b", "c", "d", "e"], "responseMimeType": "application/json"},
    }  # fmt: skip
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    req = req.model_copy(update={"response_format": ResponseFormat(type="json_schema", name="x", json_schema=schema)})
    gc = g.encode_request(req, "m")["generationConfig"]
    assert (gc["responseMimeType"], gc["responseJsonSchema"]) == ("application/json", schema)


def test_gemini_provider_options_reach_the_body():
    body = ask(
        tools=[{"functionDeclarations": [{"name": "f"}]}, {"googleSearch": {}}],
        generationConfig={"temperature": 0.3, "presencePenalty": 0.5, "responseModalities": ["TEXT"],
                          "thinkingConfig": {"thinkingLevel": "high", "includeThoughts": True}},
        safetySettings=[{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}],
        cachedContent="cachedContents/abc",
    )  # fmt: skip
    out = g.encode_request(g.decode_request(copy.deepcopy(body), "m"), "m")
    assert out["tools"] == [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object",
                                                                                              "properties": {}}}]},
                            {"googleSearch": {}}]  # fmt: skip
    assert out["generationConfig"] == body["generationConfig"]  # the client's own, whole
    assert out["safetySettings"] == body["safetySettings"] and out["cachedContent"] == "cachedContents/abc"
    assert not any(k.startswith("_") for k in out)


def test_other_providers_options_never_reach_the_body():
    req = ChatRequest(
        model="m",
        messages=[Message(role="user", content=[TextPart(text="x")])],
        provider_options={"openai": {"logprobs": True, "service_tier": "flex"},
                          "anthropic": {"context_management": {"edits": []}, "_server_tools": [[0, {}]]}},
    )  # fmt: skip
    assert g.encode_request(req, "m") == {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}


def test_canonical_request_survives_a_json_trip():
    req = g.decode_request(copy.deepcopy(FULL_REQUEST), "m")
    again = ChatRequest.model_validate_json(req.model_dump_json())
    assert again == req and g.encode_request(again, "m") == g.encode_request(req, "m")


# =============================================================================================
# decode_response


def test_decode_text_response():
    resp = g.decode_response(fixture("response_text.json"))
    assert resp.content == [TextPart(text="At its core, Artificial Intelligence works by learning from vast amounts "
                                          "of data ...")]  # fmt: skip
    assert (resp.finish_reason, resp.stop_detail) == ("stop", "STOP")
    assert resp.usage == Usage() and resp.id == "" and resp.created > 0


def test_decode_function_call_response_finishes_with_tool_calls():
    resp = g.decode_response(fixture("response_function_call.json"))
    (call,) = resp.content
    assert isinstance(call, ToolCallPart) and generated(call.id)
    assert (call.name, json.loads(call.arguments), call.signature) == ("check_flight", {"flight": "AA100"},
                                                                       "<Signature A>")  # fmt: skip
    assert (resp.finish_reason, resp.stop_detail) == ("tool_calls", "STOP")  # Gemini says STOP


def test_decode_parallel_function_calls():
    resp = g.decode_response(fixture("response_parallel_function_call.json"))
    paris, london = resp.tool_calls
    assert paris.id != london.id and paris.signature == "<Signature_A>" and london.signature is None
    assert [json.loads(c.arguments)["location"] for c in (paris, london)] == ["Paris", "London"]
    assert resp.finish_reason == "tool_calls"


def test_decode_thinking_response():
    body = fixture("response_thinking.json")
    resp = g.decode_response(body)
    thought, signature, text = resp.content
    assert thought == ThinkingPart(text=body["candidates"][0]["content"]["parts"][0]["text"])
    assert signature == ThinkingPart(signature=body["candidates"][0]["content"]["parts"][1]["thoughtSignature"])
    assert text == TextPart(text="The sum of the first 50 prime numbers is 5117.")
    assert resp.usage == Usage(input_tokens=12, output_tokens=14 + 1024, reasoning_tokens=1024)
    assert (resp.id, resp.model) == ("mAitaLmkHPPlz7IPvtfUqQ4", "gemini-2.5-flash")


def test_decode_max_tokens():
    resp = g.decode_response(fixture("response_max_tokens.json"))
    assert (resp.finish_reason, resp.stop_detail) == ("length", "MAX_TOKENS")
    assert resp.text.endswith("learning from") and resp.usage == Usage(input_tokens=5, output_tokens=10)


def test_decode_max_tokens_spent_on_thoughts_with_no_parts():
    resp = g.decode_response(fixture("response_max_tokens_no_parts.json"))
    assert resp.content == [] and resp.finish_reason == "length"
    assert resp.usage == Usage(input_tokens=5, output_tokens=99, reasoning_tokens=99)


def test_decode_the_recorded_call():
    resp = g.decode_response(RECORDED_CALL)
    (call,) = resp.content
    assert (call.name, json.loads(call.arguments)) == ("getWeather", {"location": "Tokyo"})
    assert call.signature == RECORDED_CALL["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    assert resp.finish_reason == "tool_calls"
    assert resp.usage == Usage(input_tokens=83, output_tokens=14 + 104, reasoning_tokens=104)


def test_decode_usage_counts_tool_prompts_as_input_and_thoughts_as_output():
    meta = {"promptTokenCount": 100, "toolUsePromptTokenCount": 30, "candidatesTokenCount": 20,
            "thoughtsTokenCount": 50, "cachedContentTokenCount": 60, "totalTokenCount": 200}  # fmt: skip
    body = {"candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"}, "finishReason": "STOP"}],
            "usageMetadata": meta}  # fmt: skip
    assert g.decode_response(body).usage == Usage(input_tokens=130, output_tokens=70, cached_tokens=60,
                                                  reasoning_tokens=50)  # fmt: skip


def test_decode_an_explicit_call_id_and_merged_thoughts():
    parts = [{"text": "a ", "thought": True}, {"text": "b", "thought": True, "thoughtSignature": SIG1},
             {"functionCall": {"id": "fc-1", "name": "f", "args": {"x": "é"}}},
             {"executableCode": {"code": "1"}}]  # fmt: skip
    resp = g.decode_response({"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP"}]})
    assert resp.content == [ThinkingPart(text="a b", signature=SIG1),
                            ToolCallPart(id="fc-1", name="f", arguments='{"x": "é"}')]  # fmt: skip


@pytest.mark.parametrize(
    ("block", "detail"), [("SAFETY", "SAFETY"), ("PROHIBITED_CONTENT", "PROHIBITED_CONTENT"), ("OTHER", "OTHER")]
)
def test_decode_blocked_prompt_is_a_content_filter(block, detail):
    body = {"promptFeedback": {"blockReason": block}, "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}}
    resp = g.decode_response(body)
    assert (resp.content, resp.finish_reason, resp.stop_detail) == ([], "content_filter", detail)
    assert resp.usage == Usage(input_tokens=7)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("SAFETY", "content_filter"), ("RECITATION", "content_filter"), ("MALFORMED_FUNCTION_CALL", "error"),
     ("LANGUAGE", "stop"), ("SOMETHING_NEW", "stop")],
)  # fmt: skip
def test_decode_finish_reasons(reason, expected):
    body = {"candidates": [{"content": {"role": "model"}, "finishReason": reason}]}
    resp = g.decode_response(body)
    assert (resp.finish_reason, resp.stop_detail) == (expected, reason)


@pytest.mark.parametrize("body", [None, "x", [], {}, {"response": "ok"}, [RECORDED_CALL], {"error": {"code": 500}}])
def test_decode_malformed_response_is_an_upstream_error(body):
    err = bad(body, g.decode_response)
    assert (err.code, err.status) == ("upstream_error", 502)


# =============================================================================================
# encode_response: read back with the SDK's own types


def test_encode_text_response_reads_in_the_sdk():
    resp = ChatResponse(id="r-1", model="gemini-x", content=[TextPart(text="Hello"), TextPart(text=" there")],
                        usage=Usage(input_tokens=10, output_tokens=5))  # fmt: skip
    body = g.encode_response(resp, PISCES)
    assert body["pisces"] == PISCES
    sdk = sdk_response(body)
    assert sdk.text == "Hello there" and sdk.function_calls is None
    assert sdk.candidates[0].finish_reason == types.FinishReason.STOP
    assert (sdk.response_id, sdk.model_version) == ("r-1", "gemini-x")
    u = sdk.usage_metadata
    assert (u.prompt_token_count, u.candidates_token_count, u.total_token_count) == (10, 5, 15)


def test_encode_function_call_response_reads_in_the_sdk():
    resp = ChatResponse(id="r", model="m", finish_reason="tool_calls", content=[
        TextPart(text="Checking."),
        ToolCallPart(id=f"{GENERATED_ID_PREFIX}abc", name="get_weather", arguments='{"city": "Paris"}', signature=SIG1),
        ToolCallPart(id="call_2", name="get_time", arguments="not json"),
    ])  # fmt: skip
    body = g.encode_response(resp, PISCES)
    sdk = sdk_response(body)
    first, second = sdk.function_calls
    assert (first.name, first.args, first.id) == ("get_weather", {"city": "Paris"}, None)  # made-up ids stay home
    assert (second.name, second.args, second.id) == ("get_time", {}, "call_2")
    assert sdk.candidates[0].content.parts[1].thought_signature == b"signature one"
    assert sdk.candidates[0].finish_reason == types.FinishReason.STOP  # Gemini's word for a turn of calls
    assert g.decode_response(body).finish_reason == "tool_calls"


def test_encode_thinking_response_reads_in_the_sdk():
    resp = g.decode_response(fixture("response_thinking.json"))
    body = g.encode_response(resp, PISCES)
    sdk = sdk_response(body)
    thought, signed, text = sdk.candidates[0].content.parts
    assert thought.thought is True and thought.text.startswith("**Summing the primes**")
    assert signed.thought_signature == base64.b64decode(
        fixture("response_thinking.json")["candidates"][0]["content"]["parts"][1]["thoughtSignature"]
    )
    assert text.text == sdk.text == "The sum of the first 50 prime numbers is 5117."  # thoughts are not text
    u = sdk.usage_metadata
    assert (u.prompt_token_count, u.candidates_token_count, u.thoughts_token_count, u.total_token_count) == (
        12, 14, 1024, 1050)  # fmt: skip


def test_encode_usage_with_cache_and_reasoning():
    resp = ChatResponse(id="r", model="m", usage=Usage(input_tokens=100, output_tokens=40, cached_tokens=60,
                                                       reasoning_tokens=30, cache_write_tokens=9))  # fmt: skip
    u = sdk_response(g.encode_response(resp, PISCES)).usage_metadata
    assert (u.prompt_token_count, u.candidates_token_count, u.thoughts_token_count) == (100, 10, 30)
    assert (u.cached_content_token_count, u.total_token_count) == (60, 140)


@pytest.mark.parametrize(
    ("reason", "detail", "word"),
    [
        ("stop", None, "STOP"),
        ("length", None, "MAX_TOKENS"),
        ("tool_calls", "tool_calls", "STOP"),
        ("content_filter", None, "SAFETY"),
        ("content_filter", "RECITATION", "RECITATION"),
        ("content_filter", "content_filter", "SAFETY"),
        ("error", None, "OTHER"),
        ("error", "MALFORMED_FUNCTION_CALL", "MALFORMED_FUNCTION_CALL"),
        ("stop", "end_turn", "STOP"),
    ],
)
def test_encode_finish_reasons(reason, detail, word):
    body = g.encode_response(ChatResponse(id="r", model="m", finish_reason=reason, stop_detail=detail), PISCES)
    assert body["candidates"][0]["finishReason"] == word
    assert sdk_response(body).candidates[0].finish_reason == types.FinishReason(word)


@pytest.mark.parametrize("name", [*sorted(p.name for p in FIXTURES.glob("response_*.json")), "RECORDED_CALL"])
def test_responses_survive_the_gateway(name):
    upstream = RECORDED_CALL if name == "RECORDED_CALL" else fixture(name)
    resp = g.decode_response(copy.deepcopy(upstream))
    body = g.encode_response(resp, PISCES)
    if "<Signature" not in json.dumps(body):  # the docs' placeholders are no base64: the SDK refuses them
        sdk_response(body)
    again = g.decode_response(body)
    assert without_generated_ids(again.model_dump(exclude={"created"})) == without_generated_ids(
        resp.model_dump(exclude={"created"})
    )


# =============================================================================================
# StreamDecoder


def test_recorded_stream_cut_anywhere_decodes_the_same():
    data = recorded(RECORDED)
    whole = decode_stream(data)
    for seed in range(8):
        events = decode_stream(data, seed)
        assert without_generated_ids([e.model_dump(exclude={"created"}) for e in events]) == without_generated_ids(
            [e.model_dump(exclude={"created"}) for e in whole]
        )
    assert [type(e) for e in whole] == [StreamStart, ToolCallStart, ToolArgsDelta, ContentEnd, UsageEvent, Finish]
    resp = accumulate(whole)
    (call,) = resp.content
    assert (call.name, json.loads(call.arguments)) == ("getWeather", {"location": "Tokyo"})
    assert call.signature == RECORDED_CALL["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    assert resp.finish_reason == "tool_calls"
    assert resp.usage == Usage(input_tokens=83, output_tokens=14 + 104, reasoning_tokens=104)
    assert (resp.id, resp.model) == ("qpc2afWVFJK4vr0Pq6WiyAU", "gemini-2.5-flash")


def test_reference_text_stream():
    data = (FIXTURES / "stream_text.sse").read_bytes()
    for seed in (None, 3):
        events = decode_stream(data, seed)
        assert [type(e) for e in events] == [StreamStart, TextDelta, TextDelta, TextDelta, ContentEnd, UsageEvent,
                                             Finish]  # fmt: skip
        resp = accumulate(events)
        assert resp.text == ("The image displays the following materials:\n\n*   **Wood:** The accordion and the "
                             "violin are primarily made of wood.")  # fmt: skip
        assert resp.finish_reason == "stop" and resp.usage == Usage(input_tokens=9, output_tokens=22)


def test_stream_cut_before_its_finish_reason_has_no_finish():
    data = (FIXTURES / "stream_text.sse").read_bytes()
    events = decode_stream(data[: data.rindex(b"data: ")])
    assert not any(isinstance(e, Finish) for e in events)
    assert isinstance(events[-1], UsageEvent) and accumulate(events).text.endswith("primarily")


def test_nothing_at_all_is_no_stream():
    dec = g.StreamDecoder()
    assert dec.feed(SSEEvent(data="")) == [] and dec.close() == []


@pytest.mark.parametrize(
    ("status", "code", "http"),
    [
        ("RESOURCE_EXHAUSTED", "rate_limit_exceeded", 429),
        ("INVALID_ARGUMENT", "invalid_request", 400),
        ("UNAVAILABLE", "upstream_error", 503),
        ("DEADLINE_EXCEEDED", "upstream_timeout", 504),
        ("INTERNAL", "upstream_error", 502),
        (None, "upstream_error", 502),
    ],
)
def test_error_chunk_is_an_error_event(status, code, http):
    error = {"code": 500, "message": "Something broke"}
    if status:
        error["status"] = status
    data = (FIXTURES / "stream_text.sse").read_bytes()
    data = data[: data.index(b"data: ", 10)] + f"data: {json.dumps({'error': error})}\r\n\r\n".encode()
    events = decode_stream(data + data[:200])  # whatever follows an error is not read
    assert events[-1] == ErrorEvent(code=code, message="upstream: Something broke", status=http)
    assert sum(isinstance(e, ErrorEvent) for e in events) == 1 and not any(isinstance(e, Finish) for e in events)


def test_usage_only_chunk_after_the_finish_reason():
    chunks = [
        {"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}, "finishReason": "STOP"}],
         "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}, "responseId": "r", "modelVersion": "m"},
        {"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4}},
    ]  # fmt: skip
    events = decode_chunks(chunks)
    assert events[-2:] == [UsageEvent(usage=Usage(input_tokens=3, output_tokens=1)),
                           Finish(reason="stop", stop_detail="STOP")]  # fmt: skip


def test_thoughts_text_and_calls_become_separate_parts():
    chunks = [{"candidates": [{"content": {"parts": parts, "role": "model"}}]} for parts in (
        [{"text": "Hmm, ", "thought": True}],
        [{"text": "yes.", "thought": True, "thoughtSignature": SIG1}],
        [{"text": "Sure"}], [{"text": ", done."}],
        [{"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": SIG2},
         {"functionCall": {"id": "own", "name": "g"}}],
        [{"text": "after", "thoughtSignature": SIG1}],
    )]  # fmt: skip
    chunks[-1]["candidates"][0]["finishReason"] = "STOP"
    events = decode_chunks(chunks)
    assert [(type(e).__name__, getattr(e, "index", None)) for e in events[1:]] == [
        ("ThinkingDelta", 0), ("ThinkingDelta", 0), ("ContentEnd", 0),
        ("TextDelta", 1), ("TextDelta", 1), ("ContentEnd", 1),
        ("ToolCallStart", 2), ("ToolArgsDelta", 2), ("ContentEnd", 2),
        ("ToolCallStart", 3), ("ToolArgsDelta", 3), ("ContentEnd", 3),
        ("ThinkingDelta", 4), ("ContentEnd", 4), ("TextDelta", 5), ("ContentEnd", 5), ("Finish", None),
    ]  # fmt: skip
    resp = accumulate(events)
    assert resp.content[0] == ThinkingPart(text="Hmm, yes.", signature=SIG1)
    assert resp.content[1] == TextPart(text="Sure, done.")
    assert (resp.content[2].signature, resp.content[3].id, resp.content[3].arguments) == (SIG2, "own", "{}")
    assert resp.content[4] == ThinkingPart(signature=SIG1) and resp.content[5] == TextPart(text="after")
    assert resp.finish_reason == "tool_calls"


def test_blocked_prompt_in_a_stream():
    events = decode_chunks([{"promptFeedback": {"blockReason": "SAFETY"}, "responseId": "r"}])
    assert isinstance(events[0], StreamStart) and events[-1] == Finish(reason="content_filter", stop_detail="SAFETY")


def test_an_array_element_served_as_one_event():
    """Without alt=sse a proxy may hand over the array whole: each element is a chunk."""
    dec = g.StreamDecoder()
    events = dec.feed(SSEEvent(data=json.dumps([RECORDED_CALL]))) + dec.close()
    assert accumulate(events).tool_calls[0].name == "getWeather" and isinstance(events[-1], Finish)


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        "[1, 2]",
        '"text"',
        '{"candidates": "x"}',
        '{"candidates": [{"content": {"parts": "x"}}]}',
        '{"candidates": [{"content": {"parts": [5, {"text": 5}, {"functionCall": "f"}]}}]}',
        '{"candidates": [{"content": {"parts": [{"functionCall": {"name": 5, "args": [1]}}]}, "finishReason": 5}]}',
        '{"usageMetadata": {"promptTokenCount": "many", "thoughtsTokenCount": -4}}',
        '{"promptFeedback": "blocked"}',
        '{"error": "boom"}',
    ],
)
def test_malformed_chunks_never_raise(data):
    dec = g.StreamDecoder()
    events = dec.feed(SSEEvent(data=json.dumps({"responseId": "r"}))) + dec.feed(SSEEvent(data=data)) + dec.close()
    assert all(isinstance(e, StreamEvent.__args__) for e in events)  # type: ignore[attr-defined]


# =============================================================================================
# StreamEncoder

STREAM: list[StreamEvent] = [
    StreamStart(id="resp-1", model="gemini-x", created=1700000000),
    ThinkingDelta(index=0, text="Let me "),
    ThinkingDelta(index=0, text="think.", signature=SIG1),
    ContentEnd(index=0),
    TextDelta(index=1, text="Hello"),
    TextDelta(index=1, text=", wor"),
    TextDelta(index=1, text="ld! é"),
    ContentEnd(index=1),
    ToolCallStart(index=2, id="call_1", name="get_weather", signature=SIG2),
    ToolArgsDelta(index=2, delta='{"ci'),
    ToolArgsDelta(index=2, delta='ty": "Pa'),
    ToolArgsDelta(index=2, delta='ris"}'),
    ContentEnd(index=2),
    UsageEvent(usage=Usage(input_tokens=30, output_tokens=20, cached_tokens=5, reasoning_tokens=8)),
    Finish(reason="tool_calls"),
]


def test_stream_encoder_sse_chunks_read_in_the_sdk():
    enc = g.StreamEncoder(PISCES, sse=True)
    pieces = [enc.encode(e) for e in STREAM]
    assert pieces[0] == b"" and all(pieces[i] == b"" for i in (9, 10, 11))  # args wait for the whole call
    data = b"".join(pieces) + enc.close()
    chunks = sse_chunks(data)
    sdk = [sdk_response(c) for c in chunks]
    assert len(chunks) == 7  # 2 thought deltas, 3 text deltas, 1 call, the last chunk
    assert "".join(s.text or "" for s in sdk) == "Hello, world! é"
    thoughts = [p for s in sdk for p in s.candidates[0].content.parts if p.thought]
    assert "".join(p.text for p in thoughts) == "Let me think." and thoughts[-1].thought_signature == b"signature one"
    (call_chunk,) = [s for s in sdk if s.function_calls]
    (call,) = call_chunk.function_calls
    assert (call.name, call.args, call.id) == ("get_weather", {"city": "Paris"}, "call_1")
    assert call_chunk.candidates[0].content.parts[0].thought_signature == b"signature two"
    last = sdk[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert all(s.candidates[0].finish_reason is None for s in sdk[:-1])
    u = last.usage_metadata
    assert (u.prompt_token_count, u.candidates_token_count, u.thoughts_token_count,
            u.cached_content_token_count, u.total_token_count) == (30, 12, 8, 5, 50)  # fmt: skip
    assert [c.get("pisces") for c in chunks] == [PISCES, *[None] * 5, PISCES]
    assert all((c["responseId"], c["modelVersion"]) == ("resp-1", "gemini-x") for c in chunks)


def test_stream_encoder_array_is_one_json_array_of_the_same_chunks():
    sse = sse_chunks(encode_all(STREAM, sse=True))
    data = encode_all(STREAM, sse=False)
    assert data.startswith(b"[{") and data.endswith(b"}]")
    assert json.loads(data) == sse
    for chunk in json.loads(data):
        sdk_response(chunk)


def test_stream_encoder_array_delivers_each_chunk_as_it_comes():
    enc = g.StreamEncoder(PISCES, sse=False)
    first = enc.encode(STREAM[0]) + enc.encode(STREAM[1])
    assert first.startswith(b"[{") and json.loads(first[1:])["candidates"][0]["content"]["parts"][0]["thought"]
    second = enc.encode(STREAM[2])
    assert second.startswith(b",") and json.loads(second.lstrip(b",\r\n"))["candidates"]


@pytest.mark.parametrize("sse", [True, False])
def test_stream_encoder_with_no_events_is_still_well_formed(sse):
    enc = g.StreamEncoder(PISCES, sse=sse)
    data = enc.close()
    chunks = sse_chunks(data) if sse else json.loads(data)
    assert isinstance(chunks, list) and len(chunks) <= 1
    for chunk in chunks:
        assert sdk_response(chunk).candidates[0].finish_reason is None  # nothing came: it does not say STOP
        assert chunk["pisces"] == PISCES
    assert enc.close() == b""  # once


@pytest.mark.parametrize("sse", [True, False])
def test_stream_encoder_error_ends_the_stream(sse):
    enc = g.StreamEncoder(PISCES, sse=sse)
    data = b"".join(enc.encode(e) for e in STREAM[:6])
    data += enc.encode(ErrorEvent(code="rate_limit_exceeded", message="upstream: quota", status=429))
    data += enc.encode(TextDelta(index=1, text="more")) + enc.close() + enc.close()
    chunks = sse_chunks(data) if sse else json.loads(data)
    *_, err = chunks
    assert list(err) == ["error", "pisces"] and err["pisces"] == PISCES
    assert {k: err["error"][k] for k in ("code", "message", "status")} == {
        "code": 429, "message": "upstream: quota", "status": "RESOURCE_EXHAUSTED"}  # fmt: skip
    assert sum("error" in c for c in chunks) == 1 and len(chunks) == 5
    # the SDK raises it, as it does for Gemini's own error chunks
    assert json.dumps(err).startswith('{"error":')
    with pytest.raises(sdk_errors.ClientError) as e:
        sdk_errors.APIError.raise_error(err["error"]["code"], err, None)
    assert (e.value.code, e.value.status, e.value.message) == (429, "RESOURCE_EXHAUSTED", "upstream: quota")


def test_stream_encoder_openai_style_order():
    """No ContentEnd at all, Finish before usage, a call whose end never came: still a proper stream."""
    events = [StreamStart(id="chatcmpl-1", model="gpt-4o"), TextDelta(index=0, text="Hi"),
              ToolCallStart(index=1, id="call_9", name="f"), ToolArgsDelta(index=1, delta='{"a": [1, '),
              ToolArgsDelta(index=1, delta="2]}"), Finish(reason="tool_calls", stop_detail="tool_calls"),
              UsageEvent(usage=Usage(input_tokens=4, output_tokens=2))]  # fmt: skip
    chunks = sse_chunks(encode_all(events))
    sdk = [sdk_response(c) for c in chunks]
    assert sdk[0].text == "Hi" and sdk[1].function_calls[0].args == {"a": [1, 2]}
    assert sdk[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert sdk[-1].usage_metadata.total_token_count == 6


@pytest.mark.parametrize("sse", [True, False])
def test_streams_survive_encode_then_decode(sse):
    data = encode_all(STREAM, sse=sse)
    chunks = sse_chunks(data) if sse else json.loads(data)
    for events in [decode_chunks(chunks)] + ([decode_stream(data, 7)] if sse else []):
        back, expected = accumulate(events), accumulate(STREAM)
        assert back.model_dump(exclude={"created", "stop_detail"}) == expected.model_dump(
            exclude={"created", "stop_detail"}
        )


def test_recorded_stream_through_the_gateway_reads_in_the_sdk():
    """Upstream recording -> StreamDecoder -> StreamEncoder -> the SDK's own types."""
    events = decode_stream(recorded(RECORDED), 11)
    chunks = sse_chunks(encode_all(events))
    sdk = [sdk_response(c) for c in chunks]
    (call,) = [fc for s in sdk for fc in s.function_calls or []]
    assert (call.name, call.args, call.id) == ("getWeather", {"location": "Tokyo"}, None)
    original = RECORDED_CALL["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    signed = [p for s in sdk for p in s.candidates[0].content.parts if p.function_call]
    assert signed[0].thought_signature == base64.b64decode(original)
    u = sdk[-1].usage_metadata
    assert (u.prompt_token_count, u.candidates_token_count, u.thoughts_token_count) == (83, 14, 104)
    assert sdk[-1].response_id == "qpc2afWVFJK4vr0Pq6WiyAU"


# =============================================================================================
# errors


ERROR_WORDS = {
    "invalid_json": "INVALID_ARGUMENT",
    "invalid_request": "INVALID_ARGUMENT",
    "unsupported_parameter": "INVALID_ARGUMENT",
    "missing_api_key": "UNAUTHENTICATED",
    "invalid_api_key": "UNAUTHENTICATED",
    "insufficient_balance": "RESOURCE_EXHAUSTED",
    "key_revoked": "PERMISSION_DENIED",
    "model_not_allowed": "PERMISSION_DENIED",
    "admin_forbidden": "PERMISSION_DENIED",
    "model_not_found": "NOT_FOUND",
    "not_found": "NOT_FOUND",
    "method_not_allowed": "UNIMPLEMENTED",
    "idempotency_in_progress": "ABORTED",
    "request_too_large": "INVALID_ARGUMENT",
    "idempotency_key_reused": "FAILED_PRECONDITION",
    "rate_limit_exceeded": "RESOURCE_EXHAUSTED",
    "internal_error": "INTERNAL",
    "upstream_error": "INTERNAL",
    "no_available_channel": "UNAVAILABLE",
    "service_unavailable": "UNAVAILABLE",
    "upstream_timeout": "DEADLINE_EXCEEDED",
}


def test_the_error_table_covers_the_whole_taxonomy():
    assert set(ERROR_WORDS) == set(ERRORS)


@pytest.mark.parametrize(("code", "word"), ERROR_WORDS.items())
def test_render_error(code, word):
    body = g.render_error(PiscesError(code, "something went wrong"), PISCES)
    assert list(body) == ["error", "pisces"] and body["pisces"] == PISCES  # error first: the SDK looks for it
    err = body["error"]
    assert {k: err[k] for k in ("code", "message", "status")} == {
        "code": ERRORS[code].status, "message": "something went wrong", "status": word}  # fmt: skip
    (info,) = err["details"]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" and info["reason"] == code.upper()
    parsed = sdk_errors.APIError(err["code"], body)
    assert (parsed.code, parsed.status, parsed.message) == (ERRORS[code].status, word, "something went wrong")


def test_rate_limit_says_when_to_retry():
    body = g.render_error(PiscesError("rate_limit_exceeded", "slow down", retry_after=7), PISCES)
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"} in body["error"]["details"]
    assert "RetryInfo" not in json.dumps(g.render_error(PiscesError("rate_limit_exceeded", "x"), PISCES))


def test_render_error_keeps_a_passed_on_status():
    body = g.render_error(PiscesError("invalid_request", "upstream: bad", status=422), PISCES)
    assert (body["error"]["code"], body["error"]["status"]) == (422, "FAILED_PRECONDITION")
    body = g.render_error(PiscesError("upstream_error", "x", status=503), PISCES)
    assert (body["error"]["code"], body["error"]["status"]) == (503, "UNAVAILABLE")


def test_upstream_error_message():
    assert g.upstream_error_message(json.dumps(fixture("error_400.json")).encode()) == (
        "API key not valid. Please pass a valid API key."
    )
    assert g.upstream_error_message(json.dumps([fixture("error_429.json")]).encode()).startswith(
        "You exceeded your current quota"
    )  # the streaming endpoint without alt=sse wraps it in an array
    assert g.upstream_error_message(b'{"error": "plain"}') == "plain"
    assert g.upstream_error_message(b"<html>Bad Gateway</html>") == "<html>Bad Gateway</html>"
    assert g.upstream_error_message(b"[]") == "[]"
    assert 0 < len(g.upstream_error_message(b"x" * 5000)) <= 500


# =============================================================================================
# models and countTokens


def test_encode_model_reads_in_the_sdk():
    model = g.encode_model("gemini-2.5-flash", "gemini")
    sdk = sdk_read(types.Model, _Model_from_mldev, model)
    assert sdk.name == "models/gemini-2.5-flash" and sdk.display_name == "gemini-2.5-flash"
    assert "generateContent" in sdk.supported_actions and "countTokens" in sdk.supported_actions
    assert "streamGenerateContent" in sdk.supported_actions
    assert "Pisces" in sdk.description and "gemini" in sdk.description
    reference = fixture("models_list.json")["models"][0]
    assert (
        {"name", "version", "displayName", "description", "supportedGenerationMethods"}
        <= set(model)
        <= set(reference) | {"baseModelId"}
    )


def test_encode_model_list_reads_in_the_sdk():
    listing = g.encode_model_list([g.encode_model("gemini-2.5-flash", "gemini"), g.encode_model("gpt-4o", "openai")],
                                  PISCES)  # fmt: skip
    assert listing["pisces"] == PISCES and "nextPageToken" not in listing
    sdk = sdk_read(types.ListModelsResponse, _ListModelsResponse_from_mldev, listing)
    assert [m.name for m in sdk.models] == ["models/gemini-2.5-flash", "models/gpt-4o"]
    assert "openai" in sdk.models[1].description
    reference = sdk_read(types.ListModelsResponse, _ListModelsResponse_from_mldev, fixture("models_list.json"))
    assert reference.models[0].name == "models/gemini-2.5-flash"  # the same reading of the documented shape
    assert g.encode_model_list([], PISCES) == {"models": [], "pisces": PISCES}


def test_decode_count_tokens_of_contents():
    req = g.decode_count_tokens(fixture("count_tokens_request.json"), "gemini-2.5-flash")
    assert req.model == "gemini-2.5-flash"
    (msg,) = req.messages
    assert msg == Message(role="user", content=[TextPart(text="The quick brown fox jumps over the lazy dog.")])


def test_decode_count_tokens_of_a_generate_content_request():
    inner = fixture("request_function_calling_mode_none.json")
    body = {"generateContentRequest": {"model": "models/gemini-2.5-flash", **copy.deepcopy(inner)}}
    req = g.decode_count_tokens(body, "gemini-2.5-flash")
    assert meaning(req) == meaning(g.decode_request(inner, "gemini-2.5-flash"))
    snake = g.decode_count_tokens({"generate_content_request": copy.deepcopy(inner)}, "gemini-2.5-flash")
    assert meaning(snake) == meaning(req)


@pytest.mark.parametrize("body", [{}, {"contents": []}, {"generateContentRequest": {"contents": []}}])
def test_count_tokens_needs_something_to_count(body):
    err = bad(body, g.decode_count_tokens)
    assert (err.status, err.param) == (400, "contents")


def test_encode_count_is_the_documented_shape():
    body = g.encode_count(10, PISCES)
    assert {k: v for k, v in body.items() if k != "pisces"} == fixture("count_tokens_response.json")
    assert body["pisces"] == PISCES
    sdk = sdk_read(types.CountTokensResponse, _CountTokensResponse_from_mldev, body)
    assert sdk.total_tokens == 10
