"""Pisces side by side with its peers: LiteLLM proxy and Portkey's gateway, one run, one fast upstream.

    make bench-peers                 # or: .venv/bin/python bench/peers.py --requests 300

Installs, each in its own place under bench/out/ (ignored by git): LiteLLM proxy (``litellm[proxy]``
from PyPI, in its own virtualenv, no database) and Portkey's gateway (``@portkey-ai/gateway`` from
npm, with ``@hono/node-server`` pinned to 1.13.8 by an npm override: newer ones break its streams).
A peer that cannot be installed is reported and left out; the others are still measured.

Processes on loopback: the fast fake upstream (bench/wire.py: raw asyncio, the same answer at
once), moto's DynamoDB, and one server per path: Pisces with money off (admission and settlement
no-ops), Pisces with the full pipeline on moto, the same full pipeline on bench/wire.py's replaying
front to moto (``pisces-full-replay``: DynamoDB's service time taken out, the gateway's own CPU
left), LiteLLM proxy, Portkey's gateway. Each path is
started alone and timed from process start to its first 200 (``ready_ms``). Then, in interleaved
rounds (the order rotates every round, so machine noise falls on all alike): one non-streamed
chat completion per path and straight to the upstream (added latency p50/p99 and, from each
server's process tree in /proc, CPU per request), then streaks of 50 back-to-back requests per
path (the added latency of a busy server: ``back_to_back`` says why both are shown), then bursts
of 16 concurrent keep-alive connections per path (req/s at c=16, CPU per request under load).
Ratios are to Portkey's.

``--python /usr/bin/python3.11`` adds the money-off gateway on that interpreter (``pisces-off-python``, in a
virtualenv of it under bench/out/ when it lacks the project's packages): how the interpreter was built moves
the gateway's cost (bench/RESULTS.md, performance part 13).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from latency import KEY, _pct, _wait_tables, gateway_app, serve_dynamo  # noqa: E402
from servers import (  # noqa: E402
    BODY,
    PORTKEY_VERSION,
    cpu_seconds,
    install_litellm,
    install_portkey,
    python_with_pisces,
    start,
    tree_env,
)
from wire import Conn, request_bytes, serve_fast_upstream, serve_replaying_dynamo, serve_tcp_relay  # noqa: E402

UPSTREAM_KEY = "sk-fake-upstream-secret-0123456789"
LITELLM_MASTER_KEY = "sk-bench-litellm-master-0123456789abcdef"  # it refuses to start without one (no DB: a compare)
PATHS = ("relay", "pisces-off", "pisces-full", "pisces-full-replay", "litellm", "portkey")


def run_sh_uvicorn() -> dict[str, Any]:
    """uvicorn's options as functions/gateway/run.sh gives them (the benches serve as Lambda does)."""
    # --before serves with its own tree's run.sh options
    text = Path(os.environ.get("BENCH_RUN_SH") or ROOT / "functions" / "gateway" / "run.sh").read_text()
    opts: dict[str, Any] = {"access_log": "--no-access-log" not in text,
                            "proxy_headers": "--no-proxy-headers" not in text}  # fmt: skip
    for flag, key in (("--http", "http"), ("--loop", "loop")):
        m = re.search(rf"{flag}[ =]([\w.:]+)", text)
        if m:
            opts[key] = m.group(1)
    m = re.search(r"--h11-max-incomplete-event-size[ =](\d+)", text)
    if m and opts.get("http", "h11") == "h11":
        opts["h11_max_incomplete_event_size"] = int(m.group(1))
    return opts | json.loads(os.environ.get("BENCH_UVICORN") or "{}")  # a variant's own options


def serve_gateway(port: int, upstream: str, mode: str) -> None:
    import uvicorn

    app = gateway_app(upstream, mode)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", **run_sh_uvicorn())


class Path_:
    """One path under test: its server process (None: straight to the upstream) and its request."""

    def __init__(self, name: str, port: int, headers: dict[str, str], proc: subprocess.Popen | None) -> None:
        self.name, self.port, self.proc = name, port, proc
        self.req = request_bytes(port, "/v1/chat/completions", {"authorization": "Bearer x", **headers}, BODY)
        self.lat: list[float] = []
        self.lat_hot: list[float] = []  # back-to-back requests (see back_to_back)
        self.cpu_seq = self.cpu_load = 0.0
        self.load_n = 0
        self.rates: list[float] = []
        self.errors: list[str] = []
        self.ready_ms: float | None = None

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc else 0.0


# --- the measurements ----------------------------------------------------------------------------


