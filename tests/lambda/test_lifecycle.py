"""The request lifecycle as Lambda runs it: nothing a request owes may happen after its last byte.

DynamoDB (moto's server) runs in a process of its own, the gateway is started exactly as the Lambda
Web Adapter starts it (``run.sh`` in the task root, with the template's environment), and the
gateway process is **SIGSTOPped the instant the client has read the last byte**, as Lambda freezes
the container when the response ends. While it is frozen, DynamoDB and the gateway's stdout must
already hold everything: the usage record with the right cost, the balance with no hold left, the
Idempotency-Key record complete (a second gateway process replays it), the log line and the EMF
metrics. Then a gateway is SIGKILLed between admission and settlement, and the reconciler must
release its hold exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from pisces.localaws import FAKE_CREDENTIALS, free_port
from pisces.protocols.sse import SSEParser
from pisces.store.images import bucket_name
from pisces.store.keys import KeyStore, hash_key
from pisces.store.reconcile import Reconciler
from pisces.store.schema import TABLE_ENV, TABLES, table_name
from pisces.store.usage import UsageRecord, UsageStore
from support.config import gateway_config_raw
from support.fake_anthropic import FakeAnthropic
from support.fake_gemini import FakeGemini
from support.fake_openai import UPSTREAM_SECRET, FakeOpenAI
from support.servers import serving, wait_http

ROOT = Path(__file__).resolve().parents[2]
TASK_ROOT = ROOT / "functions" / "gateway"
BALANCE = 10_000_000  # $10 in micro-dollars
WAIT = 60  # seconds: how long a causal wait may take on a loaded machine before the test fails


# ------------------------------------------------------------------ processes


def _cfn_yaml(text: str) -> dict[str, Any]:
    class Loader(yaml.SafeLoader):
        pass

    def tag(loader: Loader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": loader.construct_scalar(node)}
        return {f"Fn::{suffix}": None}

    Loader.add_multi_constructor("!", tag)
    return yaml.load(text, Loader=Loader)


# The stack as deployed for these tests: the mock's channels on (EnableMock=on), as the harness's
# configuration serves mock models beside the fake upstreams; every other parameter its default.
PARAMETERS = {"EnableMock": "on"}


def template_environment() -> dict[str, str]:
    """The gateway function's environment as template.yaml gives it (Globals and its own), with
    each !Ref resolved: a table to its local name, a parameter to PARAMETERS' value or its default."""
    t = _cfn_yaml((ROOT / "template.yaml").read_text())
    tables = {ref["Ref"]: table_name(logical) for logical, (var, _) in TABLE_ENV.items()
              if isinstance(ref := t["Globals"]["Function"]["Environment"]["Variables"][var], dict)}  # fmt: skip
    buckets = {"ImagesBucket": bucket_name()}  # the local images bucket, in the moto process
    env: dict[str, str] = {}
    merged = {**t["Globals"]["Function"]["Environment"]["Variables"],
              **t["Resources"]["GatewayFunction"]["Properties"]["Environment"]["Variables"]}  # fmt: skip
    for name, value in merged.items():
        if isinstance(value, dict) and "Ref" in value:
            ref = value["Ref"]
            value = tables.get(ref) or buckets.get(ref) or PARAMETERS.get(ref) or t["Parameters"][ref]["Default"]
        env[name] = str(value)
    return env


@dataclass
class Gateway:
    proc: subprocess.Popen
    url: str
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.log.read_text(errors="replace").splitlines():
            with suppress(ValueError):
                if isinstance(obj := json.loads(raw), dict):
                    out.append(obj)
        return out

    def request_line(self, request_id: str) -> dict[str, Any] | None:
        return next((x for x in self.lines() if x.get("message") == "request" and x.get("request_id") == request_id),
                    None)  # fmt: skip

    def metrics_line(self, request_id: str) -> dict[str, Any] | None:
        return next((x for x in self.lines() if "_aws" in x and x.get("request_id") == request_id), None)

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP now, if ``read_all`` has not already (at the last byte); SIGCONT after the checks."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)


