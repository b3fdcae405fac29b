"""`pisces keys ...` against the moto DynamoDB server; `--stack` through moto's CloudFormation."""

from __future__ import annotations

import json

import boto3
import pytest

from pisces.cli import main
from pisces.store import dynamo
from pisces.store.keys import hash_key
from pisces.store.schema import create_tables, table_name
from pisces.store.usage import UsageRecord, UsageStore, usage_report


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_create_list_revoke(local_dynamo, key_store, capsys):
    ep = ["--endpoint-url", local_dynamo.endpoint]
    code, out, err = run(capsys, *ep, "keys", "create", "--name", "cli-test", "--models", "gpt-*", "--models", "m")
    assert code == 0 and "shown once" in err
    created = json.loads(out)
    assert created["key"].startswith("pisces-") and created["allowed_models"] == ["gpt-*", "m"]
    assert key_store.get_by_hash(hash_key(created["key"])).name == "cli-test"

    code, out, _ = run(capsys, *ep, "keys", "list")
    assert code == 0 and created["key_id"] in out and created["key"] not in out
    code, out, _ = run(capsys, *ep, "--json", "keys", "list")
    assert any(k["key_id"] == created["key_id"] and k["status"] == "active" for k in json.loads(out))

    code, out, _ = run(capsys, *ep, "keys", "revoke", created["key_id"])
    assert code == 0 and json.loads(out)["status"] == "revoked"
    code, _, err = run(capsys, *ep, "keys", "revoke", "key_nope")
    assert code == 1 and "no key" in err


