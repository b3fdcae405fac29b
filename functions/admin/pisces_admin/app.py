"""The admin function: keys (create, list, revoke, limits), top-ups and usage. FastAPI behind Mangum, buffered.

Money crosses this API as USD (a JSON number or, better, a decimal string such as ``"10.50"``, at most
6 decimals) and is stored and returned as integer micro-dollars, with ``*_usd`` decimal strings beside.

In AWS (``PISCES_ADMIN_AUTH=iam``) API Gateway's ``AWS_IAM`` authorizer has already checked the
caller's SigV4 signature; the app only insists that the event carries the caller's identity.
Anywhere else, callers need ``Authorization: Bearer $PISCES_ADMIN_TOKEN``; without a token
configured, the admin API refuses everything.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mangum import Mangum
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from pisces.errors import PiscesError
from pisces.pipeline.context import request_id_from
from pisces.store import dynamo
from pisces.store.keys import KeyRecord, KeyStore, parse_amount, parse_rate
from pisces.store.schema import table_name
from pisces.store.usage import UsageRangeError, UsageStore, parse_range, usage_report


def _error(err: PiscesError, request_id: str) -> JSONResponse:
    body = {"error": {"code": err.code, "message": err.message, "param": err.param}, "request_id": request_id}
    return JSONResponse(body, status_code=err.status, headers={"X-Request-Id": request_id, **err.headers})


def require_admin(request: Request) -> str:
    """Who is calling: the IAM caller's ARN in AWS, ``admin-token`` locally."""
    if os.environ.get("PISCES_ADMIN_AUTH") == "iam":
        event = request.scope.get("aws.event") or {}
        identity = (event.get("requestContext") or {}).get("identity") or {}
        caller = identity.get("userArn") or identity.get("caller")
        if caller:
            return str(caller)
        raise PiscesError("admin_forbidden", "The request did not come through the IAM-authorised API.")
    token = os.environ.get("PISCES_ADMIN_TOKEN", "")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return "admin-token"
    raise PiscesError("admin_forbidden", "Send 'Authorization: Bearer <PISCES_ADMIN_TOKEN>'.")


class NewKey(BaseModel):
    name: str = Field(default="", max_length=200)
    models: list[str] = Field(default_factory=list, description="glob patterns; empty allows every model")
    balance: Any = Field(default=None, description='USD, e.g. "10.50"')
    monthly_budget: Any = Field(default=None, description="USD; null: no budget")
    rpm: Any = Field(default=None, description="requests per minute; 0: unlimited; null: the default")
    tpm: Any = Field(default=None, description="tokens per minute; 0: unlimited; null: the default")


class TopUp(BaseModel):
    amount: Any = Field(default=None, description='USD to add, e.g. "10.50"')


class KeyLimits(BaseModel):
    """PATCH body: only the fields sent change; null clears the budget or resets a rate to the default."""

    model_config = ConfigDict(extra="forbid")
    monthly_budget: Any = None
    rpm: Any = None
    tpm: Any = None


def _amount(value: Any, param: str, *, allow_zero: bool = True) -> int:
    try:
        return parse_amount(value, allow_zero=allow_zero)
    except ValueError as e:
        raise PiscesError("invalid_request", f"{param}: {e}", param=param) from None


def _rate(value: Any, param: str) -> int:
    try:
        return parse_rate(value)
    except ValueError as e:
        raise PiscesError("invalid_request", f"{param}: {e}", param=param) from None


def _limits(body: NewKey | KeyLimits, fields: set[str]) -> dict[str, int | None]:
    """The money limits in ``fields`` as micro-dollars and integers (None where the body says null)."""
    out: dict[str, int | None] = {}
    for name in ("monthly_budget", "rpm", "tpm"):
        if name in fields:
            value = getattr(body, name)
            if value is None:
                out[name] = None
            else:
                out[name] = _amount(value, name) if name == "monthly_budget" else _rate(value, name)
    return out


def _not_found(key_id: str) -> PiscesError:
    return PiscesError("not_found", f"No key with id {key_id!r}.", param="key_id")


