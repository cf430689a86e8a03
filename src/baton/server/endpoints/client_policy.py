"""`GET /client-policy`: a client's policy in force and its scheduled change, for the client's
own app to read (issue 28; `baton.client` reads it). Filled in by the policy work."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

PATH = "/client-policy"


async def client_policy_endpoint(request: Request) -> JSONResponse:
    raise NotImplementedError
