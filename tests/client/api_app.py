"""A tiny resource server for the end-to-end tests: every request's bearer token is checked by
calling Baton's /introspect (as the resource-server client); an inactive token gets
`401 WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3.1).

Run: BATON_URL=... BATON_RS_ID=... BATON_RS_SECRET=... uvicorn tests.client.api_app:app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_http: dict[str, httpx.AsyncClient] = {}


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    _http["client"] = httpx.AsyncClient(
        base_url=os.environ["BATON_URL"],
        auth=(os.environ["BATON_RS_ID"], os.environ["BATON_RS_SECRET"]),
        timeout=30,
        limits=httpx.Limits(max_connections=32),
    )
    yield
    await _http["client"].aclose()


def _challenge(error: str) -> JSONResponse:
    return JSONResponse(
        {"error": error},
        status_code=401,
        headers={"WWW-Authenticate": f'Bearer realm="api", error="{error}"'},
    )


async def hello(request: Request) -> JSONResponse:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return JSONResponse(
            {"error": "unauthorized"}, 401, headers={"WWW-Authenticate": 'Bearer realm="api"'}
        )
    response = await _http["client"].post("/introspect", data={"token": header[7:]})
    if response.status_code != 200:
        return JSONResponse({"error": "introspection failed"}, status_code=502)
    info = response.json()
    if not info.get("active"):
        return _challenge("invalid_token")
    return JSONResponse({"hello": info.get("sub"), "generation": info.get("generation")})


app = Starlette(routes=[Route("/hello", hello)], lifespan=lifespan)
