"""The Anthropic door speaks the current Messages API over real HTTP: what Claude Code 2.1.332 sends
(captured from the real CLI by tests/cli), system messages inside ``messages``, every content block and
top-level field of the API today; each reaches an Anthropic upstream whole, and another upstream as
much as it can say (the rest dropped on purpose, as these tests say). And HEAD on every GET route."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest

from support.anthropic_surface import CLAUDE_CODE_BETA, CLAUDE_CODE_BODY, ENVIRONMENT, EVERY_BLOCK, TOP_LEVEL


def _post(gateway: Any, body: dict[str, Any], beta: str | None = None, query: str = "") -> httpx.Response:
    headers = {"x-api-key": gateway.key, "anthropic-version": "2023-06-01"}
    if beta:
        headers["anthropic-beta"] = beta
    return httpx.post(f"{gateway.url}/v1/messages{query}", json=body, headers=headers, timeout=30)


# ------------------------------------------------------------------ Claude Code's request


def test_claude_code_request_reaches_an_anthropic_upstream_whole(gateway):
    resp = _post(gateway, CLAUDE_CODE_BODY, CLAUDE_CODE_BETA, "?beta=true")
    assert resp.status_code == 200, resp.text
    assert "event: message_stop" in resp.text  # the fake calls the first tool it is given
    received = gateway.anthropic.last()
    assert received["body"] == CLAUDE_CODE_BODY, "system message, adaptive thinking, effort, context management"
    assert received["anthropic-beta"] == CLAUDE_CODE_BETA


def test_claude_code_request_against_the_mock(gateway):
    """Before: 400 ``messages.1.role: Input should be 'user' or 'assistant'``."""
    resp = _post(gateway, {**CLAUDE_CODE_BODY, "model": "mock-echo", "stream": False}, CLAUDE_CODE_BETA, "?beta=true")
    assert resp.status_code == 200, resp.text
    assert resp.json()["content"][0]["text"].endswith("hello from Claude Code")


def test_claude_code_request_for_an_openai_upstream(gateway):
    """The system message stays at its place, as an OpenAI system message; effort is reasoning_effort;
    Anthropic's own fields (context_management, output_config, defer_loading, adaptive thinking) are dropped."""
    resp = _post(gateway, {**CLAUDE_CODE_BODY, "model": "gpt-fake"}, CLAUDE_CODE_BETA)
    assert resp.status_code == 200, resp.text
    sent = gateway.upstream.last()["body"]
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "system"]
    assert sent["messages"][2]["content"] == ENVIRONMENT
    assert sent["reasoning_effort"] == "high"
    wire = json.dumps(sent)
    for anthropic_only in ("context_management", "output_config", "defer_loading", "adaptive", "cache_control"):
        assert anthropic_only not in wire, anthropic_only


def test_claude_code_request_for_a_gemini_upstream(gateway):
    """Gemini has no system role inside contents: the system message is user text at its place, in the
    user turn beside it; systemInstruction keeps the top-level system prompt only."""
    resp = _post(gateway, {**CLAUDE_CODE_BODY, "model": "gemini-fake"}, CLAUDE_CODE_BETA)
    assert resp.status_code == 200, resp.text
    sent = gateway.gemini.last()["body"]
    assert [c["role"] for c in sent["contents"]] == ["user"]
    assert [p["text"] for p in sent["contents"][0]["parts"]][-1] == ENVIRONMENT
    assert ENVIRONMENT not in json.dumps(sent["systemInstruction"])
    assert "context_management" not in json.dumps(sent)


# ------------------------------------------------------------------ every block, every field


def test_every_block_and_field_reaches_an_anthropic_upstream_whole(gateway):
    body = {"model": "claude-fake", "max_tokens": 200, "messages": copy.deepcopy(EVERY_BLOCK), **TOP_LEVEL}
    resp = _post(gateway, body, "mcp-client-2025-04-04,files-api-2025-04-14")
    assert resp.status_code == 200, resp.text
    assert gateway.anthropic.last()["body"] == body


