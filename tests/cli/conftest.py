"""The gateway the real CLIs talk to: the session's store and fakes, a body limit a CLI's requests fit in
(Claude Code sends its whole tool catalogue, ~100 KB), and a recorder of what every request carried."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from support.config import gateway_config
from support.servers import ServerThread

CLI_BODY_LIMIT = 6 * 1024 * 1024  # the Lambda payload limit, as pisces.yaml says
_SECRET_HEADERS = {"authorization", "x-api-key", "x-goog-api-key", "cookie"}


@dataclass
class Seen:
    """One request as the gateway received it (credential headers by name only) and its status."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class Recorder:
    """An ASGI wrapper that keeps every request's method, path, query, headers and JSON body."""

    app: Any
    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): ("<set>" if k.decode("latin-1") in _SECRET_HEADERS else v.decode("latin-1"))
                   for k, v in scope["headers"]}  # fmt: skip
        seen = Seen(scope["method"], scope["path"], scope["query_string"].decode(), headers, None)
        self.seen.append(seen)
        chunks: list[bytes] = []

        async def recv() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    raw = b"".join(chunks)
                    try:
                        seen.body = json.loads(raw) if raw else None
                    except ValueError:
                        seen.body = raw.decode("latin-1")
            return message

        async def snd(message: Any) -> None:
            if message["type"] == "http.response.start":
                seen.status = message["status"]
            await send(message)

        await self.app(scope, recv, snd)

    def posts(self, path_prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path.startswith(path_prefix)]


@dataclass
class CliGateway:
    url: str
    recorder: Recorder
    app: Any
    store: Any

    def new_key(self, **money: int) -> str:
        from support.config import TEST_BALANCE

        return self.store.create(name="cli", **{"balance": TEST_BALANCE, **money})[0]


@pytest.fixture(scope="module")
def cli_gateway(gateway: Any) -> Iterator[CliGateway]:
    """A second app on the session's store and fakes (``gateway``), with room for a CLI's bodies."""
    from pisces_gateway.app import create_app

    config = gateway_config(gateway.upstream.url, gateway.anthropic.url, gateway.gemini.url,
                            max_body_bytes=CLI_BODY_LIMIT)  # fmt: skip
    app = create_app(config, gateway.store)
    recorder = Recorder(app)
    server = ServerThread(recorder).start()
    yield CliGateway(server.url, recorder, app, gateway.store)
    server.stop()
