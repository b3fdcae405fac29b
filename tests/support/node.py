"""The Node side of the tests: the pinned clients and CLIs of tests/node (``make install-node``).

Each is run in a temporary HOME with only loopback to talk to: a CLI finds no login, settings or
cache of the machine's user, and reaches nothing but the gateway under test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NODE_MODULES = NODE_DIR / "node_modules"


def node_bin(name: str) -> Path:
    """A CLI installed by tests/node/package.json (``claude``, ``gemini``, ``codex``)."""
    path = NODE_MODULES / ".bin" / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make install-node` (make test does)")
    return path


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment with ``home`` as HOME and no proxy, credential or config of the caller's."""
    keep = ("PATH", "LANG", "LC_ALL", "TERM", "TMPDIR", "SYSTEMROOT")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    home.mkdir(parents=True, exist_ok=True)
    env |= {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local/share"), "NO_COLOR": "1", "CI": "1"}  # fmt: skip
    env |= extra
    return env


def run_node(
    script: str, env: dict[str, str], timeout: float = 120, cwd: Path = NODE_DIR
) -> subprocess.CompletedProcess[str]:
    """Run an ES module ``script`` (source text) with tests/node's packages importable (another ``cwd``
    needs its own ``node_modules`` link to :data:`NODE_MODULES`: ES modules resolve from there)."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH")
    return subprocess.run([node, "--input-type=module", "-e", script], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)  # fmt: skip
