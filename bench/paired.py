"""Two trees of Pisces, money off, one request each per round: what one change does to a gateway woken from idle.

    .venv/bin/python bench/paired.py --before /tmp/before          # a tree made by: git archive <rev> | tar -x -C ...
    .venv/bin/python bench/paired.py --before /tmp/before --stream # the time to the first body byte of a stream
    .venv/bin/python bench/paired.py --before /tmp/before --stream --client gemini  # a Gemini client, same upstream

bench/peers.py's interleaved rounds give each path's added latency, but two runs of it a minute apart differ by
more than a change of a few percent does (this host's speed moves with its neighbours'). Here both gateways (this
tree and ``--before``) serve in the same rounds on one fake upstream (bench/wire.py) and one moto: each round
sends one request to each (the order alternating), with two requests straight to the upstream and a 1 ms sleep
after each, so each gateway is idle and its caches cooled before every request, as a Lambda container is
between invocations. Each round's two latencies are paired: the median of their difference resolves ~20 µs where
the two medians alone move by 100. Blocking sockets on one connection per server: no event loop in the client.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from latency import KEY, _wait_tables  # noqa: E402
from servers import BODY, STREAM_BODY, python_with_pisces, start, tree_env  # noqa: E402
from wire import request_bytes  # noqa: E402


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def call(s: socket.socket, req: bytes) -> tuple[float, float]:
    """Seconds to the first body byte and to the whole response (Content-Length or chunked)."""
    t0 = time.perf_counter()
    s.sendall(req)
    buf, first = b"", 0.0
    while True:
        data = s.recv(65536)
        if not data:
            raise RuntimeError("the server closed the connection")
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            continue
        first = first or (time.perf_counter() - t0 if len(buf) > end + 4 else 0.0)
        head = buf[:end].lower()
        if b"content-length:" in head:
            if len(buf) >= end + 4 + int(head.split(b"content-length:")[1].split(b"\r\n")[0]):
                break
        elif buf.endswith(b"0\r\n\r\n"):
            break
    if not buf.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(buf[:300].decode(errors="replace"))
    return first, time.perf_counter() - t0


# What a Gemini client sends for the same completion (google-genai, the Gemini CLI): the gateway's Gemini door,
# translated to the same OpenAI-compatible upstream.
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "Say hello in five words."}]}]}


def gateway_request(port: int, name: str, stream: bool, client: str) -> bytes:
    auth = {"authorization": f"Bearer {KEY}-{name}"}
    if client == "gemini":
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return request_bytes(port, f"/v1beta/models/gpt-fake:{action}", auth, GEMINI_BODY)
    return request_bytes(port, "/v1/chat/completions", auth, STREAM_BODY if stream else BODY)


def rounds(ports: dict[str, int], n: int, stream: bool, upstream: int, client: str = "openai") -> dict[str, float]:
    body = STREAM_BODY if stream else BODY
    gws = [(name, connect(port), gateway_request(port, name, stream, client)) for name, port in ports.items()]
    direct = connect(upstream)
    straight = request_bytes(upstream, "/v1/chat/completions", {"authorization": "Bearer x"}, body)
    lat: dict[str, list[float]] = {name: [] for name in ports}
    base: list[float] = []
    pick = 0 if stream else 1  # the first byte of a stream, the whole of a completion
    for i in range(n + 20):
        for name, s, req in gws if i % 2 == 0 else gws[::-1]:
            took = call(s, req)[pick]
            if i >= 20:  # the first rounds warm both
                lat[name].append(took)
            for _ in range(2):
                base.append(call(direct, straight)[pick])
            time.sleep(0.001)
    for s in [direct, *(g[1] for g in gws)]:
        s.close()
    floor = statistics.median(base)
    out = {f"{name}_added_p50_ms": round((statistics.median(v) - floor) * 1000, 3) for name, v in lat.items()}
    pairs = zip(lat["this"], lat["before"], strict=True)
    out["paired_median_this_minus_before_ms"] = round(statistics.median(a - b for a, b in pairs) * 1000, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="another tree of Pisces (git archive of a commit)")
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stream", action="store_true", help="time to the first body byte of a streamed completion")
    ap.add_argument(
        "--client",
        choices=("openai", "gemini"),
        default="openai",
        help="the protocol the gateways are asked in (the upstream is OpenAI-compatible either way)",
    )
    ap.add_argument("--before-python", help="the interpreter the --before gateway runs on (--before . and this: "
                    "one tree on two interpreters)")  # fmt: skip
    args = ap.parse_args()
    from pisces.localaws import free_port
    from support.servers import wait_http

    up_port, db_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'bench'}", "BENCH_LOGS": "1",
           "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{db_port}"}  # fmt: skip
    peers = [sys.executable, str(ROOT / "bench" / "peers.py")]
    procs = [subprocess.Popen([*peers, "--serve-upstream", str(up_port)], env=env),
             subprocess.Popen([*peers, "--serve-dynamo", str(db_port)], env=env)]  # fmt: skip
    report: dict[str, object] = {"load_before": os.getloadavg(), "stream": args.stream, "client": args.client,
                                 "python": sys.version.split()[0], "runs": []}  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{db_port}", procs[-1], 60)
        _wait_tables(f"http://127.0.0.1:{db_port}")
        tree = Path(args.before).resolve()
        ports: dict[str, int] = {}
        for name in ("this", "before"):
            port = ports[name] = free_port()
            penv = tree_env(env, tree, f"{KEY}-{name}") if name == "before" else {**env, "BENCH_KEY": f"{KEY}-{name}"}
            python = peers[:1]
            if name == "before" and args.before_python:
                py, report["before_python"] = python_with_pisces(args.before_python)
                python = [py]
            cmd = [*python, peers[1], "--serve-gateway", str(port), f"http://127.0.0.1:{up_port}", "skeleton"]
            start(cmd, penv, port, {"authorization": f"Bearer {KEY}-{name}"}, 60)
            procs.append(start.proc)  # type: ignore[attr-defined]
        for _ in range(args.repeats):
            run = rounds(ports, args.rounds, args.stream, up_port, args.client)
            report["runs"].append(run)  # type: ignore[union-attr]
            print(json.dumps(run), file=sys.stderr)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=10)
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
