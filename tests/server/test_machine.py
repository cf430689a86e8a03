"""`baton.server.fastpath.machine`: POSTs to the machine endpoints skip the router and the session
middleware, with the same exception handlers; everything else goes the usual way. The app's own
tests (token, introspection, revocation, errors, metrics) all run through it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from baton.server.fastpath.machine import MachineEndpoints


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
