"""The shared money helpers: ``usage_report``/``parse_range`` (admin, CLI and /v1/usage) and the key edge checks."""

from __future__ import annotations

from datetime import date

import pytest

from pisces.store.keys import MAX_AMOUNT, MAX_RATE, KeyRecord, KeyStore, parse_amount, parse_rate
from pisces.store.usage import UsageRangeError, UsageRecord, parse_range, usage_report

TODAY = date(2025, 3, 15)


@pytest.mark.parametrize(
    ("from_str", "to_str", "expected"),
    [
        (None, None, (date(2025, 2, 14), date(2025, 3, 15))),  # the last 30 days, today included
        ("", "", (date(2025, 2, 14), date(2025, 3, 15))),
        ("2025-03-01", None, (date(2025, 3, 1), TODAY)),
        (None, "2025-01-31", (date(2025, 1, 2), date(2025, 1, 31))),
        ("2025-01-01", "2025-01-01", (date(2025, 1, 1), date(2025, 1, 1))),
        ("2024-02-29", "2025-12-31", (date(2024, 2, 29), date(2025, 12, 31))),
    ],
)
def test_parse_range(from_str, to_str, expected):
    assert parse_range(from_str, to_str, today=TODAY) == expected


@pytest.mark.parametrize(
    ("from_str", "to_str", "param"),
    [
        ("2025-02-30", None, "from"),
        ("2025-3-1", None, "from"),
        ("20250301", None, "from"),
        ("2025-03-01T00:00:00", None, "from"),
        (" 2025-03-01", None, "from"),
        ("\u0662\u0660\u0662\u0665-\u0660\u0663-\u0660\u0661", None, "from"),  # Arabic-Indic digits
        (None, "2025-13-01", "to"),
        (None, "today", "to"),
        ("2025-03-02", "2025-03-01", "from"),
        ("2025-03-16", None, "from"),  # after the default to (today)
    ],
)
def test_parse_range_rejects(from_str, to_str, param):
    with pytest.raises(UsageRangeError) as info:
        parse_range(from_str, to_str, today=TODAY)
    assert isinstance(info.value, ValueError) and info.value.param == param and str(info.value)


class FakeUsageStore:
    def __init__(self) -> None:
        self.queries: list[tuple[str, str, str]] = []

    def query(self, key_id: str, start: str, end: str) -> list[UsageRecord]:
        self.queries.append((key_id, start, end))
        return [
            UsageRecord(
                request_id=f"r{i}",
                key_id=key_id,
                protocol="openai",
                client_model="m",
                model="m",
                input_tokens=1,
                cost=cost,
                created_at=f"2025-03-0{i + 1}T00:00:00.000Z",
                settled_at="",
                expires_at=0,
            )
            for i, cost in enumerate((999_999, 1))
        ]


def test_usage_report_queries_whole_utc_days_and_adds_usd():
    store = FakeUsageStore()
    key = KeyRecord(key_id="key_x", key_hash="h", prefix="p", balance=-5, monthly_budget=None)
    report = usage_report(store, key, "2025-03-01", "2025-03-02")  # type: ignore[arg-type]
    # from inclusive at its first instant, to inclusive through its last: [from, to + 1 day)
    assert store.queries == [("key_x", "2025-03-01", "2025-03-03")]
    assert report["object"] == "usage" and (report["from"], report["to"]) == ("2025-03-01", "2025-03-02")
    assert (report["balance"], report["balance_usd"], report["monthly_budget"], report["monthly_budget_usd"]) == (
        -5,
        "-0.000005",
        None,
        None,
    )
    assert [(r["date"], r["cost"], r["cost_usd"]) for r in report["data"]] == [
        ("2025-03-01", 999_999, "0.999999"),
        ("2025-03-02", 1, "0.000001"),
    ]
    assert report["total"] == {
        "requests": 2,
        "input_tokens": 2,
        "output_tokens": 0,
        "cached_tokens": 0,
        "cost": 1_000_000,
        "cost_usd": "1.000000",
    }


def test_usage_report_checks_dates_before_querying():
    store = FakeUsageStore()
    with pytest.raises(UsageRangeError):
        usage_report(store, KeyRecord(key_id="k", key_hash="h", prefix="p"), "bad", None)  # type: ignore[arg-type]
    assert store.queries == []


def test_public_record_shows_usd_and_never_the_hash():
    rec = KeyRecord(key_id="k", key_hash="secret-hash", prefix="p", balance=1_500_001, monthly_budget=20_000_000)
    public = rec.public()
    assert "key_hash" not in public and "secret-hash" not in str(public)
    assert (public["balance"], public["balance_usd"], public["monthly_budget_usd"]) == (
        1_500_001,
        "1.500001",
        "20.000000",
    )
    assert KeyRecord(key_id="k", key_hash="h", prefix="p").public()["monthly_budget_usd"] is None


def test_parse_amount_and_rate_bounds():
    assert parse_amount("0.000001") == 1 and parse_amount(0) == 0 and parse_amount("1000000000") == MAX_AMOUNT
    for bad in ("1000000000.000001", "1e30", True, None, "-1"):
        with pytest.raises(ValueError):
            parse_amount(bad)
    with pytest.raises(ValueError):
        parse_amount("0", allow_zero=False)
    assert parse_rate(0) == 0 and parse_rate(MAX_RATE) == MAX_RATE
    for bad in (-1, MAX_RATE + 1, 1.0, "5", True, None):
        with pytest.raises(ValueError):
            parse_rate(bad)


@pytest.mark.parametrize(
    "limits", [{"budget": 1}, {"balance": 5}, {"rpm": -1}, {"tpm": 1.5}, {"rpm": True}, {"monthly_budget": "5"}]
)
def test_set_limits_rejects_other_names_and_values(limits):
    class NoCalls:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"DynamoDB called: {name}")

    with pytest.raises(ValueError):
        KeyStore(NoCalls(), "t").set_limits("key_x", **limits)
