"""pisces.store.dynamo_http: DynamoDB on the event loop, held to what botocore's client does."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from botocore import exceptions as be
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from pisces.localaws import LocalDynamo
from pisces.store import dynamo, dynamo_http
from pisces.store.dynamo import Call, Pause, drive, drive_async
from pisces.store.dynamo_http import AsyncDynamo, Credentials, operation_name, sign
from pisces.store.keys import KeyStore
from pisces.store.ledger import Admitted, Ledger, RateLimits
from pisces.store.schema import table_name

NOW = datetime(2026, 12, 2, 18, 30, 5, tzinfo=UTC)
CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


@pytest.mark.parametrize("token", [None, "FQoGZXIvYXdzEXAMPLETOKEN"])
def test_the_signature_is_botocores_byte_for_byte(monkeypatch: pytest.MonkeyPatch, token: str | None) -> None:
    body = b'{"TableName":"pisces-keys","Key":{"key_hash":{"S":"abc"}}}'
    target = "DynamoDB_20120810.GetItem"
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *a, **k: NOW.replace(tzinfo=None))
    request = AWSRequest(
        method="POST",
        url="https://dynamodb.eu-west-1.amazonaws.com/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target},
    )
    SigV4Auth(BotoCredentials(CREDS.access_key, CREDS.secret_key, token), "dynamodb", "eu-west-1").add_auth(request)
    ours = sign(Credentials(CREDS.access_key, CREDS.secret_key, token), "eu-west-1",
                "dynamodb.eu-west-1.amazonaws.com", target, body, NOW)  # fmt: skip
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-date"] == request.headers["X-Amz-Date"]
    assert ours.get("x-amz-security-token") == request.headers.get("X-Amz-Security-Token")


def test_a_port_in_the_endpoint_is_part_of_the_signed_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *a, **k: NOW.replace(tzinfo=None))
    request = AWSRequest(method="POST", url="http://127.0.0.1:8765/", data=b"{}",
                         headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "T"})  # fmt: skip
    SigV4Auth(BotoCredentials(CREDS.access_key, CREDS.secret_key), "dynamodb", "us-east-1").add_auth(request)
    ours = sign(CREDS, "us-east-1", "127.0.0.1:8765", "T", b"{}", NOW)
    assert ours["authorization"] == request.headers["Authorization"]


def test_operation_names() -> None:
    assert operation_name("transact_write_items") == "TransactWriteItems"
    assert operation_name("get_item") == "GetItem"


@pytest.fixture
def local(local_dynamo: LocalDynamo) -> LocalDynamo:
    """The session's moto (its own would repoint this process's AWS_ENDPOINT_URL_DYNAMODB for every later test)."""
    return local_dynamo


def aio(fn: Callable[[AsyncDynamo], Any]) -> Any:
    async def go() -> Any:
        db = AsyncDynamo.from_env()
        try:
            return await fn(db)
        finally:
            await db.aclose()

    return asyncio.run(go())


def test_answers_and_errors_are_botocores_against_moto(local: LocalDynamo) -> None:
    store = KeyStore(dynamo.client(), table_name("keys"))
    _, rec = store.create(name="wire", balance=5_000)
    get = {"TableName": store.table, "Key": {"key_hash": {"S": rec.key_hash}}, "ConsistentRead": True}
    assert aio(lambda db: db.call("get_item", get)) == {"Item": dynamo.client().get_item(**get)["Item"]}
    assert aio(lambda db: store.get_by_hash_async(rec.key_hash, db)) == rec

    failing = {"TableName": store.table, "Key": {"key_hash": {"S": rec.key_hash}},
               "UpdateExpression": "SET balance = :b", "ConditionExpression": "balance > :big",
               "ExpressionAttributeValues": {":b": {"N": "1"}, ":big": {"N": "99999999"}},
               "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}  # fmt: skip
    with pytest.raises(be.ClientError) as ours:
        aio(lambda db: db.call("update_item", failing))
    with pytest.raises(be.ClientError) as theirs:
        dynamo.client().update_item(**failing)
    assert dynamo.code(ours.value) == dynamo.code(theirs.value) == "ConditionalCheckFailedException"
    assert ours.value.response["Item"] == theirs.value.response["Item"]
    assert ours.value.operation_name == "UpdateItem"

    with pytest.raises(be.ClientError) as missing:
        aio(lambda db: db.call("get_item", {"TableName": "no-such-table", "Key": {"k": {"S": "x"}}}))
    assert dynamo.code(missing.value) == "ResourceNotFoundException"


def test_admission_and_settlement_on_the_loop_match_the_thread_path(local: LocalDynamo) -> None:
    store = KeyStore(dynamo.client(), table_name("keys"))
    _, rec = store.create(name="ledger", balance=10_000)
    ledger = Ledger(dynamo.client(), store.table, table_name("usage"))
    limits = RateLimits(requests=2, tokens=0)

    async def admit_twice_then_refuse(db: AsyncDynamo) -> list[Any]:
        ledger.db = db
        return [await ledger.admit_async(rec.key_hash, 1_000, limits, None, f"r{i}") for i in range(3)]

    first, second, third = aio(admit_twice_then_refuse)
    assert isinstance(first, Admitted) and isinstance(second, Admitted)
    assert (first.balance, second.balance, second.requests) == (9_000, 8_000, 2)
    assert third.reason == "requests"
    record = {"request_id": {"S": "r0"}, "key_id": {"S": rec.key_id}, "cost": {"N": "250"},
              "input_tokens": {"N": "3"}, "output_tokens": {"N": "4"}}  # fmt: skip

    async def settle_twice(db: AsyncDynamo) -> list[bool]:
        ledger.db = db
        tag = first.hold.tag if first.hold else None
        return [await ledger.settle_async(rec.key_hash, 1_000, first.month, record, tag) for _ in range(2)]

    assert aio(settle_twice) == [True, False]  # the second finds the record: charged once
    item = dynamo.client().get_item(TableName=store.table, Key={"key_hash": {"S": rec.key_hash}})["Item"]
    assert int(item["balance"]["N"]) == 10_000 - 250 - 1_000  # r1's hold still out
    assert [t.split("|")[-1] for t in item["holds"]["SS"]] == ["r1"]


def steps_with_a_retry() -> dynamo.Steps[list[Any]]:
    seen: list[Any] = []
    try:
        yield Call("explode", {})
    except RuntimeError as e:
        seen.append(str(e))
    yield Pause(0)
    seen.append((yield Call("echo", {"x": 1})))
    return seen


def test_drive_and_drive_async_run_the_same_steps() -> None:
    class Sync:
        def explode(self) -> None:
            raise RuntimeError("boom")

        def echo(self, **kw: Any) -> dict[str, Any]:
            return kw

    class Async:
        async def call(self, method: str, params: dict[str, Any]) -> Any:
            return getattr(Sync(), method)(**params)

    assert drive(Sync(), steps_with_a_retry()) == ["boom", {"x": 1}]
    assert asyncio.run(drive_async(Async(), steps_with_a_retry())) == ["boom", {"x": 1}]  # type: ignore[arg-type]


def scripted(answers: list[Any]) -> tuple[AsyncDynamo, list[httpx.Request]]:
    """An AsyncDynamo whose transport answers from ``answers`` in turn (an httpx.Response or an exception)."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        answer = answers[min(len(sent), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    transport = httpx.MockTransport(handler)
    return AsyncDynamo("https://dynamodb.us-east-1.amazonaws.com", "us-east-1", CREDS, transport), sent


