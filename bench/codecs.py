"""CPU cost of the protocol codecs: what translating a request and its stream costs, per protocol pair.

For each client protocol (OpenAI, Anthropic, Gemini) the same conversation (a system prompt, three
turns, a tool declaration, a tool call and its result) is decoded from the client's wire format and
encoded for each upstream's; then a 200-delta text stream is encoded for the client and decoded
from the upstream's wire format. Times are medians of repeated runs in this process, in
microseconds; compare them as ratios (to OpenAI -> OpenAI), not as absolute numbers.

    .venv/bin/python bench/codecs.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "core"))

from pisces.canonical import ContentEnd, Finish, StreamStart, TextDelta, Usage, UsageEvent  # noqa: E402
from pisces.protocols import CODECS  # noqa: E402
from pisces.protocols.sse import SSEParser  # noqa: E402

TOOL_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
REQUESTS = {
    "openai": {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": TOOL_SCHEMA}}],
    },
    "anthropic": {
        "model": "m",
        "max_tokens": 512,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                                         {"type": "text", "text": "And tomorrow?"}]},
        ],
        "tools": [{"name": "get_weather", "input_schema": TOOL_SCHEMA}],
    },
    "gemini": {
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
                                       {"text": "And tomorrow?"}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {
            "type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}}]}],
    },
}  # fmt: skip
DELTAS = 200


def median_us(fn: Callable[[], object], rounds: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def events() -> list[object]:
    out: list[object] = [StreamStart(id="r1", model="m")]
    out += [TextDelta(index=0, text=f"word{i} ") for i in range(DELTAS)]
    out += [ContentEnd(index=0), UsageEvent(usage=Usage(input_tokens=30, output_tokens=DELTAS)),
            Finish(reason="stop")]  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=300)
    rounds = ap.parse_args().rounds
    names = list(REQUESTS)

    print(f"request: decode the client's body, encode it for the upstream (median of {rounds}, µs)\n")
    print("client \\ upstream | " + " | ".join(names))
    print("---|" + "---|" * len(names))
    base = None
    for client in names:
        codec = CODECS[client]
        body = REQUESTS[client]
        row = []
        for upstream in names:
            up = CODECS[upstream]
            t = median_us(lambda c=codec, u=up, b=body: u.encode_request(c.decode_request(b), "m"), rounds)
            base = base or t
            row.append(f"{t:.0f} ({t / base:.2f}x)")
        print(f"{client} | " + " | ".join(row))

    evs = events()
    print(f"\nstream of {DELTAS} text deltas (median of {rounds // 10}, µs)\n")
    print("protocol | encode for a client | decode from an upstream (its own encoding, SSE-parsed)")
    print("---|---|---")
    base = None
    for name in names:
        codec = CODECS[name]

        def encode(c: object = codec) -> bytes:
            enc = c.StreamEncoder({"gateway": "Pisces"}, include_usage=True)  # type: ignore[attr-defined]
            return b"".join(enc.encode(e) for e in evs) + enc.close()

        wire = encode()

        def decode(c: object = codec, w: bytes = wire) -> int:
            dec, n = c.StreamDecoder(), 0  # type: ignore[attr-defined]
            for sse in SSEParser().feed(w):
                n += len(dec.feed(sse))
            return n + len(dec.close())

        te, td = median_us(encode, rounds // 10), median_us(decode, rounds // 10)
        base = base or te
        print(f"{name} | {te:.0f} ({te / base:.2f}x) | {td:.0f} ({td / base:.2f}x)")


if __name__ == "__main__":
    main()