async def sequential(paths: list[Path_], rounds: int, warm: int) -> None:
    conns = {p.name: Conn(p.port) for p in paths}
    for i in range(warm + rounds):
        if i == warm:
            for p in paths:
                p.cpu_seq = -p.cpu()
        order = paths[i % len(paths) :] + paths[: i % len(paths)]
        for p in order:
            t = time.perf_counter()
            status, body, _ = await conns[p.name].call(p.req)
            if status != 200:
                raise RuntimeError(f"{p.name}: {status} {body[:300]!r}")
            if i >= warm:
                p.lat.append((time.perf_counter() - t) * 1000)
    for p in paths:
        p.cpu_seq += p.cpu()
        conns[p.name].close()


async def back_to_back(paths: list[Path_], rounds: int, streak: int) -> None:
    """Each path in turn gets ``streak`` requests one after another on one connection (the first five
    of a streak not counted): the added latency of a server that is busy, next to the interleaved
    rounds' one of a server that was idle between requests. On this VM a process's CPU per request
    grows with the idle gap before it (caches and the host's scheduling, not the server's code: the
    raw-asyncio fake upstream costs about 4x the CPU with 20 ms between requests as back to back),
    so the interleaved rounds count that cost on every path, and this view shows the code's own."""
    conns = {p.name: Conn(p.port) for p in paths}
    for i in range(rounds):
        for p in paths[i % len(paths) :] + paths[: i % len(paths)]:
            for j in range(streak + 5):
                t = time.perf_counter()
                status, body, _ = await conns[p.name].call(p.req)
                if status != 200:
                    raise RuntimeError(f"{p.name}: {status} {body[:300]!r}")
                if j >= 5:
                    p.lat_hot.append((time.perf_counter() - t) * 1000)
    for c in conns.values():
        c.close()


async def burst(p: Path_, concurrency: int, each: int) -> float:
    conns = [Conn(p.port) for _ in range(concurrency)]

    async def worker(c: Conn) -> None:
        for _ in range(each):
            status, body, _ = await c.call(p.req)
            if status != 200:  # counted and shown, not fatal: an error under load is a finding
                p.errors.append(f"{status} {body[:200]!r}")

    await asyncio.gather(*(c.call(p.req) for c in conns))  # connections open, servers warm
    cpu0, t = p.cpu(), time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    wall = time.perf_counter() - t
    p.cpu_load += p.cpu() - cpu0
    p.load_n += concurrency * each
    for c in conns:
        c.close()
    return concurrency * each / wall


