"""The local DynamoDB (pisces.localaws on moto) as its usage table grows: does a request cost the same?

    .venv/bin/python bench/localdynamo.py                 # 1,000 and 100,000 usage records
    .venv/bin/python bench/localdynamo.py --moto-as-is    # moto without pisces.localmoto (its table copies)

Each size in a fresh process: an embedded LocalDynamo, the usage table filled with N records straight
into moto's backend (not timed), then ``--calls`` admissions (UpdateItem) and settlements
(TransactWriteItems, the usage record and the key item) over HTTP, as the gateway makes them. Prints
p50/p99 per call, the server process's CPU per settlement and its RSS growth.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def one(records: int, calls: int, as_is: bool) -> dict[str, Any]:
    if as_is:
        import pisces.localmoto

        pisces.localmoto.install = lambda: None  # moto as it comes
    from moto.dynamodb.models import dynamodb_backends

    from pisces.localaws import LocalDynamo
    from pisces.store import dynamo
    from pisces.store.keys import KeyStore, hash_key
    from pisces.store.ledger import Admitted, Ledger, RateLimits
    from pisces.store.schema import table_name
    from pisces.store.usage import UsageRecord

    local = LocalDynamo().start()
    dynamo.client.cache_clear()
    client = dynamo.client()
    backend = dynamodb_backends["123456789012"]["us-east-1"]
    usage = table_name("usage")

    def record(rid: str) -> dict[str, Any]:
        return UsageRecord(request_id=rid, key_id="k", protocol="openai", client_model="m", model="m",
                           created_at="2026-11-23T00:00:00Z", settled_at="2026-11-23T00:00:00Z",
                           expires_at=0, cost=1, hold=10).item()  # fmt: skip

    for i in range(records):
        backend.put_item(usage, record(f"fill_{i}"))
    key_hash = hash_key(KeyStore(client, table_name("keys")).create(name="bench", balance=10**15)[0])
    ledger = Ledger(client, table_name("keys"), usage)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    admit_ms, settle_ms = [], []
    cpu0 = time.process_time()
    for i in range(calls):
        t = time.perf_counter()
        adm = ledger.admit(key_hash, 10, RateLimits(0, 0), request_id=f"bench_{i}")
        admit_ms.append((time.perf_counter() - t) * 1000)
        assert isinstance(adm, Admitted), adm
        t = time.perf_counter()
        ledger.settle(key_hash, 10, adm.month, record(f"bench_{i}"), adm.hold.tag if adm.hold else None)
        settle_ms.append((time.perf_counter() - t) * 1000)
    cpu = time.process_time() - cpu0
    local.stop()
    return {
        "records": records, "moto_as_is": as_is, "calls": calls,
        "admit_ms": [round(statistics.median(admit_ms), 2), round(_pct(admit_ms, 99), 2)],
        "settle_ms": [round(statistics.median(settle_ms), 2), round(_pct(settle_ms, 99), 2)],
        "cpu_ms_per_request": round(cpu / calls * 1000, 2),  # client and server, one process
        "rss_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024, 1),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,100000")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--moto-as-is", action="store_true")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.calls, args.moto_as_is)))
        return
    rows = []
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'bench'}"}
    for size in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--one", str(size), "--calls", str(args.calls)]
        cmd += ["--moto-as-is"] if args.moto_as_is else []
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(json.dumps({"load": os.getloadavg(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
