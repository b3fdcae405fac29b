"""What the benches share to run their servers: the peers' installs (LiteLLM proxy, Portkey's
gateway, each under bench/out/, ignored by git), starting a server and timing it to its first 200,
and the CPU of a process tree from /proc.

bench/peers.py and bench/streams.py use them; a peer that cannot be installed raises, and the bench
that asked leaves it out and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from wire import Conn, request_bytes  # noqa: E402

BODY = {"model": "gpt-fake", "messages": [{"role": "user", "content": "Say hello in five words."}]}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
PORTKEY_VERSION = "1.15.2"
HONO_NODE_SERVER = "1.13.8"
TICK = os.sysconf("SC_CLK_TCK")


def tree_env(env: dict[str, str], tree: Path, key: str) -> dict[str, str]:
    """``env`` for a money-off gateway of another tree of Pisces (``--before``): its own code first on the
    path, served with its own run.sh's options, its own bench key."""
    path = f"{tree / 'layers/core'}:{tree / 'functions/gateway'}:{env['PYTHONPATH']}"
    return {**env, "PYTHONPATH": path, "BENCH_RUN_SH": str(tree / "functions/gateway/run.sh"), "BENCH_KEY": key}


# --- the peers' installs -------------------------------------------------------------------------


def uv_venv(venv: Path, python: str, *packages: str) -> None:
    """A virtualenv at ``venv`` of ``python`` (an interpreter, or a version uv finds) with ``packages``, made by
    uv as the Makefile makes .venv."""
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv is not on PATH (make install brings it)")
    subprocess.run([uv, "venv", "-q", "--allow-existing", "-p", python, str(venv)], check=True)
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    subprocess.run([uv, "pip", "install", "-q", *packages], check=True, env=env, stdout=sys.stderr)


def install_litellm() -> Path:
    venv = OUT / "litellm-venv"
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        uv_venv(venv, ">=3.11", "litellm[proxy]")
    return exe


def python_with_pisces(interpreter: str) -> tuple[str, str]:
    """A Python that serves the gateway on ``interpreter``, and its version: the interpreter itself when it has
    the project's packages, else a virtualenv of it under bench/out/ with them (made once). How the interpreter
    was built moves the gateway's cost more than most changes do: pyenv builds CPython without profile-guided
    and link-time optimisation unless asked, and Debian's, the python.org builds and the Docker images are
    built with them (bench/RESULTS.md, performance part 13)."""
    ask = [interpreter, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]
    version = subprocess.run(ask, capture_output=True, text=True, check=True).stdout.strip()
    has = [interpreter, "-c", "import fastapi, httptools, orjson, uvicorn"]
    if subprocess.run(has, capture_output=True).returncode == 0:
        return interpreter, version
    where = hashlib.sha1(str(Path(interpreter).resolve()).encode()).hexdigest()[:8]
    venv = OUT / f"venv-python{version}-{where}"
    done = venv / ".installed"
    if not done.exists():
        uv_venv(venv, interpreter, "-e", f"{ROOT}[dev]")
        done.touch()
    return str(venv / "bin" / "python"), version


def install_portkey() -> Path:
    d = OUT / "portkey"
    entry = d / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    pkg = {"name": "portkey-bench", "private": True,
           "dependencies": {"@portkey-ai/gateway": PORTKEY_VERSION, "@hono/node-server": HONO_NODE_SERVER},
           "overrides": {"@hono/node-server": HONO_NODE_SERVER}}  # fmt: skip
    if not entry.exists():
        if shutil.which("npm") is None:
            raise RuntimeError("npm is not on PATH")
        d.mkdir(parents=True, exist_ok=True)
        (d / "package.json").write_text(json.dumps(pkg, indent=1))
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=d, check=True,
                       stdout=sys.stderr)  # stdout is the report's JSON  # fmt: skip
    for found in d.glob("node_modules/**/@hono/node-server/package.json"):
        version = json.loads(found.read_text())["version"]
        if version != HONO_NODE_SERVER:
            raise RuntimeError(f"{found} is @hono/node-server {version}, not {HONO_NODE_SERVER}")
    return entry


# --- processes and their CPU ---------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def start(cmd: list[str], env: dict[str, str], port: int, headers: dict[str, str], seconds: float) -> float:
    """Start ``cmd`` and wait for its first 200 on a chat completion: ms from process start."""
    t0 = time.perf_counter()
    log = (OUT / f"server-{port}.log").open("w")  # a server's own lines, for when something fails
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    req = request_bytes(port, "/v1/chat/completions", {"authorization": "Bearer x", **headers}, BODY)
    deadline = time.monotonic() + seconds

    async def probe() -> int:
        c = Conn(port)
        try:
            return (await c.call(req))[0]
        finally:
            c.close()

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}")
        try:
            if asyncio.run(probe()) == 200:
                start.proc = proc  # type: ignore[attr-defined]
                return (time.perf_counter() - t0) * 1000
        except (OSError, asyncio.IncompleteReadError):
            pass
        time.sleep(0.02)
    proc.terminate()
    raise RuntimeError(f"{cmd[0]} gave no 200 in {seconds} s")
