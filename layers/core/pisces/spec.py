"""The live description behind ``GET /api/public/spec``: routes, error taxonomy and auth styles.

Routes are not a hand-written list: the gateway passes its own route table, each route tagged with
its protocol and whether it streams. Each route also says its ``paths`` as users write them (Gemini's
``/v1beta/models/{model}:generateContent``, not the framework's ``{model:path}``). Given the
configuration, the spec also lists each model's prices, protocols and operations (``catalog``), the
models the docs page's examples use, the headers and the production conventions (:mod:`pisces.spec_catalog`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pisces import GATEWAY_NAME, __version__
from pisces.config import Config
from pisces.errors import error_table
from pisces.pipeline.auth import AUTH_STYLES
from pisces.spec_catalog import HEADERS, OPERATIONS, catalog, conventions, example_models


@dataclass(frozen=True, slots=True)
class RouteInfo:
    protocol: str
    method: str
    path: str
    streaming: bool
    description: str
    auth: bool = True


def user_paths(r: RouteInfo) -> list[str]:
    """The route's path as users write it: ``{x:path}`` is ``{x}``; Gemini's ``models/{model:path}``
    POST is one path per action (``:generateContent``, ``:streamGenerateContent?alt=sse``, ...)."""
    from pisces.pipeline.lifecycle import GEMINI_EMBED, GEMINI_STREAM

    path = r.path.replace(":path}", "}")
    if r.protocol == "gemini" and r.method == "POST" and path.endswith("/models/{model}"):
        actions = [*GEMINI_STREAM, "countTokens", *GEMINI_EMBED]
        return [f"{path}:{a}" + ("?alt=sse" if GEMINI_STREAM.get(a) else "") for a in actions]
    return [path]


def _route_order(r: RouteInfo) -> tuple[str, str, str]:
    return (r.protocol, r.path, r.method)


def build_spec(routes: list[RouteInfo], models: list[str], config: Config | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "gateway": GATEWAY_NAME,
        "version": __version__,
        "routes": [{**asdict(r), "paths": user_paths(r)} for r in sorted(routes, key=_route_order)],
        "errors": error_table(),
        "auth": AUTH_STYLES,
        "models": models,
        "headers": {h["name"]: h["meaning"] for h in HEADERS},
        "header_list": HEADERS,
        "operations": OPERATIONS,
    }
    if config is not None:
        spec["catalog"] = catalog(config)
        spec["examples"] = example_models(spec["catalog"])
        spec["conventions"] = conventions(config)
    return spec
