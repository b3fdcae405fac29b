"""The gateway's cold start: ``run.sh`` to its first 200, and what each imported package costs.

    make bench-cold                  # or: .venv/bin/python bench/coldstart.py --runs 7 --budget-ms 600

1. Import budget: ``python -X importtime`` of what run.sh's process imports before it can answer
   (uvicorn and ``pisces_gateway.app``), median of ``--runs`` fresh interpreters, self time summed
   by top-level package. Exits 1 if a package the gateway must not import at start is imported
   (``FORBIDDEN``: FastAPI is the admin's, boto3 only for images, S3 transfers never, aiohttp only
   under httpx's API for images: the hot calls go over pisces.h1) or if the
   total is over ``--budget-ms`` (a bench's verdict on this machine, not a test).
2. Cold start: ``bash functions/gateway/run.sh`` as the Lambda Web Adapter starts it (the
   template's environment, tests/lambda's way), against moto and the fast fake upstream, ``.pyc``
   present (one discarded run first): ms from process start to the first 200 of ``GET /healthz``
   (the adapter's readiness check) and to the first 200 of a chat completion with a key (what the
   first client waits for: the key's GetItem, the admission write, the upstream, settlement).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]
FORBIDDEN = ("fastapi", "boto3", "s3transfer", "PIL", "aiohttp")
CODE = "import uvicorn.main, pisces_gateway.app"

from wire import Conn, request_bytes  # noqa: E402


def import_profile(runs: int) -> dict[str, Any]:
    per_run: list[dict[str, float]] = []
    totals = []
    for _ in range(runs):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", CODE], capture_output=True, text=True,
                             check=True).stderr  # fmt: skip
        by_pkg: dict[str, float] = defaultdict(float)
        for line in err.splitlines()[1:]:
            parts = line.split("|")
            if len(parts) != 3:
                continue
            by_pkg[parts[2].strip().split(".")[0]] += int(parts[0].split(":")[1]) / 1000  # self time, ms
        per_run.append(by_pkg)
        totals.append(sum(by_pkg.values()))
    names = {n for r in per_run for n in r}
    med = {n: round(statistics.median(r.get(n, 0.0) for r in per_run), 1) for n in names}
    top = dict(sorted(med.items(), key=lambda kv: -kv[1])[:15])
    return {"total_ms": round(statistics.median(totals), 1), "by_package_ms": top,
            "forbidden_imported": sorted(n for n in FORBIDDEN if n in names)}  # fmt: skip


def _lifecycle_module() -> Any:
    spec = importlib.util.spec_from_file_location("lifecycle_harness", ROOT / "tests" / "lambda" / "test_lifecycle.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["lifecycle_harness"] = mod  # its dataclasses look themselves up there
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


async def _first_200(port: int, req: bytes, proc: subprocess.Popen, t0: float, seconds: float = 60) -> float:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"run.sh exited with {proc.returncode}")
        c = Conn(port)
        try:
            status, body, _ = await c.call(req)
            if status == 200:
                return (time.perf_counter() - t0) * 1000
            raise RuntimeError(f"{status}: {body[:300]!r}")
        except (OSError, asyncio.IncompleteReadError):
            await asyncio.sleep(0.005)
        finally:
            c.close()
    raise RuntimeError("no 200")


def cold_starts(runs: int, trees: dict[str, Path]) -> dict[str, Any]:
    """Each tree's run.sh in turn, ``runs`` times (after one unmeasured start each), interleaved."""
    from latency import KEY, _wait_tables

    from pisces.localaws import FAKE_CREDENTIALS, free_port
    from pisces.store import dynamo
    from pisces.store.keys import KeyStore
    from pisces.store.schema import table_name
    from support.servers import wait_http

    harness = _lifecycle_module()
    up_port, db_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{db_port}"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'bench'}", "AWS_ENDPOINT_URL_DYNAMODB": endpoint}
    peers = [sys.executable, str(ROOT / "bench" / "peers.py")]
    procs = [subprocess.Popen([*peers, "--serve-upstream", str(up_port)], env=env),
             subprocess.Popen([*peers, "--serve-dynamo", str(db_port)], env=env)]  # fmt: skip
    out: dict[str, dict[str, list[float]]] = {t: {"healthz_ms": [], "first_chat_ms": []} for t in trees}
    try:
        wait_http(endpoint, procs[1], 60)
        _wait_tables(endpoint)
        for k, v in FAKE_CREDENTIALS.items():
            os.environ.setdefault(k, v)
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
        KeyStore(dynamo.client(), table_name("keys")).create(name="cold", plaintext=KEY, balance=10**15, rpm=0, tpm=0)
        config = ROOT / "bench" / "out" / "coldstart.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({"channels": [{"name": "fake", "kind": "openai", "models": ["gpt-fake"],
                                                     "base_url": f"http://127.0.0.1:{up_port}/v1",
                                                     "api_key_env": "PISCES_TEST_UPSTREAM_KEY"}]}))  # fmt: skip
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "PISCES_"))}
        base |= harness.template_environment()
        base.pop("AWS_LAMBDA_EXEC_WRAPPER", None)
        base |= FAKE_CREDENTIALS | {
            "PATH": f"{Path(sys.executable).parent}:{base.get('PATH', '')}",
            "AWS_LAMBDA_FUNCTION_NAME": "pisces-gateway-cold",
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_DYNAMODB": endpoint, "AWS_ENDPOINT_URL_S3": endpoint,
            "PISCES_CONFIG": str(config), "PISCES_TEST_UPSTREAM_KEY": "sk-fake-upstream-secret-0123456789",
        }  # fmt: skip
        body = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
        for i, tree in ((i, t) for i in range(runs + 1) for t in trees):
            task_root = trees[tree] / "functions" / "gateway"
            tree_env = {**base, "LAMBDA_TASK_ROOT": str(task_root),
                        "PYTHONPATH": f"{trees[tree] / 'layers' / 'core'}:{base.get('PYTHONPATH', '')}"}  # fmt: skip
            port = free_port()
            health = request_bytes(port, "/healthz", {}, None, "GET")
            chat = request_bytes(port, "/v1/chat/completions", {"authorization": f"Bearer {KEY}"}, body)
            t0 = time.perf_counter()
            proc = subprocess.Popen(["bash", "run.sh"], cwd=task_root, env={**tree_env, "PORT": str(port)},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            try:
                h = asyncio.run(_first_200(port, health, proc, t0))
                c = asyncio.run(_first_200(port, chat, proc, t0))
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            if i:  # the first run writes the .pyc files
                out[tree]["healthz_ms"].append(round(h, 1))
                out[tree]["first_chat_ms"].append(round(c, 1))
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
    return {t: {k: {"median": round(statistics.median(v), 1), "min": min(v), "runs": v} for k, v in o.items()}
            for t, o in out.items()}  # fmt: skip


def compile_pyc(*trees: Path) -> None:
    """``.pyc`` for every module the gateway may import, as Lambda's layer ships them (layers/core/Makefile):
    an interpreter with PYTHONDONTWRITEBYTECODE would otherwise compile every module at every start."""
    import site
    import sysconfig

    dirs = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    dirs |= {str(t / d) for t in trees for d in ("layers/core/pisces", "functions/gateway/pisces_gateway")}
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *sorted(dirs)], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--budget-ms", type=float, default=600.0, help="import budget (self time of every module)")
    ap.add_argument("--imports-only", action="store_true")
    ap.add_argument("--before", help="another tree (git archive of a commit): its cold starts interleaved with these")
    args = ap.parse_args()
    trees = {"this": ROOT, **({"before": Path(args.before).resolve()} if args.before else {})}
    compile_pyc(*trees.values())
    report: dict[str, Any] = {"load_before": os.getloadavg()}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    report["bare_python_ms"] = round((time.perf_counter() - t) * 1000, 1)
    report["imports"] = imports = import_profile(args.runs)
    if not args.imports_only:
        report["cold_start"] = cold_starts(args.runs, trees)
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    problems = [f"imports {imports['forbidden_imported']} at start"] if imports["forbidden_imported"] else []
    if imports["total_ms"] > args.budget_ms:
        problems.append(f"imports take {imports['total_ms']} ms, over the budget of {args.budget_ms} ms")
    if problems:
        print("over budget: " + "; ".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