def start_gateway(tmp: Path, dynamo_endpoint: str, config: Path, name: str) -> Gateway:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "AWS_", "POWERTOOLS_", "PISCES_"))}
    env |= template_environment()
    env.pop("AWS_LAMBDA_EXEC_WRAPPER")  # the adapter itself is not here: run.sh is what it would exec
    env |= FAKE_CREDENTIALS
    env |= {
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        "PORT": str(port),
        "LAMBDA_TASK_ROOT": str(TASK_ROOT),
        "AWS_LAMBDA_FUNCTION_NAME": f"pisces-gateway-{name}",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_DYNAMODB": dynamo_endpoint,
        "AWS_ENDPOINT_URL_S3": dynamo_endpoint,  # the same moto process holds the images bucket
        "PISCES_CONFIG": str(config),  # the template's is pisces.yaml (mock only): the fakes' here
        "PISCES_TEST_UPSTREAM_KEY": UPSTREAM_SECRET,
    }
    log = tmp / f"gateway-{name}-{port}.log"
    with log.open("w") as out:  # the child has its own copy of the descriptor: ours is closed at once
        proc = subprocess.Popen(["bash", "run.sh"], cwd=TASK_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, WAIT)
    except BaseException:
        proc.kill()
        raise
    return Gateway(proc, f"http://127.0.0.1:{port}", log)


def stop(gw: Gateway) -> None:
    with suppress(ProcessLookupError):
        os.kill(gw.proc.pid, signal.SIGCONT)
    gw.proc.terminate()
    try:
        gw.proc.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        gw.proc.kill()
        gw.proc.wait()


@dataclass
class World:
    gateway: Gateway
    dynamo: Any  # a botocore client of the moto process
    endpoint: str
    keys: KeyStore
    usage: UsageStore
    openai: FakeOpenAI
    anthropic: FakeAnthropic
    gemini: FakeGemini
    config: Path
    tmp: Path
    created: list[str]

    def key(self, balance: int = BALANCE) -> str:
        plaintext = self.keys.create(name="lambda", balance=balance)[0]
        self.created.append(plaintext)
        return plaintext

    def balance(self, key: str) -> int:
        rec = self.keys.get_by_hash(hash_key(key))
        assert rec is not None
        return rec.balance

    def holds(self, key: str) -> list[str]:
        item = self.dynamo.get_item(TableName=self.keys.table, Key={"key_hash": {"S": hash_key(key)}})["Item"]
        return item.get("holds", {}).get("SS", [])

    def idempotency_status(self) -> list[str]:
        items = self.dynamo.scan(TableName=table_name("idempotency"))["Items"]
        return [i.get("status", {}).get("S", "") for i in items]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("lambda")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    code = ("import threading; from pisces.localaws import LocalDynamo; "
            f"LocalDynamo(port={port}).start(); threading.Event().wait()")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT")}
    moto = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(endpoint, moto, WAIT)
        from botocore.session import get_session

        creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        client = get_session().create_client("dynamodb", region_name="us-east-1", endpoint_url=endpoint, **creds)
        deadline = time.monotonic() + WAIT
        while set(client.list_tables()["TableNames"]) < {table_name(t) for t in TABLES}:
            assert time.monotonic() < deadline, "moto did not create the tables"
            time.sleep(0.05)
        with serving(FakeOpenAI()) as oa, serving(FakeAnthropic()) as an, serving(FakeGemini()) as ge:
            config = tmp / "pisces.json"  # JSON is YAML
            config.write_text(json.dumps(gateway_config_raw(oa.url, an.url, ge.url)))
            gw = start_gateway(tmp, endpoint, config, "main")
            try:
                yield World(gw, client, endpoint, KeyStore(client, table_name("keys")),
                            UsageStore(client, table_name("usage")), oa, an, ge, config, tmp, [])  # fmt: skip
            finally:
                stop(gw)
    finally:
        moto.terminate()
        moto.wait(timeout=WAIT)


# ------------------------------------------------------------------ one request, read to its last byte