def create_app(store: KeyStore | None = None, usage_store: UsageStore | None = None) -> FastAPI:
    app = FastAPI(title="Pisces admin", docs_url=None, redoc_url=None, openapi_url=None)

    def keys() -> KeyStore:
        if app.state.store is None:
            app.state.store = KeyStore(dynamo.client(), table_name("keys"))
        return app.state.store

    def usage() -> UsageStore:
        if app.state.usage_store is None:
            app.state.usage_store = UsageStore(dynamo.client(), table_name("usage"))
        return app.state.usage_store

    def key_or_404(key_id: str) -> KeyRecord:
        rec = keys().get_by_id(key_id)
        if rec is None:
            raise _not_found(key_id)
        return rec

    app.state.store = store
    app.state.usage_store = usage_store

    @app.middleware("http")
    async def request_id(request: Request, call_next: Any) -> Any:
        request.state.request_id = request_id_from(request.headers.get("x-request-id"))
        response = await call_next(request)
        response.headers["X-Request-Id"] = request.state.request_id
        return response

    @app.exception_handler(PiscesError)
    async def _pisces(request: Request, exc: PiscesError) -> JSONResponse:
        return _error(exc, request.state.request_id)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            err = PiscesError("invalid_json", f"The body is not valid JSON: {first.get('msg', '')}")
        elif tuple(first.get("loc", ())) == ("body",) and first.get("type") == "model_attributes_type":
            err = PiscesError("invalid_request", "The body must be a JSON object.")
        else:
            param = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
            msg = f"Unknown field {param!r}." if first.get("type") == "extra_forbidden" else first.get("msg")
            err = PiscesError("invalid_request", str(msg or "invalid request"), param=param)
        return _error(err, request.state.request_id)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "method_not_allowed" if exc.status_code == 405 else "not_found"
        return _error(PiscesError(code, f"{request.method} {request.url.path}: {exc.detail}"), request.state.request_id)

    # Plain ``def`` routes: FastAPI runs them in its thread pool, so the blocking DynamoDB calls never
    # stall an event loop (``make dev`` serves this app and the gateway on one loop).

    @app.post("/admin/keys", status_code=201)
    def create_key(body: NewKey, caller: str = Depends(require_admin)) -> dict[str, Any]:
        balance = 0 if body.balance is None else _amount(body.balance, "balance")
        plaintext, rec = keys().create(
            name=body.name, models=body.models, balance=balance, **_limits(body, body.model_fields_set)
        )
        return {"key": plaintext, **rec.public(), "note": "The key is shown once; only its hash is stored."}

    @app.get("/admin/keys")
    def list_keys(caller: str = Depends(require_admin)) -> dict[str, Any]:
        return {"object": "list", "data": [r.public() for r in keys().list()]}

    @app.delete("/admin/keys/{key_id}")
    def revoke_key(key_id: str, caller: str = Depends(require_admin)) -> dict[str, Any]:
        rec = keys().revoke(key_id)
        if rec is None:
            raise _not_found(key_id)
        return rec.public()

    @app.patch("/admin/keys/{key_id}")
    def update_key(key_id: str, body: KeyLimits, caller: str = Depends(require_admin)) -> dict[str, Any]:
        rec = keys().set_limits(key_id, **_limits(body, body.model_fields_set))
        if rec is None:
            raise _not_found(key_id)
        return rec.public()

    @app.post("/admin/keys/{key_id}/top-up")
    def top_up(key_id: str, body: TopUp | None = None, caller: str = Depends(require_admin)) -> dict[str, Any]:
        if body is None or body.amount is None:
            raise PiscesError("invalid_request", 'amount (USD, e.g. "10.50") is required.', param="amount")
        rec = keys().top_up(key_id, _amount(body.amount, "amount", allow_zero=False))
        if rec is None:
            raise _not_found(key_id)
        return rec.public()

    @app.get("/admin/keys/{key_id}/usage")
    def key_usage(
        key_id: str,
        from_: str | None = Query(default=None, alias="from", description="YYYY-MM-DD (UTC), inclusive"),
        to: str | None = Query(default=None, description="YYYY-MM-DD (UTC), inclusive"),
        caller: str = Depends(require_admin),
    ) -> dict[str, Any]:
        try:
            parse_range(from_, to)  # a bad date is a 400 even for an unknown key
            return usage_report(usage(), key_or_404(key_id), from_, to)
        except UsageRangeError as e:
            raise PiscesError("invalid_request", str(e), param=e.param) from None

    return app


app = create_app()
handler = Mangum(app, lifespan="off")
