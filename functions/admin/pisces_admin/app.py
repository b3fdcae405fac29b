"""The admin function: keys (create, list, revoke). FastAPI behind Mangum, buffered.

In AWS (``PISCES_ADMIN_AUTH=iam``) API Gateway's ``AWS_IAM`` authorizer has already checked the
caller's SigV4 signature; the app only insists that the event carries the caller's identity.
Anywhere else, callers need ``Authorization: Bearer $PISCES_ADMIN_TOKEN``; without a token
configured, the admin API refuses everything.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mangum import Mangum
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from pisces.errors import PiscesError
from pisces.pipeline.context import request_id_from
from pisces.store import dynamo
from pisces.store.keys import KeyStore
from pisces.store.schema import table_name


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


def create_app(store: KeyStore | None = None) -> FastAPI:
    app = FastAPI(title="Pisces admin", docs_url=None, redoc_url=None, openapi_url=None)

    def keys() -> KeyStore:
        if app.state.store is None:
            app.state.store = KeyStore(dynamo.client(), table_name("keys"))
        return app.state.store

    app.state.store = store

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
        param = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
        return _error(
            PiscesError("invalid_request", str(first.get("msg", "invalid request")), param=param),
            request.state.request_id,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "method_not_allowed" if exc.status_code == 405 else "not_found"
        return _error(PiscesError(code, f"{request.method} {request.url.path}: {exc.detail}"), request.state.request_id)

    @app.post("/admin/keys", status_code=201)
    async def create_key(body: NewKey, caller: str = Depends(require_admin)) -> dict[str, Any]:
        plaintext, rec = keys().create(name=body.name, models=body.models)
        return {"key": plaintext, **rec.public(), "note": "The key is shown once; only its hash is stored."}

    @app.get("/admin/keys")
    async def list_keys(caller: str = Depends(require_admin)) -> dict[str, Any]:
        return {"object": "list", "data": [r.public() for r in keys().list()]}

    @app.delete("/admin/keys/{key_id}")
    async def revoke_key(key_id: str, caller: str = Depends(require_admin)) -> dict[str, Any]:
        rec = keys().revoke(key_id)
        if rec is None:
            raise PiscesError("not_found", f"No key with id {key_id!r}.", param="key_id")
        return rec.public()

    return app


app = create_app()
handler = Mangum(app, lifespan="off")
