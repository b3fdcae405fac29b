"""Streams: what the gateway adds to the time to first byte, whether each chunk is forwarded as it
arrives, and how many canonical stream events a core encodes per second.

    make bench-streams               # or: .venv/bin/python bench/streams.py --rounds 200

1. Encoders (in this process, one core): a 2,000-delta text stream of canonical events encoded for
   each client protocol (OpenAI chat, Anthropic, Gemini, OpenAI Responses) and decoded from each
   upstream's own wire bytes (SSE-parsed); events per second, median of ``--encode-rounds``.
2. Time to first byte over HTTP: a streamed chat completion straight to the fast fake upstream
   (bench/wire.py: the whole stream at once) and through the gateway with money off and with the full
   pipeline on moto, interleaved rounds on kept-alive connections; p50/p99 of the time to the first
   body byte, and what the gateway adds. Then the same in streaks of 50 back-to-back streams per path
   (``ttfb_ms_back_to_back``): a busy server's view beside the interleaved one of a server woken from idle.
3. Pacing: an upstream that sends its 6 chunks ``--gap-ms`` apart (flushed one by one); per chunk,
   when it reached the client through the gateway (money off) after it reached the client straight
   from the upstream, in the same round. A gateway that buffered would show lags of whole gaps.
4. Relay, beside Portkey's gateway (bench/peers.py installs it; left out if it cannot be): the CPU
   (from /proc) per relayed event, everything included (SSE parsing, decoding, encoding, writes), of
   ``--relay-streams`` streams on 4 connections, each of model ``gpt-fake-long``: 1,000 text deltas the
   upstream sends in one piece (``burst``), and 200 deltas it sends 1 ms apart, each written and
   drained alone (``paced``: an event a network read, as a model's tokens come).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench"), str(ROOT / "layers" / "core")]

from latency import KEY, _pct, _wait_tables  # noqa: E402
from peers import UPSTREAM_KEY  # noqa: E402
from servers import PORTKEY_VERSION, STREAM_BODY, cpu_seconds, install_portkey, start  # noqa: E402
from wire import LONG_DELTAS, NON_STREAM, Conn, request_bytes  # noqa: E402

DELTAS = 2_000
PACED_CHUNKS = 6
PACED_LONG, PACED_LONG_GAP_MS = 200, 1.0  # model gpt-fake-long from the paced upstream


# --- 1. encoders ---------------------------------------------------------------------------------


def encoder_rates(rounds: int) -> dict[str, dict[str, float]]:
    from pisces.canonical import ContentEnd, Finish, StreamStart, TextDelta, Usage, UsageEvent
    from pisces.protocols import CODECS
    from pisces.protocols.sse import SSEParser

    evs: list[Any] = [StreamStart(id="r1", model="m")]
    evs += [TextDelta(index=0, text=f"word{i} ") for i in range(DELTAS)]
    evs += [ContentEnd(index=0), UsageEvent(usage=Usage(input_tokens=30, output_tokens=DELTAS)), Finish(reason="stop")]
    out: dict[str, dict[str, float]] = {}
    for name, codec in CODECS.items():

        def encode(c: Any = codec) -> bytes:
            enc = c.StreamEncoder({"gateway": "Pisces"}, True)
            return b"".join(enc.encode(e) for e in evs) + enc.close()

        wire = encode()

        def decode(c: Any = codec, w: bytes = wire) -> int:
            dec, parser, n = c.StreamDecoder(), SSEParser(), 0
            for sse in parser.feed(w):
                n += len(dec.feed(sse))
            return n

        row: dict[str, float] = {}
        for what, fn in (("encode", encode), ("decode", decode)):
            if what == "decode" and not hasattr(codec, "StreamDecoder"):
                continue
            fn()
            times = []
            for _ in range(rounds):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            row[f"{what}_events_per_s"] = round(len(evs) / statistics.median(times))
        out[name] = row
    return out


# --- a paced upstream ----------------------------------------------------------------------------


def _paced_chunks() -> list[bytes]:
    words = ["Hello", " there,", " friend,", " how are", " you?"]
    out = []
    for i, w in enumerate(words):
        delta: dict[str, Any] = {"content": w} if i else {"role": "assistant", "content": w}
        chunk = {"id": "chatcmpl-paced", "object": "chat.completion.chunk", "created": 1700000000,
                 "model": "gpt-fake", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}  # fmt: skip
        out.append(f"data: {json.dumps(chunk)}\n\n".encode())
    last = {"id": "chatcmpl-paced", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-fake",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}}  # fmt: skip
    out.append(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
    assert len(out) == PACED_CHUNKS
    return out


def _paced_long_chunks() -> list[bytes]:
    base = {"id": "chatcmpl-paced", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-fake"}
    out = [f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {'content': f' w{i}'}}]})}\n\n".encode()
           for i in range(PACED_LONG)]  # fmt: skip
    last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    return [*out, f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode()]


def serve_paced_upstream(port: int, gap_ms: float) -> None:
    """Each chunk of the stream written and drained ``gap_ms`` after the one before (chunked encoding);
    for model ``gpt-fake-long``, PACED_LONG deltas PACED_LONG_GAP_MS apart."""
    short, long = _paced_chunks(), _paced_long_chunks()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                if b'"stream":true' not in body.replace(b" ", b""):
                    writer.write(NON_STREAM)  # a readiness probe's plain completion
                    await writer.drain()
                    continue
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                )
                is_long = b'"model":"gpt-fake-long"' in body.replace(b" ", b"")
                chunks, gap = (long, PACED_LONG_GAP_MS) if is_long else (short, gap_ms)
                for i, c in enumerate(chunks):
                    if i:
                        await asyncio.sleep(gap / 1000)
                    writer.write(b"%x\r\n%s\r\n" % (len(c), c))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main())


def _what(event: bytes) -> str | None:
    """What an OpenAI chunk carries: its text, or its finish reason; None for the rest (a role chunk)."""
    try:
        choice = (json.loads(event[5:]).get("choices") or [{}])[0]
    except ValueError:
        return None
    return choice.get("delta", {}).get("content") or choice.get("finish_reason")


async def chunk_times(port: int, req: bytes) -> dict[str, float]:
    """Seconds from sending ``req`` to each SSE event, by what it carries (:func:`_what`); one connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.perf_counter()
    writer.write(req)
    await reader.readuntil(b"\r\n\r\n")
    times: dict[str, float] = {}
    pending = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            break
        pending += data[:-2]
        while b"\n\n" in pending:
            event, pending = pending.split(b"\n\n", 1)
            what = _what(event) if event.startswith(b"data:") and not event.startswith(b"data: [DONE]") else None
            if what is not None:
                times.setdefault(what, time.perf_counter() - t0)
    writer.close()
    return times


