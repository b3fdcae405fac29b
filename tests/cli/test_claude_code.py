"""The real Claude Code CLI (2.1.332, tests/node) in headless mode against the gateway: an answer in
``--output-format json`` and ``stream-json``, and a tool round trip in which the mock upstream asks for
Claude Code's own Bash and Write tools (``pisces:call``, see the README's mock section), Claude Code runs
them and sends their results back. Asserted on the CLI's output and on what the gateway received and
charged."""

from __future__ import annotations

import json
from typing import Any

import httpx

from support.claude_code import json_lines, run_claude


def _usage(url: str, key: str) -> dict[str, Any]:
    return httpx.get(f"{url}/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()


def _last_user_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    user = [m for m in body["messages"] if m["role"] == "user"][-1]
    return user["content"] if isinstance(user["content"], list) else [{"type": "text", "text": user["content"]}]


def test_print_mode_json_answer(cli_gateway, tmp_path):
    key = cli_gateway.new_key()
    before = len(cli_gateway.recorder.seen)
    proc = run_claude(cli_gateway.url, key, tmp_path / "home", tmp_path / "work",
                      "-p", "hello from the pisces test", "--output-format", "json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    result = json.loads(proc.stdout)
    assert result["type"] == "result" and result["is_error"] is False, result
    assert result["result"].endswith("hello from the pisces test")  # the mock echoes the user's turn
    seen = cli_gateway.recorder.seen[before:]
    posts = [s for s in seen if s.method == "POST"]
    assert posts and all(s.path == "/v1/messages" and s.status == 200 for s in posts), [
        (s.method, s.path, s.status) for s in seen]  # fmt: skip
    first = posts[0]
    assert first.query == "beta=true"
    assert "mid-conversation-tool-changes-2026-07-01" in first.headers["anthropic-beta"]
    assert [m["role"] for m in first.body["messages"]] == ["user", "system"], "its system message is accepted"
    assert first.body["thinking"]["type"] == "adaptive" and "context_management" in first.body
    assert first.headers["authorization"] == "<set>"
    usage = _usage(cli_gateway.url, key)
    assert usage["total"]["requests"] == len(posts) and usage["total"]["cost"] > 0
    assert {row["model"] for row in usage["data"]} == {"mock-echo"}


def test_stream_json_answer(cli_gateway, tmp_path):
    key = cli_gateway.new_key()
    proc = run_claude(cli_gateway.url, key, tmp_path / "home", tmp_path / "work", "-p",
                      "one two three four five six seven", "--output-format", "stream-json", "--verbose")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = json_lines(proc.stdout)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "system" and kinds[-1] == "result", kinds
    assert events[0]["model"] == "mock-echo"
    said = "".join(b.get("text", "") for e in events if e["type"] == "assistant" for b in e["message"]["content"])
    assert said.endswith("one two three four five six seven")
    assert events[-1]["is_error"] is False and events[-1]["result"].endswith("five six seven")


def test_tool_round_trip_bash(cli_gateway, tmp_path):
    """The mock calls Bash; Claude Code runs `echo` and sends the tool_result; the answer is its output."""
    key = cli_gateway.new_key()
    before = len(cli_gateway.recorder.seen)
    prompt = 'pisces:call Bash {"command": "echo pisces-tool-$((6*7))", "description": "Echo a word"}'
    proc = run_claude(cli_gateway.url, key, tmp_path / "home", tmp_path / "work", "-p", prompt,
                      "--output-format", "stream-json", "--verbose", "--allowedTools", "Bash")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = json_lines(proc.stdout)
    uses = [b for e in events if e["type"] == "assistant" for b in e["message"]["content"] if b["type"] == "tool_use"]
    assert [u["name"] for u in uses] == ["Bash"]
    results = [b for e in events if e["type"] == "user" for b in e["message"]["content"]
               if isinstance(b, dict) and b.get("type") == "tool_result"]  # fmt: skip
    assert results and "pisces-tool-42" in json.dumps(results[0]["content"]) and not results[0].get("is_error")
    assert events[-1]["type"] == "result" and "pisces-tool-42" in events[-1]["result"]
    # the gateway got the tool_result back, for the tool_use id the mock gave
    posts = [s for s in cli_gateway.recorder.seen[before:] if s.method == "POST"]
    back = [b for s in posts for b in _last_user_blocks(s.body) if b.get("type") == "tool_result"]
    assert back and back[0]["tool_use_id"] == uses[0]["id"] and "pisces-tool-42" in json.dumps(back[0])
    assert all(s.status == 200 for s in posts)
    assert _usage(cli_gateway.url, key)["total"]["requests"] == len(posts) >= 2


def test_tool_round_trip_write(cli_gateway, tmp_path):
    """The mock calls Write; Claude Code writes the file in its working directory."""
    key = cli_gateway.new_key()
    work = tmp_path / "work"
    target = work / "note.txt"
    args = json.dumps({"file_path": str(target), "content": "written through Pisces\n"})
    proc = run_claude(cli_gateway.url, key, tmp_path / "home", work, "-p", f"pisces:call Write {args}",
                      "--output-format", "json", "--allowedTools", "Write")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert target.read_text() == "written through Pisces\n"
    result = json.loads(proc.stdout)
    assert result["is_error"] is False and result["num_turns"] >= 2
