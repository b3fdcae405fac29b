"""Every client protocol reaches every upstream kind: the official `openai`, `anthropic` and `google-genai`
SDKs over real HTTP, each against the offline mock, a fake OpenAI-compatible upstream, a fake Anthropic
upstream and a fake Gemini upstream; a plain answer, a stream, and one tool round trip each (3 x 4 x 3).

The tool round trip checks what the upstream received on the second turn, in its own protocol: the
tool result answers the call it belongs to (same id, or same name for Gemini), whatever ids the
client's protocol had to carry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from google.genai import types

from support.clients import Clients

UPSTREAMS = {"mock": "mock-echo", "openai": "gpt-fake", "anthropic": "claude-fake", "gemini": "gemini-fake"}
PROMPT = "alpha beta gamma delta epsilon"
RESULT = "sunny and 21 C"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def expected_text(kind: str, prompt: str) -> str:
    """The mock echoes the last user text; the fakes say hello with it."""
    return prompt if kind == "mock" else f"Hello from upstream: {prompt}"


# --- one adapter per client protocol: answer, stream, tool round trip --------------------------------


class OpenAIClient:
    def __init__(self, gateway: Any, clients: Clients) -> None:
        self.c = clients.openai(gateway.v1, gateway.key)

    def answer(self, model: str) -> str:
        r = self.c.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}])
        assert r.model_extra["pisces"]["protocol"] == "openai"
        return r.choices[0].message.content or ""

    def stream(self, model: str) -> list[str]:
        chunks = self.c.chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]

    def round_trip(self, model: str) -> tuple[str, dict[str, Any], str]:
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
        messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
        first = self.c.chat.completions.create(model=model, messages=messages, tools=tools, tool_choice="required")
        assert first.choices[0].finish_reason == "tool_calls"
        call = first.choices[0].message.tool_calls[0]
        messages += [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": RESULT}]  # fmt: skip
        final = self.c.chat.completions.create(model=model, messages=messages, tools=tools, tool_choice="none")
        return call.function.name, json.loads(call.function.arguments), final.choices[0].message.content or ""


class AnthropicClient:
    def __init__(self, gateway: Any, clients: Clients) -> None:
        self.c = clients.anthropic(gateway.url, gateway.key)

    def answer(self, model: str) -> str:
        m = self.c.messages.create(model=model, max_tokens=200, messages=[{"role": "user", "content": PROMPT}])
        assert m.model_extra["pisces"]["protocol"] == "anthropic"
        return "".join(b.text for b in m.content if b.type == "text")

    def stream(self, model: str) -> list[str]:
        with self.c.messages.stream(model=model, max_tokens=200, messages=[{"role": "user", "content": PROMPT}]) as s:
            return list(s.text_stream)

    def round_trip(self, model: str) -> tuple[str, dict[str, Any], str]:
        tools = [{"name": "get_weather", "input_schema": SCHEMA}]
        messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
        first = self.c.messages.create(model=model, max_tokens=200, messages=messages, tools=tools,
                                       tool_choice={"type": "any"})  # fmt: skip
        assert first.stop_reason == "tool_use"
        use = next(b for b in first.content if b.type == "tool_use")
        result = {"type": "tool_result", "tool_use_id": use.id, "content": RESULT}
        messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                     {"role": "user", "content": [result]}]  # fmt: skip
        final = self.c.messages.create(model=model, max_tokens=200, messages=messages, tools=tools,
                                       tool_choice={"type": "none"})  # fmt: skip
        return use.name, dict(use.input), "".join(b.text for b in final.content if b.type == "text")


class GeminiClient:
    def __init__(self, gateway: Any, clients: Clients) -> None:
        self.c = clients.gemini(gateway.url, gateway.key)

    def answer(self, model: str) -> str:
        r = self.c.models.generate_content(model=model, contents=PROMPT)
        return r.text or ""

    def stream(self, model: str) -> list[str]:
        return [c.text for c in self.c.models.generate_content_stream(model=model, contents=PROMPT) if c.text]

    def round_trip(self, model: str) -> tuple[str, dict[str, Any], str]:
        decl = types.FunctionDeclaration(name="get_weather", parameters_json_schema=SCHEMA)
        tools = [types.Tool(function_declarations=[decl])]

        def config(mode: str) -> types.GenerateContentConfig:
            fcc = types.FunctionCallingConfig(mode=mode)  # type: ignore[arg-type]
            return types.GenerateContentConfig(tools=tools, tool_config=types.ToolConfig(function_calling_config=fcc))

        contents: list[Any] = [types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])]
        first = self.c.models.generate_content(model=model, contents=contents, config=config("ANY"))
        call = (first.function_calls or [])[0]
        contents += [first.candidates[0].content,
                     types.Content(role="user", parts=[types.Part.from_function_response(
                         name=call.name or "", response={"result": RESULT})])]  # fmt: skip
        final = self.c.models.generate_content(model=model, contents=contents, config=config("NONE"))
        return call.name or "", dict(call.args or {}), final.text or ""


CLIENTS: dict[str, Callable[[Any, Clients], Any]] = {"openai": OpenAIClient, "anthropic": AnthropicClient,
                                            "gemini": GeminiClient}  # fmt: skip


# --- what each upstream received on the tool round trip's second turn -------------------------------


def assert_result_answers_its_call(kind: str, gateway: Any, final: str) -> None:
    if kind == "mock":  # the mock answers a tool result turn with the result's text
        assert RESULT in final
        return
    assert final.startswith("Hello from upstream:")
    if kind == "openai":
        msgs = gateway.upstream.last()["body"]["messages"]
        call = next(m for m in msgs if m["role"] == "assistant" and m.get("tool_calls"))["tool_calls"][0]
        result = next(m for m in msgs if m["role"] == "tool")
        assert (result["tool_call_id"], call["function"]["name"]) == (call["id"], "get_weather")
        assert RESULT in result["content"]
    elif kind == "anthropic":
        msgs = gateway.anthropic.last()["body"]["messages"]
        use = next(b for m in msgs if m["role"] == "assistant" for b in m["content"] if b["type"] == "tool_use")
        result = next(b for m in msgs if m["role"] == "user" for b in m["content"]
                      if isinstance(b, dict) and b["type"] == "tool_result")  # fmt: skip
        assert result["tool_use_id"] == use["id"] and use["name"] == "get_weather"
        assert RESULT in json.dumps(result["content"])
    else:
        contents = gateway.gemini.last()["body"]["contents"]
        call = next(p for c in contents if c["role"] == "model" for p in c["parts"] if "functionCall" in p)
        resp = next(p for c in contents if c["role"] == "user" for p in c["parts"] if "functionResponse" in p)
        assert resp["functionResponse"]["name"] == call["functionCall"]["name"] == "get_weather"
        assert call["functionCall"].get("id") == resp["functionResponse"].get("id")
        assert call["thoughtSignature"]  # the fake's own signature, or the documented placeholder
        assert RESULT in json.dumps(resp["functionResponse"]["response"])


MATRIX = [(client, kind) for client in CLIENTS for kind in UPSTREAMS]


@pytest.mark.parametrize(("client", "kind"), MATRIX)
def test_answer(gateway, clients, client, kind):
    assert CLIENTS[client](gateway, clients).answer(UPSTREAMS[kind]) == expected_text(kind, PROMPT)


@pytest.mark.parametrize(("client", "kind"), MATRIX)
def test_stream(gateway, clients, client, kind):
    pieces = CLIENTS[client](gateway, clients).stream(UPSTREAMS[kind])
    assert len(pieces) >= 2, pieces
    assert "".join(pieces) == expected_text(kind, PROMPT)


@pytest.mark.parametrize(("client", "kind"), MATRIX)
def test_tool_round_trip(gateway, clients, client, kind):
    name, args, final = CLIENTS[client](gateway, clients).round_trip(UPSTREAMS[kind])
    assert name == "get_weather" and isinstance(args.get("city"), str)
    assert_result_answers_its_call(kind, gateway, final)