# --- 2 and 3 over HTTP ---------------------------------------------------------------------------


async def ttfb_rounds(
    paths: dict[str, tuple[int, bytes]], rounds: int, warm: int, streak: int = 1
) -> dict[str, list[float]]:
    """Time to first body byte, ms, by path, in rounds whose order rotates. With ``streak`` > 1 each path
    gets that many streams back to back in its turn (five more first, not counted): the view of a busy
    server beside the interleaved one's of a server idle between requests (bench/peers.py's
    ``back_to_back`` says why both are shown)."""
    conns = {name: Conn(port) for name, (port, _) in paths.items()}
    firsts: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    unseen = 5 if streak > 1 else 0
    for i in range(warm + rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            for j in range(unseen + streak):
                status, body, first = await conns[name].call(paths[name][1])
                if status != 200 or b"[DONE]" not in body:
                    raise RuntimeError(f"{name}: {status} {body[:300]!r}")
                if i >= warm and j >= unseen:
                    firsts[name].append(first * 1000)
    for c in conns.values():
        c.close()
    return firsts


async def pacing_rounds(direct: tuple[int, bytes], gateway: tuple[int, bytes], rounds: int) -> list[list[float]]:
    lags: list[list[float]] = [[] for _ in range(PACED_CHUNKS)]
    for _ in range(rounds):
        straight = await chunk_times(*direct)
        through = await chunk_times(*gateway)
        if len(straight) != PACED_CHUNKS or set(straight) - set(through):
            raise RuntimeError(f"chunks: {sorted(straight)} straight, {sorted(through)} through the gateway")
        for k, what in enumerate(straight):  # the same text (or finish), each way
            lags[k].append((through[what] - straight[what]) * 1000)
    return lags


async def relay_cpu(port: int, pid: int, req: bytes, streams: int, deltas: int, conns: int = 4) -> dict[str, float]:
    """CPU per relayed event of ``streams`` streams of ``deltas`` (``conns`` at a time), after one not counted."""
    pool = [Conn(port) for _ in range(conns)]
    await pool[0].call(req)
    left = streams

    async def worker(c: Conn) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status, body, _ = await c.call(req)
            if status != 200 or body.count(b"data:") < deltas:
                raise RuntimeError(f"relay: {status} {body[:300]!r}")

    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(worker(c) for c in pool))
    cpu, wall = cpu_seconds(pid) - cpu0, time.perf_counter() - t0
    for c in pool:
        c.close()
    events = streams * (deltas + 3)  # about: the role chunk, the deltas, the finish, the usage
    return {"streams": streams, "events_per_stream": deltas + 3, "cpu_us_per_event": round(cpu / events * 1e6, 2),
            "events_per_cpu_second": round(events / cpu), "streams_per_s": round(streams / wall, 1)}  # fmt: skip


