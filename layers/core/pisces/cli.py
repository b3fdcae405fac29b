"""`pisces`: manage keys, money and usage against local moto or a deployed stack.

    pisces keys create --name ci --models 'gpt-*' --models mock-echo --balance 20 --rpm 60
    pisces keys list
    pisces keys top-up key_0123abcd 10.50
    pisces keys set key_0123abcd --budget 100 --rpm default --tpm 0
    pisces keys revoke key_0123abcd
    pisces usage key_0123abcd --from 2025-01-01 --to 2025-01-31
    pisces reconcile                 # release holds that dead gateway containers left

Money is given and shown in USD as decimal strings (at most 6 decimals); it is stored as integer
micro-dollars. A rate limit of 0 means unlimited; ``default`` (None) means the configuration's default.

The Keys table is found, in order, from ``--table``, ``$PISCES_KEYS_TABLE``, ``--stack NAME`` (the
stack's ``KeysTableName`` output) or the local default ``pisces-keys``; the Usage table likewise from
``--usage-table``, ``$PISCES_USAGE_TABLE``, the stack's ``UsageTableName`` output or ``pisces-usage``.
``--endpoint-url`` (or ``$AWS_ENDPOINT_URL_DYNAMODB``) points at a local DynamoDB such as the one
`make dev` starts. Exit codes: 0 done, 1 failed (unknown key, AWS error), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Collection
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from pisces.money import usd
from pisces.store.keys import KeyRecord, KeyStore, parse_amount, parse_rate
from pisces.store.reconcile import DEFAULT_MAX_AGE_SECONDS, Reconciler
from pisces.store.schema import TABLE_ENV
from pisces.store.usage import UsageRangeError, UsageStore, parse_range, usage_report


class BadArgument(Exception):
    """An argument argparse accepted but Pisces does not (an amount, a rate, a date): exit code 2."""


def _region(args: argparse.Namespace) -> str:
    return args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def stack_output(stack: str, output: str, region: str) -> str:
    cfn = boto3.client("cloudformation", region_name=region)
    stacks = cfn.describe_stacks(StackName=stack)["Stacks"]
    for o in stacks[0].get("Outputs", []):
        if o["OutputKey"] == output:
            return o["OutputValue"]
    raise SystemExit(f"pisces: stack {stack} has no output {output}")


def _table(args: argparse.Namespace, logical: str, given: str | None, output: str) -> str:
    env, default = TABLE_ENV[logical]
    if given:
        return given
    if os.environ.get(env):
        return os.environ[env]
    if args.stack:
        return stack_output(args.stack, output, _region(args))
    return default


def key_table(args: argparse.Namespace) -> str:
    return _table(args, "keys", args.table, "KeysTableName")


def usage_table(args: argparse.Namespace) -> str:
    return _table(args, "usage", args.usage_table, "UsageTableName")


def _client(args: argparse.Namespace) -> Any:
    kwargs: dict[str, Any] = {"region_name": _region(args), "endpoint_url": args.endpoint_url}
    host = urlparse(args.endpoint_url or "").hostname or ""
    if host == "localhost" or host.startswith("127.") or host == "::1":
        # a local DynamoDB (make dev's moto) takes any credentials: need none from the user
        kwargs |= {"aws_access_key_id": "local", "aws_secret_access_key": "local", "aws_session_token": None}
    return boto3.client("dynamodb", **kwargs)


# ------------------------------------------------------------------ arguments


def _amount(value: str, flag: str, *, allow_zero: bool = True) -> int:
    try:
        return parse_amount(value, allow_zero=allow_zero)
    except ValueError as e:
        raise BadArgument(f"{flag} {value!r}: {e}") from None


def _budget(value: str | None, flag: str = "--budget") -> int | None:
    """``--budget``: USD, or ``none`` for no budget."""
    if value is None or value.strip().lower() == "none":
        return None
    return _amount(value, flag)


def _rate(value: str | None, flag: str) -> int | None:
    """``--rpm``/``--tpm``: a whole number (0: unlimited), or ``default`` for the configuration's default."""
    if value is None or value.strip().lower() == "default":
        return None
    text = value.strip()
    try:
        if not text.isascii() or not text.isdigit():
            raise ValueError
        return parse_rate(int(text))
    except ValueError:
        raise BadArgument(f"{flag} {value!r}: a whole number (0: unlimited) or 'default'") from None


# ------------------------------------------------------------------ output


def _columns(header: list[str], rows: list[list[str]], right: Collection[int] = ()) -> None:
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(header)]
    for row in [header, *rows]:
        cells = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells).rstrip())


def _limit(value: int | None) -> str:
    return "default" if value is None else "unlimited" if value == 0 else str(value)


