"""Codex CLI (npm @openai/codex, pinned in tests/node) headless, ``codex exec``, through the Responses door.

Codex is given a custom model provider in a temporary CODEX_HOME's config.toml, pointing at the
gateway with ``wire_api = "responses"``. By default Codex also sends the built-in ``web_search``
tool, which only OpenAI can run: the gateway refuses it (400) for any other upstream, so the
configuration turns it off (``web_search = "disabled"``), as a user of a non-OpenAI model must.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pisces.store.keys import hash_key
from support.fake_openai_responses import ENCRYPTED
from support.node import clean_env, node_bin

CODEX_VERSION = "0.171.0"


def _config(gateway, model: str, web_search: bool = False) -> str:
    return "\n".join([
        *([] if web_search else ['web_search = "disabled"']),
        f'model = "{model}"',
        'model_provider = "pisces"',
        "",
        "[model_providers.pisces]",
        'name = "Pisces"',
        f'base_url = "{gateway.v1}"',
        'env_key = "PISCES_API_KEY"',
        'wire_api = "responses"',
        "",
    ])  # fmt: skip


def codex(tmp_path: Path, gateway, model: str, prompt: str, *args: str, web_search: bool = False,
          key: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    (home / ".codex" / "config.toml").write_text(_config(gateway, model, web_search))
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    env = clean_env(home, CODEX_HOME=str(home / ".codex"), PISCES_API_KEY=key or gateway.key)
    cmd = [str(node_bin("codex")), "exec", "--skip-git-repo-check", "--color", "never", *args, prompt]
    return subprocess.run(cmd, cwd=work, env=env, text=True, capture_output=True, timeout=180,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def test_the_pinned_version():
    out = subprocess.run([str(node_bin("codex")), "--version"], text=True, capture_output=True, timeout=60)
    assert CODEX_VERSION in out.stdout


def test_codex_exec_gets_an_answer_through_the_responses_door(tmp_path, gateway):
    key = gateway.new_key()
    before = len(gateway.upstream.requests)
    r = codex(tmp_path, gateway, "mock-echo", "Say hello to Pisces", key=key)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "Say hello to Pisces"  # the mock echoes the prompt
    assert len(gateway.upstream.requests) == before  # the mock answered, not a fake upstream
    rec = gateway.store.get_by_hash(hash_key(key))
    assert rec is not None and rec.balance < 10**12  # charged


def test_codex_runs_its_shell_tool_and_answers_with_the_output(tmp_path, gateway):
    """The fake Responses upstream calls Codex's exec_command tool; Codex runs the command and sends
    its output back; the upstream answers with it, and sees its own encrypted reasoning again."""
    start = len(gateway.upstream.requests)
    r = codex(tmp_path, gateway, "gpt-resp", "Run the check", "--dangerously-bypass-approvals-and-sandbox")
    assert r.returncode == 0, r.stderr[-2000:]
    sent = [q["body"] for q in gateway.upstream.requests[start:] if q.get("path") == "/v1/responses"]
    assert len(sent) >= 2, sent
    first, second = sent[0], sent[-1]
    assert first["stream"] is True and first["store"] is False
    assert any(t["name"] == "exec_command" for t in first["tools"] if t["type"] == "function")
    outputs = [i for i in second["input"] if i.get("type") == "function_call_output"]
    assert outputs and outputs[0]["call_id"] == "call_resp_fake_1"
    assert "pisces-tool-ok" in json.dumps(outputs[0]["output"])
    reasoning = [i for i in second["input"] if i.get("type") == "reasoning"]
    assert reasoning and reasoning[0]["encrypted_content"] == ENCRYPTED  # OpenAI's own, passed back as it was
    assert "Hello from responses:" in r.stdout and "pisces-tool-ok" in r.stdout


def test_codex_default_web_search_is_refused_for_a_non_openai_upstream(tmp_path, gateway):
    r = codex(tmp_path, gateway, "mock-echo", "hello", web_search=True)
    assert "web_search" in (r.stdout + r.stderr) and "unsupported_parameter" in (r.stdout + r.stderr)


@pytest.mark.parametrize("model", ["gpt-resp"])
def test_codex_default_web_search_reaches_an_openai_responses_upstream(tmp_path, gateway, model):
    start = len(gateway.upstream.requests)
    r = codex(tmp_path, gateway, model, "hello", web_search=True)
    assert r.returncode == 0, r.stderr[-2000:]
    sent = next(q["body"] for q in gateway.upstream.requests[start:] if q.get("path") == "/v1/responses")
    assert any(t.get("type") == "web_search" for t in sent["tools"])
