"""A small API protected by `baton.resource`, used by the tests, the benchmarks and the docs.

    BATON_ISSUER=http://127.0.0.1:8000 BATON_RS_ID=... BATON_RS_SECRET=... \\
        BATON_AUDIENCE=https://notes.example uvicorn --factory examples.api:create_app --port 9001

Routes: `GET /hello` (scope `read`), `POST /notes` (scope `write`), `GET /health` (public: the
verifier's health, e.g. whether it has failed closed). `create_noauth_app` serves the same
routes with no authentication, as the baseline of bench/resource_rps.py.

`BATON_AUDIENCE` (required) is this API's resource URI, its `--resource-uri` (several:
space-separated); tokens whose `aud` does not name it are refused, opaque or JWT. Set it to the
issuer only to accept tokens issued for no resource (clients registered without `--resource`).
Options from the environment: `BATON_MAX_DISCONNECT` (seconds, default 10),
`BATON_CACHE_MAX_TTL` (default 300).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from baton.resource import BatonMiddleware, Principal, Verifier, require

_VERIFIER_KEY = "verifier"


def _who(request: Request) -> Principal | None:
    return request.scope.get("baton.principal")


async def hello(request: Request) -> JSONResponse:
    principal = _who(request)
    if principal is not None:
        principal.require("read")
    return JSONResponse(
        {
            "hello": principal.subject if principal else "anonymous",
            "grant_id": principal.grant_id if principal else None,
            "format": principal.token_format if principal else None,
        }
    )


async def notes(request: Request) -> JSONResponse:
    principal = require("write")(request) if _who(request) is not None else None
    return JSONResponse({"saved": True, "by": principal.subject if principal else None}, 201)


async def health(request: Request) -> JSONResponse:
    verifier: Verifier | None = getattr(request.app.state, _VERIFIER_KEY, None)
    if verifier is None:
        return JSONResponse({"auth": "none"})
    report = verifier.health()
    return JSONResponse(report, status_code=200 if not report["fail_closed"] else 503)


ROUTES = [
    Route("/hello", hello),
    Route("/notes", notes, methods=["POST"]),
    Route("/health", health),
]


def build(verifier: Verifier | None) -> Starlette:
    app = Starlette(routes=ROUTES)
    setattr(app.state, _VERIFIER_KEY, verifier)
    if verifier is not None:
        app.add_middleware(BatonMiddleware, verifier=verifier, public_paths={"/health"})
    return app


def create_app() -> Starlette:
    return build(
        Verifier.from_env(
            max_disconnect=float(os.environ.get("BATON_MAX_DISCONNECT", "10")),
            cache_max_ttl=float(os.environ.get("BATON_CACHE_MAX_TTL", "300")),
        )
    )


def create_noauth_app() -> Starlette:
    return build(None)
