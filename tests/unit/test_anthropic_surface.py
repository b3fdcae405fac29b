"""The current Messages API's surface in the codecs: system messages and every content block decoded
to canonical, encoded back whole for an Anthropic upstream and as what they can say for the others;
server tool blocks in answers; output_config.effort; the token estimate of opaque blocks."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from pisces.canonical import (
    ChatRequest,
    ChatResponse,
    FilePart,
    Message,
    OpaquePart,
    TextPart,
    ThinkingPart,
    ToolResultPart,
)
from pisces.protocols import anthropic_messages as am
from pisces.protocols import gemini, openai_chat
from pisces.tokens import estimate_request
from support.anthropic_surface import CLAUDE_CODE_BODY, EVERY_BLOCK, TOP_LEVEL

PISCES = {"gateway": "Pisces", "protocol": "anthropic", "request_id": "req_test", "channel": "c", "timestamp": "T"}


def _body(**kw: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **kw}


def test_every_block_decodes_to_what_the_canonical_model_can_say():
    req = am.decode_request(_body(messages=copy.deepcopy(EVERY_BLOCK)))
    assert [m.role for m in req.messages] == ["user", "assistant", "user", "system"]
    first = req.messages[0].content
    doc = first[0]
    assert isinstance(doc, FilePart) and doc.media_type == "text/plain" and doc.name == "Atlas"
    assert (doc.citations, doc.context, doc.cache_control) == ({"enabled": True}, "An old atlas", {"type": "ephemeral"})
    opaque = [p for p in first[1:6]]
    assert all(isinstance(p, OpaquePart) and p.protocol == "anthropic" for p in opaque)
    assert [p.text for p in opaque] == [
        "Notes\nLyon is big.",
        "",
        "",
        "",
        "Atlas: Paris\nhttps://atlas.example/paris\nParis is the capital of France.",
    ]
    assert first[6] == TextPart(text="What is the capital?")
    said = req.messages[1].content
    assert isinstance(said[0], ThinkingPart) and said[0].redacted
    assert isinstance(said[1], OpaquePart) and said[1].text == "Paris is the capital."  # cited text
    assert [type(p).__name__ for p in said[2:]] == ["OpaquePart", "OpaquePart", "ToolCallPart"]
    result = req.messages[2].content[0]
    assert isinstance(result, ToolResultPart)
    assert [(type(c).__name__, c.text) for c in result.content] == [
        ("OpaquePart", ""),
        ("OpaquePart", "Cron\ntool-docs\nCronCreate schedules a prompt."),
    ]
    assert req.messages[3].content == [TextPart(text="From now on, answer in French.")]


def test_an_anthropic_upstream_gets_every_block_and_field_back_whole():
    body = _body(messages=copy.deepcopy(EVERY_BLOCK), **copy.deepcopy(TOP_LEVEL))
    assert am.encode_request(am.decode_request(body), "claude-x") == body
    claude_code = {**copy.deepcopy(CLAUDE_CODE_BODY), "model": "claude-x"}
    assert am.encode_request(am.decode_request(claude_code), "claude-x") == claude_code


@pytest.mark.parametrize(("effort", "canonical"), [("low", "low"), ("medium", "medium"), ("high", "high"),
                                                   ("max", "high"), ("xhigh", "high")])  # fmt: skip
def test_output_config_effort_is_the_thinking_effort(effort, canonical):
    req = am.decode_request(_body(thinking={"type": "adaptive"}, output_config={"effort": effort}))
    assert req.thinking is not None and req.thinking.effort == canonical
    assert req.provider_options["anthropic"]["output_config"] == {"effort": effort}
    assert openai_chat.encode_request(req, "o4")["reasoning_effort"] == canonical
    # without thinking, effort is Anthropic's alone
    plain = am.decode_request(_body(output_config={"effort": effort}))
    assert plain.thinking is None and "reasoning_effort" not in openai_chat.encode_request(plain, "o4")


def test_system_roles_and_mid_conv_system_blocks():
    block = {"type": "mid_conv_system", "content": [{"type": "text", "text": "Be terse."}],
             "cache_control": {"type": "ephemeral"}}  # fmt: skip
    req = am.decode_request(_body(messages=[{"role": "user", "content": [block, {"type": "text", "text": "q"}]},
                                            {"role": "system", "content": "Plain string."}]))  # fmt: skip
    assert [(m.role, [p.text for p in m.content]) for m in req.messages] == [
        ("system", ["Be terse."]),
        ("user", ["q"]),
        ("system", ["Plain string."]),
    ]
    # the block's cache breakpoint is its last text's (the same prefix is cached)
    assert am.encode_request(req, "c")["messages"][0] == {"role": "system", "content": [
        {"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}]}  # fmt: skip
    tool_change = {"type": "tool_addition", "tool": {"type": "tool_reference", "tool_name": "Cron"}}
    kept = am.decode_request(_body(messages=[{"role": "user", "content": "q"},
                                             {"role": "system", "content": [tool_change]}]))  # fmt: skip
    assert kept.messages[1].content == [OpaquePart(protocol="anthropic", block=tool_change)]
    with pytest.raises(Exception) as e:
        am.decode_request(_body(messages=[{"role": "system", "content": [{"type": "image", "source": {}}]}]))
    assert getattr(e.value, "param", None) == "messages.0.content.0.type"


def _chat(*messages: Message) -> ChatRequest:
    return ChatRequest(model="m", system=[TextPart(text="Top.")], messages=list(messages))


def test_gemini_puts_a_system_message_in_the_user_turn_beside_it():
    sys_msg = Message(role="system", content=[TextPart(text="Now in French.")])
    req = _chat(Message(role="user", content=[TextPart(text="a")]),
                Message(role="assistant", content=[TextPart(text="b")]),
                sys_msg, Message(role="user", content=[TextPart(text="c")]), sys_msg)  # fmt: skip
    out = gemini.encode_request(req, "g")
    assert out["systemInstruction"] == {"parts": [{"text": "Top."}]}
    assert [(c["role"], [p["text"] for p in c["parts"]]) for c in out["contents"]] == [
        ("user", ["a"]),
        ("model", ["b"]),
        ("user", ["Now in French.", "c", "Now in French."]),
    ]
    openai = openai_chat.encode_request(req, "o")["messages"]
    assert [m["role"] for m in openai] == ["system", "user", "assistant", "system", "user", "system"]


def test_server_tool_blocks_in_an_answer_reach_an_anthropic_client_only():
    answer = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "end_turn",
              "content": [
                  {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
                  {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                  {"type": "text", "text": "Found it."}],
              "usage": {"input_tokens": 5, "output_tokens": 3}}  # fmt: skip
    resp = am.decode_response(answer)
    assert [type(p).__name__ for p in resp.content] == ["OpaquePart", "OpaquePart", "TextPart"]
    assert am.encode_response(resp, PISCES)["content"] == answer["content"]
    oc = openai_chat.encode_response(resp, PISCES)["choices"][0]["message"]
    assert oc["content"] == "Found it." and "srvtoolu_1" not in json.dumps(oc)
    gm = gemini.encode_response(resp, PISCES)["candidates"][0]["content"]["parts"]
    assert gm == [{"text": "Found it."}]


def test_another_protocols_opaque_part_goes_to_anthropic_as_its_text():
    part = OpaquePart(protocol="gemini", block={"executableCode": {}}, text="print(1)")
    req = _chat(Message(role="user", content=[part, OpaquePart(protocol="gemini", block={"x": 1})]))
    as_text = [{"type": "text", "text": "print(1)"}]
    assert am.encode_request(req, "c")["messages"] == [{"role": "user", "content": as_text}]
    answer = ChatResponse(id="r", model="m", content=[part])
    assert am.encode_response(answer, PISCES)["content"] == [{"type": "text", "text": "print(1)"}]


def test_opaque_blocks_count_in_the_estimate():
    plain = am.decode_request(_body())
    rich = am.decode_request(_body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "hi"}, {**copy.deepcopy(EVERY_BLOCK[0]["content"][5])}]}]))  # fmt: skip
    assert estimate_request(rich) > estimate_request(plain) + 10
