"""`POST /token-use`: resource servers report access tokens used after their companion was
exchanged (issue 28; `baton.resource` sends them in batches). Filled in by the signals work."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

PATH = "/token-use"


async def token_use_endpoint(request: Request) -> JSONResponse:
    raise NotImplementedError