def _print_keys(keys: list[dict[str, Any]]) -> None:
    header = ["key_id", "prefix", "name", "status", "balance_usd", "budget_usd", "rpm", "tpm", "models", "created_at"]
    rows = [
        [
            k["key_id"],
            k["prefix"],
            k["name"],
            k["status"],
            k["balance_usd"],
            k["monthly_budget_usd"] or "none",
            _limit(k["rpm"]),
            _limit(k["tpm"]),
            ",".join(k["allowed_models"]) or "*",
            k["created_at"],
        ]
        for k in keys
    ]
    _columns(header, rows, right={4, 5})


def _print_usage(report: dict[str, Any], key: KeyRecord) -> None:
    budget = f"{report['monthly_budget_usd']} USD" if report["monthly_budget_usd"] else "none"
    name = f" ({key.name})" if key.name else ""
    print(f"key {report['key_id']}{name}  balance {report['balance_usd']} USD  monthly budget {budget}")
    print(f"usage {report['from']} .. {report['to']} (UTC days, inclusive)")
    print()
    fields = ["requests", "input_tokens", "output_tokens", "cached_tokens"]
    header = ["date", "model", "requests", "input", "output", "cached", "cost_usd"]
    rows = [[r["date"], r["model"], *(str(r[f]) for f in fields), r["cost_usd"]] for r in report["data"]]
    total = report["total"]
    rows.append(["total", "", *(str(total[f]) for f in fields), total["cost_usd"]])
    _columns(header, rows, right={2, 3, 4, 5, 6})


