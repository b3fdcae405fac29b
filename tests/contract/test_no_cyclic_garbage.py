"""A request leaves no reference cycle behind in the gateway: over real HTTP, through run.sh's protocol and the
whole pipeline (money on), each door's answers, streams and errors (the gateway's own, an upstream's, a balance
run out, a replay) are freed by reference counting once they are sent. A cycle is freed only by the collector,
which then walks all it holds: 19 objects a request made a 4-7 ms pause every ~500 requests, in some request's
latency (bench/RESULTS.md, performance part 12). An error kept in a local of a frame its traceback holds is such
a cycle, with every frame and object of the request's road. A client that hangs up mid-stream is covered too: its
stream's task, cancelled, made two such cycles with the whole stream in them (~250 objects a hang-up, part 13).
asyncio's own socket transport and its bound read callback, a cycle made once per closed connection, are not
the gateway's."""

from __future__ import annotations

import gc
import json
import time
import uuid
from collections import Counter
from types import CodeType
from typing import Any

import httpx
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from pisces.store import dynamo
from pisces.store.schema import table_name
from pisces.store.usage import UsageStore
from pisces_gateway.server import Corked

CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "Say hello."}]}
MESSAGES = {"model": "claude-fake", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}
CONTENTS = {"contents": [{"role": "user", "parts": [{"text": "Say hello."}]}]}
CASES: list[tuple[str, Any, dict[str, str]]] = [
    ("/v1/chat/completions", CHAT, {}),
    ("/v1/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}}, {}),
    ("/v1/messages", MESSAGES, {}),
    ("/v1/messages", {**MESSAGES, "stream": True}, {}),
    ("/v1beta/models/gemini-fake:generateContent", CONTENTS, {}),
    ("/v1beta/models/gemini-fake:streamGenerateContent?alt=sse", CONTENTS, {}),
    ("/v1/chat/completions", CHAT, {"authorization": "Bearer pisces-not-a-key"}),  # 401
    ("/v1/chat/completions", {"model": 5}, {}),  # 400
    ("/v1/chat/completions", {**CHAT, "model": "no-such-model"}, {}),  # 404
    ("/v1/chat/completions", {**CHAT, "model": "fail-500"}, {}),  # the upstream's 500, retried, then a 502
    ("/v1/chat/completions", {**CHAT, "model": "fail-429"}, {}),  # the upstream's rate limit, as a 429
    ("/v1/chat/completions", {**CHAT, "model": "fail-400", "stream": True}, {}),  # the upstream refuses a stream
    ("/v1/chat/completions", {**CHAT, "model": "cut", "stream": True}, {}),  # the upstream drops the stream
]
GATEWAY_MODULES = ("pisces", "pisces_gateway")


def _code(o: Any) -> CodeType | None:
    return getattr(o, "f_code", None) or getattr(o, "cr_code", None) or getattr(o, "ag_code", None) or (
        getattr(o, "__code__", None))  # fmt: skip


def gateways(garbage: list[Any]) -> Counter[str]:
    """What of ``garbage`` is the gateway's: its objects, the frames, coroutines and functions of its code, and
    the request cycles of its server (run.sh's protocol, whose transport is corked). The fake upstreams, moto,
    botocore and the test's own client, which share this process, make cycles of their own."""
    found: Counter[str] = Counter()
    for o in garbage:
        code = _code(o)
        if isinstance(code, CodeType):
            if "/pisces" in code.co_filename:
                found[f"{type(o).__name__} {code.co_qualname}"] += 1
        elif isinstance(o, RequestResponseCycle):
            if isinstance(o.transport, Corked):
                found["RequestResponseCycle"] += 1
        elif type(o).__module__.split(".")[0] in GATEWAY_MODULES:
            found[type(o).__qualname__] += 1
    return found


def test_no_request_leaves_a_reference_cycle(gateway, local_dynamo):
    usage = UsageStore(dynamo.client(), table_name("usage"))
    with httpx.Client(base_url=gateway.url, timeout=30) as client:

        def call(path: str, body: Any, headers: dict[str, str]) -> int:
            sent = {"authorization": f"Bearer {gateway.key}", "content-type": "application/json", **headers}
            return client.post(path, content=json.dumps(body), headers=sent).status_code

        def hang_up() -> str | None:
            """A stream left after its first chunk (the "gated" upstream holds the rest), on a connection of its
            own: its usage record's outcome, once the gateway has settled it (the other cases follow it)."""
            body = {**CHAT, "model": "gated", "stream": True}
            with httpx.stream("POST", f"{gateway.v1}/chat/completions", json=body, timeout=30,
                              headers={"authorization": f"Bearer {gateway.key}"}) as r:  # fmt: skip
                seen = b""
                for chunk in r.iter_raw():
                    seen += chunk
                    if b'"first"' in seen:
                        break
            deadline = time.monotonic() + 30
            while (record := usage.get(r.headers["x-request-id"])) is None and time.monotonic() < deadline:
                time.sleep(0.02)
            return record.outcome if record is not None else None

        cases = [
            *CASES,
            ("/v1/chat/completions", CHAT, {"authorization": f"Bearer {gateway.new_key(balance=0)}"}),  # 402
            ("/v1/chat/completions", CHAT, {"idempotency-key": f"cycles-{uuid.uuid4()}"}),
        ]  # then replayed
        # warm: what a first request makes once (caches) is not garbage
        statuses = [hang_up(), *(call(*case) for case in cases)]
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)  # the collector keeps what it finds unreachable, in gc.garbage
        try:
            for _ in range(3):
                assert [hang_up(), *(call(*case) for case in cases)] == statuses
            gc.collect()
            found = gateways(gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert statuses == ["client_cut", 200, 200, 200, 200, 200, 200, 401, 400, 404, 502, 429, 400, 200, 402, 200]
    assert found == Counter()
