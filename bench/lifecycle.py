"""What awaiting settlement before the last byte costs: the BEFORE code against the AFTER code, in one run.

Before commit 890ba54 a request's charge (one DynamoDB ``TransactWriteItems`` on the usage and keys
tables) was written by a background task after the response had been sent (``Billing.settle_later``);
since then it is awaited in the request, before the last byte (a non-streamed response is returned
after it, a stream yields its terminal ``data: [DONE]`` after it), as are the Idempotency-Key record
and the log line with its EMF metrics, because Lambda freezes the container when the response ends.

    .venv/bin/python bench/lifecycle.py --requests 200 --before /tmp/pisces-before

``--before`` is a checkout of the old code (``git worktree add /tmp/pisces-before 5e628a3``); without
it (or when the path does not exist) only this tree (AFTER) is measured. Every gateway runs in its own
process with ``PYTHONPATH`` putting its tree first (``/bench/info`` says which ``pisces`` it imported),
and writes to its own moto DynamoDB in yet another process, as ``bench/latency.py`` does. One fake
OpenAI upstream (tests/support/fake_openai.py, model ``gpt-fake``) serves all. In each round the client
sends, to the upstream directly and through each gateway, one non-streamed and one streamed chat
completion (``stream: true`` with usage), the order rotating from round to round so that machine noise
and position hit every path alike. It reports latency p50/p99 of the non-streamed request and, of the
stream, time to first body byte and total time (until the body has ended after ``[DONE]``).

After every request through a gateway the client asks it (unmeasured) to drain its background
settlements (``Billing.drain`` in the BEFORE code; nothing is pending in the AFTER code), so that the
old code's write after the response does not land on the next measured request of another path.

Separately, in a process of its own per tree (gateway and fake under uvicorn threads, moto in-process),
a botocore ``before-call.dynamodb`` hook on the gateway's client counts the DynamoDB calls made before
the fake upstream receives the request, for a first request (key not cached) and the ones after it.
Numbers from one run on a noisy machine: compare ratios, not milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from latency import _pct, _wait_tables  # the sibling benchmark's percentile and moto wait (bench/ is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
KEY = "pisces-bench-0123456789abcdefghijklmnop"
CHAT = "/v1/chat/completions"
BODY: dict[str, Any] = {"model": "gpt-fake", "messages": [{"role": "user", "content": "Say hello in five words."}]}
STREAM_BODY: dict[str, Any] = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
WARMUP_ROUNDS = 30


def tree_path(tree: Path) -> str:
    """PYTHONPATH for a checkout: its core layer, its functions and its test support, ahead of the venv's
    editable install of /work/main."""
    parts = ["layers/core", "functions/gateway", "functions/admin", "tests"]
    return os.pathsep.join(str(tree / p) for p in parts)


# ---------------------------------------------------------------------------------------- server processes


def serve_upstream(port: int) -> None:
    import uvicorn

    from support.fake_openai import FakeOpenAI

    uvicorn.run(FakeOpenAI().app, host="127.0.0.1", port=port, log_level="warning")


def serve_dynamo(port: int) -> None:
    """moto's DynamoDB in a process of its own (in the gateway's process it would take its GIL)."""
    from pisces.localaws import LocalDynamo

    LocalDynamo(port=port).start()
    threading.Event().wait()


def _config(upstream: str) -> Any:
    from pisces.config import parse_config

    channel = {"name": "fake", "kind": "openai", "base_url": f"{upstream}/v1", "api_key_env": "BENCH_UPSTREAM_KEY",
               "models": ["gpt-fake"]}  # fmt: skip
    return parse_config({"channels": [channel]})


def _bench_routes(app: Any) -> None:
    """``GET /bench/info``: which code this process runs; ``POST /bench/drain``: wait for settlements
    still running after their response (the BEFORE code's ``settle_later``)."""
    import pisces
    import pisces_gateway

    billing = app.state.gateway.billing
    info = {"pisces": pisces.__file__, "pisces_gateway": pisces_gateway.__file__,
            "settle_later": hasattr(billing, "settle_later")}  # fmt: skip

    @app.get("/bench/info")
    async def bench_info() -> dict[str, Any]:
        return info

    @app.post("/bench/drain")
    async def bench_drain() -> dict[str, bool]:
        drain = getattr(billing, "drain", None)
        if drain is not None:
            await drain()
        return {"drained": True}


def _gateway_app(upstream: str, label: str) -> Any:
    from pisces.localaws import FAKE_CREDENTIALS
    from pisces.store import dynamo
    from pisces.store.keys import KeyStore
    from pisces.store.schema import table_name
    from pisces_gateway.app import create_app
    from support.fake_openai import UPSTREAM_SECRET

    os.environ["BENCH_UPSTREAM_KEY"] = UPSTREAM_SECRET
    for k, v in FAKE_CREDENTIALS.items():
        os.environ.setdefault(k, v)
    store = KeyStore(dynamo.client(), table_name("keys"))  # AWS_ENDPOINT_URL_DYNAMODB: this gateway's moto
    store.create(name="bench", plaintext=f"{KEY}-{label}", balance=10**15, rpm=0, tpm=0)
    app = create_app(_config(upstream), store)
    _bench_routes(app)
    return app


def serve_gateway(port: int, upstream: str, label: str) -> None:
    """The gateway under uvicorn; its log lines and metrics go to stdout, which the bench discards
    (they are written, and before the last byte in the AFTER code, as in Lambda)."""
    import uvicorn

    uvicorn.run(_gateway_app(upstream, label), host="127.0.0.1", port=port, log_level="warning")


def count_calls(out: Path, n: int = 20) -> None:
    """DynamoDB calls per request, by operation: those made before the upstream received the request
    (read at that moment), and all of the request's (read after its response, and its drain)."""
    from pisces.localaws import LocalDynamo
    from support.fake_openai import FakeOpenAI
    from support.servers import ServerThread

    local = LocalDynamo().start()
    fake = FakeOpenAI()
    calls: list[str] = []
    at_upstream: list[list[str]] = []

    async def counting(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == CHAT:
            at_upstream.append(list(calls))
        await fake.app(scope, receive, send)

    upstream = ServerThread(counting).start()
    app = _gateway_app(upstream.url, "count")

    def hook(**kwargs: Any) -> None:
        calls.append(kwargs["model"].name)

    app.state.gateway.keys.client.meta.events.register("before-call.dynamodb", hook)
    gateway = ServerThread(app).start()
    headers = {"Authorization": f"Bearer {KEY}-count"}
    report: dict[str, Any] = {"info": httpx.get(f"{gateway.url}/bench/info").json()}

    def one(c: httpx.Client, body: dict[str, Any]) -> tuple[list[str], list[str]]:
        calls.clear()
        c.post(CHAT, json=body, headers=headers).raise_for_status()
        c.post("/bench/drain").raise_for_status()
        return at_upstream[-1], list(calls)

    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as c:
            before, every = one(c, BODY)  # the process's first request: its key is not cached yet
            report["cold_key_non_stream"] = {"before_upstream": before, "all": every}
            for name, body in (("non_stream", BODY), ("stream", STREAM_BODY)):
                rows = [one(c, body) for _ in range(n)]
                counts = sorted({len(b) for b, _ in rows})  # more than one: a rate window opened mid-run
                report[name] = {
                    "cached_key_requests": n,
                    "calls_before_upstream": counts[0] if len(counts) == 1 else counts,
                    "before_upstream": sorted({tuple(b) for b, _ in rows}),
                    "all": sorted({tuple(a) for _, a in rows}),
                }
    finally:
        gateway.stop()
        upstream.stop()
        local.stop()
    out.write_text(json.dumps(report))


# ---------------------------------------------------------------------------------------- the client


def post_ms(c: httpx.Client, url: str, headers: dict[str, str]) -> dict[str, float]:
    t = time.perf_counter()
    r = c.post(url, json=BODY, headers=headers)
    ms = (time.perf_counter() - t) * 1000
    r.raise_for_status()
    return {"latency": ms}


def stream_ms(c: httpx.Client, url: str, headers: dict[str, str]) -> dict[str, float]:
    """Time to the first body byte and to the end of the body (after ``[DONE]``)."""
    t = time.perf_counter()
    first: float | None = None
    data = bytearray()
    with c.stream("POST", url, json=STREAM_BODY, headers=headers) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            if first is None and chunk:
                first = time.perf_counter()
            data += chunk
    end = time.perf_counter()
    if first is None or not data.rstrip().endswith(b"data: [DONE]"):
        raise RuntimeError(f"{url}: the stream did not end with [DONE]: {bytes(data[-200:])!r}")
    return {"ttfb": (first - t) * 1000, "total": (end - t) * 1000}


Target = tuple[str, Callable[[httpx.Client], dict[str, float]], str | None]


def measure(n: int, trees: dict[str, Path]) -> dict[str, Any]:
    from pisces.localaws import free_port
    from support.fake_openai import UPSTREAM_SECRET
    from support.servers import wait_http

    me = [sys.executable, __file__]
    base = {**os.environ, "POWERTOOLS_LOG_LEVEL": "INFO"}
    head_env = {**base, "PYTHONPATH": tree_path(ROOT)}
    up_port = free_port()
    upstream = subprocess.Popen([*me, "--serve-upstream", str(up_port)], env=head_env)
    procs = [upstream]  # stopped in reverse: the gateways, the upstream, then the moto servers
    up = f"http://127.0.0.1:{up_port}"
    gateways: dict[str, str] = {}
    try:
        for label, tree in trees.items():
            db_port, gw_port = free_port(), free_port()
            env = {**base, "PYTHONPATH": tree_path(tree), "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{db_port}"}
            db = subprocess.Popen([*me, "--serve-dynamo", str(db_port)], env={**env, "PYTHONPATH": tree_path(ROOT)})
            procs.insert(0, db)
            wait_http(f"http://127.0.0.1:{db_port}", db, 60)
            _wait_tables(f"http://127.0.0.1:{db_port}")
            gw = subprocess.Popen([*me, "--serve-gateway", str(gw_port), up, label], env=env,
                                  stdout=subprocess.DEVNULL)  # fmt: skip
            procs.append(gw)
            gateways[label] = f"http://127.0.0.1:{gw_port}"
            wait_http(f"{gateways[label]}/healthz", gw, 60)
        wait_http(f"{up}{CHAT}", upstream, 60)
        info = {label: httpx.get(f"{url}/bench/info").json() for label, url in gateways.items()}
        for label, tree in trees.items():  # the process imported the tree it was meant to
            if not Path(info[label]["pisces"]).is_relative_to(tree):
                raise RuntimeError(f"the {label} gateway imported {info[label]['pisces']}, not {tree}'s pisces")

        direct = {"Authorization": f"Bearer {UPSTREAM_SECRET}"}
        targets: list[Target] = [
            ("direct", lambda c: post_ms(c, f"{up}{CHAT}", direct), None),
            ("direct_stream", lambda c: stream_ms(c, f"{up}{CHAT}", direct), None),
        ]
        for label, url in gateways.items():
            auth = {"Authorization": f"Bearer {KEY}-{label}"}
            targets += [
                (label, lambda c, u=url, h=auth: post_ms(c, f"{u}{CHAT}", h), url),
                (f"{label}_stream", lambda c, u=url, h=auth: stream_ms(c, f"{u}{CHAT}", h), url),
            ]
        samples: dict[str, dict[str, list[float]]] = {name: {} for name, _, _ in targets}
        with httpx.Client(timeout=60) as c:
            for i in range(WARMUP_ROUNDS + n):
                k = i % len(targets)
                for name, run, gw_url in targets[k:] + targets[:k]:
                    got = run(c)
                    if gw_url is not None:
                        c.post(f"{gw_url}/bench/drain").raise_for_status()
                    if i >= WARMUP_ROUNDS:
                        for metric, ms in got.items():
                            samples[name].setdefault(metric, []).append(ms)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=15)
    return {"requests_each": n, "code": info, **summarize(samples, list(gateways))}


def summarize(samples: dict[str, dict[str, list[float]]], labels: list[str]) -> dict[str, Any]:
    table: dict[str, dict[str, float]] = {}
    for name, metrics in samples.items():
        for metric, xs in metrics.items():
            table.setdefault(name, {})[f"{metric}_p50_ms"] = round(statistics.median(xs), 3)
            table[name][f"{metric}_p99_ms"] = round(_pct(xs, 99), 3)
    vs_direct: dict[str, dict[str, float]] = {}
    for label in labels:
        for name, ref in ((label, "direct"), (f"{label}_stream", "direct_stream")):
            for col, ms in table[name].items():
                base = table[ref][col]
                vs_direct.setdefault(name, {})[col.replace("_ms", "_added_ms")] = round(ms - base, 3)
                vs_direct[name][col.replace("_ms", "_ratio")] = round(ms / base, 2)
    out: dict[str, Any] = {"paths": table, "vs_direct": vs_direct}
    if {"before", "after"} <= set(labels):
        after_vs_before: dict[str, dict[str, float]] = {}
        for name in ("", "_stream"):
            for col, ms in table[f"after{name}"].items():
                old = table[f"before{name}"][col]
                row = after_vs_before.setdefault(f"after{name}", {})
                row[col.replace("_ms", "_added_ms")] = round(ms - old, 3)
                row[col.replace("_ms", "_ratio")] = round(ms / old, 2)
        out["after_vs_before"] = after_vs_before
    return out


def dynamodb_calls(trees: dict[str, Path]) -> dict[str, Any]:
    """``count_calls`` in a process per tree, with that tree first on its PYTHONPATH."""
    import tempfile

    out: dict[str, Any] = {}
    for label, tree in trees.items():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "calls.json"
            env = {**os.environ, "PYTHONPATH": tree_path(tree)}
            subprocess.run([sys.executable, __file__, "--count-calls", str(path)], env=env, check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            out[label] = json.loads(path.read_text())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200, help=f"measured rounds (after {WARMUP_ROUNDS} warm-up)")
    ap.add_argument("--before", type=Path, help="a checkout of the BEFORE code (git worktree of 5e628a3)")
    ap.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--serve-dynamo", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--serve-gateway", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--count-calls", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_upstream:
        return serve_upstream(args.serve_upstream)
    if args.serve_dynamo:
        return serve_dynamo(args.serve_dynamo)
    if args.serve_gateway:
        return serve_gateway(int(args.serve_gateway[0]), args.serve_gateway[1], args.serve_gateway[2])
    if args.count_calls:
        return count_calls(args.count_calls)
    sys.path.insert(0, str(ROOT / "tests"))  # the client: this tree's test support (wait_http, the secret)
    trees = {"after": ROOT}
    if args.before is not None:
        if (args.before / "layers" / "core" / "pisces").is_dir():
            trees = {"before": args.before.resolve(), **trees}
        else:
            print(f"no BEFORE tree at {args.before}: measuring this tree only", file=sys.stderr)
    report = {"latency": measure(args.requests, trees), "dynamodb_calls": dynamodb_calls(trees)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
