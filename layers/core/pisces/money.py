"""Money is integer micro-dollars everywhere inside Pisces; dollars appear only as decimal strings."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

MICROS_PER_USD = 1_000_000
# The largest amount (a balance, a top-up, a budget, a price per million tokens) taken: $1 billion,
# so that sums of them stay far inside the 38 digits DynamoDB stores exactly.
MAX_MICROS = 10**9 * MICROS_PER_USD


def parse_usd(value: Any, *, allow_zero: bool = True) -> int:
    """Dollars (a number or a decimal string such as "12.50") as micro-dollars.

    ValueError for anything that is not a finite, non-negative amount with at most 6 decimals
    (or for zero when ``allow_zero`` is False); never goes through a float.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError('an amount must be a number of dollars, such as 10 or "12.50"')
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number of dollars") from None
    if not d.is_finite():
        raise ValueError(f"{value!r} is not a number of dollars")
    micros = d * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise ValueError("an amount has at most 6 decimals (micro-dollars)")
    if micros > MAX_MICROS:
        raise ValueError(f"an amount is at most {MAX_MICROS // MICROS_PER_USD:,} dollars")
    if micros < 0 or (micros == 0 and not allow_zero):
        raise ValueError("an amount must be positive" if not allow_zero else "an amount must not be negative")
    return int(micros)


def usd(micros: int) -> str:
    """Micro-dollars as a decimal string of dollars ("1.250000"), never a float."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    return f"{sign}{whole}.{frac:06d}"
