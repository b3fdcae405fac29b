"""`pisces keys ...` against the moto DynamoDB server; `--stack` through moto's CloudFormation."""

from __future__ import annotations

import json

import boto3
import pytest

from pisces.cli import main
from pisces.store.keys import hash_key


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
