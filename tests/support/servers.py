"""Run ASGI apps under real uvicorn on loopback, in a thread, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from pisces.localaws import free_port


class FakeUpstream:
    """What every fake upstream shares: one POST route, the requests it got (``requests``, ``last``),
    and a gate that its ``gated`` model waits on until ``POST /release``."""

    def __init__(self, path: str, handler: Any) -> None:
        from fastapi import FastAPI

        self.url = ""  # set by ``serving``
        self.requests: list[dict[str, Any]] = []
        self.hangups = 0
        self.gate = asyncio.Event()
        self.held = 0  # complete answers that waited at the gate (fake_openai's "gated" without a stream)
        self.app = FastAPI()
        self.app.post(path)(handler)
        self.app.post("/release")(self.release)

    async def release(self) -> dict[str, bool]:
        self.gate.set()
        return {"released": True}

    def last(self) -> dict[str, Any]:
        return self.requests[-1]


GATEWAY_HTTP = "pisces_gateway.server:HttpToolsProtocol"  # run.sh's protocol: what serves the gateway in Lambda


class ServerThread:
    def __init__(self, app: Any, port: int | None = None, http: str = "auto") -> None:
        self.port = port or free_port()
        cfg = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", http=http)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user turn, in OpenAI's or Anthropic's message shape (what fakes echo)."""
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            return "".join(b.get("text", "") for b in c or [] if isinstance(b, dict) and b.get("type") == "text")
    return ""


async def replay(data: bytes) -> AsyncIterator[bytes]:
    """A recording sent in odd slices, so that events split across reads, as on a real network."""
    for i in range(0, len(data), 97):
        yield data[i : i + 97]
        await asyncio.sleep(0)


F = TypeVar("F", bound=FakeUpstream)


@contextmanager
def serving(fake: F) -> Iterator[F]:
    """``fake`` under uvicorn on loopback for the duration; its ``url`` says where."""
    server = ServerThread(fake.app).start()
    fake.url = server.url
    try:
        yield fake
    finally:
        server.stop()


def wait_http(url: str, proc: subprocess.Popen | None = None, seconds: float = 30) -> None:
    """Wait until ``url`` answers at all (any status); fail early if ``proc`` has exited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {seconds} s")


def shared_dir() -> Path:
    """The shared/ folder beside the repo (PISCES_SHARED_DIR overrides)."""
    if os.environ.get("PISCES_SHARED_DIR"):
        return Path(os.environ["PISCES_SHARED_DIR"])
    return Path(__file__).resolve().parents[3] / "shared"


def recorded(name: str) -> bytes:
    return (shared_dir() / "fixtures" / "recorded" / name).read_bytes()


class Watching(httpx.HTTPTransport):
    """An httpx transport that calls ``on_seen`` once, the first time a received chunk satisfies
    ``seen``: a test can act on what the gateway sent (a keep-alive) while an SDK reads the stream."""

    def __init__(self, seen: Any, on_seen: Any) -> None:
        super().__init__()
        self.seen, self.on_seen, self.fired = seen, on_seen, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = super().handle_request(request)
        inner = resp.stream
        watcher = self

        class Stream(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                for chunk in inner:  # type: ignore[union-attr]
                    if not watcher.fired and watcher.seen(chunk):
                        watcher.fired = True
                        watcher.on_seen()
                    yield chunk

            def close(self) -> None:
                inner.close()  # type: ignore[union-attr]

        resp.stream = Stream()
        return resp