async def loaded(paths: list[Path_], rounds: int, concurrency: int, each: int) -> None:
    for i in range(rounds):
        for p in paths[i % len(paths) :] + paths[: i % len(paths)]:
            p.rates.append(await burst(p, concurrency, each))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300, help="sequential rounds (one request per path each)")
    ap.add_argument("--load-rounds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--each", type=int, default=20, help="requests per connection in a burst")
    ap.add_argument("--only", default="", help="comma-separated subset of " + ",".join(PATHS))
    ap.add_argument("--variant", help='a money-off gateway with these uvicorn options too: {"loop": "uvloop"}')
    ap.add_argument("--before", help="another tree of Pisces (git archive of a commit): its money-off gateway too")
    ap.add_argument("--python", help="another Python interpreter (/usr/bin/python3.11): a money-off gateway on it too")
    ap.add_argument("--serve-upstream", type=int)
    ap.add_argument("--serve-dynamo", type=int)
    ap.add_argument("--serve-replay", nargs=2, type=int, help="PORT MOTO_PORT: bench/wire.py's replaying front")
    ap.add_argument("--serve-gateway", nargs=3)
    ap.add_argument("--serve-relay", nargs=2, type=int, help="PORT UPSTREAM_PORT: bench/wire.py's byte relay")
    args = ap.parse_args()
    if args.serve_relay:
        return serve_tcp_relay(*args.serve_relay)
    if args.serve_upstream:
        return serve_fast_upstream(args.serve_upstream)
    if args.serve_dynamo:
        return serve_dynamo(args.serve_dynamo)
    if args.serve_replay:
        return serve_replaying_dynamo(*args.serve_replay)
    if args.serve_gateway:
        return serve_gateway(int(args.serve_gateway[0]), args.serve_gateway[1], args.serve_gateway[2])
    print(json.dumps(run(args), indent=2))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from pisces.localaws import free_port
    from support.servers import wait_http

    want = set(args.only.split(",")) if args.only else set(PATHS)
    OUT.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"uptime_before": os.getloadavg(), "not_measured": {}}
    bins: dict[str, Path] = {}
    for name, install in (("litellm", install_litellm), ("portkey", install_portkey)):
        if name in want:
            try:
                bins[name] = install()
            except Exception as e:  # a peer that cannot be installed here is said, the rest still run
                report["not_measured"][name] = f"install failed: {e}"
    report["versions"] = versions(bins)
    up_port, db_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'bench'}", "BENCH_LOGS": "1",
           "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{db_port}"}  # fmt: skip
    me = [sys.executable, __file__]
    procs = [subprocess.Popen([*me, "--serve-upstream", str(up_port)], env=env)]
    upstream = f"http://127.0.0.1:{up_port}"
    paths = [Path_("direct", up_port, {"authorization": f"Bearer {UPSTREAM_KEY}"}, None)]
    try:
        procs.append(subprocess.Popen([*me, "--serve-dynamo", str(db_port)], env=env))
        wait_http(f"http://127.0.0.1:{db_port}", procs[-1], 60)
        _wait_tables(f"http://127.0.0.1:{db_port}")
        moto = procs[-1]
        specs: list[tuple[str, list[str], dict[str, str], dict[str, str], float]] = []
        for mode, name in (("skeleton", "pisces-off"), ("full", "pisces-full")):
            port = free_port()
            specs.append((name, [*me, "--serve-gateway", str(port), upstream, mode], env,
                          {"authorization": f"Bearer {KEY}-{mode}", "port": str(port)}, 60))  # fmt: skip
        if "pisces-full-replay" in want:  # the full pipeline with DynamoDB's service time taken out (bench/wire.py)
            replay_port, port = free_port(), free_port()
            procs.append(subprocess.Popen([*me, "--serve-replay", str(replay_port), str(db_port)], env=env))
            wait_http(f"http://127.0.0.1:{replay_port}", procs[-1], 60)
            renv = {**env, "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{replay_port}", "BENCH_KEY": f"{KEY}-replay"}
            specs.append(("pisces-full-replay", [*me, "--serve-gateway", str(port), upstream, "full"], renv,
                          {"authorization": f"Bearer {KEY}-replay", "port": str(port)}, 60))  # fmt: skip

        def money_off(at: int, name: str, python: str, penv: dict[str, str]) -> None:
            """Another money-off gateway at ``at`` in the order: on ``python``, with ``penv`` (its own bench key)."""
            port = free_port()
            specs.insert(at, (name, [python, __file__, "--serve-gateway", str(port), upstream, "skeleton"], penv,
                              {"authorization": f"Bearer {penv['BENCH_KEY']}", "port": str(port)}, 60))  # fmt: skip
            want.add(name)

        if args.variant:
            money_off(1, "pisces-off-variant", sys.executable,
                      {**env, "BENCH_UVICORN": args.variant, "BENCH_KEY": f"{KEY}-variant"})  # fmt: skip
            report["variant"] = json.loads(args.variant)
        if args.python:  # the same gateway on another interpreter (a build with PGO and LTO, say)
            py, report["python_variant"] = python_with_pisces(args.python)
            money_off(1, "pisces-off-python", py, {**env, "BENCH_KEY": f"{KEY}-python"})
        if args.before:  # the same bench on another tree's code: its own PYTHONPATH first
            tree = Path(args.before).resolve()
            money_off(0, "pisces-off-before", sys.executable, tree_env(env, tree, f"{KEY}-before"))
        if "relay" in want:  # the floor: one more process in the path, no code of a gateway's
            port = free_port()
            specs.insert(0, ("relay", [*me, "--serve-relay", str(port), str(up_port)], env,
                             {"authorization": f"Bearer {UPSTREAM_KEY}", "port": str(port)}, 30))  # fmt: skip
        if "litellm" in bins:
            port = free_port()
            cfg = OUT / "litellm.yaml"
            cfg.write_text(json.dumps({"model_list": [{"model_name": "gpt-fake", "litellm_params": {
                "model": "openai/gpt-fake", "api_base": f"{upstream}/v1", "api_key": UPSTREAM_KEY}}],
                "litellm_settings": {"telemetry": False, "set_verbose": False},
                "general_settings": {"master_key": LITELLM_MASTER_KEY}}))  # fmt: skip
            lenv = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
            cmd = [str(bins["litellm"]), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)]
            specs.append(("litellm", cmd, lenv, {"authorization": f"Bearer {LITELLM_MASTER_KEY}", "port": str(port)},
                          180))  # fmt: skip
        if "portkey" in bins:
            port = free_port()
            hdrs = {"authorization": f"Bearer {UPSTREAM_KEY}", "x-portkey-provider": "openai",
                    "x-portkey-custom-host": f"{upstream}/v1", "port": str(port)}  # fmt: skip
            cmd = ["node", str(bins["portkey"]), f"--port={port}", "--headless"]
            specs.append(("portkey", cmd, {**os.environ, "NODE_ENV": "production"}, hdrs, 60))
        for name, cmd, penv, hdrs, seconds in specs:
            if name not in want:
                continue
            port = int(hdrs.pop("port"))
            try:
                ready = start(cmd, penv, port, hdrs, seconds)
            except RuntimeError as e:
                report["not_measured"][name] = str(e)
                continue
            procs.append(start.proc)  # type: ignore[attr-defined]
            p = Path_(name, port, hdrs, start.proc)  # type: ignore[attr-defined]
            p.ready_ms = round(ready, 1)
            paths.append(p)
        moto_cpu0 = cpu_seconds(moto.pid)
        asyncio.run(sequential(paths, args.requests, 30))
        moto_seq = cpu_seconds(moto.pid) - moto_cpu0
        asyncio.run(back_to_back(paths, max(args.requests // 50, 1), 50))
        asyncio.run(loaded(paths, args.load_rounds, args.concurrency, args.each))
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    report["uptime_after"] = os.getloadavg()
    report["paths"] = table(paths, args.requests)
    if "pisces-full" in report["paths"]:
        report["paths"]["pisces-full"]["moto_cpu_ms_per_req_c1"] = round(moto_seq / args.requests * 1000, 2)
    report["markdown"] = markdown(report["paths"])
    print(report["markdown"], file=sys.stderr)
    return report


def versions(bins: dict[str, Path]) -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    if "litellm" in bins:
        py = bins["litellm"].parent / "python"
        code = "import importlib.metadata as m; print(m.version('litellm'))"
        out["litellm"] = subprocess.run([str(py), "-c", code], capture_output=True, text=True).stdout.strip()
    if "portkey" in bins:
        out["portkey"] = PORTKEY_VERSION
        out["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return out


def table(paths: list[Path_], n: int) -> dict[str, dict[str, Any]]:
    direct = paths[0]
    d50, d99 = statistics.median(direct.lat), _pct(direct.lat, 99)
    h50, h99 = statistics.median(direct.lat_hot), _pct(direct.lat_hot, 99)
    out: dict[str, dict[str, Any]] = {"direct": {"p50_ms": round(d50, 2), "p99_ms": round(d99, 2),
                                                 "req_s_c16": round(statistics.median(direct.rates), 1)}}  # fmt: skip
    for p in paths[1:]:
        out[p.name] = {
            "ready_ms": p.ready_ms,
            "added_p50_ms": round(statistics.median(p.lat) - d50, 2),
            "added_p99_ms": round(_pct(p.lat, 99) - d99, 2),
            "added_p50_ms_b2b": round(statistics.median(p.lat_hot) - h50, 2),
            "added_p99_ms_b2b": round(_pct(p.lat_hot, 99) - h99, 2),
            "cpu_ms_per_req_c1": round(p.cpu_seq / n * 1000, 2),
            "cpu_ms_per_req_c16": round(p.cpu_load / max(p.load_n, 1) * 1000, 2),
            "req_s_c16": round(statistics.median(p.rates), 1),
            # cores busy at c=16 (req/s x CPU a request): a Python process is held to one, Node is not
            "cores_c16": round(statistics.median(p.rates) * p.cpu_load / max(p.load_n, 1), 2),
            "errors_c16": len(p.errors),
            **({"first_error": p.errors[0]} if p.errors else {}),
        }
    ref = out.get("portkey")
    for name, row in out.items():
        if ref and name not in ("direct", "portkey"):
            for k in ("added_p50_ms", "added_p99_ms", "added_p50_ms_b2b", "added_p99_ms_b2b", "cpu_ms_per_req_c1",
                      "cpu_ms_per_req_c16", "req_s_c16", "ready_ms"):  # fmt: skip
                if ref.get(k):
                    row[f"{k}_x_portkey"] = round(row[k] / ref[k], 2)
    return out


def markdown(rows: dict[str, dict[str, Any]]) -> str:
    def cell(row: dict[str, Any], k: str) -> str:
        v = row.get(k)
        r = row.get(f"{k}_x_portkey")
        return "" if v is None else f"{v}" + (f" ({r}x)" if r is not None else "")

    lines = ["| path | ready ms | added p50 ms | added p99 ms | added p50 / p99 ms, back to back | CPU ms/req c=1 "
             "| CPU ms/req c=16 | req/s c=16 | cores c=16 |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, row in rows.items():
        ks = ("ready_ms", "added_p50_ms", "added_p99_ms", "b2b", "cpu_ms_per_req_c1", "cpu_ms_per_req_c16",
              "req_s_c16", "cores_c16")  # fmt: skip
        cells = [f"{cell(row, 'added_p50_ms_b2b')} / {cell(row, 'added_p99_ms_b2b')}" if k == "b2b" and
                 "added_p50_ms_b2b" in row else cell(row, k) for k in ks]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
