"""Running the pinned Claude Code CLI (tests/node) headless against a gateway, offline but for loopback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from support.node import clean_env, node_bin

PROCESS_TIMEOUT = 180  # seconds: generous, never asserted on
# Every model name Claude Code may ask for (the main loop, the small/fast model for titles and the
# like, sub-agents) is the gateway's mock; nothing it sends may leave loopback.
MODEL_ENV = {name: "mock-echo" for name in (
    "ANTHROPIC_MODEL", "ANTHROPIC_SMALL_FAST_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL")}  # fmt: skip
QUIET_ENV = {"DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
             "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_BUG_COMMAND": "1",
             "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1"}  # fmt: skip


def run_claude(base_url: str, key: str, home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(home, ANTHROPIC_BASE_URL=base_url, ANTHROPIC_AUTH_TOKEN=key, **MODEL_ENV, **QUIET_ENV)
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(node_bin("claude")), *args, "--model", "mock-echo"], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=PROCESS_TIMEOUT, stdin=subprocess.DEVNULL)  # fmt: skip


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """stream-json's events: one JSON object a line."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip().startswith("{")]
