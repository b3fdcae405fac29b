"""Running the pinned Gemini CLI (tests/node) headless against a gateway, offline but for loopback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from support.node import clean_env, node_bin

PROCESS_TIMEOUT = 180  # seconds: generous, never asserted on
SETTINGS: dict[str, Any] = {
    "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
    "privacy": {"usageStatisticsEnabled": False},
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
    "telemetry": {"enabled": False},
}


def run_gemini(base_url: str, key: str, home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    settings = home / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps(SETTINGS))
    env = clean_env(home, GOOGLE_GEMINI_BASE_URL=base_url, GEMINI_API_KEY=key, GEMINI_MODEL="mock-echo",
                    GEMINI_TELEMETRY_ENABLED="false", GEMINI_CLI_TRUST_WORKSPACE="true")  # fmt: skip
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(node_bin("gemini")), *args, "--model", "mock-echo"], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=PROCESS_TIMEOUT, stdin=subprocess.DEVNULL)  # fmt: skip


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip().startswith("{")]
