"""Latency the gateway adds to a non-streamed chat completion, and the gateway's cold import time.

    make bench                      # or: .venv/bin/python bench/latency.py --requests 500

Three processes on loopback: the fake OpenAI-compatible upstream (tests/support/fake_openai.py),
the gateway under uvicorn (moto DynamoDB embedded, a channel pointing at the fake), and this
client. The client sends the same request N times straight to the upstream and N times through
the gateway, interleaved in rounds so machine noise hits both alike, and reports p50/p99 of each
and their difference. Numbers from one run on a noisy machine: compare ratios, not milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

KEY = "pisces-bench-0123456789abcdefghijklmnop"
BODY = {"model": "gpt-fake", "messages": [{"role": "user", "content": "Say hello in five words."}]}


def serve_upstream(port: int) -> None:
    import uvicorn

    from support.fake_openai import FakeOpenAI

    uvicorn.run(FakeOpenAI().app, host="127.0.0.1", port=port, log_level="warning")


def serve_gateway(port: int, upstream: str) -> None:
    import logging

    import uvicorn

    from pisces.config import parse_config
    from pisces.localaws import LocalDynamo
    from pisces.store import dynamo
    from pisces.store.keys import KeyStore
    from pisces.store.schema import table_name
    from pisces_gateway.app import create_app
    from support.fake_openai import UPSTREAM_SECRET

    logging.getLogger("pisces").setLevel(logging.WARNING)  # measure the gateway, not the terminal
    os.environ["BENCH_UPSTREAM_KEY"] = UPSTREAM_SECRET
    LocalDynamo().start()
    store = KeyStore(dynamo.client(), table_name("keys"))
    store.create(name="bench", plaintext=KEY, balance=10**15, rpm=0, tpm=0)
    cfg = parse_config(
        {
            "channels": [
                {
                    "name": "fake",
                    "kind": "openai",
                    "base_url": f"{upstream}/v1",
                    "api_key_env": "BENCH_UPSTREAM_KEY",
                    "models": ["gpt-fake"],
                }
            ]
        }
    )
    uvicorn.run(create_app(cfg, store), host="127.0.0.1", port=port, log_level="warning")


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def measure(n: int) -> dict[str, float]:
    from pisces.localaws import free_port
    from support.servers import wait_http

    up_port, gw_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    me = [sys.executable, __file__]
    procs = [
        subprocess.Popen([*me, "--serve-upstream", str(up_port)], env=env),
        subprocess.Popen([*me, "--serve-gateway", str(gw_port), f"http://127.0.0.1:{up_port}"], env=env),
    ]
    try:
        up, gw = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{gw_port}"
        wait_http(f"{up}/v1/chat/completions", procs[0], 60)
        wait_http(f"{gw}/healthz", procs[1], 60)
        from support.fake_openai import UPSTREAM_SECRET

        direct, through = [], []
        with httpx.Client(timeout=30) as c:
            targets = [
                (f"{up}/v1/chat/completions", {"Authorization": f"Bearer {UPSTREAM_SECRET}"}, direct),
                (f"{gw}/v1/chat/completions", {"Authorization": f"Bearer {KEY}"}, through),
            ]
            for _ in range(30):  # warm-up: connections, caches
                for url, headers, _out in targets:
                    c.post(url, json=BODY, headers=headers).raise_for_status()
            for _ in range(n):
                for url, headers, out in targets:
                    t = time.perf_counter()
                    r = c.post(url, json=BODY, headers=headers)
                    out.append((time.perf_counter() - t) * 1000)
                    r.raise_for_status()
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
    res = {}
    for name, xs in (("direct", direct), ("gateway", through)):
        res[f"{name}_p50_ms"] = round(statistics.median(xs), 3)
        res[f"{name}_p99_ms"] = round(_pct(xs, 99), 3)
    res["added_p50_ms"] = round(res["gateway_p50_ms"] - res["direct_p50_ms"], 3)
    res["added_p99_ms"] = round(res["gateway_p99_ms"] - res["direct_p99_ms"], 3)
    res["ratio_p50"] = round(res["gateway_p50_ms"] / res["direct_p50_ms"], 2)
    res["ratio_p99"] = round(res["gateway_p99_ms"] / res["direct_p99_ms"], 2)
    res["requests_each"] = n
    return res


def import_time(runs: int = 5) -> dict[str, float]:
    """Cold import of the gateway app (median wall time of fresh interpreters), against a bare interpreter."""

    def wall(code: str) -> float:
        xs = []
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            xs.append((time.perf_counter() - t) * 1000)
        return statistics.median(xs)

    bare = wall("pass")
    app = wall("import pisces_gateway.app")
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pisces_gateway.app"], capture_output=True, text=True
    ).stderr
    rows = []
    for line in out.splitlines()[1:]:
        parts = line.split("|")
        if len(parts) == 3 and parts[2].startswith(" ") and not parts[2].startswith("  "):
            rows.append((int(parts[1]), parts[2].strip()))
    top = {name: round(us / 1000, 1) for us, name in sorted(rows, reverse=True)[:6]}
    return {"bare_python_ms": round(bare, 1), "import_app_ms": round(app, 1), "top_level_cumulative_ms": top}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--serve-upstream", type=int)
    ap.add_argument("--serve-gateway", nargs=2)
    args = ap.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return
    if args.serve_gateway:
        serve_gateway(int(args.serve_gateway[0]), args.serve_gateway[1])
        return
    print(json.dumps({"latency": measure(args.requests), "cold_import": import_time()}, indent=2))


if __name__ == "__main__":
    main()
