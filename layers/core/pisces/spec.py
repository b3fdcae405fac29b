"""The live description behind ``GET /api/public/spec``: routes, error taxonomy and auth styles.

Routes are not a hand-written list: the gateway passes its own route table, each route tagged with
its protocol and whether it streams.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pisces import GATEWAY_NAME, __version__
from pisces.errors import error_table
from pisces.pipeline.auth import AUTH_STYLES


@dataclass(frozen=True, slots=True)
class RouteInfo:
    protocol: str
    method: str
    path: str
    streaming: bool
    description: str
    auth: bool = True


def build_spec(routes: list[RouteInfo], models: list[str]) -> dict[str, Any]:
    return {
        "gateway": GATEWAY_NAME,
        "version": __version__,
        "routes": [asdict(r) for r in sorted(routes, key=lambda r: (r.protocol, r.path, r.method))],
        "errors": error_table(),
        "auth": AUTH_STYLES,
        "models": models,
        "headers": {
            "X-Request-Id": "on every response; a client-sent value of up to 128 [A-Za-z0-9._:-] is echoed",
        },
    }