def relay_rows(ports: dict[str, int], pids: dict[str, int], up_port: int, paced_port: int, env: dict[str, str],
               streams: int, procs: list[subprocess.Popen]) -> dict[str, Any]:  # fmt: skip
    """Part 4: the money-off gateway and Portkey's, burst and paced (the gateways of part 3 serve paced)."""
    from pisces.localaws import free_port

    body = {**STREAM_BODY, "model": "gpt-fake-long"}
    rows: dict[str, Any] = {}
    targets = {"pisces-off": {"burst": (ports["skeleton"], {"authorization": f"Bearer {KEY}-skeleton"}),
                              "paced": (ports["paced"], {"authorization": f"Bearer {KEY}-paced"})}}  # fmt: skip
    pid_of = {"pisces-off": {"burst": pids["skeleton"], "paced": pids["paced"]}}
    try:
        entry = install_portkey()
    except Exception as e:  # a peer that cannot be installed is said, the rest still measured
        rows["portkey"] = f"not measured: {e}"
    else:
        port = free_port()
        hdrs = {"authorization": f"Bearer {UPSTREAM_KEY}", "x-portkey-provider": "openai"}
        probe = {**hdrs, "x-portkey-custom-host": f"http://127.0.0.1:{up_port}/v1"}
        start(["node", str(entry), f"--port={port}", "--headless"], {**env, "NODE_ENV": "production"}, port, probe, 60)
        procs.append(start.proc)  # type: ignore[attr-defined]
        targets["portkey"] = {kind: (port, {**hdrs, "x-portkey-custom-host": f"http://127.0.0.1:{up}/v1"})
                              for kind, up in (("burst", up_port), ("paced", paced_port))}  # fmt: skip
        pid_of["portkey"] = {"burst": start.proc.pid, "paced": start.proc.pid}  # type: ignore[attr-defined]
        rows["portkey_version"] = PORTKEY_VERSION
    for name, kinds in targets.items():
        rows[name] = {}
        for kind, (port, headers) in kinds.items():
            req = request_bytes(port, "/v1/chat/completions", headers, body)
            deltas, n = (LONG_DELTAS, streams) if kind == "burst" else (PACED_LONG, max(streams // 5, 8))
            rows[name][kind] = asyncio.run(relay_cpu(port, pid_of[name][kind], req, n, deltas))
    return rows


def _added(firsts: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    d50, d99 = _pct(firsts["direct"], 50), _pct(firsts["direct"], 99)
    return {
        name: {"p50": round(_pct(v, 50), 2), "p99": round(_pct(v, 99), 2),
               "added_p50": round(_pct(v, 50) - d50, 2), "added_p99": round(_pct(v, 99) - d99, 2)}
        for name, v in firsts.items()
    }  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    from pisces.localaws import free_port
    from support.servers import wait_http

    report: dict[str, Any] = {"load_before": os.getloadavg()}
    report["encoders"] = encoder_rates(args.encode_rounds)
    up_port, paced_port, db_port = free_port(), free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'bench'}", "BENCH_LOGS": "1",
           "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{db_port}"}  # fmt: skip
    peers = [sys.executable, str(ROOT / "bench" / "peers.py")]
    procs = [subprocess.Popen([*peers, "--serve-upstream", str(up_port)], env=env),
             subprocess.Popen([sys.executable, __file__, "--serve-paced", str(paced_port), str(args.gap_ms)], env=env),
             subprocess.Popen([*peers, "--serve-dynamo", str(db_port)], env=env)]  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{db_port}", procs[-1], 60)
        _wait_tables(f"http://127.0.0.1:{db_port}")
        ports: dict[str, int] = {}
        pids: dict[str, int] = {}
        for mode, upstream_port in (("skeleton", up_port), ("full", up_port), ("paced", paced_port)):
            port = free_port()
            gw_mode = "skeleton" if mode == "paced" else mode
            cmd = [*peers, "--serve-gateway", str(port), f"http://127.0.0.1:{upstream_port}", gw_mode]
            penv = {**env, "BENCH_KEY": f"{KEY}-{mode}"}
            start(cmd, penv, port, {"authorization": f"Bearer {KEY}-{mode}"}, 60)
            procs.append(start.proc)  # type: ignore[attr-defined]
            ports[mode] = port
            pids[mode] = start.proc.pid  # type: ignore[attr-defined]

        def req(port: int, key: str) -> bytes:
            return request_bytes(port, "/v1/chat/completions", {"authorization": f"Bearer {key}"}, STREAM_BODY)

        paths = {"direct": (up_port, req(up_port, UPSTREAM_KEY)),
                 "pisces-off": (ports["skeleton"], req(ports["skeleton"], f"{KEY}-skeleton")),
                 "pisces-full": (ports["full"], req(ports["full"], f"{KEY}-full"))}  # fmt: skip
        report["ttfb_ms"] = _added(asyncio.run(ttfb_rounds(paths, args.rounds, 30)))
        hot = asyncio.run(ttfb_rounds(paths, max(args.rounds // 50, 2), 0, streak=50))
        report["ttfb_ms_back_to_back"] = _added(hot)
        straight, through = (
            (paced_port, req(paced_port, UPSTREAM_KEY)),
            (ports["paced"], req(ports["paced"], f"{KEY}-paced")),
        )
        lags = asyncio.run(pacing_rounds(straight, through, args.paced_rounds))
        report["pacing"] = {
            "gap_ms": args.gap_ms,
            "lag_ms_p50_by_chunk": [round(statistics.median(v), 2) for v in lags],
            "lag_ms_max_by_chunk": [round(max(v), 2) for v in lags],
        }
        report["relay"] = relay_rows(ports, pids, up_port, paced_port, env, args.relay_streams, procs)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(10)
    report["load_after"] = os.getloadavg()
    return report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200, help="interleaved rounds of the time-to-first-byte part")
    ap.add_argument("--paced-rounds", type=int, default=20)
    ap.add_argument("--gap-ms", type=float, default=50.0)
    ap.add_argument("--encode-rounds", type=int, default=30)
    ap.add_argument("--relay-streams", type=int, default=200)
    ap.add_argument("--serve-paced", nargs=2)
    args = ap.parse_args()
    if args.serve_paced:
        return serve_paced_upstream(int(args.serve_paced[0]), float(args.serve_paced[1]))
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
