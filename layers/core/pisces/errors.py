"""The error taxonomy: one list of codes, each with its HTTP status and meaning.

Every failure the gateway reports is a :class:`PiscesError` with one of these codes. Each protocol
codec renders it in its own wire shape (``render_error`` in ``pisces.protocols.<name>``), always
with the ``pisces`` object and the request id; ``/api/public/spec`` serves :data:`ERRORS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ErrorKind:
    code: str
    status: int
    meaning: str


ERRORS: dict[str, ErrorKind] = {
    k.code: k
    for k in [
        ErrorKind("invalid_json", 400, "the body is not valid JSON"),
        ErrorKind("invalid_request", 400, "a required parameter is missing or has the wrong type or value"),
        ErrorKind("unsupported_parameter", 400, "a parameter value the gateway cannot honour (e.g. n > 1)"),
        ErrorKind("missing_api_key", 401, "no API key in Authorization, x-api-key, x-goog-api-key or ?key="),
        ErrorKind("invalid_api_key", 401, "the API key is not known"),
        ErrorKind("insufficient_balance", 402, "the key's balance or budget is spent"),
        ErrorKind("key_revoked", 403, "the API key was revoked"),
        ErrorKind("model_not_allowed", 403, "the key may not use this model"),
        ErrorKind("admin_forbidden", 403, "the admin token is missing or wrong"),
        ErrorKind("model_not_found", 404, "no channel serves this model"),
        ErrorKind("not_found", 404, "no such route or resource"),
        ErrorKind("method_not_allowed", 405, "the route does not take this method"),
        ErrorKind("idempotency_in_progress", 409, "a request with the same Idempotency-Key is still running"),
        ErrorKind("request_too_large", 413, "the body is larger than the gateway accepts"),
        ErrorKind("idempotency_key_reused", 422, "the Idempotency-Key was used before with another body"),
        ErrorKind("rate_limit_exceeded", 429, "the key's request or token rate limit is hit (see Retry-After)"),
        ErrorKind("internal_error", 500, "a fault in the gateway"),
        ErrorKind("upstream_error", 502, "the upstream answered with an error or a malformed response"),
        ErrorKind("no_available_channel", 503, "no channel can serve the model right now"),
        ErrorKind("service_unavailable", 503, "the gateway's database did not answer in time (see Retry-After)"),
        ErrorKind("upstream_timeout", 504, "the upstream did not answer in time"),
    ]
}


class PiscesError(Exception):
    """A failure with a code from :data:`ERRORS`, rendered by the client's protocol codec."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        status: int | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        kind = ERRORS[code]  # KeyError here is a bug: every code must be in the table
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        # An upstream 4xx is passed on with its own status (400, 404, 422, 429...) but our code.
        self.status = status or kind.status
        self.retry_after = retry_after
        self.headers = dict(headers or {})
        if retry_after is not None:
            self.headers.setdefault("Retry-After", str(retry_after))

    def __repr__(self) -> str:
        return f"PiscesError({self.code!r}, {self.message!r}, status={self.status})"


def error_table() -> list[dict[str, Any]]:
    """The taxonomy as served by /api/public/spec and shown on the docs page."""
    return [{"status": k.status, "code": k.code, "meaning": k.meaning} for k in ERRORS.values()]