def test_table_from_stack_output(local_dynamo, key_store, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDFORMATION", local_dynamo.endpoint)
    monkeypatch.delenv("PISCES_KEYS_TABLE", raising=False)
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    template = {
        "Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "pisces-cli-test"}}},
        "Outputs": {"KeysTableName": {"Value": key_store.table}},
    }
    cfn.create_stack(StackName="pisces-cli", TemplateBody=json.dumps(template))
    _, rec = key_store.create(name="via-stack")
    code, out, _ = run(
        capsys, "--endpoint-url", local_dynamo.endpoint, "--stack", "pisces-cli", "--json", "keys", "list"
    )
    assert code == 0 and rec.key_id in {k["key_id"] for k in json.loads(out)}
    with pytest.raises(SystemExit, match="no output"):
        from pisces.cli import stack_output

        stack_output("pisces-cli", "Nope", "us-east-1")


def test_unknown_table_is_a_clean_error(local_dynamo, capsys):
    code, _, err = run(capsys, "--endpoint-url", local_dynamo.endpoint, "--table", "no-such-table", "keys", "list")
    assert code == 1 and err.startswith("pisces:")


# ------------------------------------------------------------------ money: balances, limits, usage


@pytest.fixture
def ep(local_dynamo) -> list[str]:
    return ["--endpoint-url", local_dynamo.endpoint]


@pytest.fixture(scope="module")
def usage_store(local_dynamo) -> UsageStore:
    return UsageStore(dynamo.client(), table_name("usage"))


def test_create_with_money_and_list_shows_the_balance(ep, key_store, capsys):
    code, out, _ = run(
        capsys, *ep, "keys", "create", "--name", "funded", "--balance", "5.5", "--budget", "20", "--rpm", "60",
        "--tpm", "0",
    )  # fmt: skip
    assert code == 0
    created = json.loads(out)
    assert (created["balance"], created["balance_usd"], created["monthly_budget"], created["rpm"], created["tpm"]) == (
        5_500_000,
        "5.500000",
        20_000_000,
        60,
        0,
    )
    stored = key_store.get_by_id(created["key_id"])
    assert (stored.balance, stored.monthly_budget, stored.rpm, stored.tpm) == (5_500_000, 20_000_000, 60, 0)

    code, out, _ = run(capsys, *ep, "keys", "list")
    assert code == 0 and "balance_usd" in out.splitlines()[0]
    line = next(x for x in out.splitlines() if created["key_id"] in x)
    assert "5.500000" in line and "20.000000" in line and "unlimited" in line
    code, out, _ = run(capsys, *ep, "keys", "list", "--json")  # --json after the subcommand too
    listed = {k["key_id"]: k for k in json.loads(out)}
    assert listed[created["key_id"]]["balance_usd"] == "5.500000"


@pytest.mark.parametrize(
    "flags",
    [
        ["--balance", "abc"],
        ["--balance", "-1"],
        ["--balance", "1.0000001"],
        ["--budget", "NaN"],
        ["--rpm", "-1"],
        ["--rpm", "1.5"],
        ["--tpm", "lots"],
    ],
)
def test_create_with_bad_money_exits_2(ep, key_store, capsys, flags):
    before = len(key_store.list())
    code, out, err = run(capsys, *ep, "keys", "create", "--name", "bad", *flags)
    assert code == 2 and out == "" and err.startswith("pisces: ") and flags[0] in err and "Traceback" not in err
    assert len(key_store.list()) == before


def test_top_up(ep, key_store, capsys):
    _, rec = key_store.create(name="cli-top-up", balance=100)
    code, out, err = run(capsys, *ep, "keys", "top-up", rec.key_id, "10.50")
    assert code == 0, err
    body = json.loads(out)
    assert (body["balance"], body["balance_usd"]) == (10_500_100, "10.500100")
    assert "10.500000" in err and "10.500100" in err
    code, out, _ = run(capsys, *ep, "keys", "top-up", rec.key_id, "0.000001")
    assert code == 0 and json.loads(out)["balance"] == 10_500_101
    assert key_store.get_by_id(rec.key_id).balance == 10_500_101


@pytest.mark.parametrize("amount", ["0", "0.000000", "-1", "-0.5", "abc", "NaN", "inf", "1.0000001", "", "$5", "1e30"])
def test_top_up_with_a_bad_amount_exits_2(ep, key_store, capsys, amount):
    _, rec = key_store.create(name="cli-bad-top-up", balance=9)
    code, out, err = run(capsys, *ep, "keys", "top-up", rec.key_id, amount)
    assert code == 2 and out == "" and err.startswith("pisces: AMOUNT") and "Traceback" not in err
    assert key_store.get_by_id(rec.key_id).balance == 9


def test_top_up_of_an_unknown_key_exits_1(ep, capsys):
    code, out, err = run(capsys, *ep, "keys", "top-up", "key_nope", "1")
    assert code == 1 and out == "" and "no key with id key_nope" in err


def test_set_limits(ep, key_store, capsys):
    _, rec = key_store.create(name="cli-set", rpm=5, tpm=6)
    code, out, _ = run(capsys, *ep, "keys", "set", rec.key_id, "--budget", "100", "--rpm", "60", "--tpm", "default")
    assert code == 0
    body = json.loads(out)
    assert (body["monthly_budget"], body["monthly_budget_usd"], body["rpm"], body["tpm"]) == (
        100_000_000,
        "100.000000",
        60,
        None,
    )
    code, out, _ = run(capsys, *ep, "keys", "set", rec.key_id, "--budget", "none", "--tpm", "0")
    assert code == 0
    stored = key_store.get_by_id(rec.key_id)
    assert (stored.monthly_budget, stored.rpm, stored.tpm) == (None, 60, 0)


@pytest.mark.parametrize(
    "flags", [[], ["--budget", "-5"], ["--budget", "x"], ["--rpm", "-1"], ["--rpm", "ten"], ["--tpm", "2.5"]]
)
def test_set_with_bad_values_exits_2(ep, key_store, capsys, flags):
    _, rec = key_store.create(name="cli-bad-set", rpm=5)
    code, out, err = run(capsys, *ep, "keys", "set", rec.key_id, *flags)
    assert code == 2 and out == "" and err.startswith("pisces: ") and "Traceback" not in err
    assert key_store.get_by_id(rec.key_id).rpm == 5


def test_set_of_an_unknown_key_exits_1(ep, capsys):
    code, _, err = run(capsys, *ep, "keys", "set", "key_nope", "--rpm", "1")
    assert code == 1 and "no key with id key_nope" in err


def _record(key_id: str, created_at: str, model: str, cost: int, tokens: int) -> UsageRecord:
    return UsageRecord(
        request_id=f"cli_{key_id}_{created_at}_{model}",
        key_id=key_id,
        protocol="openai",
        client_model=model,
        model=model,
        input_tokens=tokens,
        output_tokens=2 * tokens,
        cost=cost,
        created_at=created_at,
        settled_at=created_at,
        expires_at=2_000_000_000,
    )


def test_usage_table_and_json(ep, key_store, usage_store, capsys):
    _, rec = key_store.create(name="cli-usage", balance=1_250_000)
    for r in [
        _record(rec.key_id, "2025-03-01T08:00:00.000Z", "gpt-a", 250_000, 10),
        _record(rec.key_id, "2025-03-01T09:00:00.000Z", "gpt-a", 1, 1),
        _record(rec.key_id, "2025-03-02T23:59:59.999Z", "mock-echo", 3_000_000, 5),
        _record(rec.key_id, "2025-03-03T00:00:00.000Z", "gpt-a", 7_000_000, 5),  # after --to
    ]:
        usage_store.client.put_item(TableName=usage_store.table, Item=r.item())

    code, out, err = run(capsys, *ep, "usage", rec.key_id, "--from", "2025-03-01", "--to", "2025-03-02")
    assert code == 0, err
    lines = out.splitlines()
    assert rec.key_id in lines[0] and "1.250000 USD" in lines[0] and "2025-03-01 .. 2025-03-02" in lines[1]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in lines[3:]}
    assert rows[("2025-03-01", "gpt-a")] == ["2", "11", "22", "0", "0.250001"]
    assert rows[("2025-03-02", "mock-echo")] == ["1", "5", "10", "0", "3.000000"]
    total = next(line.split() for line in lines if line.startswith("total"))
    assert total == ["total", "3", "16", "32", "0", "3.250001"]

    code, out, _ = run(capsys, *ep, "usage", rec.key_id, "--from", "2025-03-01", "--to", "2025-03-02", "--json")
    assert code == 0
    report = json.loads(out)
    assert report == usage_report(usage_store, key_store.get_by_id(rec.key_id), "2025-03-01", "2025-03-02")
    assert report["total"]["cost"] == 3_250_001 and report["total"]["cost_usd"] == "3.250001"
    code, out, _ = run(capsys, *ep, "--json", "usage", rec.key_id, "--from", "2025-03-03", "--to", "2025-03-03")
    assert code == 0 and json.loads(out)["total"]["cost"] == 7_000_000