def lambda_headers(key_header: dict[str, str], **extra: str) -> tuple[dict[str, str], str]:
    """Headers as the adapter passes them: the client's, plus x-amzn-lambda-context."""
    lambda_id = str(uuid.uuid4())
    ctx = {"request_id": lambda_id, "deadline": int(time.time() * 1000) + 900_000,
           "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:pisces-gateway",
           "xray_trace_id": None, "env_config": {"function_name": "pisces-gateway", "memory": 1024}}  # fmt: skip
    return {**key_header, "x-amzn-lambda-context": json.dumps(ctx), **extra}, lambda_id


def _complete(raw: bytes, media_type: str) -> bool:
    """Whether ``raw`` ends in the response's terminal event: OpenAI's ``[DONE]``, Anthropic's
    ``message_stop``, Gemini's last chunk (its finishReason) or a JSON body (the array's ``]``)."""
    if media_type.startswith("text/event-stream"):
        events = SSEParser().feed(raw)
        if not events or not raw.endswith((b"\n\n", b"\r\n\r\n")):
            return False
        if (events[-1].event or "").startswith("response."):  # OpenAI Responses: its terminal events by name
            return events[-1].event in ("response.completed", "response.incomplete", "response.failed")
        last = events[-1].data
        return last == "[DONE]" or '"message_stop"' in last or '"finishReason"' in last or '"error"' in last
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def read_all(
    world: World, path: str, body: dict, headers: dict[str, str], on_first: Any = None
) -> tuple[httpx.Response, bytes]:
    """Send and read up to the terminal event, then freeze the gateway at once, before even the
    chunked encoding's end: the terminal event is the last byte a client waits for. ``on_first`` is
    called once the first chunk is in (to release a gated upstream)."""
    raw = b""
    with httpx.stream("POST", world.gateway.url + path, json=body, headers=headers, timeout=WAIT) as r:
        for part in r.iter_raw():
            if not raw and on_first is not None:
                on_first()
            raw += part
            if _complete(raw, r.headers.get("content-type", "")):
                os.kill(world.gateway.proc.pid, signal.SIGSTOP)  # the instant the last byte is read
                break
    return r, raw


def sse_data(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in SSEParser().feed(raw) if e.data and e.data != "[DONE]"]


