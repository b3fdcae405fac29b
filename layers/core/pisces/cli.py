"""`pisces`: manage keys against local moto or a deployed stack.

    pisces keys create --name ci --models 'gpt-*' --models mock-echo
    pisces keys list
    pisces keys revoke key_0123abcd

The Keys table is found, in order, from ``--table``, ``$PISCES_KEYS_TABLE``, ``--stack NAME`` (the
stack's ``KeysTableName`` output) or the local default ``pisces-keys``. ``--endpoint-url`` (or
``$AWS_ENDPOINT_URL_DYNAMODB``) points at a local DynamoDB such as the one `make dev` starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pisces.store.keys import KeyStore
from pisces.store.schema import TABLE_ENV


def _region(args: argparse.Namespace) -> str:
    return args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def stack_output(stack: str, output: str, region: str) -> str:
    cfn = boto3.client("cloudformation", region_name=region)
    stacks = cfn.describe_stacks(StackName=stack)["Stacks"]
    for o in stacks[0].get("Outputs", []):
        if o["OutputKey"] == output:
            return o["OutputValue"]
    raise SystemExit(f"pisces: stack {stack} has no output {output}")


def key_table(args: argparse.Namespace) -> str:
    env, default = TABLE_ENV["keys"]
    if args.table:
        return args.table
    if os.environ.get(env):
        return os.environ[env]
    if args.stack:
        return stack_output(args.stack, "KeysTableName", _region(args))
    return default


def _store(args: argparse.Namespace) -> KeyStore:
    kwargs: dict[str, Any] = {"region_name": _region(args), "endpoint_url": args.endpoint_url}
    host = urlparse(args.endpoint_url or "").hostname or ""
    if host == "localhost" or host.startswith("127.") or host == "::1":
        # a local DynamoDB (make dev's moto) takes any credentials: need none from the user
        kwargs |= {"aws_access_key_id": "local", "aws_secret_access_key": "local", "aws_session_token": None}
    client = boto3.client("dynamodb", **kwargs)
    return KeyStore(client, key_table(args))


def _print(obj: Any, as_json: bool) -> None:
    if as_json or not isinstance(obj, list):
        print(json.dumps(obj, indent=2))
        return
    cols = ["key_id", "prefix", "name", "status", "allowed_models", "created_at"]
    rows = [[str(r.get(c) if c != "allowed_models" else ",".join(r[c]) or "*") for c in cols] for r in obj]
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(cols)]
    for row in [cols, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pisces", description="Manage Pisces API keys.")
    p.add_argument("--table", help="the Keys table name")
    p.add_argument("--stack", help="a deployed stack whose KeysTableName output names the table")
    p.add_argument("--region")
    p.add_argument(
        "--endpoint-url",
        default=os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"),
        help="a local DynamoDB (default $AWS_ENDPOINT_URL_DYNAMODB)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    sub = p.add_subparsers(dest="group", required=True)
    keys = sub.add_parser("keys", help="create, list or revoke keys").add_subparsers(dest="cmd", required=True)
    create = keys.add_parser("create", help="create a key (shown once)")
    create.add_argument("--name", default="")
    create.add_argument("--models", action="append", default=[], help="a glob the key may use (repeatable)")
    keys.add_parser("list", help="list keys (never their secret)")
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        store = _store(args)
        if args.cmd == "create":
            plaintext, rec = store.create(name=args.name, models=args.models)
            _print({"key": plaintext, **rec.public()}, True)
            print("The key is shown once; only its hash is stored.", file=sys.stderr)
        elif args.cmd == "list":
            _print([r.public() for r in store.list()], args.json)
        elif args.cmd == "revoke":
            rec = store.revoke(args.key_id)
            if rec is None:
                print(f"pisces: no key with id {args.key_id}", file=sys.stderr)
                return 1
            _print(rec.public(), True)
    except (ClientError, BotoCoreError) as e:
        print(f"pisces: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