def _show(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def _no_key(key_id: str) -> int:
    print(f"pisces: no key with id {key_id}", file=sys.stderr)
    return 1


# ------------------------------------------------------------------ commands


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pisces", description="Manage Pisces API keys, balances and usage.")
    p.add_argument("--table", help="the Keys table name")
    p.add_argument("--usage-table", help="the Usage table name")
    p.add_argument("--stack", help="a deployed stack whose KeysTableName/UsageTableName outputs name the tables")
    p.add_argument("--region")
    p.add_argument(
        "--endpoint-url",
        default=os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"),
        help="a local DynamoDB (default $AWS_ENDPOINT_URL_DYNAMODB)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    # The same flag after a subcommand; SUPPRESS keeps it from resetting a --json given before it.
    json_flag: dict[str, Any] = {"action": "store_true", "default": argparse.SUPPRESS, "help": "print JSON"}
    sub = p.add_subparsers(dest="group", required=True)

    keys = sub.add_parser("keys", help="create, list, top up, limit or revoke keys")
    cmds = keys.add_subparsers(dest="cmd", required=True)
    create = cmds.add_parser("create", help="create a key (shown once)")
    create.add_argument("--name", default="")
    create.add_argument("--models", action="append", default=[], help="a glob the key may use (repeatable)")
    create.add_argument("--balance", metavar="USD", help="starting balance in USD (default 0)")
    create.add_argument("--budget", metavar="USD", help="monthly budget in USD (default none)")
    create.add_argument("--rpm", metavar="N", help="requests per minute (0: unlimited; default: the config's)")
    create.add_argument("--tpm", metavar="N", help="tokens per minute (0: unlimited; default: the config's)")
    listing = cmds.add_parser("list", help="list keys with their balance (never their secret)")
    listing.add_argument("--json", **json_flag)
    top_up = cmds.add_parser("top-up", help="add USD to a key's balance")
    top_up.add_argument("key_id")
    top_up.add_argument("amount", metavar="AMOUNT", help="USD, e.g. 10.50 (at most 6 decimals)")
    limits = cmds.add_parser("set", help="set a key's monthly budget and rate limits")
    limits.add_argument("key_id")
    limits.add_argument("--budget", metavar="USD|none", help="monthly budget in USD, or none to clear it")
    limits.add_argument("--rpm", metavar="N|default", help="requests per minute (0: unlimited)")
    limits.add_argument("--tpm", metavar="N|default", help="tokens per minute (0: unlimited)")
    revoke = cmds.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")

    usage = sub.add_parser("usage", help="a key's spend by day and model")
    usage.add_argument("key_id")
    usage.add_argument(
        "--from", dest="from_", metavar="YYYY-MM-DD", help="first UTC day (default: 29 days before --to)"
    )
    usage.add_argument("--to", metavar="YYYY-MM-DD", help="last UTC day, inclusive (default: today)")
    usage.add_argument("--json", **json_flag)

    rec = sub.add_parser("reconcile", help="release the holds of requests whose container died before settling")
    rec.add_argument("--older-than", metavar="SECONDS", type=float, default=DEFAULT_MAX_AGE_SECONDS,
                     help=f"only holds older than this (default {DEFAULT_MAX_AGE_SECONDS}: the gateway's timeout "
                     "and a minute; a younger hold may belong to a request still running)")  # fmt: skip
    rec.add_argument("--dry-run", action="store_true", help="list the holds, release nothing")
    return p


def _keys(args: argparse.Namespace, store: KeyStore) -> int:
    if args.cmd == "create":
        plaintext, rec = store.create(
            name=args.name,
            models=args.models,
            balance=0 if args.balance is None else _amount(args.balance, "--balance"),
            monthly_budget=_budget(args.budget),
            rpm=_rate(args.rpm, "--rpm"),
            tpm=_rate(args.tpm, "--tpm"),
        )
        _show({"key": plaintext, **rec.public()})
        print("The key is shown once; only its hash is stored.", file=sys.stderr)
    elif args.cmd == "list":
        keys = [r.public() for r in store.list()]
        if args.json:
            _show(keys)
        else:
            _print_keys(keys)
    elif args.cmd == "top-up":
        amount = _amount(args.amount, "AMOUNT", allow_zero=False)
        rec = store.top_up(args.key_id, amount)
        if rec is None:
            return _no_key(args.key_id)
        _show(rec.public())
        print(f"Added {usd(amount)} USD: the balance is {usd(rec.balance)} USD.", file=sys.stderr)
    elif args.cmd == "set":
        changes: dict[str, int | None] = {}
        if args.budget is not None:
            changes["monthly_budget"] = _budget(args.budget)
        if args.rpm is not None:
            changes["rpm"] = _rate(args.rpm, "--rpm")
        if args.tpm is not None:
            changes["tpm"] = _rate(args.tpm, "--tpm")
        if not changes:
            raise BadArgument("nothing to set: give --budget, --rpm and/or --tpm")
        rec = store.set_limits(args.key_id, **changes)
        if rec is None:
            return _no_key(args.key_id)
        _show(rec.public())
    elif args.cmd == "revoke":
        rec = store.revoke(args.key_id)
        if rec is None:
            return _no_key(args.key_id)
        _show(rec.public())
    return 0


def _usage(args: argparse.Namespace, client: Any) -> int:
    try:
        parse_range(args.from_, args.to)  # a bad date before any AWS call
    except UsageRangeError as e:
        raise BadArgument(str(e)) from None
    key = KeyStore(client, key_table(args)).get_by_id(args.key_id)
    if key is None:
        return _no_key(args.key_id)
    report = usage_report(UsageStore(client, usage_table(args)), key, args.from_, args.to)
    if args.json:
        _show(report)
    else:
        _print_usage(report, key)
    return 0


def _reconcile(args: argparse.Namespace, client: Any) -> int:
    if args.older_than < 0:
        raise BadArgument("--older-than: a number of seconds, 0 or more")
    reconciler = Reconciler(client, key_table(args), usage_table(args))
    if args.dry_run:
        now = time.time()
        holds = [{"key_id": kid, "request_id": h.request_id, "amount_usd": usd(h.amount),
                  "age_seconds": int(now - h.at), "due": now - h.at >= args.older_than}
                 for _, kid, h in reconciler.outstanding()]  # fmt: skip
        _show(holds)
        return 0
    report = reconciler.run(older_than=args.older_than)
    _show({**report.summary(), "returned_usd": usd(report.returned_micros)})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        client = _client(args)
        if args.group == "usage":
            return _usage(args, client)
        if args.group == "reconcile":
            return _reconcile(args, client)
        return _keys(args, KeyStore(client, key_table(args)))
    except BadArgument as e:
        print(f"pisces: {e}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as e:
        print(f"pisces: {e}{_hint(e, args)}", file=sys.stderr)
        return 1


DEV_HINT = (
    "`make dev`'s DynamoDB: run `. ./.pisces-dev.env` (make dev writes it; its banner prints the export "
    "line) or set AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:8765 (the port the banner shows)"
)


def _hint(e: Exception, args: argparse.Namespace) -> str:
    """What to do about an AWS error the user can fix: no credentials, no endpoint, no table."""
    if isinstance(e, NoCredentialsError):
        return (f"\n  For {DEV_HINT}.\n  For a deployed stack: AWS credentials (AWS_PROFILE, `aws configure`)"
                " and --stack NAME.")  # fmt: skip
    if isinstance(e, EndpointConnectionError) and args.endpoint_url:
        return f"\n  Nothing answers at {args.endpoint_url}: is `make dev` running (and on that port)?"
    if isinstance(e, ClientError) and e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
        where = f"at {args.endpoint_url}" if args.endpoint_url else "in your AWS account"
        return f"\n  No such table {where}: pass --stack NAME (a deployed stack) or --table, or reach {DEV_HINT}."
    return ""


if __name__ == "__main__":
    raise SystemExit(main())
