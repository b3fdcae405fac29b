"""The real Gemini CLI (0.61.0, tests/node) in headless mode against the gateway's Gemini door: an answer
in ``--output-format json``, a stream (``stream-json``, and the default text output, which streams), and
tool round trips in which the mock upstream asks for the CLI's own read_file and (with --yolo)
run_shell_command tools (``pisces:call``, see the README's mock section). Asserted on the CLI's output and
on what the gateway received and charged."""

from __future__ import annotations

import json
from typing import Any

import httpx

from support.gemini_cli import json_lines, run_gemini

STREAM_PATH = "/v1beta/models/mock-echo:streamGenerateContent"


def _usage(url: str, key: str) -> dict[str, Any]:
    return httpx.get(f"{url}/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()


def _function_responses(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [p["functionResponse"] for c in body["contents"] for p in c["parts"] if "functionResponse" in p]


def test_json_answer(cli_gateway, tmp_path):
    key = cli_gateway.new_key()
    before = len(cli_gateway.recorder.seen)
    proc = run_gemini(cli_gateway.url, key, tmp_path / "home", tmp_path / "work",
                      "-p", "hello from the pisces test", "--output-format", "json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert result["response"].endswith("hello from the pisces test")  # the mock echoes the user's turn
    assert result["stats"]["models"]["mock-echo"]["api"]["totalErrors"] == 0
    seen = cli_gateway.recorder.seen[before:]
    assert [(s.method, s.path, s.query, s.status) for s in seen] == [("POST", STREAM_PATH, "alt=sse", 200)]
    assert seen[0].headers["x-goog-api-key"] == "<set>"
    assert seen[0].body["generationConfig"]["thinkingConfig"] == {"includeThoughts": True}
    usage = _usage(cli_gateway.url, key)
    assert usage["total"]["requests"] == 1 and {row["model"] for row in usage["data"]} == {"mock-echo"}
    # the CLI's token count is the gateway's
    assert result["stats"]["models"]["mock-echo"]["tokens"]["prompt"] == usage["total"]["input_tokens"]


def test_stream_json_and_text(cli_gateway, tmp_path):
    key = cli_gateway.new_key()
    words = "one two three four five six seven eight nine"
    proc = run_gemini(cli_gateway.url, key, tmp_path / "home", tmp_path / "work",
                      "-p", words, "--output-format", "stream-json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = json_lines(proc.stdout)
    deltas = [e["content"] for e in events if e.get("type") == "message" and e.get("role") == "assistant"]
    assert len(deltas) > 1, "the answer came in several chunks"
    assert "".join(deltas).endswith(words)
    assert events[-1]["type"] == "result" and events[-1]["status"] == "success"
    text = run_gemini(cli_gateway.url, key, tmp_path / "home", tmp_path / "work", "-p", words)
    assert text.returncode == 0 and text.stdout.strip().endswith(words)


def test_tool_round_trip_read_file(cli_gateway, tmp_path):
    """The mock calls read_file; the CLI reads the file and sends a functionResponse; the answer is it."""
    key = cli_gateway.new_key()
    work = tmp_path / "work"
    work.mkdir()
    (work / "secret-note.txt").write_text("the note says pisces-read-ok\n")
    before = len(cli_gateway.recorder.seen)
    prompt = "pisces:call read_file " + json.dumps({"file_path": str(work / "secret-note.txt")})
    proc = run_gemini(cli_gateway.url, key, tmp_path / "home", work, "-p", prompt, "--output-format", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert "pisces-read-ok" in result["response"]
    assert result["stats"]["tools"]["byName"]["read_file"]["success"] == 1
    posts = [s for s in cli_gateway.recorder.seen[before:] if s.method == "POST"]
    assert len(posts) == 2 and all(s.status == 200 for s in posts)
    back = _function_responses(posts[1].body)
    assert [r["name"] for r in back] == ["read_file"] and "pisces-read-ok" in json.dumps(back)
    assert _usage(cli_gateway.url, key)["total"]["requests"] == 2


def test_tool_round_trip_shell_with_yolo(cli_gateway, tmp_path):
    key = cli_gateway.new_key()
    prompt = "pisces:call run_shell_command " + json.dumps({"command": "echo pisces-shell-ok | tr a-z A-Z"})
    proc = run_gemini(cli_gateway.url, key, tmp_path / "home", tmp_path / "work",
                      "-p", prompt, "--output-format", "json", "--yolo")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert "PISCES-SHELL-OK" in result["response"]  # the shell ran it: the mock only echoes
    assert result["stats"]["tools"]["byName"]["run_shell_command"]["success"] == 1
