"""The gateway's entrypoints: run.sh as the Lambda Web Adapter starts it, the sample events, `make dev`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from mangum import Mangum

from pisces.localaws import free_port
from pisces.protocols.sse import SSEParser
from pisces_gateway.app import GC_THRESHOLDS
from support.config import TEST_BALANCE, gateway_config
from support.loops import thread_loop
from support.servers import wait_http

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
GATEWAY_EVENTS = [
    "chat_completions",
    "chat_completions_stream",
    "models",
    "model",
    "spec",
    "docs",
    "healthz",
    "image_generations",
    "image_edits",
    "responses",
]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.update(extra)
    return env


@pytest.fixture
def run_sh(local_dynamo, key_store):
    """run.sh in the task root, PORT set, as the Lambda Web Adapter runs it (moto stands in for DynamoDB)."""
    port = free_port()
    env = _env(PORT=str(port), LAMBDA_TASK_ROOT=str(ROOT / "functions" / "gateway"),
               PISCES_CONFIG="pisces.yaml")  # fmt: skip
    proc = subprocess.Popen(["bash", "run.sh"], cwd=ROOT / "functions" / "gateway", env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        yield f"http://127.0.0.1:{port}", key_store.create(name="run.sh", balance=TEST_BALANCE)[0]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_run_sh_serves_and_streams_sse_framing(run_sh):
    url, key = run_sh
    assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
    body = {"model": "mock-echo", "stream": True, "messages": [{"role": "user", "content": "a b c d e f g"}]}
    raw = b""
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}"}) as r:  # fmt: skip
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-request-id"] and r.headers.get("content-length") is None
        for part in r.iter_raw():
            raw += part
    assert raw.endswith(b"data: [DONE]\n\n")
    events = SSEParser().feed(raw)
    assert all(e.event is None for e in events), "OpenAI streams have data lines only"
    chunks = [json.loads(e.data) for e in events[:-1]]
    assert "pisces" in chunks[0] and all("pisces" not in c for c in chunks[1:])
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "a b c d e f g"


@pytest.mark.parametrize("name", GATEWAY_EVENTS)
def test_sample_events_through_the_app(name, gateway, key_store):
    """Each events/*.json replayed into the gateway app (as `sam local invoke` would) is answered."""
    from pisces_gateway.app import create_app

    app = create_app(gateway_config(gateway.upstream.url), key_store)
    event = json.loads((EVENTS / f"{name}.json").read_text())
    for headers in (event.get("headers") or {}, event.get("multiValueHeaders") or {}):
        for k, v in list(headers.items()):
            value = {"authorization": f"Bearer {gateway.key}", "x-api-key": gateway.key,
                     "x-goog-api-key": gateway.key}.get(k.lower())  # fmt: skip
            if value:
                headers[k] = [value] if isinstance(v, list) else value
    with thread_loop() as loop:  # Mangum runs the app on the thread's loop; the gateway's clients close on it
        try:
            out = Mangum(app, lifespan="off")(event, None)
        finally:
            loop.run_until_complete(app.state.gateway.aclose())
    assert out["statusCode"] == 200, out["body"][:500]
    headers = {k.lower(): v for k, v in (out.get("headers") or {}).items()}
    assert headers.get("x-request-id")


def test_the_embeddings_sample_event_through_the_app(gateway, key_store):
    """events/embeddings.json (POST /v1/embeddings on mock-embed) replayed the same way."""
    test_sample_events_through_the_app("embeddings", gateway, key_store)


def test_make_dev_serves_the_demo_key(tmp_path, clients):
    """`make dev`'s program: moto DynamoDB, pisces.yaml, mock upstream, a demo key that works at once."""
    port, admin_port, dynamo_port = free_port(), free_port(), free_port()
    demo = "pisces-dev-test-key-0123456789abcdef"
    env = _env(PORT=str(port), ADMIN_PORT=str(admin_port), PISCES_DYNAMO_PORT=str(dynamo_port),
               PISCES_DEV_KEY=demo, PISCES_ADMIN_TOKEN="dev-admin-token")  # fmt: skip
    for k in ("AWS_ENDPOINT_URL_DYNAMODB", "PISCES_CONFIG", "OPENAI_API_KEY", "DEEPSEEK_API_KEY"):
        env.pop(k, None)
    env["PISCES_DEV_ENV_FILE"] = str(tmp_path / ".pisces-dev.env")  # not the checkout's (a real make dev's)
    log = (tmp_path / "dev.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "pisces_gateway.dev"], cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        printed = (tmp_path / "dev.log").read_text()
        assert f"demo key   {demo}" in printed
        client = clients.openai(f"http://127.0.0.1:{port}/v1", demo)
        reply = client.chat.completions.create(model="mock-echo", messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content == "Hi"
        # the seed's image example against make dev's default configuration: a URL the client can fetch
        image = client.images.generate(model="mock-image", prompt="A cute kitten", n=1)
        fetched = httpx.get(image.data[0].url, timeout=30)
        assert fetched.status_code == 200 and fetched.content[:8] == b"\x89PNG\r\n\x1a\n"
        created = httpx.post(f"http://127.0.0.1:{admin_port}/admin/keys", json={"name": "bob"},
                             headers={"Authorization": "Bearer dev-admin-token"}).json()  # fmt: skip
        assert clients.openai(f"http://127.0.0.1:{port}/v1", created["key"]).models.list()
        cli_env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
        cli_env["AWS_ENDPOINT_URL_DYNAMODB"] = f"http://127.0.0.1:{dynamo_port}"
        out = subprocess.run([sys.executable, "-m", "pisces.cli", "keys", "list"], env=cli_env,
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "demo" in out.stdout and "bob" in out.stdout and demo not in out.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _exchange(url: str, *requests: bytes) -> bytes:
    """``requests`` on one connection; all the server answered until it closed."""
    with _connect(url) as s:
        for r in requests:
            s.sendall(r)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def _get(pad: int, close: bool = False) -> bytes:
    return (f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {'a' * pad}\r\n"
            f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n").encode()  # fmt: skip


def test_run_sh_refuses_a_request_head_over_16_kib_with_a_431(run_sh):
    """uvicorn's httptools protocol buffers any head; run.sh's (pisces_gateway.server) stops at 16 KiB,
    as h11 did, before the app sees the request: a 431 and the connection closed."""
    url, key = run_sh
    ok = _exchange(url, _get(15 * 1024, close=True))
    assert ok.startswith(b"HTTP/1.1 200 ") and b'"ok"' in ok
    big = _exchange(url, _get(17 * 1024))
    assert big.startswith(b"HTTP/1.1 431 ") and big.count(b"HTTP/1.1") == 1
    # a head that never ends is refused as soon as it passes the limit, not buffered on
    with _connect(url) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (20 * 1024))
        assert s.recv(65536).startswith(b"HTTP/1.1 431 ")
    # the second request of a kept-alive connection is held to the same limit; a large body is not a head
    with _connect(url) as s:
        s.sendall(_get(100))
        first = b""
        while b'"ok"' not in first:
            first += s.recv(65536)
        s.sendall(_get(17 * 1024))
        assert first.startswith(b"HTTP/1.1 200 ") and s.recv(65536).startswith(b"HTTP/1.1 431 ")
    body = json.dumps({"model": "mock-echo", "messages": [{"role": "user", "content": "x " * 100_000}]}).encode()
    post = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode() + body  # fmt: skip
    assert _exchange(url, post).startswith(b"HTTP/1.1 200 ")


_LIFESPAN = """
import asyncio, gc
from pisces_gateway.app import app

async def main() -> None:
    before = gc.get_freeze_count()
    inbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})

    async def send(message: dict) -> None:
        if message["type"] == "lifespan.startup.complete":
            print(before, gc.get_freeze_count(), *gc.get_threshold())
            await inbox.put({"type": "lifespan.shutdown"})

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send)

asyncio.run(main())
"""


def test_the_served_app_freezes_its_startup_heap_once_it_starts_and_collects_less_often(local_dynamo):
    """Everything alive when the gateway starts serving leaves the cyclic collector's generations
    (pisces_gateway.app.freeze_heap): full collections no longer walk the modules and the app."""
    env = _env(PISCES_CONFIG=str(ROOT / "pisces.yaml"), PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", _LIFESPAN], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after, *thresholds = map(int, out.stdout.split())
    assert before == 0
    assert after > 10_000  # the imported modules, the app and its clients
    assert tuple(thresholds) == GC_THRESHOLDS  # and the collector runs less often than its default 700


def test_a_cold_start_imports_no_aiohttp_and_loads_tls_only_for_an_https_endpoint(tmp_path):
    """aiohttp (130 ms of a cold start) serves only httpx's API (images): the hot calls go over pisces.h1.
    The system's CAs (40+ ms) are loaded as the gateway is built when it will call an https endpoint."""
    code = """
import sys
from pisces.config import parse_config
from pisces.h1 import tls_context
from pisces.pipeline.gateway import Gateway
from pisces_gateway import app

def channel(url):
    return {"channels": [{"name": "c", "kind": "openai", "base_url": url, "models": ["m"]}]}

Gateway(parse_config(channel("http://127.0.0.1:1/v1")))
plain = tls_context.cache_info().currsize
Gateway(parse_config(channel("https://api.example/v1")))
print(plain, tls_context.cache_info().currsize, "aiohttp" in sys.modules)
"""
    env = _env(AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:1", AWS_DEFAULT_REGION="us-east-1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "1", "False"]
