"""`make dev` and its ports: a taken port fails at once with a message (exit 2), never a hang; a taken
default DynamoDB port (8765) is swapped for a free one; the dev terminal gets no EMF metric lines."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from pisces.localaws import free_port
from support.servers import wait_http

ROOT = Path(__file__).resolve().parents[2]
DEMO = "pisces-dev-test-key-0123456789abcdef"
TIMEOUT = 60  # generous: the process must exit (or answer) long before this, never a race against it


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    for k in ("AWS_ENDPOINT_URL_DYNAMODB", "PISCES_CONFIG", "OPENAI_API_KEY", "DEEPSEEK_API_KEY", "HOST",
              "PISCES_DYNAMO_PORT", "POWERTOOLS_METRICS_DISABLED"):  # fmt: skip
        env.pop(k, None)
    env.update(PISCES_DEV_KEY=DEMO, PISCES_ADMIN_TOKEN="dev-admin-token", PYTHONUNBUFFERED="1")
    # make dev's .pisces-dev.env, written where no other test (nor a real make dev) looks
    env["PISCES_DEV_ENV_FILE"] = str(Path(tempfile.gettempdir()) / f"pisces-dev-{uuid.uuid4().hex}.env")
    env.update(extra)
    return env


@contextmanager
def listening(port: int = 0) -> Iterator[int]:
    """Something listening on 127.0.0.1:``port`` (0: any free port) for the block; yields the port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        yield s.getsockname()[1]


def _run_to_exit(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Runs `make dev`'s program, which must exit on its own; killed in any case."""
    proc = subprocess.Popen([sys.executable, "-m", "pisces_gateway.dev"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@contextmanager
def dev(env: dict[str, str], log: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`make dev`'s program, its output in ``log``, until its gateway answers on ``port``; stopped after."""
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pisces_gateway.dev"], cwd=ROOT, env=env,
                                stdout=out, stderr=out)  # fmt: skip
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", proc, seconds=TIMEOUT)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.mark.parametrize("name", ["PORT", "ADMIN_PORT"])
def test_a_taken_gateway_or_admin_port_exits_2_before_the_banner(name):
    with listening() as taken:
        ports = {"PORT": str(free_port()), "ADMIN_PORT": str(free_port()), name: str(taken)}
        done = _run_to_exit(_env(**ports, PISCES_DYNAMO_PORT=str(free_port())))
    assert done.returncode == 2, done.stderr
    assert f"pisces: {name} {taken} is in use" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # one line, no traceback
    assert "demo key" not in done.stdout and "Pisces is running" not in done.stdout


def test_a_taken_explicit_dynamo_port_exits_2():
    with listening() as taken:
        done = _run_to_exit(_env(PORT=str(free_port()), ADMIN_PORT=str(free_port()), PISCES_DYNAMO_PORT=str(taken)))
    assert done.returncode == 2, done.stderr
    assert f"pisces: PISCES_DYNAMO_PORT {taken} is in use" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "demo key" not in done.stdout


def test_a_taken_default_dynamo_port_is_swapped_for_a_free_one(monkeypatch):
    """The choice itself, in process: the default (made a port this test holds) is busy, so another one."""
    from pisces_gateway import dev as dev_module

    monkeypatch.delenv("PISCES_DYNAMO_PORT", raising=False)
    with listening() as taken:
        monkeypatch.setattr(dev_module, "DEFAULT_DYNAMO_PORT", taken)
        port, note = dev_module.pick_dynamo_port(set())
        assert port != taken and not dev_module.port_in_use("127.0.0.1", port)
        assert f"port {taken} was in use" in note and str(port) in note
        monkeypatch.setenv("PISCES_DYNAMO_PORT", str(taken))
        with pytest.raises(dev_module.PortError, match=f"PISCES_DYNAMO_PORT {taken} is in use"):
            dev_module.pick_dynamo_port(set())
    monkeypatch.delenv("PISCES_DYNAMO_PORT")
    free = free_port()
    monkeypatch.setattr(dev_module, "DEFAULT_DYNAMO_PORT", free)
    assert dev_module.pick_dynamo_port(set()) == (free, "")


def test_make_dev_serves_when_8765_is_taken(tmp_path):
    """End to end with the real default: hold 8765 (skip if something else already does)."""
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8765))
    except OSError:
        holder.close()
        pytest.skip("port 8765 is already in use on this machine")
    holder.listen()
    try:
        port = free_port()
        with dev(_env(PORT=str(port), ADMIN_PORT=str(free_port())), tmp_path / "dev.log", port):
            printed = (tmp_path / "dev.log").read_text()
            endpoint = re.search(r"moto DynamoDB at http://127\.0\.0\.1:(\d+)", printed)
            assert endpoint and endpoint.group(1) != "8765", printed
            assert "port 8765 was in use" in printed and f"demo key   {DEMO}" in printed
            assert f'AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:{endpoint.group(1)}"' in printed
            models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {DEMO}"})
            assert models.status_code == 200, models.text  # the demo key lives in the swapped-in DynamoDB
    finally:
        holder.close()


def test_make_dev_prints_no_emf_metrics(tmp_path):
    port = free_port()
    log = tmp_path / "dev.log"
    with dev(_env(PORT=str(port), ADMIN_PORT=str(free_port()), PISCES_DYNAMO_PORT=str(free_port())), log, port) as p:
        body = {"model": "mock-echo", "messages": [{"role": "user", "content": "Hi"}]}
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                           headers={"Authorization": f"Bearer {DEMO}"}, timeout=TIMEOUT)  # fmt: skip
        assert reply.status_code == 200, reply.text
        p.terminate()
        p.wait(timeout=TIMEOUT)  # unbuffered output: everything the requests printed is in the log now
    printed = log.read_text()
    assert "  200  /v1/chat/completions  mock-echo via mock  " in printed  # the request's log line is there
    assert '"_aws"' not in printed and "CloudWatchMetrics" not in printed