@pytest.mark.parametrize(
    "flags", [["--from", "2025-3-1"], ["--to", "tomorrow"], ["--from", "2025-03-02", "--to", "2025-03-01"]]
)
def test_usage_with_bad_dates_exits_2(ep, key_store, capsys, flags):
    _, rec = key_store.create(name="cli-usage-dates")
    code, out, err = run(capsys, *ep, "usage", rec.key_id, *flags)
    assert code == 2 and out == "" and err.startswith("pisces: ") and "Traceback" not in err


def test_usage_of_an_unknown_key_exits_1(ep, capsys):
    code, _, err = run(capsys, *ep, "usage", "key_nope")
    assert code == 1 and "no key with id key_nope" in err


def test_usage_table_from_flag_and_stack_output(local_dynamo, key_store, usage_store, capsys, monkeypatch):
    ep = ["--endpoint-url", local_dynamo.endpoint]
    _, rec = key_store.create(name="cli-usage-stack")
    # a Usage table of its own, so only the stack's output can lead there
    stack_usage = UsageStore(usage_store.client, "pisces-usage-of-stack")
    create_tables(stack_usage.client, {"keys": key_store.table, "usage": stack_usage.table, "idempotency": "x"})
    stack_usage.client.put_item(
        TableName=stack_usage.table, Item=_record(rec.key_id, "2025-04-01T00:00:00.000Z", "m", 42, 1).item()
    )
    dates = ["--from", "2025-04-01", "--to", "2025-04-01"]

    code, _, err = run(capsys, *ep, "--usage-table", "no-such-table", "usage", rec.key_id, *dates)
    assert code == 1 and err.startswith("pisces:") and "Traceback" not in err

    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDFORMATION", local_dynamo.endpoint)
    monkeypatch.delenv("PISCES_KEYS_TABLE", raising=False)
    monkeypatch.delenv("PISCES_USAGE_TABLE", raising=False)
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    template = {
        "Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "pisces-cli-usage-test"}}},
        "Outputs": {"KeysTableName": {"Value": key_store.table}, "UsageTableName": {"Value": stack_usage.table}},
    }
    cfn.create_stack(StackName="pisces-cli-usage", TemplateBody=json.dumps(template))
    code, out, err = run(capsys, *ep, "--stack", "pisces-cli-usage", "usage", rec.key_id, *dates, "--json")
    assert code == 0, err
    assert json.loads(out)["total"]["cost"] == 42
    code, out, _ = run(capsys, *ep, "usage", rec.key_id, *dates, "--json")  # without --stack: the default table
    assert code == 0 and json.loads(out)["total"]["cost"] == 0


def test_an_item_that_is_no_key_is_not_listed_and_does_not_fail_the_list(local_dynamo, key_store):
    """A settlement's update of a key deleted in between leaves an item with only what it added."""
    key_store.client.update_item(
        TableName=key_store.table,
        Key={"key_hash": {"S": "h-of-a-deleted-key"}},
        UpdateExpression="SET balance = :b",
        ExpressionAttributeValues={":b": {"N": "1"}},
    )
    created = key_store.create(name="listed")[1]
    listed = key_store.list()
    assert created.key_id in {k.key_id for k in listed} and all(k.key_hash != "h-of-a-deleted-key" for k in listed)