def test_every_block_for_an_openai_upstream_is_what_it_can_say(gateway):
    """Search results, cited text and content documents as their text; server tool use and its results,
    Files API references, container uploads, tool references and redacted thinking dropped on purpose;
    the closing system message a system message at its place."""
    body = {"model": "gpt-fake", "max_tokens": 200, "messages": copy.deepcopy(EVERY_BLOCK), **TOP_LEVEL}
    resp = _post(gateway, body)
    assert resp.status_code == 200, resp.text
    msgs = gateway.upstream.last()["body"]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "user", "system"]
    first = json.dumps(msgs[0])
    assert "Paris is the capital of France." in first and "Lyon is big." in first and "atlas.example/paris" in first
    assert msgs[1]["content"] == "Paris is the capital."
    assert [c["function"]["name"] for c in msgs[1]["tool_calls"]] == ["ToolSearch"]
    assert msgs[2]["content"] == "Cron\ntool-docs\nCronCreate schedules a prompt."
    assert msgs[4] == {"role": "system", "content": "From now on, answer in French."}
    wire = json.dumps(msgs)
    for dropped in ("srvtoolu_01", "file_01", "EmwKAhgBEgy3va3pzix", 'CronCreate"', "container", "mcp"):
        assert dropped not in wire, dropped


def test_every_block_for_a_gemini_upstream(gateway):
    body = {"model": "gemini-fake", "max_tokens": 200, "messages": copy.deepcopy(EVERY_BLOCK), **TOP_LEVEL}
    resp = _post(gateway, body)
    assert resp.status_code == 200, resp.text
    contents = gateway.gemini.last()["body"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    texts = [p.get("text") for p in contents[2]["parts"]]
    assert texts[-2:] == ["Now schedule it.", "From now on, answer in French."]
    assert "srvtoolu_01" not in json.dumps(contents)


def test_a_mid_conv_system_block_is_a_system_message_at_its_place(gateway):
    block = {"type": "mid_conv_system", "content": [{"type": "text", "text": "Be terse."}]}
    body = {
        "model": "claude-fake",
        "max_tokens": 50,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "one"}, block, {"type": "text", "text": "two"}]}
        ],
    }
    assert _post(gateway, body).status_code == 200
    assert gateway.anthropic.last()["body"]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}]},
        {"role": "system", "content": [{"type": "text", "text": "Be terse."}]},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
    ]  # fmt: skip


def test_the_sdk_sends_a_system_message_and_counts_it(gateway, clients):
    client = clients.anthropic(gateway.url, gateway.key)
    messages: Any = [{"role": "user", "content": "hi"}, {"role": "system", "content": "Answer in French."}]
    msg = client.messages.create(model="mock-echo", max_tokens=50, messages=messages)
    assert msg.content[0].text == "hi"
    with_system = client.messages.count_tokens(model="mock-echo", messages=messages).input_tokens
    without = client.messages.count_tokens(model="mock-echo", messages=messages[:1]).input_tokens
    assert with_system > without
    counted = client.messages.count_tokens(model="mock-echo", messages=copy.deepcopy(EVERY_BLOCK))
    assert counted.input_tokens > 100


# ------------------------------------------------------------------ HEAD


def _get_routes(gateway: Any) -> list[str]:
    from pisces_gateway.app import route_table

    paths = {r.path.replace("{model:path}", "mock-echo") for r in route_table(gateway.app) if r.method == "GET"}
    return sorted(paths)


@pytest.mark.parametrize("authed", [True, False])
def test_head_answers_like_get_without_a_body(gateway, authed):
    headers = {"authorization": f"Bearer {gateway.key}"} if authed else {}
    paths = _get_routes(gateway)
    assert {"/", "/api/hello", "/v1/models"} <= set(paths)
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=10) as http:
        for path in paths:
            get, head = http.get(path), http.head(path)
            assert head.status_code == get.status_code, path
            assert head.content == b"", path
            assert head.headers["content-type"] == get.headers["content-type"], path
            assert head.headers["content-length"] == get.headers["content-length"] or path == "/api/public/spec"
            assert head.headers["x-request-id"], path
