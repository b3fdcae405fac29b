"""The gateway app's one error boundary (pisces_gateway.middleware.RequestIdMiddleware, with no Starlette
error middleware around it): whatever a route raises reaches the client in its protocol's error shape,
with its request id and the status the error says, over real HTTP, and is logged once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import httpx
import pytest

from pisces.errors import PiscesError
from pisces.pipeline.logs import logger
from pisces_gateway.routes import DoorRoute


@pytest.fixture
def raising(gateway) -> Iterator[str]:
    """Routes on the session's gateway that raise, under each protocol's paths; removed after the test."""

    async def refused(request: object) -> None:
        raise PiscesError("rate_limit_exceeded", "Slow down.", retry_after=7)

    async def broken(request: object) -> None:
        raise RuntimeError("a secret-looking trace: sk-boundary-0123456789")

    tag = uuid.uuid4().hex[:8]
    routes = [DoorRoute(f"/v1/boundary-{tag}/refused", refused, ["GET"], None, "", None),
              DoorRoute(f"/v1/messages/boundary-{tag}", broken, ["POST"], None, "", None),
              DoorRoute(f"/v1beta/boundary-{tag}", broken, ["POST"], None, "", None)]  # fmt: skip
    table = gateway.app.router.routes
    table[:0] = routes
    try:
        yield tag
    finally:
        for r in routes:
            table.remove(r)


def lines(caplog: pytest.LogCaptureFixture, message: str) -> list[dict]:
    import json

    formatter = logger.registered_formatter
    return [json.loads(formatter.format(r)) for r in caplog.records
            if r.name.startswith("pisces") and r.getMessage() == message]  # fmt: skip


def test_an_error_a_route_raises_is_its_own_status_and_shape(gateway, raising, caplog):
    caplog.set_level(logging.INFO)
    r = httpx.get(f"{gateway.v1}/boundary-{raising}/refused", headers={"X-Request-Id": f"refused-{raising}"})
    assert (r.status_code, r.headers["retry-after"], r.headers["x-request-id"]) == (429, "7", f"refused-{raising}")
    body = r.json()
    assert body["error"]["code"] == "rate_limit_exceeded" and body["error"]["message"] == "Slow down."
    assert body["pisces"]["request_id"] == f"refused-{raising}"
    assert not lines(caplog, "unhandled error")  # the client's error, not a fault
    (line,) = [x for x in lines(caplog, "request") if x["request_id"] == f"refused-{raising}"]
    assert (line["status"], line["error"]) == (429, "rate_limit_exceeded")


@pytest.mark.parametrize(("prefix", "shape"), [("/v1/messages/", "anthropic"), ("/v1beta/", "gemini")])
def test_a_fault_is_the_protocols_500_without_its_trace_and_logged_with_it(gateway, raising, caplog, prefix, shape):
    caplog.set_level(logging.INFO)
    r = httpx.post(f"{gateway.url}{prefix}boundary-{raising}", json={})
    assert r.status_code == 500 and r.headers["x-request-id"]
    body = r.json()
    if shape == "anthropic":
        assert (body["type"], body["error"]["type"]) == ("error", "api_error")
    else:
        assert (body["error"]["code"], body["error"]["status"]) == (500, "INTERNAL")
    assert "sk-boundary" not in r.text and "Traceback" not in r.text
    assert body["pisces"]["request_id"] == r.headers["x-request-id"]
    (fault,) = [x for x in lines(caplog, "unhandled error") if x.get("request_id") == r.headers["x-request-id"]]
    assert "RuntimeError" in fault["exception"]


def test_the_routers_404_and_405_are_the_protocols_own(gateway):
    r = httpx.put(f"{gateway.v1}/chat/completions", json={})
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = httpx.post(f"{gateway.url}/v1/messages/nothing-here", json={})
    assert r.status_code == 404 and r.json()["type"] == "error" and r.json()["error"]["type"] == "not_found_error"