def answer(status: int, body: dict[str, Any], crc: int | None = None) -> httpx.Response:
    raw = json.dumps(body).encode()
    return httpx.Response(status, content=raw, headers={"x-amz-crc32": str(zlib.crc32(raw) if crc is None else crc)})


def run(db: AsyncDynamo) -> Any:
    async def go() -> Any:
        try:
            return await db.call("get_item", {"TableName": "t", "Key": {"k": {"S": "v"}}})
        finally:
            await db.aclose()

    return asyncio.run(go())


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dynamo_http, "BACKOFF_SECONDS", 0.0)


def test_a_5xx_and_a_throttle_are_retried_then_answered() -> None:
    db, sent = scripted([answer(500, {"__type": "x#InternalServerError"}),
                         answer(400, {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException"}),
                         answer(200, {"Item": {"k": {"S": "v"}}})])  # fmt: skip
    assert run(db) == {"Item": {"k": {"S": "v"}}}
    assert len(sent) == 3
    assert sent[0].headers["x-amz-target"] == "DynamoDB_20120810.GetItem"
    assert sent[0].headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")


def test_throttling_past_the_attempts_is_the_client_error() -> None:
    db, sent = scripted([answer(400, {"__type": "x#ProvisionedThroughputExceededException", "message": "slow"})])
    with pytest.raises(be.ClientError) as e:
        run(db)
    assert len(sent) == 3 and dynamo.code(e.value) == "ProvisionedThroughputExceededException"
    assert e.value.response["Error"]["Message"] == "slow"
    assert dynamo.unavailable(e.value) is not None  # the door's 503


def test_a_refusal_is_not_retried() -> None:
    db, sent = scripted([answer(400, {"__type": "x#ConditionalCheckFailedException", "Item": {"a": {"N": "1"}}})])
    with pytest.raises(be.ClientError) as e:
        run(db)
    assert len(sent) == 1 and e.value.response["Item"] == {"a": {"N": "1"}}
    assert dynamo.unavailable(e.value) is None


@pytest.mark.parametrize(
    ("failure", "raised"),
    [
        (httpx.ReadTimeout("slow"), be.ReadTimeoutError),
        (httpx.ConnectError("refused"), be.EndpointConnectionError),
        (httpx.ConnectTimeout("no route"), be.EndpointConnectionError),
    ],
)
def test_transport_failures_are_retried_then_botocores_errors(failure: Exception, raised: type) -> None:
    db, sent = scripted([failure])
    with pytest.raises(raised) as e:
        run(db)
    assert len(sent) == 3
    assert dynamo.unavailable(e.value) is not None


def test_a_damaged_answer_is_retried_by_its_crc32() -> None:
    db, sent = scripted([answer(200, {"Item": {}}, crc=1), answer(200, {"Item": {"k": {"S": "ok"}}})])
    assert run(db) == {"Item": {"k": {"S": "ok"}}} and len(sent) == 2
    db, sent = scripted([answer(200, {"Item": {}}, crc=1)])
    with pytest.raises(be.ChecksumError):
        run(db)
    assert len(sent) == 3


def test_credentials_come_from_the_environment_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "tok")
    assert AsyncDynamo("http://127.0.0.1:1", "us-east-1").credentials() == Credentials("AKIAENV", "secret", "tok")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9/")
    monkeypatch.setenv("AWS_REGION", "eu-west-2")
    db = AsyncDynamo.from_env()
    assert (db.endpoint, db.host, db.region) == ("http://127.0.0.1:9/", "127.0.0.1:9", "eu-west-2")
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB")
    assert AsyncDynamo.from_env().endpoint == "https://dynamodb.eu-west-2.amazonaws.com/"
