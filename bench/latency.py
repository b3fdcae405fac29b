"""Latency the gateway adds to a non-streamed chat completion, and the gateway's cold import time.

Two gateways are measured in the same run: the full pipeline (auth, rate window + balance hold in
one DynamoDB write, settlement awaited before the response is returned) and the same app with the
money steps replaced by no-ops (what the walking skeleton did), so the cost of the money path is
read in one run.

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
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

KEY = "pisces-bench-0123456789abcdefghijklmnop"
BODY = {"model": "gpt-fake", "messages": [{"role": "user", "content": "Say hello in five words."}]}
# the same request at the Gemini door (to the same OpenAI-compatible upstream): the cost of translating
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "Say hello in five words."}]}]}


def serve_upstream(port: int) -> None:
    import uvicorn

    from support.fake_openai import FakeOpenAI

    uvicorn.run(FakeOpenAI().app, host="127.0.0.1", port=port, log_level="warning")


def _no_money(app: object) -> None:
    """Admission and settlement as no-ops: the pipeline as it was before billing existed."""
    from pisces.pipeline.billing import Bill
    from pisces.store.ledger import Admitted, RateLimits

    billing = app.state.gateway.billing  # type: ignore[attr-defined]

    async def admit(ctx: object, req: object, key: object) -> Bill:
        return Bill(key, 0, Admitted(0, "", 0, 0, 0, RateLimits(0, 0)))  # type: ignore[arg-type]

    async def settle(ctx: object, req: object, bill: object, status: int) -> None:
        return None

    billing.admit = admit
    billing.settle = settle


def serve_dynamo(port: int) -> None:
    """moto's DynamoDB in a process of its own, as DynamoDB is not in the gateway's process in AWS
    (in the same process its Python work would take the gateway's GIL)."""
    from pisces.localaws import LocalDynamo

    LocalDynamo(port=port).start()
    threading.Event().wait()


def serve_gateway(port: int, upstream: str, mode: str = "full") -> None:
    import uvicorn

    uvicorn.run(gateway_app(upstream, mode), host="127.0.0.1", port=port, log_level="warning")


def gateway_app(upstream: str, mode: str = "full") -> object:
    """The gateway app on a channel to ``upstream`` and a key in the DynamoDB of the environment;
    ``mode`` "skeleton": the money steps as no-ops."""
    import logging

    from pisces.config import parse_config
    from pisces.localaws import FAKE_CREDENTIALS
    from pisces.store import dynamo
    from pisces.store.keys import KeyStore
    from pisces.store.schema import table_name
    from pisces_gateway.app import create_app
    from support.fake_openai import UPSTREAM_SECRET

    if os.environ.get("BENCH_LOGS") != "1":  # bench/peers.py and bench/streams.py keep the line Lambda pays for
        logging.getLogger("pisces").setLevel(logging.WARNING)  # measure the gateway, not the terminal
    os.environ["BENCH_UPSTREAM_KEY"] = UPSTREAM_SECRET
    for k, v in FAKE_CREDENTIALS.items():
        os.environ.setdefault(k, v)
    store = KeyStore(dynamo.client(), table_name("keys"))  # moto in its own process: AWS_ENDPOINT_URL_DYNAMODB
    plaintext = os.environ.get("BENCH_KEY") or f"{KEY}-{mode}"  # one key per gateway process
    store.create(name="bench", plaintext=plaintext, balance=10**15, rpm=0, tpm=0)
    cfg = parse_config(
        {
            "channels": [
                {
                    "name": "fake",
                    "kind": "openai",
                    "base_url": f"{upstream}/v1",
                    "api_key_env": "BENCH_UPSTREAM_KEY",
                    "models": ["gpt-fake", "gpt-fake-long"],
                }
            ]
        }
    )
    app = create_app(cfg, store)
    if mode == "skeleton":
        _no_money(app)
    return app


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def _wait_tables(endpoint: str) -> None:
    """The moto process creates the tables right after its server answers: wait for them."""
    import boto3

    from pisces.localaws import FAKE_CREDENTIALS
    from pisces.store.schema import TABLES, table_name

    creds = {"aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
             "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}  # fmt: skip
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1", **creds)
    deadline = time.monotonic() + 30
    while set(client.list_tables()["TableNames"]) < {table_name(t) for t in TABLES}:
        if time.monotonic() > deadline:
            raise RuntimeError("moto did not create the tables")
        time.sleep(0.05)


def measure(n: int) -> dict[str, float]:
    from pisces.localaws import free_port
    from support.servers import wait_http

    up_port, gw_port, sk_port, db_port = (free_port() for _ in range(4))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "POWERTOOLS_LOG_LEVEL": "WARNING",
           "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{db_port}"}  # fmt: skip
    me = [sys.executable, __file__]
    quiet = subprocess.DEVNULL  # a gateway's EMF metrics line (stdout, before the last byte): written, not shown
    upstream = f"http://127.0.0.1:{up_port}"
    db = subprocess.Popen([*me, "--serve-dynamo", str(db_port)], env=env)
    wait_http(f"http://127.0.0.1:{db_port}", db, 60)
    _wait_tables(f"http://127.0.0.1:{db_port}")
    procs = [
        db,
        subprocess.Popen([*me, "--serve-upstream", str(up_port)], env=env),
        subprocess.Popen([*me, "--serve-gateway", str(gw_port), upstream, "full"], env=env, stdout=quiet),
        subprocess.Popen([*me, "--serve-gateway", str(sk_port), upstream, "skeleton"], env=env, stdout=quiet),
    ]
    try:
        up, gw, sk = (f"http://127.0.0.1:{p}" for p in (up_port, gw_port, sk_port))
        wait_http(f"{up}/v1/chat/completions", procs[1], 60)
        wait_http(f"{gw}/healthz", procs[2], 60)
        wait_http(f"{sk}/healthz", procs[3], 60)
        from support.fake_openai import UPSTREAM_SECRET

        direct, through, skeleton, gemini = [], [], [], []
        with httpx.Client(timeout=30) as c:
            targets = [
                (f"{up}/v1/chat/completions", {"Authorization": f"Bearer {UPSTREAM_SECRET}"}, BODY, direct),
                (f"{sk}/v1/chat/completions", {"Authorization": f"Bearer {KEY}-skeleton"}, BODY, skeleton),
                (
                    f"{sk}/v1beta/models/gpt-fake:generateContent",
                    {"x-goog-api-key": f"{KEY}-skeleton"},
                    GEMINI_BODY,
                    gemini,
                ),
                # last in a round, as when settlement ran after the response (now it is done before it)
                (f"{gw}/v1/chat/completions", {"Authorization": f"Bearer {KEY}-full"}, BODY, through),
            ]
            for _ in range(30):  # warm-up: connections, caches
                for url, headers, body, _out in targets:
                    c.post(url, json=body, headers=headers).raise_for_status()
            for _ in range(n):
                for url, headers, body, out in targets:
                    t = time.perf_counter()
                    r = c.post(url, json=body, headers=headers)
                    out.append((time.perf_counter() - t) * 1000)
                    r.raise_for_status()
    finally:
        for p in reversed(procs):  # moto, which the gateways write to, is stopped last
            p.terminate()
            p.wait(timeout=10)
    res = {}
    for name, xs in (("direct", direct), ("gateway", through), ("skeleton", skeleton), ("skeleton_gemini", gemini)):
        res[f"{name}_p50_ms"] = round(statistics.median(xs), 3)
        res[f"{name}_p99_ms"] = round(_pct(xs, 99), 3)
    for name in ("gateway", "skeleton", "skeleton_gemini"):
        for p in ("p50", "p99"):
            res[f"{name}_added_{p}_ms"] = round(res[f"{name}_{p}_ms"] - res[f"direct_{p}_ms"], 3)
            res[f"{name}_ratio_{p}"] = round(res[f"{name}_{p}_ms"] / res[f"direct_{p}_ms"], 2)
    for p in ("p50", "p99"):
        res[f"money_added_{p}_ms"] = round(res[f"gateway_{p}_ms"] - res[f"skeleton_{p}_ms"], 3)
    for p in ("p50", "p99"):  # the Gemini door against the OpenAI door, same pipeline, same upstream
        res[f"gemini_door_added_{p}_ms"] = round(res[f"skeleton_gemini_{p}_ms"] - res[f"skeleton_{p}_ms"], 3)
    res["requests_each"] = n
    return res


def dynamo_calls(n: int = 200) -> dict[str, list[float]]:
    """The money path's two DynamoDB calls alone against the same local moto server: [p50, p99] ms.
    Both are in the request: admission before the upstream call, settlement before the last byte.
    Each settlement removes the hold its admission recorded on the key item, as the gateway's does."""
    from pisces.localaws import LocalDynamo
    from pisces.store import dynamo
    from pisces.store.keys import KeyStore, hash_key
    from pisces.store.ledger import Admitted, Ledger, RateLimits
    from pisces.store.schema import table_name
    from pisces.store.usage import UsageRecord

    local = LocalDynamo().start()
    dynamo.client.cache_clear()
    try:
        client = dynamo.client()
        key_hash = hash_key(KeyStore(client, table_name("keys")).create(name="bench", balance=10**15)[0])
        ledger = Ledger(client, table_name("keys"), table_name("usage"))
        admitted: list[Admitted] = []

        def admit(i: int) -> None:
            adm = ledger.admit(key_hash, 10, RateLimits(0, 0), request_id=f"bench_{i}")
            assert isinstance(adm, Admitted), adm
            admitted.append(adm)

        def settle(i: int) -> None:
            adm = admitted[i]
            rec = UsageRecord(request_id=f"bench_{i}", key_id="k", protocol="openai", client_model="m",
                              model="m", created_at="2026-11-23T00:00:00Z", settled_at="2026-11-23T00:00:00Z",
                              expires_at=0, cost=1, hold=10)  # fmt: skip
            ledger.settle(key_hash, 10, adm.month, rec.item(), adm.hold.tag if adm.hold else None)

        out = {}
        for name, call in (("admit_update_item", admit), ("settle_transaction", settle)):
            xs = []
            for i in range(n):
                t = time.perf_counter()
                call(i)
                xs.append((time.perf_counter() - t) * 1000)
            out[name] = [round(statistics.median(xs), 2), round(_pct(xs, 99), 2)]
        return out
    finally:
        local.stop()


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
    ap.add_argument("--serve-gateway", nargs=3)
    ap.add_argument("--serve-dynamo", type=int)
    args = ap.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return
    if args.serve_dynamo:
        serve_dynamo(args.serve_dynamo)
        return
    if args.serve_gateway:
        serve_gateway(int(args.serve_gateway[0]), args.serve_gateway[1], args.serve_gateway[2])
        return
    report = {"latency": measure(args.requests), "moto_dynamodb_ms": dynamo_calls(), "cold_import": import_time()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
