"""The doors the middleware serves from the scope (pisces_gateway.routes.Doors) are the routes the router
would have chosen for the same method and path, with the same path parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.routing import Match

from pisces_gateway.routes import DoorRoute, Doors

ROOT = Path(__file__).resolve().parents[2]

# (method, path) of real requests, and paths around them that no door of the table may take
REQUESTS = [
    ("POST", "/v1/chat/completions"), ("POST", "/v1/responses"), ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"), ("POST", "/v1/embeddings"), ("POST", "/v1/images/generations"),
    ("POST", "/v1/images/edits"), ("GET", "/v1/models"), ("GET", "/v1/models/gpt-4o"),
    ("GET", "/v1/models/org/model-with/slashes"), ("GET", "/v1/models/"), ("GET", "/v1beta/models"),
    ("GET", "/v1beta/models/gemini-2.5-flash"), ("POST", "/v1beta/models/gemini-2.5-flash:generateContent"),
    ("POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent"), ("POST", "/v1/models/gemini-x:embedContent"),
    ("POST", "/v1beta/models/"), ("GET", "/v1/usage"), ("GET", "/v1/usage/requests"),
    ("GET", "/v1/responses/resp_1"), ("DELETE", "/v1/responses/resp_1"), ("POST", "/v1/responses/resp_1/cancel"),
]  # fmt: skip
NOT_DOORS = [
    ("GET", "/v1/chat/completions"), ("POST", "/v1/chat/completions/"), ("PUT", "/v1/messages"),
    ("POST", "/v1/models"), ("DELETE", "/v1/models/gpt-4o"), ("POST", "/v1beta/models"), ("GET", "/"),
    ("GET", "/healthz"), ("POST", "/v1/unknown"), ("HEAD", "/v1/models"), ("POST", "/v1beta/model/x:generateContent"),
]  # fmt: skip


@pytest.fixture(scope="module")
def app(monkeypatch_module):
    monkeypatch_module.setenv("PISCES_CONFIG", str(ROOT / "pisces.yaml"))
    monkeypatch_module.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from pisces_gateway.app import create_app

    return create_app()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def routed(app, method: str, path: str) -> tuple[DoorRoute | None, dict]:
    """The route Starlette's router chooses (the first full match, in the table's order), and its parameters."""
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}
    for route in app.router.routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, child.get("path_params", {})
    return None, {}


@pytest.mark.parametrize(("method", "path"), REQUESTS)
def test_a_door_is_the_route_the_router_chooses(app, method, path):
    route, params = routed(app, method, path)
    assert isinstance(route, DoorRoute) and route.door is not None
    found = app.doors.find(method, path)
    if found is None:  # a parameter other than one trailing {name:path}: the router's alone
        assert router_only(route.path)
        return
    door, found_params = found
    assert (door, found_params) == (route.door, params)


@pytest.mark.parametrize(("method", "path"), NOT_DOORS)
def test_what_is_no_door_is_left_to_the_router(app, method, path):
    assert app.doors.find(method, path) is None
    route, _ = routed(app, method, path)
    assert route is None or getattr(route, "door", None) is None or method == "HEAD"


def router_only(path: str) -> bool:
    return "{" in path and not (path.endswith(":path}") and path.count("{") == 1)


def test_every_door_of_the_app_is_in_the_table_unless_its_path_has_another_parameter(app):
    doors = [r for r in app.router.routes if isinstance(r, DoorRoute) and r.door is not None]
    assert len(doors) >= 18
    for r in doors:
        (method,) = r.methods - {"HEAD"}
        taken = (method, r.path) in app.doors.exact or any(r.door is d for *_, d in app.doors.prefixed)
        assert taken != router_only(r.path), r.path


def test_the_table_takes_exact_paths_and_one_trailing_path_parameter():
    doors, one, two, three = Doors(), object(), object(), object()
    doors.add("POST", "/a/b", one)  # type: ignore[arg-type]
    doors.add("POST", "/a/{rest:path}", two)  # type: ignore[arg-type]
    doors.add("POST", "/x/{id}/y", three)  # type: ignore[arg-type]
    doors.add("POST", "/z/{id}", three)  # type: ignore[arg-type]
    assert doors.find("POST", "/a/b") == (one, {})
    assert doors.find("POST", "/a/c:d/e") == (two, {"rest": "c:d/e"})
    assert doors.find("GET", "/a/b") is None and doors.find("POST", "/x/1/y") is None
    assert doors.find("POST", "/z/1") is None  # {id} without :path stops at a slash: the router's to match


QUERIES = [
    b"", b"alt=sse", b"key=pisces-abc&alt=sse", b"alt=sse&alt=json", b"a", b"a=", b"=x", b"&&a=1&", b"a=1&b",
    b"key=a%2Bb", b"q=hello+world", b"q=%E2%9C%93", b"q=%ZZ", b"name=caf\xe9", b"a=b=c", b"limit=10&after=abc",
    b"request_id=req_1;x=2", b"from=2026-01-01&to=2026-12-31", b"%61lt=sse",
]  # fmt: skip


@pytest.mark.parametrize("query", QUERIES)
def test_a_doors_query_is_what_starlettes_query_params_say(query):
    """The door's query (``chat.query_map``, split by hand when nothing is escaped) looks up as Starlette's
    ``request.query_params`` does: every name it has, the last of a repeated one, blank values kept."""
    from starlette.datastructures import QueryParams

    from pisces_gateway.chat import query_map

    theirs, ours = QueryParams(query), query_map(query)
    assert dict(ours) == {name: theirs[name] for name in theirs}
    assert ours.get("alt") == theirs.get("alt") and ("key" in ours) == ("key" in theirs)
