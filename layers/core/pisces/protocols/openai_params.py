"""OpenAI's request parameter checks, in its own wording with the parameter named: shared by the two
OpenAI request codecs (Chat Completions and Responses), which answer a bad parameter alike."""

from __future__ import annotations

from typing import Any

from pisces.errors import PiscesError


def type_name(v: Any) -> str:
    return {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }.get(type(v), type(v).__name__)


def invalid(param: str, expected: str, got: Any) -> PiscesError:
    return PiscesError(
        "invalid_request", f"Invalid type for '{param}': expected {expected}, but got {type_name(got)}.", param=param
    )


def missing(param: str) -> PiscesError:
    return PiscesError("invalid_request", f"Missing required parameter: '{param}'.", param=param)


def opt(obj: dict[str, Any], key: str, where: str, kind: type, expected: str) -> Any:
    """An optional field of ``obj`` that must be of ``kind`` when present (bool is not an int here)."""
    v = obj.get(key)
    if v is not None and (not isinstance(v, kind) or (kind is not bool and isinstance(v, bool))):
        raise invalid(f"{where}.{key}" if where else key, expected, v)
    return v


def opt_number(body: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise invalid(name, "a number", v)
    if not lo <= v <= hi:
        raise PiscesError("invalid_request", f"Invalid '{name}': {v} is not between {lo:g} and {hi:g}.", param=name)
    return float(v)


def opt_int(body: dict[str, Any], name: str, minimum: int | None = None) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise invalid(name, "an integer", v)
    if minimum is not None and v < minimum:
        raise PiscesError("invalid_request", f"Invalid '{name}': must be at least {minimum}.", param=name)
    return v