def assert_owed_is_durable(world: World, key: str, r: httpx.Response, lambda_id: str, cost: int | None) -> UsageRecord:
    """Checked while the gateway is frozen: what the request owed is all there already."""
    rid = r.headers["x-request-id"]
    rec = world.usage.get(rid)
    assert rec is not None, "the usage record is written before the last byte"
    if cost is not None:
        assert rec.cost == cost
    assert world.balance(key) == BALANCE - rec.cost, "charged exactly the record's cost, no hold left"
    assert world.holds(key) == [], "the hold is gone from the key item"
    line = world.gateway.request_line(rid)
    assert line is not None, "the log line is written before the last byte"
    assert line["lambda_request_id"] == lambda_id and line["cold_start"] is False
    assert line["status"] == r.status_code and line["cost_micros"] == rec.cost
    metrics = world.gateway.metrics_line(rid)
    assert metrics is not None, "the EMF metrics are flushed before the last byte"
    names = {m["Name"] for d in metrics["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"Requests", "LatencyMs"} <= names and metrics["Requests"] == [1.0]
    assert metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Pisces"
    assert metrics["lambda_request_id"] == lambda_id
    return rec


OPENAI_ASK = {"model": "gpt-fake", "messages": [{"role": "user", "content": "one two three four"}]}
CLAUDE_ASK = {"model": "claude-fake", "max_tokens": 50, "messages": [{"role": "user", "content": "one two three"}]}
GEMINI_ASK = {"contents": [{"role": "user", "parts": [{"text": "one two three"}]}]}
IMAGE_ASK = {"model": "GPT-Image-1", "prompt": "A cute kitten", "n": 2, "size": "1024x1024"}
RESPONSES_ASK = {"model": "gpt-resp", "input": "one two three", "instructions": "brief"}


def test_the_first_invocation_is_the_cold_start(world):
    key = world.key()
    headers, lambda_id = lambda_headers({"Authorization": f"Bearer {key}"})
    r = httpx.get(world.gateway.url + "/v1/models", headers=headers, timeout=WAIT)
    with world.gateway.frozen():
        line = world.gateway.request_line(r.headers["x-request-id"])
        assert line is not None and line["lambda_request_id"] == lambda_id
        assert line["cold_start"] is True, "the readiness check before it was no invocation"


DOORS = {
    "openai": ("/v1/chat/completions", {**OPENAI_ASK}, "auth"),
    "openai-stream": ("/v1/chat/completions",
                      {**OPENAI_ASK, "stream": True, "stream_options": {"include_usage": True}}, "auth"),
    "anthropic": ("/v1/messages", CLAUDE_ASK, "x-api-key"),
    "anthropic-stream": ("/v1/messages", {**CLAUDE_ASK, "stream": True}, "x-api-key"),
    "gemini": ("/v1beta/models/gemini-fake:generateContent", GEMINI_ASK, "goog"),
    "gemini-sse": ("/v1beta/models/gemini-fake:streamGenerateContent?alt=sse", GEMINI_ASK, "goog"),
    "gemini-array": ("/v1beta/models/gemini-fake:streamGenerateContent", GEMINI_ASK, "goog"),
    "images": ("/v1/images/generations", IMAGE_ASK, "auth"),
    "responses": ("/v1/responses", RESPONSES_ASK, "auth"),
    "responses-stream": ("/v1/responses", {**RESPONSES_ASK, "stream": True}, "auth"),
}  # fmt: skip


def _key_header(style: str, key: str) -> dict[str, str]:
    return {"auth": {"Authorization": f"Bearer {key}"}, "x-api-key": {"x-api-key": key,
            "anthropic-version": "2023-06-01"}, "goog": {"x-goog-api-key": key}}[style]  # fmt: skip


def _final_cost(door: str, raw: bytes) -> int:
    """The cost the response itself states, on its last event that can carry it."""
    if door in ("openai", "anthropic", "gemini", "images", "responses"):
        return json.loads(raw)["pisces"]["cost"]
    if door == "responses-stream":  # response.completed carries the whole response, its pisces object in it
        return sse_data(raw)[-1]["response"]["pisces"]["cost"]
    if door == "gemini-array":
        return json.loads(raw)[-1]["pisces"]["cost"]
    events = sse_data(raw)
    carrying = [e for e in events if "cost" in (e.get("pisces") or {})]
    assert carrying, f"no event of the {door} stream states its cost"
    return carrying[-1]["pisces"]["cost"]


@pytest.mark.parametrize("door", list(DOORS))
def test_settled_logged_and_measured_before_the_last_byte(world, door):
    path, body, style = DOORS[door]
    key = world.key()
    headers, lambda_id = lambda_headers(_key_header(style, key))
    r, raw = read_all(world, path, body, headers)
    with world.gateway.frozen():
        assert r.status_code == 200, raw[:300]
        if door.endswith(("stream", "sse")):
            assert r.headers["content-type"].startswith("text/event-stream")
        cost = _final_cost(door, raw)
        assert cost > 0
        rec = assert_owed_is_durable(world, key, r, lambda_id, cost)
        assert rec.outcome == "ok" and rec.usage_source == "upstream"
        if door == "images":  # stored in S3 before the last byte: fetchable while the gateway is frozen
            assert rec.images == 2
            for item in json.loads(raw)["data"]:
                assert httpx.get(item["url"], timeout=WAIT).content[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_error_is_settled_before_its_error_body(world, stream):
    key = world.key()
    headers, lambda_id = lambda_headers({"Authorization": f"Bearer {key}"})
    r, raw = read_all(world, "/v1/chat/completions", {**OPENAI_ASK, "model": "fail-500", "stream": stream}, headers)
    with world.gateway.frozen():
        assert r.status_code == 502 and json.loads(raw)["error"]["code"] == "upstream_error"
        rec = assert_owed_is_durable(world, key, r, lambda_id, 0)
        assert (rec.outcome, rec.status) == ("upstream_error", 502)
        line = world.gateway.request_line(r.headers["x-request-id"])
        assert line["upstream_status"] == 500


def test_an_upstream_cut_mid_stream_is_settled_before_its_error_event(world):
    """The fake drops its connection mid-stream: the client's last event is the in-protocol error,
    and the estimate of what was generated is charged before it is sent."""
    key = world.key()
    headers, lambda_id = lambda_headers({"Authorization": f"Bearer {key}"})
    r, raw = read_all(world, "/v1/chat/completions", {**OPENAI_ASK, "model": "cut", "stream": True}, headers)
    with world.gateway.frozen():
        assert r.status_code == 200 and "error" in sse_data(raw)[-1]
        rec = assert_owed_is_durable(world, key, r, lambda_id, None)
        assert (rec.outcome, rec.usage_source) == ("upstream_error", "estimate") and rec.cost > 0


def test_a_client_that_hangs_up_mid_stream_is_settled_in_its_request(world):
    """The gated fake sends one chunk and then waits; the client leaves after the first chunk. The
    gateway notices at its next keep-alive, and settles before the request's task ends: the log line
    (written last) is the event waited for, then the gateway is frozen and the rest is checked."""
    key = world.key()
    headers, lambda_id = lambda_headers({"Authorization": f"Bearer {key}"})
    body = {**OPENAI_ASK, "model": "gated", "stream": True}
    with httpx.stream("POST", world.gateway.url + "/v1/chat/completions", json=body, headers=headers,
                      timeout=WAIT) as r:  # fmt: skip
        rid = r.headers["x-request-id"]
        next(r.iter_raw())  # the first chunk, then hang up
    deadline = time.monotonic() + WAIT
    while world.gateway.request_line(rid) is None:
        assert time.monotonic() < deadline, "the hung-up request was never logged"
        time.sleep(0.05)
    with world.gateway.frozen():
        rec = world.usage.get(rid)
        assert rec is not None and rec.outcome == "client_cut" and rec.usage_source == "estimate"
        assert rec.cost > 0 and world.balance(key) == BALANCE - rec.cost and world.holds(key) == []
        assert world.gateway.request_line(rid)["lambda_request_id"] == lambda_id


@pytest.mark.parametrize("door", ["responses", "responses-stream"])
def test_a_stored_response_is_durable_before_its_last_byte(world, door):
    """The Responses door stores its response (for previous_response_id) before the last byte too."""
    path, body, style = DOORS[door]
    key = world.key()
    headers, _ = lambda_headers(_key_header(style, key))
    r, raw = read_all(world, path, body, headers)
    with world.gateway.frozen():
        assert r.status_code == 200
        rid = sse_data(raw)[-1]["response"]["id"] if door.endswith("stream") else json.loads(raw)["id"]
        item = world.dynamo.get_item(TableName=table_name("responses"), Key={"id": {"S": rid}}).get("Item")
        assert item is not None, "the response is stored before its last byte"
        assert item["key_id"]["S"] == world.keys.get_by_hash(hash_key(key)).key_id


@pytest.mark.parametrize("door", ["openai-stream", "anthropic", "gemini-array", "responses-stream"])
def test_an_idempotent_response_is_complete_before_its_last_byte(world, door):
    """Frozen right after the first response: a second gateway process replays it byte for byte."""
    path, body, style = DOORS[door]
    key = world.key()
    idem = f"lambda-{door}-{uuid.uuid4()}"
    headers, _ = lambda_headers(_key_header(style, key), **{"Idempotency-Key": idem})
    r, raw = read_all(world, path, body, headers)
    with world.gateway.frozen():
        assert r.status_code == 200
        charged = BALANCE - world.balance(key)
        assert charged == world.usage.get(r.headers["x-request-id"]).cost > 0
        assert "COMPLETED" in world.idempotency_status()
        second = start_gateway(world.tmp, world.endpoint, world.config, "replayer")
        try:
            again_headers, lambda_id = lambda_headers(_key_header(style, key), **{"Idempotency-Key": idem})
            with httpx.stream("POST", second.url + path, json=body, headers=again_headers, timeout=WAIT) as again:
                replayed = b"".join(again.iter_raw())
            assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
            assert replayed == raw, "the replay is the stored response, byte for byte"
            assert world.balance(key) == BALANCE - charged, "a replay charges nothing"
            os.kill(second.proc.pid, signal.SIGSTOP)  # the replayer too has logged before its last byte
            line = second.request_line(again.headers["x-request-id"])
            assert line is not None and line["idempotent_replay"] is True and line["lambda_request_id"] == lambda_id
        finally:
            stop(second)


# ------------------------------------------------------------------ the embeddings doors

EMBED_DOORS = {
    # (path, body, key style, usage_source): OpenAI's door on an OpenAI upstream, the mock, Gemini's
    # single and batch doors on a Gemini upstream (which reports no usage: the count is charged)
    "embeddings": ("/v1/embeddings", {"model": "text-embedding-fake", "input": ["one two three", "four"]}, "auth",
                   "upstream"),
    "embeddings-mock-base64": ("/v1/embeddings", {"model": "mock-embed", "input": [[1, 2, 3], "four five"],
                                                  "encoding_format": "base64"}, "auth", "upstream"),
    "gemini-embed": ("/v1beta/models/gemini-embedding-fake:embedContent",
                     {"content": {"parts": [{"text": "one two three"}]}}, "goog", "estimate"),
    "gemini-batch-embed": ("/v1/models/gemini-embedding-fake:batchEmbedContents",
                           {"requests": [{"model": "models/gemini-embedding-fake",
                                          "content": {"parts": [{"text": t}]}} for t in ("one two", "three")]},
                           "goog", "estimate"),
}  # fmt: skip


@pytest.mark.parametrize("door", list(EMBED_DOORS))
def test_embeddings_settled_logged_and_measured_before_the_last_byte(world, door):
    path, body, style, source = EMBED_DOORS[door]
    key = world.key()
    headers, lambda_id = lambda_headers(_key_header(style, key))
    r, raw = read_all(world, path, body, headers)
    with world.gateway.frozen():
        assert r.status_code == 200, raw[:300]
        answer = json.loads(raw)
        cost = answer["pisces"]["cost"]
        assert cost > 0 and answer["pisces"]["request_id"] == r.headers["x-request-id"]
        rec = assert_owed_is_durable(world, key, r, lambda_id, cost)
        assert (rec.outcome, rec.usage_source, rec.output_tokens) == ("ok", source, 0) and rec.input_tokens > 0


def test_an_embeddings_upstream_error_is_settled_before_its_error_body(world):
    key = world.key()
    headers, lambda_id = lambda_headers({"Authorization": f"Bearer {key}"})
    r, raw = read_all(world, "/v1/embeddings", {"model": "embed-fail-500", "input": "x"}, headers)
    with world.gateway.frozen():
        assert r.status_code == 502 and json.loads(raw)["error"]["code"] == "upstream_error"
        rec = assert_owed_is_durable(world, key, r, lambda_id, 0)
        assert (rec.outcome, rec.status) == ("upstream_error", 502)


def test_a_gateway_killed_between_admission_and_settlement_is_reconciled_once(world):
    """SIGKILL while the upstream holds its stream: the hold stays on the key item, no record. Two
    reconcilers at once (past the function's timeout) release it exactly once."""
    gw = start_gateway(world.tmp, world.endpoint, world.config, "doomed")
    key = world.key()
    seen = len(world.openai.requests)
    headers = {"Authorization": f"Bearer {key}"}
    body = {**OPENAI_ASK, "model": "gated", "stream": True}  # priced: its hold is real money
    try:
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers=headers, timeout=WAIT) as r:
            rid = r.headers["x-request-id"]
            # the stream has started: admitted, the upstream is generating. The iterator is kept: one
            # dropped at once closes the connection, and the gateway would settle the cut before the kill
            chunks = r.iter_raw()
            next(chunks)
            assert len(world.openai.requests) > seen
            gw.proc.kill()
            gw.proc.wait(timeout=WAIT)
    except httpx.HTTPError:
        pass  # the connection died with the gateway
    finally:
        stop(gw)
    holds = world.holds(key)
    assert len(holds) == 1 and holds[0].endswith(f"|{rid}")
    assert world.usage.get(rid) is None and world.balance(key) < BALANCE
    later = time.time() + 2000
    reports: list[Any] = []
    barrier = threading.Barrier(2)

    def reconcile() -> None:
        barrier.wait()
        reports.append(Reconciler(world.dynamo, table_name("keys"), table_name("usage")).run(now=later))

    threads = [threading.Thread(target=reconcile) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=WAIT)
    assert sum(rep.abandoned.count(rid) + rep.released.count(rid) for rep in reports) == 1
    assert world.balance(key) == BALANCE and world.holds(key) == []
    rec = world.usage.get(rid)
    assert rec is not None and rec.outcome == "abandoned" and rec.cost == 0


def test_no_secret_in_the_gateway_output(world):
    text = "".join(p.read_text() for p in world.tmp.glob("gateway-*.log"))
    assert world.created and '"message":"request"' in text.replace(" ", "")
    for secret in (UPSTREAM_SECRET, *world.created):
        assert secret not in text
    assert "Bearer " not in text


def test_an_idempotency_key_claimed_by_a_killed_gateway_frees_itself_and_runs_once(world):
    """The claim of a request whose container died is a 409 until it expires (the function's timeout
    and a minute; here the claim's expiry is moved to the past, as time would); the retry then runs
    once and is charged once, and the dead request's hold goes back through the reconciler."""
    gw = start_gateway(world.tmp, world.endpoint, world.config, "doomed-idem")
    key = world.key()
    idem = {"Idempotency-Key": f"dead-{uuid.uuid4()}"}
    headers = {"Authorization": f"Bearer {key}", **idem}
    gated = {**OPENAI_ASK, "model": "gated", "stream": True}
    try:
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=gated, headers=headers, timeout=WAIT) as r:
            chunks = r.iter_raw()  # kept until the kill (see the test above)
            next(chunks)
            gw.proc.kill()
            gw.proc.wait(timeout=WAIT)
    except httpx.HTTPError:
        pass
    finally:
        stop(gw)
    busy = httpx.post(world.gateway.url + "/v1/chat/completions", json=gated, headers=headers, timeout=WAIT)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "idempotency_in_progress"
    table = table_name("idempotency")
    claims = [i for i in world.dynamo.scan(TableName=table)["Items"] if i["status"]["S"] == "INPROGRESS"]
    assert len(claims) == 1
    expiry_ms = int(claims[0]["in_progress_expiration"]["N"])
    assert expiry_ms - time.time() * 1000 <= 961_000, "no longer than the function's timeout and a minute"
    world.dynamo.update_item(TableName=table, Key={"id": claims[0]["id"]},
                             UpdateExpression="SET in_progress_expiration = :past",
                             ExpressionAttributeValues={":past": {"N": "1"}})  # fmt: skip
    release = lambda: httpx.post(f"{world.openai.url}/release")  # noqa: E731
    r, raw = read_all(world, "/v1/chat/completions", gated, headers, on_first=release)
    with world.gateway.frozen():
        assert r.status_code == 200 and raw.endswith(b"data: [DONE]\n\n")
        assert "idempotent-replayed" not in r.headers
        rec = world.usage.get(r.headers["x-request-id"])
        assert rec is not None and rec.outcome == "ok"
    report = Reconciler(world.dynamo, table_name("keys"), table_name("usage")).run(now=time.time() + 2000)
    assert len([h for h in report.abandoned if h]) >= 1
    assert world.balance(key) == BALANCE - rec.cost, "charged once: the retry; the dead request's hold is back"
    replay = httpx.post(world.gateway.url + "/v1/chat/completions", json=gated, headers=headers, timeout=WAIT)
    assert replay.headers["idempotent-replayed"] == "true"
