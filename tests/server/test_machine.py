"""`baton.server.fastpath.machine`: POSTs to the machine endpoints skip the router and the session
middleware, with the same exception handlers; everything else goes the usual way. The app's own
tests (token, introspection, revocation, errors, metrics) all run through it, and
tests/server/test_fastpath.py compares Baton's answers with it and without it.

The guard on Starlette: the same requests, to an app with the short way and to one without,
get the same answers byte for byte; a Starlette release that routes otherwise fails here."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import starlette
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from baton.server.fastpath.machine import ExceptionHandler, MachineEndpoints


class Problem(Exception):
    pass


class SpecificProblem(Problem):
    pass


async def endpoint(request: Request) -> Response:
    body = (await request.body()).decode()
    if body == "problem":
        raise SpecificProblem("handled by its parent's handler")
    if body == "crash":
        raise RuntimeError("no handler")
    route = request.scope["route"].path
    return JSONResponse({"route": route, "body": body})


async def handle(_request: Request, exc: Exception) -> Response:
    return PlainTextResponse(f"handled {type(exc).__name__}", status_code=418)


seen: list[str] = []


async def inner(scope: Scope, receive: Receive, send: Send) -> None:
    seen.append(f"{scope['method']} {scope['path']}")
    await PlainTextResponse("inner")(scope, receive, send)


def client(**scope: Any) -> httpx.AsyncClient:
    app = MachineEndpoints(
        inner, routes=[Route("/token", endpoint, methods=["POST"])], handlers={Problem: handle}
    )
    transport = httpx.ASGITransport(app=app, root_path=scope.get("root_path", ""))
    return httpx.AsyncClient(transport=transport, base_url="http://baton.test")


@pytest.mark.anyio
async def test_a_post_to_a_machine_endpoint_skips_the_inner_app() -> None:
    seen.clear()
    async with client() as http:
        response = await http.post("/token", content="x")
        other = await http.post("/authorize", content="x")
        get = await http.get("/token")
    assert response.json() == {"route": "/token", "body": "x"}
    assert other.text == get.text == "inner"
    assert seen == ["POST /authorize", "GET /token"]


@pytest.mark.anyio
async def test_exceptions_meet_the_apps_handlers_by_class_and_the_rest_propagate() -> None:
    async with client() as http:
        handled = await http.post("/token", content="problem")
        assert (handled.status_code, handled.text) == (418, "handled SpecificProblem")
        with pytest.raises(RuntimeError, match="no handler"):
            await http.post("/token", content="crash")


@pytest.mark.anyio
async def test_under_a_root_path_the_route_is_matched_without_it() -> None:
    seen.clear()
    async with client(root_path="/auth") as http:
        response = await http.post("/auth/token", content="y")
        elsewhere = await http.post("/authtoken", content="y")
    assert response.json() == {"route": "/token", "body": "y"}
    assert elsewhere.text == "inner"


def test_only_post_routes_take_the_short_way() -> None:
    with pytest.raises(ValueError, match="only POST"):
        MachineEndpoints(inner, routes=[Route("/jwks.json", endpoint)], handlers={})


def test_only_exact_paths_take_the_short_way() -> None:
    with pytest.raises(ValueError, match="only exact paths"):
        MachineEndpoints(
            inner, routes=[Route("/token/{kind}", endpoint, methods=["POST"])], handlers={}
        )


# -- the guard on Starlette: the short way answers what the router answers ------------------------


async def routed(request: Request) -> Response:
    """What the router tells the endpoint, and the ways an endpoint ends."""
    body = (await request.body()).decode()
    if body == "problem":
        raise SpecificProblem("handled by its parent's handler")
    if body == "http":
        raise HTTPException(409, "taken", headers={"X-Why": "taken"})
    if body == "crash":
        raise RuntimeError("no handler")
    scope = request.scope
    seen = {
        "route": scope["route"].path,
        "endpoint": scope["endpoint"].__name__,
        "path_params": scope["path_params"],
        "url": str(request.url),
        "body": body,
    }
    return JSONResponse(seen, headers={"X-Seen": "1"})


async def http_problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return PlainTextResponse(f"{exc.status_code} {exc.detail}", exc.status_code, exc.headers)


async def crashed(_request: Request, exc: Exception) -> Response:
    return PlainTextResponse(f"crashed: {exc}", status_code=500)


def starlette_app(short_way: bool) -> Starlette:
    machine = [Route("/token", routed, methods=["POST"])]
    handlers: dict[type[Exception], ExceptionHandler] = {
        Problem: handle,
        HTTPException: http_problem,
    }
    return Starlette(
        routes=[*machine, Route("/other", routed, methods=["POST"])],
        middleware=[Middleware(MachineEndpoints, routes=machine, handlers=handlers)]
        if short_way
        else [],
        exception_handlers={**handlers, Exception: crashed},
    )


# (method, path, body, root_path): each answered by the short way or passed on to the router.
REQUESTS = [
    ("POST", "/token", "x", ""),
    ("POST", "/token", "problem", ""),
    ("POST", "/token", "http", ""),
    ("POST", "/token", "crash", ""),
    ("GET", "/token", "", ""),
    ("HEAD", "/token", "", ""),
    ("PUT", "/token", "x", ""),
    ("POST", "/token/", "x", ""),
    ("POST", "/token%0A", "x", ""),
    ("POST", "/TOKEN", "x", ""),
    ("POST", "/tokens", "x", ""),
    ("POST", "/other", "x", ""),
    ("POST", "/", "x", ""),
    ("POST", "/auth/token", "x", "/auth"),
    ("POST", "/auth/token", "problem", "/auth"),
    ("POST", "/auth", "x", "/auth"),
    ("POST", "/authtoken", "x", "/auth"),
    ("POST", "/token", "x", "/auth"),
]


@pytest.mark.parametrize(("method", "path", "body", "root_path"), REQUESTS)
def test_the_short_way_answers_what_the_router_answers(
    method: str, path: str, body: str, root_path: str
) -> None:
    answers = []
    for short_way in (True, False):
        with TestClient(
            starlette_app(short_way),
            root_path=root_path,
            raise_server_exceptions=False,
            follow_redirects=False,
        ) as http:
            response = http.request(method, f"http://baton.test{path}", content=body)
            answers.append((response.status_code, response.headers.multi_items(), response.content))
    assert answers[0] == answers[1], (
        f"starlette {starlette.__version__}: MachineEndpoints answers {method} {path} "
        f"(root path {root_path!r}) otherwise than the router: {answers[0]} != {answers[1]}"
    )
